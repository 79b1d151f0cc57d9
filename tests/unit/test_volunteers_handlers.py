"""The volunteers service layer (services/volunteers/handlers/) driven
directly: dispatch, claims, withdrawal, the sweep, visits and call-outs
against a repository and the worker's Events, with no nameko, broker or
database. The same tests run against the real repository on the
MongoDB-protocol server (tests/integration/
test_volunteers_handlers_on_the_server.py): the in-memory one is held to it."""
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from lamplight import logs
from lamplight.errors import BadInput, Conflict
from services.volunteers.domain import RuleBroken, rosters
from services.volunteers.domain import dispatch as rules
from services.volunteers.handlers import Work, dispatch, emergency, responders, visits
from services.volunteers.schemas import (
    PUBLISHED,
    CalloutSchema,
    EmergencySwitchSchema,
    HouseholdSchema,
    NeedRoutedSchema,
    ReplySchema,
    ResponderRegistrationSchema,
    TaskActionSchema,
    VisitProofSchema,
)
from tests.parks import ALL_WEEK
from tests.unit.outbox import RecordingOutbox, events
from tests.unit.volunteers_repos import InMemoryVolunteersStore, configured

SHANGHAI = rosters.zone("Asia/Shanghai")


@pytest.fixture
def dispatch_rules():
    """Overrides of the park's dispatch rules (a test parametrizes it)."""
    return {}


@pytest.fixture
def repo(dispatch_rules):
    return InMemoryVolunteersStore("quanlinan", configured(**dispatch_rules))


@pytest.fixture
def work(repo):
    outbox = RecordingOutbox("volunteers", PUBLISHED)
    return Work(repo, events(outbox), logs.get_logger(component="volunteers-handlers")), outbox


def register(work, ref, teams=("orange",), roster=ALL_WEEK, **fields):
    body = dict({"kind": "volunteer", "name": "志愿者" + ref, "teams": list(teams), "skills": ["electrician"],
                 "roster": roster, "external_ref": ref, "member_id": "M-" + ref}, **fields)
    responder, created = responders.register(work, ResponderRegistrationSchema().load(body))
    assert created
    return responder["_id"]


def routed(need_id=None, **data):
    """What dispatch reads of a need.triaged event."""
    now = datetime.now(timezone.utc)
    return NeedRoutedSchema().load(dict({
        "need_id": need_id or "need_" + uuid.uuid4().hex[:8], "kind": "complaint", "category": "daily_life",
        "item": None, "grade": "routine", "team": "orange", "unit": None, "routing": 1, "summary": "宿舍热水器坏了",
        "due_at": (now + timedelta(days=3)).isoformat(), "task_id": None}, **data))


def act(work, task_id, action, **command):
    return dispatch.act(work, task_id, action, TaskActionSchema().load(command))


def live(task):
    return sorted(rid for rid, o in task["offers"].items() if o["status"] == rules.OFFER_LIVE)


def published(outbox, event_type):
    return [(e["data"].get("responder_id"), e["data"].get("reason")) for e in outbox.published
            if e["type"] == event_type]


def test_a_routed_need_is_offered_to_the_best_k_on_duty_and_a_redelivery_adds_nothing(work):
    w, outbox = work
    orange = [register(w, "V{}".format(n)) for n in range(4)]
    register(w, "B1", teams=("blue",))
    need = routed()
    task = dispatch.dispatch(w, need)
    assert task["status"] == rules.OFFERED and len(live(task)) == 3 and set(live(task)) <= set(orange)
    stored = w.store.get_task(task["task_id"], internal=True)
    assert [e["type"] for e in stored["_outbox"]] == ["task.offered"] * 3  # the events went in with the task
    assert sorted(rid for rid, _ in published(outbox, "task.offered")) == live(task)
    assert outbox.staged == {} and outbox.discarded == []
    count = len(outbox.published)
    assert dispatch.dispatch(w, need) is None  # the same event delivered again
    assert len(outbox.published) == count and len(outbox.discarded) == 3 and outbox.staged == {}
    assert w.store.get_task(task["task_id"])["version"] == 1


