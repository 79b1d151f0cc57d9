"""Events through the real broker and database: delivery, duplicates,
retries and the DLQ, unroutable events, the relay, stock nameko subscribers."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from nameko import config
from nameko.events import event_handler
from nameko.testing.services import entrypoint_hook
from pymongo.errors import AutoReconnect

from lamplight import topology
from lamplight.consuming import subscribe
from lamplight.envelope import new_event
from lamplight.publishing import EventOutbox, Events, PublishFailed
from lamplight.storage import Mongo
from lamplight_tools import cli
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.volunteers.service import VolunteersService
from tests.conftest import wait_for
from tests.parks import ALL_WEEK, needs_config, volunteers_config

PARK = "quanlinan"
NEED = {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair", "channel": "wish_wall",
        "title": "篮球场的灯坏了", "details": {"location": "篮球场"}, "requester": {"kind": "worker", "name": "李四",
                                                                          "phone": "13900001111"}}


def need_submitted(need_id="need_01test", category="daily_life"):
    return new_event("need.submitted", source="needs", park_id=PARK, subject=need_id, data={
        "need_id": need_id, "kind": "micro_wish", "category": category, "item": None, "grade": "routine",
        "channel": "wish_wall", "requester_kind": "worker", "summary": "路灯",
        "submitted_at": "2026-11-21T08:00:00+00:00", "due_at": "2026-11-28T08:00:00+00:00",
        "possible_duplicates": []})


def need_triaged(need_id="need_01test", category="daily_life"):
    """need.triaged as the needs service publishes it: what dispatch acts on."""
    return new_event("need.triaged", source="needs", park_id=PARK, subject=need_id, data={
        "need_id": need_id, "version": 1, "action": "triage", "from_status": "submitted", "status": "triaged",
        "kind": "micro_wish", "category": category, "item": None, "grade": "routine", "team": "orange",
        "unit": None, "routing": 1, "summary": "路灯", "due_at": "2026-11-28T08:00:00+00:00",
        "at": "2026-11-21T08:00:00+00:00"})


@pytest.fixture
def slice_services(container_factory, service_config):
    containers = {}
    for cls in (NotifyService, VolunteersService, NeedsService):
        containers[cls.name] = container_factory(cls)
        containers[cls.name].start()
    with entrypoint_hook(containers["needs"], "set_config") as set_config:
        set_config(PARK, needs_config())
    with entrypoint_hook(containers["volunteers"], "set_config") as set_config:
        set_config(PARK, volunteers_config())
    return containers


def register(container, **fields):
    with entrypoint_hook(container, "register_responder") as register_responder:
        return register_responder(PARK, dict({"kind": "volunteer", "name": "张三", "teams": ["orange"],
                                              "skills": ["electrician"], "roster": ALL_WEEK}, **fields))


def test_a_need_becomes_a_task_offer_and_an_inbox_notice(slice_services, db):
    responder = register(slice_services["volunteers"])
    with entrypoint_hook(slice_services["needs"], "submit") as submit:
        need = submit(PARK, NEED)
    assert need["created"] is True and need["status"] == "triaged" and need["team"] == "orange"
    notice = wait_for(lambda: db("notify")["notices.quanlinan"].find_one({"recipient_id": responder["id"]}),
                      what="the in-app notice")
    assert notice["park_id"] == PARK and "篮球场的灯坏了" in notice["body"]
    task = db("volunteers")["tasks." + PARK].find_one({"need_id": need["id"]})
    assert list(task["offers"]) == [responder["id"]] and task["status"] == "offered"
    with entrypoint_hook(slice_services["notify"], "inbox") as inbox:
        assert [n["id"] for n in inbox(PARK, responder["id"])] == [notice["_id"]]


def test_the_same_event_delivered_twice_has_one_effect(slice_services, broker, db):
    responder = register(slice_services["volunteers"])
    event = need_triaged()
    broker.publish("needs.events", "need.triaged", event)
    broker.publish("needs.events", "need.triaged", event)
    wait_for(lambda: db("notify")["notices.quanlinan"].count_documents({}) >= 1, what="a notice")
    # both deliveries were consumed (the queue is empty), yet one task and one notice
    wait_for(lambda: broker.depth("volunteers--need.triaged") == 0, what="both deliveries consumed")
    offer = db("volunteers")["tasks." + PARK].find_one({"need_id": "need_01test"})
    task_offered = offer["_outbox"][0]
    broker.publish("volunteers.events", "task.offered", task_offered)  # and task.offered twice too
    wait_for(lambda: broker.depth("notify--task.offered") == 0, what="the duplicate task.offered consumed")
    assert db("volunteers")["tasks." + PARK].count_documents({"need_id": "need_01test"}) == 1
    assert db("notify")["notices.quanlinan"].count_documents({"recipient_id": responder["id"]}) == 1


class Flaky:
    name = "flaky"
    calls = []
    failing = True

    @subscribe("needs", "need.submitted")
    def on_need(self, envelope):
        Flaky.calls.append(envelope["id"])
        if Flaky.failing:
            raise RuntimeError("handler is down")


@pytest.fixture
def flaky(container_factory, service_config):
    Flaky.calls, Flaky.failing = [], True
    container = container_factory(Flaky)
    container.start()
    return container


def test_a_failing_handler_retries_then_dead_letters_then_replays(flaky, broker):
    event = need_submitted()
    broker.publish("needs.events", "need.submitted", event)
    dlq = "flaky--need.submitted.dlq"
    wait_for(lambda: broker.depth(dlq) == 1, what="the message in the DLQ")
    assert Flaky.calls == [event["id"]] * config["EVENT_MAX_ATTEMPTS"]

    (parked,) = cli.dlq_list(config["AMQP_URI"], [dlq])
    assert parked["message_id"] == event["id"] and parked["type"] == "need.submitted"
    assert parked["attempts"] == 3 and "handler is down" in parked["error"]
    assert broker.depth(dlq) == 1  # listing leaves it parked

    Flaky.failing = False
    assert cli.dlq_replay(config["AMQP_URI"], dlq) == [event["id"]]
    wait_for(lambda: len(Flaky.calls) == 4, what="the replayed delivery")
    wait_for(lambda: broker.depth("flaky--need.submitted") == 0, what="the replay acked")
    assert broker.depth(dlq) == 0


@pytest.mark.parametrize("body", [b"{not json", json.dumps({"specversion": "1.0"}).encode()],
                         ids=["not-json", "not-an-envelope"])
def test_a_poison_message_goes_to_the_dlq_at_once_and_does_not_block_the_queue(flaky, broker, body):
    broker.publish("needs.events", "need.submitted", body)
    good = need_submitted("need_after_poison")
    Flaky.failing = False
    broker.publish("needs.events", "need.submitted", good)
    wait_for(lambda: Flaky.calls == [good["id"]], what="the good message behind the poison one")
    wait_for(lambda: broker.depth("flaky--need.submitted.dlq") == 1, what="the poison message parked")


class Publisher:
    name = "needs"
    db = Mongo()
    events = EventOutbox(collections=("needs",))


def test_an_event_no_queue_is_bound_for_is_parked_not_dropped(container_factory, service_config, broker):
    """nameko#717: an event published where no queue is bound is silently lost."""
    container = container_factory(Publisher)
    container.start()
    outbox = next(d for d in container.dependencies if isinstance(d, EventOutbox))
    event = new_event("need.nobody_listens", source="needs", park_id=PARK, subject="x", data={"a": 1})
    assert outbox.publish([event]) is True
    wait_for(lambda: broker.depth(topology.UNROUTED_QUEUE_NAME) == 1, what="the parked event")

    # a subscriber binds later and gets it by replay
    channel = broker.conn.channel()
    channel.queue_declare("late-subscriber", durable=True)
    channel.queue_bind("late-subscriber", "needs.events", routing_key="need.nobody_listens")
    assert cli.dlq_replay(config["AMQP_URI"], topology.UNROUTED_QUEUE_NAME) == [event["id"]]
    message = wait_for(lambda: broker.get("late-subscriber"), what="the replayed event")
    assert json.loads(message.body)["id"] == event["id"]


