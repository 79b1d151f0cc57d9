"""The broker goes away while a need is being accepted: the need is written,
its event waits in the outbox of a live writer, and is published once the
broker is back — nothing accepted is lost, nothing is published twice."""
import subprocess
from pathlib import Path

import pytest
from nameko.testing.services import entrypoint_hook

from lamplight.metrics import EVENTS_PUBLISH_FAILED
from services.needs.service import NeedsService
from services.volunteers.service import VolunteersService
from tests.conftest import wait_for
from tests.parks import ALL_WEEK, needs_config, volunteers_config
from tests.stackfixtures import stack  # noqa: F401 (fixture)

DEV = str(Path(__file__).resolve().parents[2] / "dev")
NEED = {"kind": "urgent_matter", "category": "care", "item": "safety_hazard", "channel": "hotline",
        "title": "工地塔吊有安全隐患", "details": {"location": "三号工地", "hazard": "structural"},
        "requester": {"kind": "worker", "name": "赵师傅"}}


def rabbitctl(*args):
    subprocess.run([DEV, "rabbitctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def broker_outage():
    """Stop RabbitMQ's app (the node stays, so it comes back quickly); always restart it."""
    try:
        yield lambda: rabbitctl("stop_app")
    finally:
        rabbitctl("start_app")
        rabbitctl("await_startup", "--timeout", "60")


def test_a_need_accepted_during_a_broker_outage_is_published_when_it_returns(
        container_factory, service_config, db, broker_outage):
    volunteers = container_factory(VolunteersService)
    volunteers.start()
    needs = container_factory(NeedsService)
    needs.start()
    with entrypoint_hook(volunteers, "set_config") as set_config:
        set_config("xuwei", volunteers_config())
    with entrypoint_hook(volunteers, "register_responder") as register:
        responder = register("xuwei", {"kind": "volunteer", "name": "钱工", "teams": ["orange"],
                                       "skills": ["first_aid"], "roster": ALL_WEEK})
    with entrypoint_hook(needs, "set_config") as set_config:
        set_config("xuwei", needs_config())

    failed_before = EVENTS_PUBLISH_FAILED.labels("needs", "need.submitted")._value.get()
    broker_outage()
    with entrypoint_hook(needs, "submit") as submit:
        need = submit("xuwei", NEED)  # the write needs only the database
    assert need["created"] is True
    assert EVENTS_PUBLISH_FAILED.labels("needs", "need.submitted")._value.get() == failed_before + 1
    stored = db("needs").needs.find_one({"need_id": need["id"]})
    assert [e["type"] for e in stored["_outbox"]] == ["need.submitted", "need.triaged", "wall.entry_changed"]

    rabbitctl("start_app")
    rabbitctl("await_startup", "--timeout", "60")
    tasks = db("volunteers")["tasks.xuwei"]
    task = wait_for(lambda: tasks.find_one({"need_id": need["id"]}), timeout=60,
                    what="the task offer after the broker came back")
    assert list(task["offers"]) == [responder["id"]]
    assert tasks.count_documents({"need_id": need["id"]}) == 1


def test_while_the_broker_restarts_the_gateway_answers_503_not_500_and_serves_again(stack, broker_outage):
    from tests.stackfixtures import NEED as HTTP_NEED
    from tests.stackfixtures import Api

    api = Api(stack.gateway_url, key=stack.admin_key())
    assert api.put("/needs/config", needs_config()).status_code == 200
    written = api.post("/needs", HTTP_NEED, headers={"Idempotency-Key": "before-outage"})
    assert written.status_code == 201
    broker_outage()
    for attempt in range(3):
        answer = api.post("/needs", dict(HTTP_NEED, title="停电期间提交的诉求"), headers={"Idempotency-Key": "during"})
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] and answer.json()["error"]["code"] == "unavailable"
        read = api.get("/needs/" + written.json()["id"])
        assert read.status_code == 503, read.text
    rabbitctl("start_app")
    rabbitctl("await_startup", "--timeout", "60")
    again = wait_for(lambda: (lambda r: r.status_code != 503 and r)(
        api.post("/needs", dict(HTTP_NEED, title="停电期间提交的诉求"), headers={"Idempotency-Key": "during"})),
        timeout=60, interval=1, what="the gateway serving again")
    assert again.status_code in (200, 201)
    for name in ("gateway", "needs", "volunteers", "points", "notify"):
        assert stack.pid(name), "{} died with the broker".format(name)
    text = __import__("requests").get(stack.probe_url("gateway", "/metrics"), timeout=10).text
    assert 'lamplight_http_server_errors_total{service="gateway",status="500"}' not in text
