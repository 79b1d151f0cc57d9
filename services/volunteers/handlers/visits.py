"""Visit plans, the six must-visits (六必访): households, the month's visits,
proofs, and the visits nobody proved — missed, escalated to the party group's
lead and then to the park's supervisors."""
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict, NotFound
from lamplight.publishing import Change
from lamplight.shapes import Config, Doc, Envelope
from services.volunteers.domain import rosters, visits
from services.volunteers.handlers import Work, responder_of, team_leads
from services.volunteers.handlers.responders import check_codes
from services.volunteers.metrics import VISITS_MISSED
from services.volunteers.schemas import VisitEscalationEventSchema, VisitEventSchema

_visit_event = VisitEventSchema()
_visit_escalation = VisitEscalationEventSchema()

# (event type, the escalation rung it publishes or None)
Event = tuple[str, Doc | None]
Decide = Callable[[Doc, datetime], tuple[Doc, list[Event]]]


def put_household(work: Work, code: str, data: Doc) -> Doc:
    config = work.config()
    if data["kind"] not in config["visit_kinds"]:
        raise BadInput("unknown visit kind {}".format(data["kind"]), {"kind": [
            "one of: " + ", ".join(config["visit_kinds"])]})
    if data["team"] and data["team"] not in {t["code"] for t in config["teams"]}:
        raise BadInput("unknown team {}".format(data["team"]), {"team": ["unknown"]})
    if data["zone"]:
        check_codes(config, {"zone": data["zone"], "teams": [], "skills": []})
    if data["visitor_ref"] and not work.store.responders_by_ref([data["visitor_ref"]]):
        raise BadInput("no responder with ref {}".format(data["visitor_ref"]), {"visitor_ref": ["unknown"]})
    household: Doc = work.store.put_household(code, data)
    return household


def generate(work: Work, month: str | None) -> Doc:
    """The month's visit to every active household (default: this month in
    the park's time zone). Running it again adds only what is missing."""
    config = work.config()
    tz = rosters.zone(config["timezone"])
    current = visits.local_month(utcnow(), tz)
    month = month_of(month) if month else current
    if month > current:
        raise BadInput("month {} has not begun in {}".format(month, config["timezone"]),
                       {"month": ["a future month"]})
    deadline = visits.visit_deadline(month, tz, visits.visit_rules(config)["grace_days"])
    if utcnow() >= deadline:
        raise BadInput("month {} has ended and its visits could be proved until {}: it is too late to plan "
                       "them".format(month, deadline.astimezone(tz).isoformat()),
                       {"month": ["ended, grace closed {}".format(deadline.astimezone(tz).date())]})
    # a month that has ended but is in its grace may still be planned: said plainly in the answer
    return dict(plan(work, month), proof_until=deadline.isoformat())


def plan(work: Work, month: str) -> Doc:
    """Insert the month's missing visits with their visit.scheduled events."""
    store, at = work.store, utcnow()
    households = store.active_households()
    visitors = {r["ref"]: r for r in store.responders_by_ref(
        {h["visitor_ref"] for h in households if h.get("visitor_ref")})}
    planned, envelopes = [], []
    for household in households:
        visitor = visitors.get(household.get("visitor_ref"))
        visit_id = visits.visit_id(household["code"], month)
        visit = {"_id": visit_id, "visit_id": visit_id, "park_id": work.park_id, "household": household["code"],
                 "label": household["label"], "members": household.get("members"),
                 "kind": household["kind"], "month": month, "status": visits.VISIT_PLANNED,
                 "visitor_ref": household.get("visitor_ref"), "team": household.get("team"),
                 "responder_id": visitor["_id"] if visitor else None,
                 "member_id": visitor.get("member_id") if visitor else None, "proof": None, "version": 1,
                 "created_at": at}
        planned.append(visit)
        envelopes.append(_event(work, visit, "visit.scheduled", at))
    fresh = work.events.insert_many(planned, envelopes, store.insert_visits)
    if planned:  # the sweep misses what is not proved by the month's deadline
        config = work.config()
        store.alarm.ring(visits.visit_deadline(month, rosters.zone(config["timezone"]),
                                         visits.visit_rules(config)["grace_days"]))
    return {"park_id": work.park_id, "month": month, "scheduled": len(fresh), "households": len(planned)}