def test_a_writer_that_stops_cleanly_leaves_no_record_behind(container_factory, service_config, db):
    # the outbox removes its writer's record as it stops, so no relay takes over a writer that
    # left nothing unconfirmed; the database client must still be open then, whichever of the
    # two providers nameko stops first (it stops them side by side)
    for _ in range(5):
        container = container_factory(Publisher)
        container.start()
        outbox = next(d for d in container.dependencies if isinstance(d, EventOutbox))
        wait_for(lambda: db("needs")["_writers"].find_one({"_id": outbox.writer_id}), what="the writer's record")
        container.stop()
        assert db("needs")["_writers"].find_one({"_id": outbox.writer_id}) is None


def test_the_relay_takes_over_a_writer_whose_heartbeat_stopped(slice_services, db):
    responder = register(slice_services["volunteers"])
    outbox = next(d for d in slice_services["needs"].dependencies if isinstance(d, EventOutbox))
    wait_for(lambda: outbox.relay_passes >= 1, what="the relay's pass at start")
    event = need_triaged("need_crashed")
    # what a crash between the write and the publish leaves: the need with its
    # event in the outbox, and the dead writer's last checkpoint before it
    written_at = datetime.now(timezone.utc) - timedelta(seconds=30)
    db("needs").needs.insert_one({"_id": "need_crashed", "park_id": PARK, "status": "submitted",
                                  "_outbox": [event], "_outbox_at": written_at, "_outbox_by": "needs-dead-1"})
    db("needs")["_writers"].insert_one({"_id": "needs-dead-1", "service": "needs",
                                        "checkpoint": written_at - timedelta(seconds=1),
                                        "heartbeat": written_at})
    # a writer that died with everything confirmed: its checkpoint is after its writes
    db("needs")["_writers"].insert_one({"_id": "needs-dead-2", "service": "needs",
                                        "checkpoint": written_at + timedelta(seconds=1),
                                        "heartbeat": written_at})
    assert outbox.relay_once() == 1
    wait_for(lambda: db("notify")["notices.quanlinan"].find_one({"recipient_id": responder["id"]}), what="the notice")
    assert db("needs")["_writers"].count_documents({"_id": {"$in": ["needs-dead-1", "needs-dead-2"]}}) == 0
    assert outbox.relay_once() == 0  # taken over once: not again
    # the live writers' own checkpoints are untouched
    assert db("needs")["_writers"].find_one({"_id": outbox.writer_id})["heartbeat"] > written_at


