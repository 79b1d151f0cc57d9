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
