"""Faults against the real processes: a crash between the database write and
the publish, and the needs service down while the gateway takes a need."""
import signal
import time

import requests

from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)


def test_a_kill_between_write_and_publish_delivers_the_event_once(stack, api, db):
    volunteer_id = api.post("/responders", VOLUNTEER).json()["id"]
    stack.stop("needs")
    stack.start("needs", {"LAMPLIGHT_FAILPOINTS": "outbox.after_write=kill"})
    stack.wait_ready("needs")

    answer = api.post("/needs", NEED, headers={"Idempotency-Key": "crash-1"})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert stack.procs["needs"].wait(timeout=10) == -signal.SIGKILL

    # the need was written with its event in the outbox, nothing was published,
    # and the dead writer's last checkpoint is before the write
    need = db("needs").needs.find_one({"idempotency_key": "crash-1"})
    assert need is not None
    assert [e["type"] for e in need["_outbox"]] == ["need.submitted", "need.triaged", "wall.entry_changed"]
    dead_writer = db("needs")["_writers"].find_one({"_id": need["_outbox_by"]})
    # on record before the need named it, though nameko may start taking requests before the outbox's start()
    assert dead_writer is not None, (need["_outbox_by"], list(db("needs")["_writers"].find()))
    assert dead_writer["checkpoint"] <= need["_outbox_at"]
    assert db("volunteers")["tasks.quanlinan"].count_documents({"need_id": need["need_id"]}) == 0

    stack.start("needs")  # restarted without the failpoint: the relay takes over
    stack.wait_ready("needs")
    wait_for(lambda: db("notify")["notices.quanlinan"].find_one({"subject": "{}:task:1".format(need["need_id"])}),
             timeout=20, what="the notice for the crashed need")

    time.sleep(2)  # several relay passes later: still exactly once
    assert db("volunteers")["tasks.quanlinan"].count_documents({"need_id": need["need_id"]}) == 1
    assert db("notify")["notices.quanlinan"].count_documents({"recipient_id": volunteer_id}) == 1
    assert db("needs")["_writers"].find_one({"_id": need["_outbox_by"]}) is None  # taken over

    retry = api.post("/needs", NEED, headers={"Idempotency-Key": "crash-1"})
    assert retry.status_code == 200 and retry.json()["id"] == need["need_id"]
    assert db("needs").needs.count_documents({"idempotency_key": "crash-1"}) == 1


def test_with_the_needs_service_down_the_gateway_answers_503_and_writes_nothing(stack, api, db):
    stack.stop("needs")
    started = time.monotonic()
    answer = api.post("/needs", NEED, headers={"Idempotency-Key": "while-down"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert int(answer.headers["Retry-After"]) > 0
    assert time.monotonic() - started < 10
    # the public wall says so too, as a page
    page = requests.get(stack.gateway_url + "/parks/quanlinan/wall", timeout=30)
    assert page.status_code == 503 and "暂时无法访问" in page.text and page.headers["Retry-After"]

    time.sleep(1)  # past the request's TTL: the broker has dropped it
    stack.start("needs")
    stack.wait_ready("needs")
    time.sleep(1)
    assert db("needs").needs.count_documents({"park_id": "quanlinan"}) == 0

    accepted = api.post("/needs", NEED, headers={"Idempotency-Key": "while-down"})
    assert accepted.status_code == 201