def _event(work: Work, visit: Doc, event_type: str, at: datetime, rung: Doc | None = None) -> Envelope:
    if rung is not None:
        data = _visit_escalation.dump(dict(visit, at=at, level=rung["level"], to=rung["to"]))
    else:
        data = _visit_event.dump(dict(visit, at=at))
    envelope: Envelope = work.events.new(event_type, park_id=visit["park_id"], subject=visit["visit_id"], data=data)
    return envelope


def prove(work: Work, visit_id: str, proof: Doc) -> Doc:
    """Proof of a visit: when, what was found, a photo reference, the place."""
    config = work.config()
    tz = rosters.zone(config["timezone"])
    visit = visit_of(work.store, visit_id)
    if visits.local_month(proof["visited_at"], tz) != visit["month"]:
        raise BadInput("the visit of {} must be made in {}".format(visit["household"], visit["month"]),
                       {"visited_at": ["not in {}".format(visit["month"])]})
    responder = responder_of(work.store, proof["responder_id"])

    def proved(visit: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        _must_be_planned(visit)
        return {"status": visits.VISIT_DONE, "proof": dict(proof, visited_at=proof["visited_at"]),
                "responder_id": responder["_id"], "member_id": responder.get("member_id"),
                "closed_at": at}, [("visit.completed", None)]
    return _change(work, visit_id, proved)


def visit_of(store: Any, visit_id: str, internal: bool = False) -> Doc:
    visit: Doc | None = store.get_visit(visit_id, internal=internal)
    if visit is None:
        raise NotFound("no visit {} in park {}".format(visit_id, store.park_id), {"visit_id": ["unknown"]})
    return visit


def _change(work: Work, visit_id: str, decide: Decide) -> Doc:
    """Read the visit, ``decide(visit, at)`` → (fields to set, events), write
    the next version with its events (Events.change); on a lost race read
    again and decide on what the winner left."""
    def change(visit: Doc) -> Change:
        at = utcnow()
        fields, events = decide(visit, at)
        after = dict(visit, **fields, version=visit["version"] + 1)
        return Change(fields, [_event(work, after, event_type, at, rung) for event_type, rung in events], after)

    after: Doc = work.events.change(lambda: visit_of(work.store, visit_id, internal=True), change,
                                    work.store.write_visit,
                                    conflict=Conflict("visit {} kept changing; try again".format(visit_id),
                                                      {"version": ["changed concurrently"]}))
    return after


def _leads_of(store: Any, config: Config, visit: Doc) -> list[str]:
    """The party group's leads for a visit: its household's team, else the visitor's teams."""
    teams = [visit["team"]] if visit.get("team") else []
    if not teams and visit.get("responder_id"):
        visitor = store.get_responder(visit["responder_id"]) or {}
        teams = list(visitor.get("teams") or ())
    return [r["_id"] for r in team_leads(store, config, teams)]


def _miss(work: Work, config: Config, visit_id: str) -> Doc:
    """Mark a planned visit missed and escalate it: the party group's lead at
    once (the park's supervisors later), or the supervisors at once when the
    group has no lead."""
    def miss(visit: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        _must_be_planned(visit)
        leads = _leads_of(work.store, config, visit)
        rung = visits.visit_escalation("lead" if leads else "supervisor", at, leads)
        return {"status": visits.VISIT_MISSED, "closed_at": at, "escalations": [rung],
                "supervision_pending": bool(leads)}, [("visit.missed", None), ("visit.escalated", rung)]
    visit = _change(work, visit_id, miss)
    VISITS_MISSED.labels(work.park_id, visit["kind"]).inc()
    if visit.get("supervision_pending"):  # the supervisors' rung, when it is due
        work.store.alarm.ring(visit["escalations"][-1]["at"] + timedelta(
            days=visits.visit_rules(config)["supervise_after_days"]))
    return visit


def next_due(work: Work, config: Config, tz: tzinfo) -> datetime:
    """When the sweep next has visits to see to in the park: a month's deadline
    passing with visits still planned, a missed visit's supervisors' rung, or
    the next month beginning (its visits are planned then)."""
    store = work.store
    due = [visits.month_start(visits.month_after(visits.local_month(utcnow(), tz)), tz)]
    month = store.first_planned_month()
    if month is not None:
        due.append(visits.visit_deadline(month, tz, visits.visit_rules(config)["grace_days"]))
    waiting = store.first_to_supervise()
    if waiting is not None and waiting.get("escalations"):
        due.append(waiting["escalations"][-1]["at"] + timedelta(
            days=visits.visit_rules(config)["supervise_after_days"]))
    return min(due)


def _supervise(work: Work, config: Config, visit_id: str) -> Doc:
    """The next rung of a missed visit, once due: the park's supervisors."""
    after_days = visits.visit_rules(config)["supervise_after_days"]

    def supervise(visit: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        if not (visit.get("supervision_pending") and visits.supervision_due(visit, at, after_days)):
            raise Conflict("visit {} has no rung due".format(visit_id), code="illegal_transition")
        rung = visits.visit_escalation("supervisor", at, [])
        return {"escalations": list(visit["escalations"]) + [rung], "supervision_pending": False}, [
            ("visit.escalated", rung)]
    return _change(work, visit_id, supervise)


def close_month(work: Work, month: str, batch: int) -> Doc:
    """Close a month whose grace is over: the visits nobody proved are missed
    (each published as visit.missed, which the points service may deduct on,
    and escalated). The sweep does the same by itself."""
    config = work.config()
    tz = rosters.zone(config["timezone"])
    month = month_of(month)
    deadline = visits.visit_deadline(month, tz, visits.visit_rules(config)["grace_days"])
    if utcnow() < deadline:
        raise BadInput("month {} can be proved until {}: close it after that".format(
            month, deadline.astimezone(tz).isoformat()), {"month": ["in its grace until {}".format(
                deadline.astimezone(tz).date())]})
    marked = close_months(work, config, tz, batch, month)
    return {"park_id": work.park_id, "month": month, "marked_now": marked,
            "visits": work.store.visits_of(month, visits.VISIT_MISSED)}


def close_months(work: Work, config: Config, tz: tzinfo, batch: int, month: str | None = None) -> int:
    """Miss the planned visits of every month (or of ``month``) whose grace is
    over; escalate missed visits whose next rung is due. How many were missed now."""
    store, now = work.store, utcnow()
    grace = visits.visit_rules(config)["grace_days"]
    missed = 0
    current = visits.local_month(now, tz)
    for visit in store.planned_before(visits.month_after(month) if month else current, batch):
        if now < visits.visit_deadline(visit["month"], tz, grace):
            continue  # still in its grace
        try:
            _miss(work, config, visit["visit_id"])
            missed += 1
        except Conflict:
            pass  # proved, or missed by another replica, meanwhile
    after_days = visits.visit_rules(config)["supervise_after_days"]
    for visit in store.missed_to_supervise(batch):
        if not visits.supervision_due(visit, now, after_days):
            continue
        try:
            _supervise(work, config, visit["visit_id"])
        except Conflict:
            pass
    return missed


def listing(work: Work, month: str | None, status: str | None) -> Doc:
    work.config()
    if status is not None and status not in (visits.VISIT_PLANNED, visits.VISIT_DONE, visits.VISIT_MISSED):
        raise BadInput("unknown status {}".format(status), {"status": ["planned, done or missed"]})
    found = work.store.visits_of(month_of(month) if month else None, status)
    counts: dict[str, int] = {}
    for v in found:
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {"park_id": work.park_id, "month": month, "counts": counts, "visits": found}


def _must_be_planned(visit: Doc) -> None:
    if visit["status"] != visits.VISIT_PLANNED:
        raise Conflict("visit {} is {}".format(visit["visit_id"], visit["status"]), {"status": [visit["status"]]},
                       code="illegal_transition")


def month_of(month: Any) -> str:
    """A month as YYYY-MM (BadInput otherwise)."""
    if not isinstance(month, str) or len(month) != 7 or month[4] != "-" or not (
            month[:4].isdigit() and month[5:].isdigit() and 1 <= int(month[5:]) <= 12):
        raise BadInput("a month is YYYY-MM", {"month": [str(month)[:20]]})
    return month