def test_the_first_claim_wins_and_the_loser_keeps_no_slot(work):
    w, outbox = work
    a, b, c = (register(w, ref) for ref in ("A", "B", "C"))
    task = dispatch.dispatch(w, routed())
    claimed = act(w, task["task_id"], "claim", responder_id=a)
    assert claimed["status"] == rules.CLAIMED and claimed["holder"]["responder_id"] == a
    assert sorted(published(outbox, "task.withdrawn")) == [(b, "claimed_by_another"), (c, "claimed_by_another")]
    with pytest.raises(Conflict) as lost:
        act(w, task["task_id"], "claim", responder_id=b)
    assert lost.value.code == "already_taken" and lost.value.fields == {"status": ["claimed"]}
    assert w.store.slots_of(b) == [] and len(w.store.slots_of(a)) == 1
    done = act(w, task["task_id"], "complete", responder_id=a, note="修好了", hours=1.5)
    assert done["status"] == rules.DONE and done["version"] == 3 and w.store.slots_of(a) == []
    assert outbox.types()[-2:] == ["task.completed", "volunteer.service_hours"]


def test_a_claim_that_loses_the_race_after_taking_its_slot_gives_the_slot_back(work, monkeypatch):
    w, outbox = work
    a, b = register(w, "A"), register(w, "B")
    task = dispatch.dispatch(w, routed())
    take_slot = w.store.take_slot

    def a_claims_first(responder_id, *args):  # B saw the task offered; A's claim lands while B takes a slot
        if responder_id == b:
            act(w, task["task_id"], "claim", responder_id=a)
        return take_slot(responder_id, *args)
    monkeypatch.setattr(w.store, "take_slot", a_claims_first)
    with pytest.raises(RuleBroken) as lost:  # the rules refuse it, on the task as A left it
        act(w, task["task_id"], "claim", responder_id=b)
    assert lost.value.code == "already_taken"
    assert w.store.slots_of(b) == [] and len(w.store.slots_of(a)) == 1
    assert w.store.get_task(task["task_id"])["holder"]["responder_id"] == a and outbox.staged == {}


def test_a_claim_over_the_cap_is_refused_and_nothing_is_written(work):
    w, outbox = work
    a = register(w, "A", max_open_tasks=1)
    first, second = dispatch.dispatch(w, routed()), dispatch.dispatch(w, routed())
    act(w, first["task_id"], "claim", responder_id=a)
    before = len(outbox.published)
    with pytest.raises(Conflict) as refused:
        act(w, second["task_id"], "claim", responder_id=a)
    assert refused.value.code == "cap_reached"
    assert w.store.get_task(second["task_id"])["version"] == 1 and len(outbox.published) == before
    assert [s["task_id"] for s in w.store.slots_of(a)] == [first["task_id"]]


def test_a_cancelled_need_withdraws_its_task_and_frees_the_holders_slot(work):
    w, outbox = work
    a, b = register(w, "A"), register(w, "B")
    need = routed()
    task = dispatch.dispatch(w, need)
    act(w, task["task_id"], "claim", responder_id=a)
    own = dict(need, task_id=task["task_id"])
    assert dispatch.withdraw(w, own, "need.assigned") is None  # our own claim coming back changes nothing
    withdrawn = dispatch.withdraw(w, need, "need.cancelled")
    assert withdrawn["status"] == rules.WITHDRAWN and w.store.slots_of(a) == []
    assert published(outbox, "task.withdrawn")[-1] == (a, "need.cancelled")
    count = len(outbox.published)
    assert dispatch.withdraw(w, need, "need.cancelled")["status"] == rules.WITHDRAWN  # delivered again
    assert len(outbox.published) == count and outbox.staged == {}
    assert dispatch.withdraw(w, routed(), "need.cancelled") is None  # a need with no task here
    assert w.store.slots_of(b) == []


@pytest.mark.parametrize("dispatch_rules", [{"offer_k": 2, "offer_minutes": 0.005}])
def test_expired_offers_go_to_the_next_k_on_the_sweep(work):
    w, outbox = work
    for n in range(4):
        register(w, "V{}".format(n))
    task = dispatch.dispatch(w, routed())
    first = live(task)
    time.sleep(0.4)  # the offers expire 0.3 s after they were made
    config = w.config()
    done = dispatch.sweep(w, config, rosters.zone(config["timezone"]), 100)
    assert done["expire"] == 1
    swept = w.store.get_task(task["task_id"])
    assert all(swept["offers"][rid]["status"] == rules.OFFER_EXPIRED for rid in first)
    assert len(live(swept)) == 2 and not set(live(swept)) & set(first) and swept["round"] == 2
    assert sorted(published(outbox, "task.offer_expired")) == [(rid, "expired") for rid in first]
    assert sorted(published(outbox, "task.offered")[-2:]) == [(rid, "expired") for rid in live(swept)]


