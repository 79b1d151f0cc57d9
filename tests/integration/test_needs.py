"""The needs service against the real broker and database, called over real
RPC: taxonomy and bad input, idempotency and duplicates, batch intake, the
lifecycle driven by desks and by dispatch events, the clock, the supervision
sweep, evaluation, the echo wall, the three lists and statistics."""
import contextlib
import json
import time
import uuid
from datetime import datetime

import pytest
from nameko import config
from nameko.standalone.rpc import ClusterRpcClient

from lamplight.envelope import new_event
from lamplight.errors import BadInput, Conflict, NotFound
from services.needs import domain
from services.needs.metrics import NEEDS_OPEN, NEEDS_OVERDUE
from services.needs.service import NeedsService
from tests.conftest import finds, finds_during, wait_for
from tests.parks import fast_needs_config, needs_config

WAGES = {"kind": "urgent_matter", "category": "daily_life", "item": "wage_arrears", "channel": "hotline",
         "title": "三个月工资被拖欠", "entered_by": "desk-01",
         "details": {"employer": "某建材公司", "amount_owed": 15600, "months": 3},
         "requester": {"kind": "worker", "name": "王建国", "phone": "13900002222"}}
LIGHT = {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair", "channel": "wish_wall",
         "title": "宿舍区篮球场的灯坏了", "details": {"location": "宿舍区篮球场"},
         "requester": {"kind": "worker", "name": "李卫东", "phone": "13900001111"}}


