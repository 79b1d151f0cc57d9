"""The subscriber examples against the real broker: the plain kombu one
receives every event of a scenario across a broker restart, none missing,
none applied twice; the nameko one handles what it binds to."""
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from kombu import Connection, Exchange, Queue
from nameko import config
from nameko.testing.services import entrypoint_hook

from examples.nameko_subscriber import SupervisionDashboard
from lamplight.envelope import new_event
from services.needs.service import NeedsService
from services.points.service import PointsService
from services.volunteers.service import VolunteersService
from tests.conftest import wait_for
from tests.faults.test_broker_outage import broker_outage, rabbitctl  # noqa: F401,F811 (fixture)
from tests.parks import ALL_WEEK, needs_config, volunteers_config

ROOT = Path(__file__).resolve().parents[2]
PARK = "xuwei"
RULES = [{"code": "good-deed", "name": "好人好事", "account": "discipline", "points": 1},
         {"code": "missed-meeting", "name": "无故缺席组织生活", "account": "discipline", "points": -2}]
NEED = {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair", "channel": "wish_wall",
        "details": {"location": "宿舍楼下"}, "title": "宿舍楼下的路灯坏了",
        "requester": {"kind": "worker", "name": "李四", "member_id": "XW-M1"}}


def call(container, method, *args, **kwargs):
    with entrypoint_hook(container, method) as hook:
        return hook(*args, **kwargs)


def witness(uri):
    """A durable queue of the test's own, bound like the subscriber's: what the broker routed."""
    with Connection(uri) as conn:
        channel = conn.channel()
        queue = Queue("test.witness", durable=True, auto_delete=False)(channel)
        queue.declare()
        for exchange, key in (("needs.events", "need.*"), ("points.events", "points.#")):
            Exchange(exchange, "topic", durable=True)(channel).declare()
            queue.bind_to(exchange=exchange, routing_key=key)


def drain_witness(uri):
    events = []
    with Connection(uri) as conn:
        channel = conn.channel()
        while True:
            message = channel.basic_get("test.witness", no_ack=True)
            if message is None:
                return events
            events.append(json.loads(message.body))


def rows(db_path, sql):
    with sqlite3.connect(db_path) as db:
        return db.execute(sql).fetchall()