def test_a_months_visits_are_planned_once_and_a_proof_closes_one(work):
    w, outbox = work
    visitor = register(w, "V1")
    for code in ("h1", "h2"):
        visits.put_household(w, code, HouseholdSchema().load({"kind": "elderly_alone", "label": "独居老人" + code,
                                                               "visitor_ref": "V1"}))
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    assert visits.plan(w, month) == {"park_id": "quanlinan", "month": month, "scheduled": 2, "households": 2}
    assert visits.plan(w, month)["scheduled"] == 0
    assert outbox.types().count("visit.scheduled") == 2
    visit_id = "h1:" + month
    with pytest.raises(BadInput):  # a proof must be of a day in the visit's month
        visits.prove(w, visit_id, VisitProofSchema().load({
            "responder_id": visitor, "note": "上门", "visited_at": "2020-01-05T10:00:00+08:00"}))
    proof = VisitProofSchema().load({"responder_id": visitor, "note": "上门看望, 身体好",
                                     "visited_at": datetime.now(SHANGHAI).isoformat()})
    done = visits.prove(w, visit_id, proof)
    assert done["status"] == "done" and done["version"] == 2 and outbox.types()[-1] == "visit.completed"
    with pytest.raises(Conflict):
        visits.prove(w, visit_id, proof)
    assert [v["status"] for v in w.store.visits_of(month)] == ["done", "planned"]


def test_the_sweep_is_wanted_at_a_tasks_next_check_and_at_a_planned_months_deadline(work):
    # the sweep visits a park when its alarm rings (lamplight.alarms): every write that gives a
    # task its next check rings it then, and the visits' next time is the soonest of a month
    # beginning, a planned month's deadline and a missed visit's supervisors' rung
    w, _ = work
    for n in range(4):
        register(w, "V{}".format(n))
    task = dispatch.dispatch(w, routed())
    same = lambda a, b: abs(a - b) < timedelta(milliseconds=1)  # noqa: E731 (a server keeps milliseconds)
    assert task["next_check_at"] is not None and same(w.store.alarm.at(), task["next_check_at"])
    assert same(w.store.next_check(), task["next_check_at"])
    config = w.config()
    now = datetime.now(SHANGHAI)
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0,
                                                                    microsecond=0)
    assert visits.next_due(w, config, SHANGHAI) == next_month
    visits.put_household(w, "h1", HouseholdSchema().load({"kind": "elderly_alone", "label": "独居老人",
                                                           "visitor_ref": "V1"}))
    w.store.insert_visits([dict(_id="h1:2020-01", visit_id="h1:2020-01", park_id=w.park_id, household="h1",
                                label="独居老人", kind="elderly_alone", month="2020-01", status="planned",
                                version=1, team=None, responder_id=None, created_at=now)])
    deadline = datetime(2020, 2, 1, tzinfo=SHANGHAI) + timedelta(
        days=config["visit_rules"]["grace_days"])
    assert visits.next_due(w, config, SHANGHAI) == deadline
    assert visits.close_months(w, config, SHANGHAI, 100) == 1
    assert visits.next_due(w, config, SHANGHAI) == next_month  # missed, with nobody's rung to come


def test_a_call_out_reaches_on_duty_and_squad_once_each_and_replies_are_counted(work):
    w, outbox = work
    message = CalloutSchema().load({"message": "暴雨预警, 请到中心集合", "actor": "desk-01"})
    with pytest.raises(Conflict) as normal:
        emergency.call_out(w, message, "k1")
    assert normal.value.code == "not_in_emergency" and outbox.published == [] and outbox.staged == {}
    on_duty = register(w, "A")
    both = register(w, "B", teams=("orange", "squad"))
    squad = register(w, "S", teams=("squad",), roster={"shifts": [], "leave": [], "extra": []})
    register(w, "U", kind="unit", unit_kind="department", teams=("squad",))
    switch = EmergencySwitchSchema().load({"mode": "emergency", "reason": "暴雨", "actor": "desk-01"})
    assert emergency.switch(w, switch)["changed"] is True
    assert emergency.switch(w, switch)["changed"] is False
    assert outbox.types().count("emergency.declared") == 1
    called = emergency.call_out(w, message, "k1")
    assert (called["recipients"], called["squad"], called["on_duty"], called["created"]) == (3, 2, 1, True)
    assert sorted(published(outbox, "emergency.called_out")) == sorted([(on_duty, None), (both, None), (squad, None)])
    assert emergency.call_out(w, message, "k1")["created"] is False
    assert outbox.types().count("emergency.called_out") == 3  # nobody is called twice
    tally = emergency.reply(w, called["callout_id"], ReplySchema().load({"responder_id": squad, "answer": "coming"}))
    assert (tally["recipients"], tally["coming"], tally["no_answer"]) == (3, 1, 2)