@pytest.fixture
def needs(container_factory, service_config):
    with config.patch({"NEEDS_SWEEP_INTERVAL_S": 3600}):  # the tests sweep when they choose
        container = container_factory(NeedsService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            yield client.needs


@pytest.fixture
def park(needs):
    park = "p" + uuid.uuid4().hex[:8]
    needs.set_config(park, needs_config())
    return park


@pytest.fixture
def fast_park(needs):
    """Every grade due in 2 s; the ladder climbs at 0 s and 2 s past due; 2 s to evaluate."""
    park = "f" + uuid.uuid4().hex[:8]
    needs.set_config(park, fast_needs_config())
    return park


@pytest.fixture
def need_events(broker):
    """Every need.* event the service publishes, in order."""
    with broker.recording("needs.events", ("need.*",)) as drain:
        yield drain


def types(events):
    return [t for t, _ in events]


# configuration and bad input ---------------------------------------------------------------
def test_an_unknown_park_is_not_found(needs):
    with pytest.raises(NotFound, match="unknown park nowhere"):
        needs.submit("nowhere", LIGHT)


def test_unknown_category_and_item_are_refused_listing_the_allowed_ones(needs, park, db):
    with pytest.raises(BadInput) as refused:
        needs.submit(park, dict(LIGHT, category="leisure"))
    assert "government_affairs" in refused.value.fields["category"][0]
    with pytest.raises(BadInput) as refused:
        needs.submit(park, dict(LIGHT, item="tax_policy"))  # an item of another category
    message = refused.value.fields["item"][0]
    assert "facilities_repair" in message and "wage_arrears" in message and "tax_policy" not in message
    with pytest.raises(BadInput) as refused:
        needs.submit(park, dict(LIGHT, grade="whenever"))
    assert "urgent, priority, routine" in refused.value.fields["grade"][0]
    assert db("needs").needs.count_documents({"park_id": park}) == 0


def test_an_items_typed_fields_are_validated_by_the_parks_schema(needs, park, db):
    with pytest.raises(BadInput) as refused:
        needs.submit(park, dict(WAGES, details={"amount_owed": "a lot", "months": 0, "boss_phone": "1"}))
    details = refused.value.fields["details"]
    assert set(details) == {"employer", "amount_owed", "months", "boss_phone"}
    assert details["employer"] == ["Missing data for required field."]
    with pytest.raises(BadInput) as refused:
        needs.submit(park, dict(LIGHT, title="灯" * 201, requester={"kind": "boss"}))
    assert set(refused.value.fields) == {"title", "requester"} and "name" in refused.value.fields["requester"]
    assert db("needs").needs.count_documents({"park_id": park}) == 0
    need = needs.submit(park, WAGES)
    assert need["details"] == {"employer": "某建材公司", "amount_owed": 15600.0, "months": 3}
    assert need["grade"] == "urgent" and need["status"] == "triaged" and need["team"] == "orange"


def test_configuration_is_versioned(needs, park):
    with pytest.raises(Conflict, match="at needs configuration version 1; send version 2"):
        needs.set_config(park, needs_config(version=3))
    assert needs.set_config(park, needs_config(version=2))["unchanged"] is True  # the same content
    changed = needs_config(version=2, evaluation_days=3)
    assert needs.set_config(park, changed)["version"] == 2
    assert needs.config(park)["evaluation_days"] == 3
    with pytest.raises(BadInput) as refused:
        needs.set_config(park, needs_config(version=3, kind_grades={"micro_wish": "someday"}))
    assert "someday" in refused.value.fields["grades"][0]


# intake -----------------------------------------------------------------------------------
def test_an_idempotency_key_replays_or_conflicts_and_duplicates_are_flagged_then_linked(needs, park, need_events):
    first = needs.submit(park, LIGHT, idempotency_key="card-1")
    again = needs.submit(park, LIGHT, idempotency_key="card-1")
    assert again["id"] == first["id"] and again["created"] is False
    with pytest.raises(Conflict, match="card-1"):
        needs.submit(park, dict(LIGHT, title="另一件事情"), idempotency_key="card-1")

    # the same worker, the same item, nearly the same words, the next day
    second = needs.submit(park, dict(LIGHT, title="宿舍区篮球场的灯又坏了", channel="qq_group"))
    assert second["possible_duplicates"] == [first["id"]]
    assert second["status"] == "submitted"  # held for the desk, not routed automatically
    other = needs.submit(park, dict(LIGHT, requester={"kind": "worker", "name": "张三", "phone": "13700000000"}))
    assert other["possible_duplicates"] == []

    linked = needs.act(park, second["id"], "link_duplicate", {"actor": "desk-01", "of": first["id"]})
    assert linked["status"] == "cancelled" and linked["duplicate_of"] == first["id"]
    with pytest.raises(BadInput):
        needs.act(park, first["id"], "link_duplicate", {"actor": "desk-01", "of": first["id"]})
    events = wait_for(lambda: (lambda ev: ev if "need.cancelled" in types(ev) else None)(need_events(second["id"])),
                      what="the duplicate's events")
    assert types(events) == ["need.submitted", "need.cancelled"]
    assert events[0][1]["possible_duplicates"] == [first["id"]]
    assert events[1][1]["duplicate_of"] == first["id"]


def test_a_liaison_meetings_minutes_are_taken_whole_or_not_at_all(needs, park, db):
    batch = {"meeting": {"title": "11月企业联席会", "held_on": "2026-11-20"}, "entered_by": "desk-02", "needs": [
        dict(WAGES, channel="liaison_meeting"),
        {"kind": "enterprise_request", "category": "public_services", "item": "health_certificates",
         "title": "为1800名食堂员工集中办理健康证", "details": {"headcount": "many"},
         "requester": {"kind": "enterprise", "name": "人事经理", "enterprise": "某食品公司"}},
    ]}
    with pytest.raises(BadInput) as refused:
        needs.submit_batch(park, batch, "meeting-2026-11")
    assert refused.value.fields == {"needs": {"1": {"details": {"headcount": ["Not a valid integer."]}}}}
    assert db("needs").needs.count_documents({"park_id": park}) == 0  # nothing half-written

    batch["needs"][1]["details"] = {"headcount": 1800}
    taken = needs.submit_batch(park, batch, "meeting-2026-11")
    assert taken["created"] == 2
    assert [n["channel"] for n in taken["needs"]] == ["liaison_meeting", "liaison_meeting"]
    assert {n["entered_by"] for n in taken["needs"]} == {"desk-01", "desk-02"}  # a need's own entry wins
    assert taken["needs"][1]["meeting"] == {"title": "11月企业联席会", "held_on": "2026-11-20", "minutes_ref": None}
    again = needs.submit_batch(park, batch, "meeting-2026-11")
    assert again["created"] == 0 and [n["id"] for n in again["needs"]] == [n["id"] for n in taken["needs"]]
    with pytest.raises(BadInput, match="Idempotency-Key"):
        needs.submit_batch(park, batch, None)


# the lifecycle --------------------------------------------------------------------------------
def test_an_illegal_change_is_refused_naming_the_allowed_ones(needs, park):
    need = needs.submit(park, LIGHT)
    with pytest.raises(Conflict) as refused:
        needs.act(park, need["id"], "resolve", {"actor": "desk-01"})
    assert refused.value.code == "illegal_transition"
    assert refused.value.fields["status"] == ["triaged"]
    assert refused.value.fields["allowed_actions"] == ["triage", "assign", "wait", "escalate", "reject", "cancel",
                                                       "link_duplicate"]
    with pytest.raises(BadInput, match="unknown action"):
        needs.act(park, need["id"], "teleport", {"actor": "desk-01"})
    with pytest.raises(BadInput) as refused:
        needs.act(park, need["id"], "reject", {"actor": "desk-01"})
    assert set(refused.value.fields) == {"reason"}
    assert needs.get(park, need["id"])["version"] == 1  # nothing changed


def dispatch_event(event_type, park, need_id, task_id, **data):
    return new_event(event_type, source="volunteers", park_id=park, subject=task_id,
                     data=dict({"need_id": need_id, "task_id": task_id, "responder_id": "rsp_1",
                                "member_id": "QLN-M001"}, **data))


def test_dispatch_events_move_the_need_and_a_redelivery_changes_nothing(needs, park, broker, need_events):
    need = needs.submit(park, LIGHT)
    claimed = dispatch_event("task.claimed", park, need["id"], "t1")
    for _ in range(2):  # delivered twice
        broker.publish("volunteers.events", "task.claimed", claimed)
    wait_for(lambda: needs.get(park, need["id"])["status"] == "assigned", what="assigned")
    broker.publish("volunteers.events", "task.started", dispatch_event("task.started", park, need["id"], "t1"))
    wait_for(lambda: needs.get(park, need["id"])["status"] == "in_progress", what="in progress")
    # a release of another task than the need's is moot
    broker.publish("volunteers.events", "task.released", dispatch_event("task.released", park, need["id"], "t0"))
    broker.publish("volunteers.events", "task.completed",
                   dispatch_event("task.completed", park, need["id"], "t1", note="换了灯管"))
    done = wait_for(lambda: (lambda n: n if n["status"] == "resolved" else None)(needs.get(park, need["id"])),
                    what="resolved")
    assert done["responder_id"] == "rsp_1"
    assert [e["action"] for e in done["timeline"]] == ["submit", "triage", "assign", "start", "resolve"]
    assert wait_for(lambda: broker.depth("needs--task.claimed") == 0 and broker.depth("needs--task.released") == 0,
                    what="the duplicate and the moot event consumed")

    closed = needs.act(park, need["id"], "evaluate", {"rating": 5, "outcome": "fixed"})
    assert closed["status"] == "closed" and closed["evaluation"]["rating"] == 5
    events = wait_for(lambda: (lambda ev: ev if "need.closed" in types(ev) else None)(need_events(need["id"])),
                      what="need.closed")
    assert types(events) == ["need.submitted", "need.triaged", "need.assigned", "need.started", "need.resolved",
                             "need.evaluated", "need.closed"]
    closed_data = dict(events)["need.closed"]
    assert closed_data["member_id"] == "QLN-M001" and closed_data["status"] == "closed"  # who the points go to
    assert "王" not in json.dumps(events, ensure_ascii=False) and "13900001111" not in json.dumps(events)


def test_waiting_on_the_requester_pauses_the_clock(needs, fast_park, need_events):
    need = needs.submit(fast_park, LIGHT)
    waiting = needs.act(fast_park, need["id"], "wait", {"actor": "desk-01", "reason": "问清是哪一盏灯"})
    assert waiting["paused_at"] is not None
    time.sleep(2.5)  # past the original due time, but the clock is stopped
    assert needs.sweep(fast_park) == {"overdue": 0, "supervise": 0, "close_unevaluated": 0}
    resumed = needs.act(fast_park, need["id"], "resume", {"actor": "desk-01"})
    assert resumed["status"] == "triaged" and resumed["paused_at"] is None
    moved = _seconds(resumed["due_at"]) - _seconds(need["due_at"])
    assert 2.4 < moved < 4.0  # the due time moved by the pause
    assert needs.sweep(fast_park)["overdue"] == 0
    assert "need.overdue" not in types(need_events(need["id"]))


@contextlib.contextmanager
def six_parks_on_the_timer(container_factory, settings, park_config):
    """A needs service run with ``settings`` (its timer's sweep on), and six new
    parks configured with ``park_config``: (the service's RPC proxy, the parks)."""
    with config.patch(settings):
        container = container_factory(NeedsService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            parks = ["q" + uuid.uuid4().hex[:8] for _ in range(6)]
            for park in parks:
                client.needs.set_config(park, park_config)
            yield client.needs, parks


def test_the_sweep_reads_no_quiet_parks_needs_and_comes_when_a_time_limit_passes(
        container_factory, service_config, need_events):
    # Six parks and nothing due: once the sweep's first round has seen them, the sweeps (every
    # second here) read none of their needs (lamplight.alarms). A need submitted in one rings its
    # alarm at its time limit: the timer's sweep marks it overdue then, climbs the ladder 2 s
    # later, and counts the park's overdue needs again as soon as it is resolved.
    settings = {"NEEDS_SWEEP_INTERVAL_S": 0.5}
    with six_parks_on_the_timer(container_factory, settings, fast_needs_config()) as (needs, parks):
        time.sleep(1.5)  # the first round, and the visits that setting each configuration rang
        assert finds_during(2.0, "needs", "needs") == 0
        need = needs.submit(parks[3], WAGES)
        events = wait_for(lambda: (lambda ev: ev if "need.supervision_raised" in types(ev) else None)(
            need_events(need["id"])), timeout=15, what="overdue, then the ladder's next rung, by the timer")
        assert types(events)[-2:] == ["need.overdue", "need.supervision_raised"]
        category = needs.get(parks[3], need["id"])["category"]
        assert NEEDS_OVERDUE.labels(parks[3], category)._value.get() == 1
        needs.act(parks[3], need["id"], "assign", {"actor": "desk-01", "unit": "劳动监察大队"})
        needs.act(parks[3], need["id"], "resolve", {"actor": "desk-01"})
        wait_for(lambda: NEEDS_OVERDUE.labels(parks[3], category)._value.get() == 0, timeout=5,
                 what="the overdue count once it was resolved")


def test_quiet_parks_open_needs_are_counted_each_period_with_one_read_not_a_visit_of_the_sweep(
        container_factory, service_config):
    # Every NEEDS_OPEN_GAUGE_S (2 s here) each park's open needs are counted with one read of them;
    # ringing every park for it made the sweep visit each (due needs, lapsed evaluations, overdue
    # count, next due times): 66 reads in 4 s here. A need cancelled, which rings no alarm, leaves
    # the count within the period.
    settings = {"NEEDS_SWEEP_INTERVAL_S": 0.5, "NEEDS_OPEN_GAUGE_S": 2.0}
    with six_parks_on_the_timer(container_factory, settings, needs_config()) as (needs, parks):
        need = needs.submit(parks[0], WAGES)
        category = needs.get(parks[0], need["id"])["category"]
        wait_for(lambda: NEEDS_OPEN.labels(parks[0], category)._value.get() == 1, timeout=5,
                 what="the open need counted")
        time.sleep(1.0)  # the first round's visits, and those that configuring and submitting rang
        reads = finds_during(4.0, "needs", "needs")
        assert 0 < reads <= 2 * len(parks) + 2  # two periods: one read a park each, a period's edge
        needs.act(parks[0], need["id"], "cancel", {"actor": "desk-01", "reason": "重复提交"})
        wait_for(lambda: NEEDS_OPEN.labels(parks[0], category)._value.get() == 0, timeout=5,
                 what="the cancelled need out of the count")


def test_overdue_is_published_once_per_crossing_and_the_ladder_climbs(needs, fast_park, need_events):
    need = needs.submit(fast_park, WAGES)
    time.sleep(2.1)
    assert needs.sweep(fast_park)["overdue"] == 1
    assert needs.sweep(fast_park)["overdue"] == 0  # once per crossing
    marked = needs.get(fast_park, need["id"])
    assert marked["overdue_count"] == 1 and marked["ladder_level"] == "supervisor"
    # the gauges: overdue read through the due-time index each sweep, open counted on the first
    assert NEEDS_OVERDUE.labels(fast_park, marked["category"])._value.get() == 1
    assert NEEDS_OPEN.labels(fast_park, marked["category"])._value.get() == 1
    time.sleep(2.1)
    assert needs.sweep(fast_park)["supervise"] == 1
    assert needs.sweep(fast_park)["supervise"] == 0
    events = wait_for(lambda: (lambda ev: ev if "need.supervision_raised" in types(ev) else None)(
        need_events(need["id"])), what="the ladder's event")
    assert types(events).count("need.overdue") == 1
    assert dict(events)["need.overdue"]["level"] == "supervisor"
    assert dict(events)["need.supervision_raised"]["level"] == "park_admin"
    # re-graded (to a grade as short, here): the crossing already marked stays marked
    regraded = needs.act(fast_park, need["id"], "triage", {"actor": "desk-01", "grade": "routine"})
    assert regraded["grade"] == "routine" and regraded["overdue_count"] == 1
    assert needs.sweep(fast_park) == {"overdue": 0, "supervise": 0, "close_unevaluated": 0}


def test_a_visit_of_the_sweep_reads_the_parks_needs_twice_whatever_their_statuses(needs, fast_park):
    # The needs due (late, or their evaluation window closed) and the next time one is due are each
    # one range of sweep_at. Read per status, a visit was ten reads: the late and the lapsed, the
    # overdue count, and the soonest due time of each of six running statuses and of the resolved.
    late = needs.submit(fast_park, WAGES)
    time.sleep(2.1)
    resolved = needs.submit(fast_park, LIGHT)
    needs.act(fast_park, resolved["id"], "assign", {"actor": "desk-01", "unit": "物业公司"})
    needs.act(fast_park, resolved["id"], "resolve", {"actor": "desk-01"})
    waiting = needs.submit(fast_park, dict(LIGHT, title="食堂窗口太少", requester={
        "kind": "worker", "name": "赵敏", "phone": "13900003333"}))
    needs.act(fast_park, waiting["id"], "wait", {"actor": "desk-01", "reason": "问清是哪个食堂"})
    assert needs.sweep(fast_park)["overdue"] == 1  # and the park's open needs counted, once
    before = finds("needs", "needs")
    assert needs.sweep(fast_park) == {"overdue": 0, "supervise": 0, "close_unevaluated": 0}
    assert finds("needs", "needs") - before == 2
    assert needs.get(fast_park, late["id"])["overdue_count"] == 1


def test_a_need_without_sweep_at_or_with_one_an_earlier_release_left_is_swept_when_due(needs, fast_park, db):
    # Needs written before sweep_at existed have none, and a process of an earlier release (during
    # a rolling update) changes a need without changing its sweep_at: here, resumed and left at
    # NO_SWEEP. The sweep would never find either. The count of the park's open needs reads every
    # open need: it sets theirs right, and the sweep that follows finds them due.
    legacy = needs.submit(fast_park, WAGES)
    resumed = needs.submit(fast_park, LIGHT)
    stored = db("needs").needs
    stored.update_one({"park_id": fast_park, "need_id": legacy["id"]}, {"$unset": {"sweep_at": ""}})
    stored.update_one({"park_id": fast_park, "need_id": resumed["id"]}, {"$set": {"sweep_at": domain.NO_SWEEP}})
    time.sleep(2.1)
    assert needs.sweep(fast_park)["overdue"] + needs.sweep(fast_park)["overdue"] == 2
    for need in (legacy, resumed):
        doc = stored.find_one({"park_id": fast_park, "need_id": need["id"]})
        assert doc["sweep_at"] == doc["due_at"] and doc["overdue_count"] == 1


def test_not_fixed_reopens_to_the_same_team_and_silence_closes_by_default(needs, fast_park, need_events):
    need = needs.submit(fast_park, WAGES)
    needs.act(fast_park, need["id"], "assign", {"actor": "desk-01", "unit": "劳动监察大队"})
    needs.act(fast_park, need["id"], "resolve", {"actor": "desk-01", "public_note": "已追回工资"})
    reopened = needs.act(fast_park, need["id"], "evaluate", {"rating": 1, "outcome": "not_fixed"})
    assert reopened["status"] == "reopened" and reopened["team"] == "orange" and reopened["reopen_count"] == 1
    events = need_events(need["id"])
    assert types(events)[-2:] == ["need.evaluated", "need.reopened"]
    assert dict(events)["need.reopened"]["routing"] == 2  # a new round of dispatch for the same team

    needs.act(fast_park, need["id"], "assign", {"actor": "desk-01", "unit": "劳动监察大队"})
    needs.act(fast_park, need["id"], "resolve", {"actor": "desk-01"})
    assert needs.sweep(fast_park)["close_unevaluated"] == 0
    time.sleep(2.1)
    assert needs.sweep(fast_park)["close_unevaluated"] == 1
    closed = needs.get(fast_park, need["id"])
    assert closed["status"] == "closed" and closed["evaluation"]["outcome"] == "no_answer"
    reviewed = needs.act(fast_park, need["id"], "review", {"actor": "audit-1", "by": "park_audit", "score": 90})
    assert reviewed["reviews"]["park_audit"]["score"] == 90
    assert types(need_events(need["id"]))[-2:] == ["need.closed", "need.reviewed"]


# the echo wall, follows, lists, statistics ---------------------------------------------------------
def test_the_echo_wall_shows_progress_and_nothing_personal(needs, park):
    wages = needs.submit(park, WAGES)
    light = needs.submit(park, LIGHT)
    hidden = needs.submit(park, dict(LIGHT, item="dormitory", title="宿舍纠纷，请私下处理", details={},
                                     requester={"kind": "worker", "name": "周某"}))
    needs.act(park, hidden["id"], "triage", {"actor": "desk-01", "public": False})
    needs.act(park, light["id"], "assign", {"actor": "desk-01", "responder_id": "rsp_9",
                                            "public_note": "志愿者已认领"})

    def wall_settled():
        entries = needs.wall(park)["entries"]
        statuses = {e["need_id"]: e["status"] for e in entries}
        return entries if statuses == {wages["id"]: "triaged", light["id"]: "assigned"} else None

    entries = wait_for(wall_settled, what="the wall projection")
    assert [e["need_id"] for e in entries] == [light["id"], wages["id"]]  # newest change first
    line = needs.wall_entry(park, light["id"])
    assert line["notes"][-1]["note"] == "志愿者已认领" and line["status_label"] == "已分派"
    assert line["category_name"] == "生活服务" and line["item_name"] == "设施报修" and line["days_open"] == 0
    text = json.dumps(needs.wall(park), ensure_ascii=False)
    for secret in ("王建国", "13900002222", "某建材公司", "15600", "李卫东", "13900001111", "desk-01", "rsp_9", "周某"):
        assert secret not in text
    with pytest.raises(NotFound):
        needs.wall_entry(park, hidden["id"])
    # filtered reads come from the wall collection, the first page from the head: the same lines
    assert [e["need_id"] for e in needs.wall(park, status="assigned")["entries"]] == [light["id"]]
    with pytest.raises(BadInput):
        needs.wall(park, status="lost")

    assert needs.follow(park, light["id"], {"follower_id": "wx-openid-1"})["changed"] is True
    assert needs.follow(park, light["id"], {"follower_id": "wx-openid-1"})["changed"] is False
    assert needs.followers(park, light["id"]) == ["wx-openid-1"]
    assert needs.follow(park, light["id"], {"follower_id": "wx-openid-1"}, following=False)["changed"] is True
    assert needs.followers(park, light["id"]) == []
    with pytest.raises(NotFound):
        needs.follow(park, hidden["id"], {"follower_id": "wx-openid-1"})


def test_the_three_lists_and_statistics(needs, park):
    cases = [dict(WAGES["details"], amount_owed=15600, workers_affected=12),
             dict(WAGES["details"], amount_owed=8400.5, workers_affected=None)]
    for need in (dict(WAGES, details=cases[0]), dict(WAGES, details=cases[1]), LIGHT):
        needs.submit(park, dict(need, title=need["title"] + uuid.uuid4().hex[:4],
                                requester=dict(need["requester"], phone=None, name=uuid.uuid4().hex[:6])))
    with pytest.raises(BadInput) as refused:
        needs.put_resource(park, "legal-aid", {"name": "法律援助", "provider": {"kind": "department",
                                                                            "name": "区司法局"},
                                               "items": ["wage_arrears", "moon_landing"]})
    assert "moon_landing" in refused.value.message
    needs.put_resource(park, "legal-aid", {"name": "法律援助", "provider": {"kind": "department", "name": "区司法局"},
                                           "items": ["wage_arrears"]})
    with pytest.raises(BadInput) as refused:
        needs.put_project(park, "wage-guard", {"name": "欠薪快办", "items": ["wage_arrears"],
                                               "resources": ["legal-aid", "hr-fairs"]})
    assert "legal-aid" in refused.value.fields["resources"][0]
    needs.put_project(park, "wage-guard", {"name": "欠薪快办", "items": ["wage_arrears"], "resources": ["legal-aid"],
                                           "activities": [{"title": "集中核查", "month": "2026-12"}]})
    lists = needs.lists(park)
    assert lists["counts"] == {"items": 29, "categories": 6, "resources": 1, "projects": 1}
    by_item = {row["item"]: row for row in lists["needs_list"]}
    assert by_item["wage_arrears"]["total"] == 2 and by_item["wage_arrears"]["projects"] == ["wage-guard"]
    assert by_item["facilities_repair"]["open"] == 1 and by_item["tax_policy"]["total"] == 0
    # the typed fields summed per item, as the centres report them (cases, workers, yuan)
    wages = {"amount_owed": {"sum": 24000.5, "count": 2}, "workers_affected": {"sum": 12, "count": 1},
             "months": {"sum": 6, "count": 2}}
    assert by_item["wage_arrears"]["fields"] == wages and by_item["facilities_repair"]["fields"] == {}
    stats = needs.statistics(park)
    assert stats["total"] == 3 and stats["by_grade"] == {"urgent": 2, "routine": 1}
    assert stats["by_status"] == {"triaged": 3} and stats["overdue_rate"] == 0.0
    assert stats["by_item"]["wage_arrears"] == {"needs": 2, "fields": wages}
    assert stats["by_item"]["facilities_repair"] == {"needs": 1, "fields": {}}


def _seconds(iso):
    return datetime.fromisoformat(iso).timestamp()


def test_concurrent_desks_changing_one_need_have_exactly_one_winner(needs, park, db):
    """One conditional update per change (storage.VersionedDocument): one
    winner on MongoDB and on the patched development server."""
    import eventlet

    need = needs.submit(park, LIGHT)

    def assign(n):
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            try:
                client.needs.act(park, need["id"], "assign", {"actor": "desk-{}".format(n), "unit": "物业{}".format(n)})
                return "won"
            except Conflict as refused:
                return refused.code

    outcomes = list(eventlet.GreenPool(20).imap(assign, range(20)))
    assert outcomes.count("won") == 1
    assert set(outcomes) == {"won", "illegal_transition"}
    stored = db("needs").needs.find_one({"need_id": need["id"]})
    assert [e["action"] for e in stored["timeline"]] == ["submit", "triage", "assign"]
    assert stored["version"] == 2


def test_wall_lines_end_at_their_newest_version_whatever_the_order_of_delivery(needs, park, broker, db):
    need = needs.submit(park, LIGHT)
    needs.act(park, need["id"], "assign", {"actor": "desk-01", "unit": "物业公司"})
    stored = db("needs").needs.find_one({"need_id": need["id"]})
    first, second = [e for e in stored["_outbox"] if e["type"] == "wall.entry_changed"]
    wait_for(lambda: needs.wall_entry(park, need["id"])["status"] == "assigned", what="the projection")
    for event in (second, first, first):  # again, older, and older again
        broker.publish("needs.events", "wall.entry_changed", event)
    wait_for(lambda: broker.depth("needs--wall.entry_changed") == 0, what="the redeliveries consumed")
    time.sleep(0.3)
    assert needs.wall_entry(park, need["id"])["status"] == "assigned"
    assert [e["need_id"] for e in needs.wall(park)["entries"]] == [need["id"]]
    assert db("needs").wall.find_one({"need_id": need["id"]})["version"] == 2


def test_the_first_page_is_the_small_head_and_the_lines_it_names_and_a_stale_head_is_not_trusted(needs, park, db):
    batch = {"meeting": {"title": "企业联席会", "held_on": "2026-11-20"}, "entered_by": "desk-01",
             "needs": [dict(LIGHT, title="厂区第{}处路灯坏了".format(n), requester={"kind": "worker",
                                                                            "name": "工友{}".format(n)})
                       for n in range(25)]}
    needs.submit_batch(park, batch, "head-meeting")
    heads = db("needs").wall_heads
    wait_for(lambda: len((heads.find_one({"_id": park + "/wall-head"}) or {"lines": []})["lines"]) == 25,
             what="the head lists every line")
    head = heads.find_one({"_id": park + "/wall-head"})
    # the head lists lines, it does not hold them: it is read and written for every change of the wall
    assert all(set(line) == {"need_id", "version", "updated_at"} for line in head["lines"])
    lines = sorted(db("needs").wall.find({"park_id": park, "public": True}),
                   key=lambda line: (line["updated_at"], line["need_id"]), reverse=True)
    expected = [line["need_id"] for line in lines[:20]]
    page = needs.wall(park, limit=20)
    assert [e["need_id"] for e in page["entries"]] == expected
    assert page["entries"][0]["title"] == lines[0]["title"]
    # a head read just before one of its lines changed: the page is the wall's own query, not the stale order
    stale = [dict(line) for line in reversed(head["lines"])]
    stale[0]["version"] -= 1
    heads.update_one({"_id": park + "/wall-head"}, {"$set": {"lines": stale}})
    assert [e["need_id"] for e in needs.wall(park, limit=20)["entries"]] == expected


def test_the_wall_pages_through_a_thousand_needs_each_once(needs, park, db):
    """Five liaison meetings of 200 needs each: many lines change in the same
    millisecond, and paging by time alone skipped them."""
    ids = set()
    for meeting in range(5):
        batch = {"meeting": {"title": "第{}次企业联席会".format(meeting + 1), "held_on": "2026-11-20"},
                 "entered_by": "desk-01",
                 "needs": [dict(LIGHT, title="宿舍区第{}处路灯坏了".format(n),
                                requester={"kind": "worker", "name": "工友{}".format(n)})
                           for n in range(meeting * 200, (meeting + 1) * 200)]}
        ids |= {n["id"] for n in needs.submit_batch(park, batch, "meeting-{}".format(meeting))["needs"]}
    assert len(ids) == 1000
    wait_for(lambda: db("needs").wall.count_documents({"park_id": park, "public": True}) == 1000, timeout=120,
             what="a wall line for each need")
    seen, before, pages = [], None, 0
    while True:
        page = needs.wall(park, before=before, limit=100)
        seen += [entry["need_id"] for entry in page["entries"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 1000 and set(seen) == ids
    assert pages in (10, 11)
    # each page in order: newest change first
    filtered = needs.wall(park, status=needs.wall(park, limit=1)["entries"][0]["status"], limit=100)
    assert len(filtered["entries"]) == 100 and filtered["next_before"]