def test_the_kombu_subscriber_gets_every_event_across_a_broker_restart_none_twice(
        container_factory, service_config, tmp_path, broker_outage):  # noqa: F811
    uri = config["AMQP_URI"]
    witness(uri)
    db_path = str(tmp_path / "warehouse.sqlite")
    log = open(tmp_path / "subscriber.log", "w")
    subscriber = subprocess.Popen([sys.executable, str(ROOT / "examples" / "kombu_subscriber.py"), "--amqp-uri", uri,
                                   "--db", db_path, "--queue", "warehouse.test"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "subscribed" in (tmp_path / "subscriber.log").read_text(), timeout=20,
                 what="the subscriber bound")
        containers = {}
        for cls in (VolunteersService, NeedsService, PointsService):
            containers[cls.name] = container_factory(cls)
            containers[cls.name].start()
        call(containers["volunteers"], "set_config", PARK, volunteers_config())
        call(containers["volunteers"], "register_responder", PARK, {
            "kind": "volunteer", "name": "钱工", "teams": ["orange"], "skills": ["electrician"], "roster": ALL_WEEK})
        call(containers["needs"], "set_config", PARK, needs_config())
        call(containers["points"], "set_catalogue", PARK, {"version": 1, "rules": RULES})

        def scenario(tag):
            # another requester each time, or the second need would be held as a possible duplicate
            need = call(containers["needs"], "submit", PARK, dict(NEED, title="路灯坏了（{}）".format(tag),
                                                                  requester=dict(
                NEED["requester"], name="李四" + tag)), idempotency_key="need-" + tag)
            call(containers["points"], "post", PARK, {"member_id": "XW-M1", "rule_code": "good-deed",
                                                      "actor": "desk-01", "reason": tag},
                 idempotency_key="pts-a-" + tag)
            call(containers["points"], "post", PARK, {"member_id": "XW-M2", "rule_code": "missed-meeting",
                                                      "actor": "desk-01", "reason": tag},
                 idempotency_key="pts-b-" + tag)
            return need

        scenario("before")
        wait_for(lambda: rows(db_path, "SELECT count(*) FROM events")[0][0] >= 4, what="the first events")
        broker_outage()  # the broker's app stops: connections drop, nothing can be published
        during = scenario("during")  # written; the events wait in the writers' outboxes
        rabbitctl("start_app")
        rabbitctl("await_startup", "--timeout", "60")
        scenario("after")

        def settled():
            routed = drain_witness(uri)
            settled.seen.extend(routed)
            got = rows(db_path, "SELECT count(*) FROM events")[0][0]
            return not routed and got == len({e["id"] for e in settled.seen}) and got >= 12
        settled.seen = []
        wait_for(settled, timeout=60, interval=1.0, what="the subscriber to have what the broker routed")
        # and a debit delivered once more, as a relay republishes after a crash
        again = next(e for e in settled.seen if e["type"] == "points.debited")
        with Connection(uri, transport_options={"confirm_publish": True}) as conn:
            conn.Producer().publish(json.dumps(again), exchange="points.events", routing_key="points.debited",
                                    content_type="application/json", delivery_mode=2)
        wait_for(lambda: rows(db_path, "SELECT count(*) FROM deliveries WHERE outcome = 'duplicate'")[0][0] >= 1,
                 what="the repeat seen")
    finally:
        subscriber.terminate()
        subscriber.wait(10)
        log.close()

    routed = {e["id"]: e for e in settled.seen}
    stored = dict(rows(db_path, "SELECT id, type FROM events"))
    assert set(stored) == set(routed)  # none missing, none extra
    types = sorted(stored.values())
    assert types.count("need.submitted") == 3 and types.count("need.triaged") == 3
    rules = sorted(e["data"].get("rule_code") or e["type"] for e in routed.values() if e["type"].startswith("points."))
    # each member's year opens at 12 (a credit without a rule); XW-M2 falls past 9 and 6
    assert rules == ["good-deed"] * 3 + ["missed-meeting"] * 3 + ["points.credited"] * 2 + [
        "points.threshold_crossed"] * 2
    assert any(e["subject"] == during["id"] for e in routed.values())  # published after the outage
    # none applied twice: one 'applied' per event, duplicates (redeliveries) changed nothing
    applied = rows(db_path, "SELECT id, count(*) FROM deliveries WHERE outcome = 'applied' GROUP BY id")
    assert len(applied) == len(routed) and all(n == 1 for _, n in applied)
    balances = dict(((m, a), b) for _, m, a, b in rows(db_path, "SELECT park, member, account, balance FROM balances"))
    expected = {}
    for e in routed.values():
        if e["type"] in ("points.credited", "points.debited"):
            key = (e["data"]["member_id"], e["data"]["account_id"])
            expected[key] = expected.get(key, 0) + e["data"]["amount"]
    assert balances == expected and sorted(balances.values()) == [12 - 6, 12 + 3]
    assert rows(db_path, "SELECT count(*) FROM rejected")[0][0] == 0
    assert ("duplicate",) in rows(db_path, "SELECT outcome FROM deliveries WHERE id = '{}'".format(again["id"]))
    print("subscriber: {} events, {} deliveries again (ignored)".format(
        len(routed), rows(db_path, "SELECT count(*) FROM deliveries WHERE outcome = 'duplicate'")[0][0]))


def test_the_kombu_subscriber_sets_aside_an_event_its_catalogue_does_not_describe(rabbit_config, tmp_path, broker):
    uri = config["AMQP_URI"]
    db_path = str(tmp_path / "warehouse.sqlite")
    log = open(tmp_path / "subscriber.log", "w")
    subscriber = subprocess.Popen([sys.executable, str(ROOT / "examples" / "kombu_subscriber.py"), "--amqp-uri", uri,
                                   "--db", db_path, "--queue", "warehouse.bad"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "subscribed" in (tmp_path / "subscriber.log").read_text(), timeout=20, what="bound")
        bad = new_event("need.triaged", source="needs", park_id=PARK, subject="n1", data={"need_id": 7})
        broker.publish("needs.events", "need.triaged", bad)
        wait_for(lambda: rows(db_path, "SELECT count(*) FROM rejected")[0][0] == 1, what="the rejection")
    finally:
        subscriber.terminate()
        subscriber.wait(10)
        log.close()
    ((reason,),) = rows(db_path, "SELECT reason FROM rejected")
    assert reason.startswith("data:") and rows(db_path, "SELECT count(*) FROM events")[0][0] == 0
    assert broker.depth("warehouse.bad") == 0  # set aside, not redelivered forever


def test_the_nameko_subscriber_handles_the_events_it_binds_to(container_factory, rabbit_config, broker):
    SupervisionDashboard.seen.clear()
    container = container_factory(SupervisionDashboard)
    container.start()
    event = new_event("need.overdue", source="needs", park_id=PARK, subject="n1",
                      data={"need_id": "n1", "category": "daily_life", "status": "triaged", "level": None})
    broker.publish("needs.events", "need.overdue", event)
    broker.publish("needs.events", "need.overdue", event)  # delivered twice, counted once
    wait_for(lambda: SupervisionDashboard.seen, what="the handler")
    time.sleep(0.5)
    assert SupervisionDashboard.seen == {event["id"]: (PARK, "need.overdue", "daily_life")}
    assert SupervisionDashboard.overdue_by_park() == {PARK: 1}
