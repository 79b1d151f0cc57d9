"""The volunteers service against the real broker and database, called over
real RPC: the claim race, expiry → next candidates → lead → night squad,
wishes with their cap, stale claims and take-overs, rosters and the duty
index, parks kept apart, visit plans, emergency call-outs and bad input."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from nameko import config
from nameko.standalone.rpc import ClusterRpcClient

from lamplight.alarms import COLLECTION as ALARMS
from lamplight.clock import utcnow
from lamplight.envelope import new_event
from lamplight.errors import BadInput, Conflict, NotFound
from services.volunteers.domain import dispatch, rosters
from services.volunteers.service import VolunteersService
from services.volunteers.store import SWEEP_LOOP
from tests.conftest import finds, finds_during, wait_for
from tests.parks import ALL_WEEK, volunteers_config

SHANGHAI = rosters.zone("Asia/Shanghai")


@pytest.fixture
def volunteers(container_factory, service_config):
    with config.patch({"VOLUNTEERS_SWEEP_INTERVAL_S": 3600, "max_workers": 20}):  # the tests sweep when they choose
        container = container_factory(VolunteersService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            yield client.volunteers


@pytest.fixture
def task_events(broker):
    """Every task.* event the service publishes, in order."""
    with broker.recording("volunteers.events", ("task.*", "emergency.*", "visit.*", "volunteer.*")) as drain:
        yield drain


def new_park(volunteers, **dispatch):
    park = "v" + uuid.uuid4().hex[:8]
    volunteers.set_config(park, volunteers_config(**dispatch))
    return park


def register(volunteers, park, ref, teams=("orange",), roster=ALL_WEEK, **fields):
    body = dict({"kind": "volunteer", "name": "志愿者" + ref, "teams": list(teams), "skills": ["electrician"],
                 "roster": roster, "external_ref": ref, "member_id": "M-" + ref}, **fields)
    return volunteers.register_responder(park, body)


def route(broker, park, need_id=None, event_type="need.triaged", **data):
    """Publish what the needs service publishes when it routes a need."""
    need_id = need_id or "need_" + uuid.uuid4().hex[:8]
    now = datetime.now(timezone.utc)
    body = dict({"need_id": need_id, "version": 2, "action": "triage", "from_status": "submitted",
                 "status": "triaged", "kind": "complaint", "category": "daily_life", "item": None,
                 "grade": "routine", "team": "orange", "unit": None, "routing": 1, "summary": "宿舍热水器坏了",
                 "due_at": (now + timedelta(days=3)).isoformat(), "at": now.isoformat(), "task_id": None}, **data)
    broker.publish("needs.events", event_type, new_event(event_type, source="needs", park_id=park,
                                                         subject=need_id, data=body))
    return need_id


def task_of(volunteers, park, need_id, routing=1, what="the task"):
    def found():
        try:
            return volunteers.get_task(park, dispatch.task_id(need_id, routing))
        except NotFound:
            return None
    return wait_for(found, what=what)


def live(task):
    return sorted(rid for rid, o in task["offers"].items() if o["status"] == "offered")


def local_clock(at):
    return at.astimezone(SHANGHAI).strftime("%H:%M")


# the claim race ------------------------------------------------------------------------------
def test_fifty_concurrent_claims_on_one_task_have_one_winner_and_fortynine_clear_refusals(
        volunteers, broker, db, task_events):
    park = new_park(volunteers, offer_k=50)
    ids = [register(volunteers, park, "V{:02d}".format(n))["id"] for n in range(50)]
    need_id = route(broker, park)
    task = task_of(volunteers, park, need_id)
    assert sorted(live(task)) == sorted(ids)

    def claim(responder_id):
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            try:
                client.volunteers.act(park, task["task_id"], "claim", {"responder_id": responder_id})
                return ("won", responder_id)
            except Conflict as refused:
                return (refused.code, refused.message, refused.fields)

    outcomes = list(eventlet.GreenPool(50).imap(claim, ids))
    winners = [o[1] for o in outcomes if o[0] == "won"]
    refusals = [o for o in outcomes if o[0] != "won"]
    assert len(winners) == 1 and len(refusals) == 49
    (winner,) = winners
    for code, message, fields in refusals:
        # the refusal names the task's state, never who holds it
        assert code == "already_taken" and fields == {"status": ["claimed"]}
        assert "is claimed" in message and winner not in message
    stored = volunteers.get_task(park, task["task_id"])
    assert stored["status"] == "claimed" and stored["holder"]["responder_id"] == winner
    assert stored["version"] == 2
    # the losers gave back the slots they took; the winner holds one
    slots = list(db("volunteers")["slots." + park].find({}))
    assert [(s["responder_id"], s["task_id"]) for s in slots] == [(winner, task["task_id"])]
    events = wait_for(lambda: [t for t, _ in task_events(task["task_id"])].count("task.withdrawn") == 49
                      and task_events(task["task_id"]), what="49 withdrawals")
    assert [t for t, _ in events].count("task.claimed") == 1
    assert {d["responder_id"] for t, d in events if t == "task.withdrawn"} == set(ids) - {winner}


# the sweep's timer --------------------------------------------------------------------------------
def test_the_sweep_reads_no_quiet_parks_tasks_and_comes_to_a_park_when_its_offers_expire(
        container_factory, service_config, broker, task_events, db):
    # Six parks with responders and nothing due: once the sweep's first round has seen them,
    # the sweeps (every second here) read none of their tasks (lamplight.alarms; a sweep that
    # visits every park reads each park's due tasks each time). A need routed in one of them
    # rings its alarm at the offers' expiry, and the timer's sweep offers the next two then.
    with config.patch({"VOLUNTEERS_SWEEP_INTERVAL_S": 0.2, "max_workers": 20}):
        container = container_factory(VolunteersService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            volunteers = client.volunteers
            parks = [new_park(volunteers, offer_k=2, offer_minutes=0.02) for _ in range(6)]
            for park in parks:
                for n in range(4):
                    register(volunteers, park, "O{}".format(n))
            eventlet.sleep(1.0)  # the first round, and the visits that setting each configuration rang
            assert finds_during(2.0, "volunteers", "tasks") == 0
            # rung with nothing due (as every park is in the rounds): each visit reads the park's
            # next due time (a task's next check, a planned month, a missed visit's rung) and
            # sweeps nothing; it read the due tasks and visits first, and the next due time after
            alarms = db("volunteers")[ALARMS]
            before = {c: finds("volunteers", c) for c in ("tasks", "visits")}
            for park in parks:
                alarms.update_one({"_id": "{}:{}".format(SWEEP_LOOP, park)}, {"$min": {"at": utcnow()},
                                                                             "$inc": {"v": 1}})
            wait_for(lambda: alarms.count_documents({"park_id": {"$in": parks}, "at": {"$lte": utcnow()}}) == 0,
                     timeout=5, what="the visits settled (at the next month's visits, nothing else due)")
            eventlet.sleep(0.5)
            assert {c: finds("volunteers", c) - before[c] for c in before} == {"tasks": 6, "visits": 12}
            task = task_of(volunteers, parks[2], route(broker, parks[2]))
            first = live(task)
            swept = wait_for(lambda: (lambda t: len(t["offers"]) == 4 and t)(
                volunteers.get_task(parks[2], task["task_id"])), timeout=10, what="the next two offered by the timer")
            assert sorted(live(swept)) != sorted(first) and all(swept["offers"][rid]["status"] == "expired"
                                                                for rid in first)


# expiry → next candidates → lead → night squad --------------------------------------------------
def test_an_unclaimed_urgent_task_goes_to_the_next_k_then_the_lead_then_pages_the_night_squad(
        volunteers, broker, task_events):
    now = datetime.now(timezone.utc)
    # the night window is now, so the night rule applies whenever the test runs
    park = new_park(volunteers, offer_k=2, offer_minutes=0.02, night_page_after_minutes=0.08,
                    night={"start": local_clock(now - timedelta(hours=1)),
                           "end": local_clock(now + timedelta(hours=1))})
    team = [register(volunteers, park, "O{}".format(n))["id"] for n in range(4)]
    lead = register(volunteers, park, "QLN-V035", teams=("green",))["id"]  # the orange team's lead in the config
    squad = [register(volunteers, park, "S{}".format(n), teams=("squad",))["id"] for n in range(2)]
    need_id = route(broker, park, grade="urgent")
    task = task_of(volunteers, park, need_id)
    first = live(task)
    assert len(first) == 2 and set(first) < set(team)

    eventlet.sleep(1.3)
    assert volunteers.sweep(park)["expire"] == 1
    task = volunteers.get_task(park, task["task_id"])
    second = live(task)
    assert sorted(first + second) == sorted(team), "the next K are the other two"
    assert all(task["offers"][rid]["status"] == "expired" for rid in first)

    eventlet.sleep(1.3)
    volunteers.sweep(park)
    task = volunteers.get_task(park, task["task_id"])
    assert live(task) == [lead] and [e["level"] for e in task["escalations"]] == ["lead"]

    wait_for(lambda: volunteers.sweep(park)["night_page"] == 1, timeout=10, interval=0.5, what="the night page")
    task = volunteers.get_task(park, task["task_id"])
    assert [e["level"] for e in task["escalations"]] == ["lead", "night_squad"]
    assert set(squad) <= set(live(task))
    events = task_events(task["task_id"])
    assert [d["level"] for t, d in events if t == "task.escalated"] == ["lead", "night_squad"]
    assert {d["responder_id"] for t, d in events if t == "task.offered" and d["reason"] == "night_squad"} == set(squad)
    assert sum(1 for t, _ in events if t == "task.offer_expired") >= 4
    # the squad can claim what they were paged for
    claimed = volunteers.act(park, task["task_id"], "claim", {"responder_id": squad[0]})
    assert claimed["status"] == "claimed"


def test_offers_go_first_to_those_given_work_longest_ago_and_every_offer_is_noted(volunteers, broker, db):
    park = new_park(volunteers, offer_k=2)
    team = [register(volunteers, park, "F{}".format(n))["id"] for n in range(4)]

    def noted(offered):  # noted just after the task is written and its events published
        def found():
            last = {d["_id"]: d.get("last_work_at") for d in db("volunteers")["responders." + park].find({})}
            return last if all(last[rid] is not None for rid in offered) else None
        return wait_for(found, what="each responder offered work noted")

    first = live(task_of(volunteers, park, route(broker, park)))
    last = noted(first)
    assert all(last[rid] is None for rid in set(team) - set(first))
    # the next need goes to the two not given work yet, then back to the first two
    second = live(task_of(volunteers, park, route(broker, park)))
    assert sorted(first + second) == sorted(team)
    noted(second)
    assert live(task_of(volunteers, park, route(broker, park))) == first


def test_a_routine_task_in_the_day_pages_nobody_and_an_empty_team_goes_to_the_lead(volunteers, broker):
    now = datetime.now(timezone.utc)
    park = new_park(volunteers, offer_minutes=0.02, night_page_after_minutes=0,
                    night={"start": local_clock(now + timedelta(hours=2)),
                           "end": local_clock(now + timedelta(hours=3))})
    lead = register(volunteers, park, "QLN-V035", teams=("green",))["id"]
    register(volunteers, park, "S1", teams=("squad",))
    task = task_of(volunteers, park, route(broker, park, grade="urgent"))
    # nobody in the orange team: straight to its lead
    assert live(task) == [lead] and [e["level"] for e in task["escalations"]] == ["lead"]
    eventlet.sleep(1.3)
    volunteers.sweep(park)
    task = volunteers.get_task(park, task["task_id"])
    assert [e["level"] for e in task["escalations"]] == ["lead"], "outside the night window nobody is paged"


# wishes, caps, stale claims, take-overs ------------------------------------------------------
def test_wishes_are_claimed_from_the_public_list_under_a_cap_and_stale_claims_come_back(volunteers, broker):
    park = "w" + uuid.uuid4().hex[:8]
    config = volunteers_config()
    config["wishes"] = {"claim_cap": 1, "stale_claim_hours": 1.5 / 3600, "takeover_answer_hours": 24}
    volunteers.set_config(park, config)
    worker = register(volunteers, park, "W1", roster={"shifts": []})["id"]  # never on duty: no offers, may still claim
    first = task_of(volunteers, park, route(broker, park, kind="micro_wish"))
    second = task_of(volunteers, park, route(broker, park, kind="micro_wish"))
    assert first["mode"] == "wish" and live(first) == []
    assert {w["task_id"] for w in volunteers.wishes(park)["wishes"]} == {first["task_id"], second["task_id"]}
    assert "requester" not in json.dumps(volunteers.wishes(park))

    assert volunteers.act(park, first["task_id"], "claim", {"responder_id": worker})["status"] == "claimed"
    with pytest.raises(Conflict) as capped:
        volunteers.act(park, second["task_id"], "claim", {"responder_id": worker})
    assert capped.value.code == "cap_reached"
    assert [w["task_id"] for w in volunteers.wishes(park)["wishes"]] == [second["task_id"]]

    eventlet.sleep(1.6)
    assert volunteers.sweep(park)["release_stale"] == 1
    back = volunteers.get_task(park, first["task_id"])
    assert back["status"] == "offered" and back["holder"] is None
    assert {w["task_id"] for w in volunteers.wishes(park)["wishes"]} == {first["task_id"], second["task_id"]}
    # the slot came back with it: the cap lets the worker claim again
    assert volunteers.act(park, second["task_id"], "claim", {"responder_id": worker})["status"] == "claimed"


def test_a_takeover_transfers_when_the_holder_does_not_answer_and_stays_when_refused(volunteers, broker):
    park = "t" + uuid.uuid4().hex[:8]
    config = volunteers_config()
    config["wishes"] = {"claim_cap": 2, "stale_claim_hours": 72, "takeover_answer_hours": 1.2 / 3600}
    volunteers.set_config(park, config)
    holder, taker, other = (register(volunteers, park, ref)["id"] for ref in ("H", "T", "X"))
    task = task_of(volunteers, park, route(broker, park, kind="micro_wish"))
    volunteers.act(park, task["task_id"], "claim", {"responder_id": holder})
    volunteers.act(park, task["task_id"], "start", {"responder_id": holder})

    asked = volunteers.act(park, task["task_id"], "request_takeover", {"responder_id": other})
    assert asked["takeover"]["responder_id"] == other
    refused = volunteers.act(park, task["task_id"], "answer_takeover", {"responder_id": holder, "accept": False})
    assert refused["holder"]["responder_id"] == holder and refused["takeover"] is None

    volunteers.act(park, task["task_id"], "request_takeover", {"responder_id": taker})
    with pytest.raises(Conflict) as pending:
        volunteers.act(park, task["task_id"], "request_takeover", {"responder_id": other})
    assert pending.value.code == "takeover_pending"
    eventlet.sleep(1.3)
    assert volunteers.sweep(park)["transfer"] == 1
    moved = volunteers.get_task(park, task["task_id"])
    assert moved["holder"]["responder_id"] == taker and moved["status"] == "claimed"
    held = {rid: [t["task_id"] for t in volunteers.tasks_of(park, rid)["held"]] for rid in (holder, taker, other)}
    assert held == {holder: [], taker: [task["task_id"]], other: []}
    with pytest.raises(Conflict) as not_holder:
        volunteers.act(park, task["task_id"], "complete", {"responder_id": holder})
    assert not_holder.value.code == "not_holder"
    done = volunteers.act(park, task["task_id"], "complete", {"responder_id": taker, "note": "修好了", "hours": 2,
                                                              "photo_ref": "oss://photos/t1.jpg", "place": "3号楼"})
    assert done["status"] == "done" and done["completion"]["hours"] == 2


def test_completion_publishes_service_hours_for_the_points_ledger(volunteers, broker, task_events):
    park = new_park(volunteers)
    rid = register(volunteers, park, "P1")["id"]
    task = task_of(volunteers, park, route(broker, park))
    volunteers.act(park, task["task_id"], "claim", {"responder_id": rid})
    volunteers.act(park, task["task_id"], "complete", {"responder_id": rid, "hours": 1.5, "note": "已处理"})
    events = wait_for(lambda: [e for e in task_events(task["task_id"]) if e[0] == "volunteer.service_hours"],
                      what="the service hours")
    ((_, hours),) = events
    assert hours["member_id"] == "M-P1" and hours["hours"] == 1.5 and hours["need_id"] == task["need_id"]
    completed = [d for t, d in task_events(task["task_id"]) if t == "task.completed"]
    assert completed[0]["member_id"] == "M-P1" and completed[0]["responder_id"] == rid


def test_a_need_routed_to_a_unit_is_assigned_to_it_directly(volunteers, broker, task_events):
    park = new_park(volunteers)
    unit = volunteers.register_responder(park, {"kind": "unit", "unit_kind": "department", "name": "劳动监察大队",
                                                "external_ref": "labour-inspection"})
    task = task_of(volunteers, park, route(broker, park, unit="labour-inspection", kind="urgent_matter"))
    assert task["mode"] == "unit" and task["status"] == "claimed" and task["holder"]["responder_id"] == unit["id"]
    assert [t for t, _ in wait_for(lambda: task_events(task["task_id"]), what="events")] == ["task.claimed"]


def test_a_redelivered_need_event_makes_one_task_and_a_cancelled_need_withdraws_it(volunteers, broker, db, task_events):
    park = new_park(volunteers)
    rid = register(volunteers, park, "R1")["id"]
    need_id = route(broker, park)
    route(broker, park, need_id=need_id)  # the same routing delivered again
    task = task_of(volunteers, park, need_id)
    wait_for(lambda: broker.depth("volunteers--need.triaged") == 0, what="both deliveries consumed")
    assert db("volunteers")["tasks." + park].count_documents({"need_id": need_id}) == 1
    route(broker, park, need_id=need_id, event_type="need.cancelled", status="cancelled", action="cancel")
    wait_for(lambda: volunteers.get_task(park, task["task_id"])["status"] == "withdrawn", what="the withdrawal")
    withdrawn = [d for t, d in task_events(task["task_id"]) if t == "task.withdrawn"]
    assert [d["responder_id"] for d in withdrawn] == [rid]
    assert volunteers.tasks_of(park, rid) == {"held": [], "offered": []}


def test_a_withdrawn_claimed_task_gives_its_holder_the_slot_back(volunteers, broker, db, task_events):
    park = new_park(volunteers)
    rid = register(volunteers, park, "R1", max_open_tasks=1)["id"]
    first = route(broker, park)
    volunteers.act(park, task_of(volunteers, park, first)["task_id"], "claim", {"responder_id": rid})
    capped = route(broker, park)
    assert live(task_of(volunteers, park, capped)) == []  # at the cap: not offered
    for _ in range(2):  # the desk cancels the first need; the event is delivered twice
        route(broker, park, need_id=first, event_type="need.cancelled", status="cancelled", action="cancel")
    wait_for(lambda: volunteers.get_task(park, dispatch.task_id(first, 1))["status"] == "withdrawn",
             what="the withdrawal")
    wait_for(lambda: broker.depth("volunteers--need.cancelled") == 0, what="both deliveries consumed")
    assert [d["responder_id"] for t, d in task_events(dispatch.task_id(first, 1)) if t == "task.withdrawn"] == [rid]
    assert db("volunteers")["slots." + park].count_documents({"responder_id": rid}) == 0
    # the slot is back: the next need is offered to them, and they can claim it
    after = route(broker, park)
    assert live(task_of(volunteers, park, after)) == [rid]
    assert volunteers.act(park, dispatch.task_id(after, 1), "claim", {"responder_id": rid})["status"] == "claimed"


# rosters, the duty index, parks kept apart --------------------------------------------------------
def test_who_is_on_duty_follows_overnight_shifts_across_midnight_and_the_week_boundary(volunteers):
    park = new_park(volunteers)
    sunday_night = register(volunteers, park, "N1", roster={"shifts": [
        {"day": "sun", "start": "22:00", "end": "06:00", "overnight": True}]})["id"]
    weekday_days = register(volunteers, park, "D1", roster={"shifts": [
        {"day": d, "start": "08:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]})["id"]
    on_leave = register(volunteers, park, "L1", roster={
        "shifts": [{"day": "mon", "start": "00:00", "end": "12:00"}],
        "leave": [{"start": "2026-11-23T00:00:00+08:00", "end": "2026-11-24T00:00:00+08:00", "reason": "病假"}]})["id"]

    def who(at):
        return {r["id"] for r in volunteers.on_duty(park, at=at)["responders"]}

    assert who("2026-11-22T23:30:00+08:00") == {sunday_night}           # Sunday night
    assert who("2026-11-23T03:00:00+08:00") == {sunday_night}           # Monday morning: a new week; L1 on leave
    assert who("2026-11-30T03:00:00+08:00") == {sunday_night, on_leave}  # a week later the leave is over
    assert who("2026-11-23T06:00:00+08:00") == set()
    assert who("2026-11-23T10:00:00+08:00") == {weekday_days}
    assert who("2026-11-22T10:00:00Z") == set()  # Sunday 18:00 in Shanghai: nobody
    stored = volunteers.get_responder(park, sunday_night)
    assert stored["duty_hours"] == [0, 1, 2, 3, 4, 5, 166, 167]


def test_dispatch_never_offers_to_the_paused_the_off_duty_the_capped_or_another_parks_responders(volunteers, broker):
    park, other = new_park(volunteers, offer_k=10), new_park(volunteers, offer_k=10)
    ok = register(volunteers, park, "OK")["id"]
    paused = register(volunteers, park, "PA")["id"]
    volunteers.set_active(park, paused, {"active": False, "reason": "出差"})
    register(volunteers, park, "OFF", roster={"shifts": []})
    capped = register(volunteers, park, "CAP", max_open_tasks=1)["id"]
    register(volunteers, other, "ELSEWHERE")
    # the capped volunteer takes one task first
    first = task_of(volunteers, park, route(broker, park))
    assert sorted(live(first)) == sorted([ok, capped])
    volunteers.act(park, first["task_id"], "claim", {"responder_id": capped})
    second = task_of(volunteers, park, route(broker, park))
    assert live(second) == [ok]
    with pytest.raises(Conflict) as refused:
        volunteers.act(park, second["task_id"], "claim", {"responder_id": paused})
    assert refused.value.code == "not_offered"


# bad input -------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_field_named(volunteers):
    park = new_park(volunteers)
    with pytest.raises(BadInput) as bad:
        register(volunteers, park, "B1", roster={"shifts": [{"day": "mon", "start": "18:00", "end": "09:00"}]})
    assert "ends (09:00) before it starts (18:00)" in json.dumps(bad.value.fields, ensure_ascii=False)
    with pytest.raises(BadInput) as bad:
        register(volunteers, park, "B2", teams=("purple",), skills=["juggling"], zone="moon")
    assert set(bad.value.fields) == {"teams", "skills", "zone"}
    assert "green" in bad.value.fields["teams"][0] and "electrician" in bad.value.fields["skills"][0]
    with pytest.raises(BadInput):
        volunteers.set_config(park, dict(volunteers_config(version=2), timezone="Mars/Olympus"))
    with pytest.raises(Conflict):
        volunteers.set_config(park, volunteers_config(version=1))
    with pytest.raises(NotFound):
        volunteers.register_responder("no-such-park", {"kind": "volunteer", "name": "x"})
    rid = register(volunteers, park, "B3")["id"]
    with pytest.raises(BadInput) as bad:
        volunteers.act(park, "nope:task:1", "fly", {"responder_id": rid})
    assert "claim" in bad.value.fields["action"][0]
    with pytest.raises(NotFound):
        volunteers.act(park, "nope:task:1", "claim", {"responder_id": rid})


# visit plans -------------------------------------------------------------------------------------
def test_monthly_visits_are_missed_only_after_their_grace_then_escalate_to_the_lead_and_the_supervisors(
        volunteers, task_events, db):
    park = new_park(volunteers)  # visits can be proved until the month's end plus 5 days
    visitor = register(volunteers, park, "VIS")
    lead = register(volunteers, park, "QLN-V024", teams=("red",))  # the red party group's lead
    volunteers.put_household(park, "hh-1", {"kind": "elderly_alone", "label": "3栋独居老人", "visitor_ref": "VIS",
                                            "members": 1})
    volunteers.put_household(park, "hh-2", {"kind": "left_behind_children", "label": "留守儿童A", "team": "red",
                                            "members": 4})
    with pytest.raises(BadInput):
        volunteers.put_household(park, "hh-3", {"kind": "tourists", "label": "x", "team": "red"})
    with pytest.raises(BadInput):
        volunteers.put_household(park, "hh-3", {"kind": "disabled", "label": "x", "team": "red", "members": "4"})
    local_now = datetime.now(timezone.utc).astimezone(SHANGHAI)
    this_month = local_now.strftime("%Y-%m")
    old = (local_now.replace(day=1) - timedelta(days=70)).strftime("%Y-%m")  # its grace closed long ago
    with pytest.raises(BadInput) as too_late:
        volunteers.generate_visits(park, old)
    assert "month" in too_late.value.fields
    with pytest.raises(BadInput):
        volunteers.generate_visits(park, "2999-01")
    planned = volunteers.generate_visits(park, this_month)
    assert planned["scheduled"] == 2
    assert datetime.fromisoformat(planned["proof_until"]) > datetime.now(timezone.utc) + timedelta(days=5)
    assert volunteers.generate_visits(park, this_month)["scheduled"] == 0  # again: nothing twice

    done = volunteers.visit_proof(park, "hh-1:" + this_month, {
        "responder_id": visitor["id"], "visited_at": local_now.isoformat(), "note": "身体健康，需要代购药品",
        "photo_ref": "oss://v/1.jpg"})
    assert done["status"] == "done" and done["members"] == 1
    with pytest.raises(BadInput):  # a proof dated in another month
        volunteers.visit_proof(park, "hh-2:" + this_month, {"responder_id": visitor["id"],
                                                            "visited_at": (local_now - timedelta(days=40)).isoformat(),
                                                            "note": "x"})
    with pytest.raises(BadInput) as in_grace:  # a month in progress (or in its grace) is not closed
        volunteers.close_month(park, this_month)
    assert "month" in in_grace.value.fields
    assert volunteers.sweep(park)["visits_missed"] == 0  # this month's visits are not missed while it runs
    assert volunteers.visits(park, month=this_month)["counts"] == {"done": 1, "planned": 1}

    # a visit planned for a month whose grace closed long ago, as the sweep planned it then
    visits = db("volunteers")["visits." + park]
    aged = {k: v for k, v in visits.find_one({"_id": "hh-2:" + this_month}).items() if not k.startswith("_outbox")}
    visits.insert_one(dict(aged, _id="hh-2:" + old, visit_id="hh-2:" + old, month=old))
    assert volunteers.sweep(park)["visits_missed"] == 1
    closed = volunteers.close_month(park, old)
    assert (closed["missed"], closed["marked_now"]) == (1, 0)  # what the sweep marked is reported
    assert [v["household"] for v in closed["visits"]] == ["hh-2"] and closed["visits"][0]["members"] == 4
    events = wait_for(lambda: any(t == "visit.escalated" for t, _ in task_events("hh-2:" + old)) and
                      task_events("hh-2:" + old), what="the missed visit's events")
    assert [t for t, _ in events] == ["visit.missed", "visit.escalated"]
    assert (events[1][1]["level"], events[1][1]["to"]) == ("lead", [lead["id"]])

    # the next rung, once it is due: the park's supervisors
    volunteers.set_config(park, dict(volunteers_config(version=2), visit_rules={"supervise_after_days": 0}))
    volunteers.sweep(park)
    rungs = wait_for(lambda: [d for t, d in task_events("hh-2:" + old) if t == "visit.escalated"][1:] and
                     [d for t, d in task_events("hh-2:" + old) if t == "visit.escalated"], what="the second rung")
    assert [(d["level"], d["to"]) for d in rungs] == [("lead", [lead["id"]]), ("supervisor", [])]
    volunteers.sweep(park)  # nothing climbs twice
    assert len(volunteers.visits(park, month=old)["visits"][0]["escalations"]) == 2


# emergency mode -----------------------------------------------------------------------------------
def test_an_emergency_call_out_reaches_the_squad_and_everyone_on_duty_and_counts_replies(volunteers, task_events):
    park = new_park(volunteers)
    on_duty = [register(volunteers, park, "D{}".format(n))["id"] for n in range(3)]
    off_duty = register(volunteers, park, "OFF", roster={"shifts": []})["id"]
    squad = register(volunteers, park, "SQ", teams=("squad",), roster={"shifts": []})["id"]
    with pytest.raises(Conflict) as normal:
        volunteers.call_out(park, {"message": "防汛", "actor": "admin"})
    assert normal.value.code == "not_in_emergency"

    switched = volunteers.switch_mode(park, {"mode": "emergency", "reason": "暴雨红色预警", "actor": "admin"})
    assert switched["mode"] == "emergency" and switched["changed"] is True
    assert volunteers.switch_mode(park, {"mode": "emergency", "reason": "again", "actor": "admin"})["changed"] is False
    callout = volunteers.call_out(park, {"message": "暴雨预警，请立即到服务中心集合", "actor": "admin"},
                                  idempotency_key="storm-1")
    assert callout["recipients"] == 4 and callout["squad"] == 1 and callout["on_duty"] == 3
    again = volunteers.call_out(park, {"message": "暴雨预警，请立即到服务中心集合", "actor": "admin"},
                                idempotency_key="storm-1")
    assert again["created"] is False
    volunteers.reply(park, callout["callout_id"], {"responder_id": on_duty[0], "answer": "coming"})
    volunteers.reply(park, callout["callout_id"], {"responder_id": squad, "answer": "coming"})
    counts = volunteers.reply(park, callout["callout_id"], {"responder_id": on_duty[1], "answer": "cannot"})
    assert (counts["recipients"], counts["coming"], counts["cannot"], counts["no_answer"]) == (4, 2, 1, 1)
    with pytest.raises(NotFound):
        volunteers.reply(park, callout["callout_id"], {"responder_id": off_duty, "answer": "coming"})
    events = wait_for(lambda: [e for e in task_events() if e[0] == "emergency.called_out"] if len(
        [e for e in task_events() if e[0] == "emergency.called_out"]) == 4 else None, what="4 call-outs")
    assert {d["responder_id"] for _, d in events} == set(on_duty) | {squad}
    ended = volunteers.switch_mode(park, {"mode": "normal", "reason": "预警解除", "actor": "admin"})
    assert ended["mode"] == "normal" and volunteers.mode(park)["version"] == 2
    assert [t for t, _ in task_events() if t.startswith("emergency.") and t != "emergency.called_out"
            and t != "emergency.replied"] == ["emergency.declared", "emergency.ended"]