def test_a_live_writer_retries_what_the_broker_did_not_confirm(slice_services, db):
    responder = register(slice_services["volunteers"])
    outbox = next(d for d in slice_services["needs"].dependencies if isinstance(d, EventOutbox))
    event = need_triaged("need_unconfirmed")
    staged_at = outbox.stage([event])
    outbox.pipeline.close()
    failing = outbox.pipeline.publish
    outbox.pipeline.publish = lambda messages: (_ for _ in ()).throw(PublishFailed("broker away"))
    try:
        assert outbox.publish([event]) is False
        outbox.checkpoint()
        mine = db("needs")["_writers"].find_one({"_id": outbox.writer_id})
        assert mine["checkpoint"] <= staged_at  # the checkpoint waits for the event
    finally:
        outbox.pipeline.publish = failing
    wait_for(lambda: db("notify")["notices.quanlinan"].find_one({"recipient_id": responder["id"]}),
             what="the notice after the writer's own retry")
    wait_for(lambda: db("needs")["_writers"].find_one({"_id": outbox.writer_id})["checkpoint"] > staged_at,
             what="the checkpoint moving past the confirmed event")


def lost_after_sending(outbox, db, event, need_id, written):
    """A write whose connection went after it was sent, as a killed database
    leaves it: the need inserted (or not), then AutoReconnect."""
    with pytest.raises(AutoReconnect):
        with Events(outbox, None).staging([event]) as staged:
            fields = staged.fields()
            if written:
                db("needs").needs.insert_one(dict({"_id": need_id, "park_id": PARK, "status": "triaged"}, **fields))
            raise AutoReconnect("connection reset by peer")


def test_a_write_in_doubt_that_took_effect_has_its_event_published_by_the_live_writer(slice_services, db):
    # the client's retry with its idempotency key finds the need written and
    # answers it: no one else would ever publish the event of the first write
    responder = register(slice_services["volunteers"])
    outbox = next(d for d in slice_services["needs"].dependencies if isinstance(d, EventOutbox))
    event = need_triaged("need_in_doubt")
    lost_after_sending(outbox, db, event, "need_in_doubt", written=True)
    wait_for(lambda: db("notify")["notices.quanlinan"].find_one({"recipient_id": responder["id"]}),
             what="the notice of the task made from the event of the write in doubt")
    assert db("volunteers")["tasks.quanlinan"].count_documents({"need_id": "need_in_doubt"}) == 1
    wait_for(lambda: db("needs")["_writers"].find_one({"_id": outbox.writer_id})["checkpoint"] > event_time(db, event),
             what="the checkpoint moving past the event")


def event_time(db, event):
    return db("needs").needs.find_one({"_outbox.id": event["id"]})["_outbox_at"]


def test_a_write_in_doubt_that_never_happened_holds_the_checkpoint_until_it_is_given_up(slice_services, db):
    outbox = next(d for d in slice_services["needs"].dependencies if isinstance(d, EventOutbox))
    event = need_triaged("need_never_written")
    lost_after_sending(outbox, db, event, "need_never_written", written=False)
    staged_at = outbox._staged[event["id"]]
    outbox.checkpoint()
    # while a server may still apply it, a crash of this writer must leave it to the relay
    assert db("needs")["_writers"].find_one({"_id": outbox.writer_id})["checkpoint"] <= staged_at
    assert outbox.settle_doubts() == (0, 0)
    outbox.in_doubt_for = timedelta(0)
    wait_for(lambda: not outbox._doubtful, what="the write given up")
    assert event["id"] not in outbox._staged
    wait_for(lambda: db("needs")["_writers"].find_one({"_id": outbox.writer_id})["checkpoint"] > staged_at,
             what="the checkpoint moving past the event never written")
    assert db("needs").needs.find_one({"_id": "need_never_written"}) is None


class StockSubscriber:
    name = "stock"
    received = []

    @event_handler("needs", "need.submitted")
    def on_need(self, payload):
        StockSubscriber.received.append(payload)


def test_a_stock_nameko_subscriber_receives_our_events(container_factory, service_config, slice_services):
    StockSubscriber.received = []
    container = container_factory(StockSubscriber)
    container.start()
    with entrypoint_hook(slice_services["needs"], "submit") as submit:
        need = submit(PARK, NEED)
    envelope = wait_for(lambda: StockSubscriber.received, what="the event at the stock subscriber")[0]
    assert envelope["type"] == "need.submitted" and envelope["subject"] == need["id"]
    assert "李四" not in json.dumps(envelope, ensure_ascii=False)  # no personal data in events


def test_a_retry_comes_back_exactly_once(container_factory, service_config, broker):
    """A retry lands in one delay queue, the one for its delay, and returns once."""
    Flaky.calls, Flaky.failing = [], True
    config_delays = config["EVENT_RETRY_DELAYS_MS"]
    container = container_factory(Flaky)
    container.start()
    broker.publish("needs.events", "need.submitted", need_submitted())
    wait_for(lambda: broker.depth("flaky--need.submitted.dlq") == 1, what="the message in the DLQ")
    for delay in config_delays:
        assert broker.depth("lamplight.delay.{}".format(delay)) == 0
    import time
    time.sleep(max(config_delays) * 3 / 1000.0)
    assert len(Flaky.calls) == config["EVENT_MAX_ATTEMPTS"]
    assert broker.depth("flaky--need.submitted.dlq") == 1


class Outage:
    name = "outage"
    calls: list[int] = []
    away_for = 0

    @subscribe("needs", "need.submitted")
    def on_need(self, envelope):
        Outage.calls.append(1)
        if len(Outage.calls) <= Outage.away_for:
            raise AutoReconnect("the database is away")


def test_a_database_outage_longer_than_the_retry_ladder_dead_letters_nothing(container_factory, service_config,
                                                                              broker):
    """An outage is not the message's fault: failures because the database is
    away spend no attempt, so the event is handled once the database is back,
    however many deliveries the outage took (here twice EVENT_MAX_ATTEMPTS)."""
    Outage.calls, Outage.away_for = [], 2 * config["EVENT_MAX_ATTEMPTS"]
    container = container_factory(Outage)
    container.start()
    broker.publish("needs.events", "need.submitted", need_submitted())
    wait_for(lambda: len(Outage.calls) == Outage.away_for + 1, timeout=30, what="handled after the outage")
    wait_for(lambda: broker.depth("outage--need.submitted") == 0, what="the delivery acked")
    assert broker.depth("outage--need.submitted.dlq") == 0


class FailsOnce:
    name = "fails_once"
    calls: list[str] = []

    @subscribe("needs", "need.submitted")
    def on_need(self, envelope):
        FailsOnce.calls.append(envelope["id"])
        if len(FailsOnce.calls) == 1:
            raise RuntimeError("the first delivery fails")


def test_with_quorum_queues_a_retry_waits_in_a_quorum_delay_queue_and_comes_back(container_factory, service_config,
                                                                                  broker, rabbit_manager):
    """On a cluster a retry waiting in a classic delay queue is lost with
    its node or held until it returns; with QUEUE_TYPE=quorum it waits in a
    replicated quorum queue (a single node runs them too)."""
    FailsOnce.calls = []
    with config.patch({"QUEUE_TYPE": "quorum"}):
        container = container_factory(FailsOnce)
        container.start()
        event = need_submitted()
        broker.publish("needs.events", "need.submitted", event)
        wait_for(lambda: FailsOnce.calls == [event["id"]] * 2, what="the retried delivery")
    vhost = rabbit_manager_vhost()
    delay = rabbit_manager.get_queue(vhost, "lamplight.delay-quorum.{}".format(config["EVENT_RETRY_DELAYS_MS"][0]))
    assert delay["type"] == "quorum"
    assert rabbit_manager.get_queue(vhost, "fails_once--need.submitted")["type"] == "quorum"
    wait_for(lambda: broker.depth("fails_once--need.submitted") == 0, what="the retry acked")
    assert broker.depth("fails_once--need.submitted.dlq") == 0


def rabbit_manager_vhost():
    from urllib.parse import unquote, urlparse
    return unquote(urlparse(config["AMQP_URI"]).path[1:]) or "/"
