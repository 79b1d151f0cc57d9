"""Dispatch: routed needs become tasks offered to the best K responders (the
first claim wins), or assigned to the unit a need names, or put on the public
wish list; claims and the task's lifecycle; the sweep that expires offers,
offers again, pages the night squad, releases stale claims and transfers
unanswered take-overs.

A responder's cap on open tasks is a set of slots (VolunteersStore): a slot
is taken before a claim or a take-over request and given back when the task
leaves the responder's hands — each such step is in this module alone.
"""
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict, NotFound
from lamplight.publishing import Change
from lamplight.shapes import Config, Doc, Envelope
from services.volunteers.domain import dispatch as rules
from services.volunteers.domain import rosters
from services.volunteers.handlers import Work, responder_of, team_leads
from services.volunteers.metrics import (
    DISPATCH_SECONDS,
    NEEDS_UNMATCHED,
    TASK_ESCALATIONS,
    TASK_TRANSITIONS,
    TASKS_OFFERED,
)
from services.volunteers.schemas import ServiceHoursSchema, TaskEventSchema

_task_event = TaskEventSchema()
_hours = ServiceHoursSchema()

# (event type, the responder it concerns or None, reason or None)
Event = tuple[str, str | None, str | None]
Decide = Callable[[Doc, datetime], tuple[Doc, list[Event]]]


class Skip(Exception):
    """Nothing to do."""


# a routed need becomes a task ---------------------------------------------------------------
def dispatch(work: Work, need: Doc) -> Doc | None:
    """A need routed to a team (triaged, re-triaged or reopened) becomes a
    task of its own: assigned to the unit it names, put on the public wish
    list (a micro-wish, offered to the best K as well), or offered to the best
    K responders. None when the task exists already (a redelivered event)."""
    started = time.monotonic()
    store, config, at = work.store, work.config(), utcnow()
    teams = [need["team"]] if need["team"] else rosters.teams_covering(config, need["category"])
    skills = sorted(config["item_skills"].get(need["item"] or "", []))
    unit = store.unit(need["unit"]) if need["unit"] else None
    mode = rules.MODE_UNIT if unit else rules.MODE_WISH if need["kind"] == "micro_wish" else rules.MODE_OFFER
    task = rules.new_task(work.park_id, need, mode, teams, skills, at, config)
    task["_id"] = task["task_id"]
    types: list[Event]
    if unit is not None:
        task.update(status=rules.CLAIMED, holder={"responder_id": unit["_id"], "member_id": None}, claimed_at=at)
        task["history"].append({"at": at, "what": "assigned", "to": unit["_id"]})
        types = [("task.claimed", unit["_id"], None)]
    else:
        types = offer_round(work, config, task, at, "dispatch")
    task["next_check_at"] = rules.next_check(task, config)
    task["version"] = 1
    with work.events.staging(task_events(work, task, types, at)) as staged:
        task.update(staged.fields())
        inserted = staged.written = store.insert_task(task)
    if not inserted:
        work.log.info("dispatch.duplicate_delivery", need_id=need["need_id"], routing=need["routing"])
        return None
    store.note_work([rid for t, rid, _ in types if t == "task.offered"], at)
    DISPATCH_SECONDS.labels(work.park_id, mode).observe(time.monotonic() - started)
    work.log.info("dispatch.task_created", task_id=task["task_id"], mode=mode, offers=len(task["offers"]))
    return task


def offer_round(work: Work, config: Config, task: Doc, at: datetime, reason: str) -> list[Event]:
    """Offer ``task`` to the next K eligible responders; nobody left → the
    team's leads (once). Returns the events to publish."""
    store = work.store
    tz = rosters.zone(config["timezone"])
    # a need already past its due time (re-triaged, reopened, an event
    # delivered late) is still offered to whoever is on duty now
    horizon = max(at, min(task["due_at"], at + timedelta(days=7)))
    hours = {rosters.hour_of_week(at + timedelta(hours=h), tz)
             for h in range(int((horizon - at).total_seconds() // 3600) + 1)}
    pool = store.on_duty_candidates(hours, teams=task["teams"] or None, skills=task["skills"], now=at)
    ranked = rules.rank(pool, task, work.park_id, at, tz, store.open_counts([r["_id"] for r in pool]), config)
    chosen = [r for r, _ in ranked[:config["dispatch"]["offer_k"]]]
    if chosen:
        rules.add_offers(task, chosen, at, config, reason)
        TASKS_OFFERED.labels(work.park_id).inc(len(chosen))
        return [("task.offered", r["_id"], reason) for r in chosen]
    if not any(e["level"] == "lead" for e in task["escalations"]):
        leads = [r for r in team_leads(store, config, task["teams"]) if r["_id"] not in task["offered_to"]]
        task["escalations"].append({"level": "lead", "at": at, "to": [r["_id"] for r in leads]})
        TASK_ESCALATIONS.labels(work.park_id, "lead").inc()
        if leads:
            rules.add_offers(task, leads, at, config, "lead")
            escalated: list[Event] = [("task.escalated", None, "lead")]
            return escalated + [("task.offered", r["_id"], "lead") for r in leads]
    NEEDS_UNMATCHED.labels(work.park_id, task["category"]).inc()
    task["retry_at"] = at + timedelta(minutes=config["dispatch"]["offer_minutes"])
    work.log.warning("dispatch.nobody_left", task_id=task["task_id"], category=task["category"])
    return [("task.unmatched", None, "nobody_left")] if reason == "dispatch" else []


def task_events(work: Work, task: Doc, types: list[Event], at: datetime) -> list[Envelope]:
    """One envelope per (event type, responder it concerns, reason)."""
    envelopes = []
    holder = task.get("holder") or {}
    completion = task.get("completion") or {}
    for event_type, responder_id, reason in types:
        offer = task["offers"].get(responder_id) or {} if responder_id else {}
        member = holder.get("member_id") if responder_id and holder.get("responder_id") == responder_id \
            else offer.get("member_id")
        data = dict(task, responder_id=responder_id, member_id=member, reason=reason, at=at,
                    level=reason if event_type == "task.escalated" else None, note=completion.get("note"),
                    hours=completion.get("hours"), offered_at=offer.get("offered_at"),
                    expires_at=offer.get("expires_at"))
        schema = _hours if event_type == "volunteer.service_hours" else _task_event
        envelopes.append(work.events.new(event_type, park_id=task["park_id"], subject=task["task_id"],
                                         data=schema.dump(data)))
    return envelopes


def withdraw(work: Work, need: Doc, why: str) -> Doc | None:
    """A need the desk assigned itself, cancelled or rejected: its open task
    is withdrawn, and whoever had it offered or held hears so. None when the
    need has no task here, or the need was assigned to this very task (our
    own claim coming back)."""
    own = rules.task_id(need["need_id"], need["routing"])
    if why == "need.assigned" and need["task_id"] == own:
        return None
    config = work.config()

    def decide(task: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        withdrawn, told = rules.withdraw(task, at, why)
        if withdrawn is None:
            raise Skip()
        return withdrawn, [("task.withdrawn", rid, why) for rid in told]
    try:
        change_task(work, config, own, decide)
    except NotFound:
        return None
    except Skip:
        pass  # withdrawn already (a redelivery): its holder's slot is freed below all the same
    task: Doc = work.store.get_task(own)
    holder = (task.get("holder") or {}).get("responder_id")
    if task["status"] == rules.WITHDRAWN and holder:
        work.store.free_slot(holder, own)  # the holder's cap counts open tasks only
    return task


# claiming and the task's lifecycle ----------------------------------------------------------------
def action_of(action: str) -> str:
    """The action of a task command, checked before its body is read."""
    if action not in rules.TASK_ACTIONS:
        raise BadInput("unknown action {}".format(action), {"action": ["one of: " + ", ".join(rules.TASK_ACTIONS)]})
    return action


def act(work: Work, task_id: str, action: str, command: Doc) -> Doc:
    """claim, decline, start, complete, release, request_takeover or
    answer_takeover (see :func:`action_of`), by the responder the command names."""
    config = work.config()
    responder = responder_of(work.store, command["responder_id"])
    if action == "claim":
        return _claim(work, config, task_id, responder, command)
    if action == "request_takeover":
        return _request_takeover(work, config, task_id, responder)
    if action == "answer_takeover" and command["accept"] is None:
        raise BadInput("say whether the take-over is accepted", {"accept": ["true or false"]})
    args = dict(command, member_id=responder.get("member_id"))
    who = command["responder_id"]
    asked = {}  # answer_takeover: who asked, in the version the answer changed

    def decide(task: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        asked["by"] = (task.get("takeover") or {}).get("responder_id")
        changed, types = rules.transition(task, action, args, at, config)
        events = _about(types, changed, who)
        if action == "release":  # offered again at once, to others
            events += offer_round(work, config, changed, at, "released")
        return changed, events

    task = change_task(work, config, task_id, decide)
    if action in ("complete", "release"):
        work.store.free_slot(who, task_id)
    elif action == "answer_takeover":
        # accepted: the holder gives up their slot; refused: the requester's, taken when asking
        work.store.free_slot(who if command["accept"] else asked["by"], task_id)
    return task


def _cap(config: Config, task: Doc, responder: Doc) -> tuple[str, int]:
    """Which cap a task counts against for ``responder``: (slot kind, cap)."""
    if task["mode"] == rules.MODE_WISH:
        return "wish", config["wishes"]["claim_cap"]
    return "task", responder.get("max_open_tasks") or config["dispatch"]["default_cap"]


def _holding_a_slot(work: Work, config: Config, task_id: str, responder: Doc, decide: Decide) -> Doc:
    """Change the task with a slot under the responder's cap taken first, and
    given back when the change does not happen."""
    try:
        return change_task(work, config, task_id, decide)
    except BaseException:
        work.store.free_slot(responder["_id"], task_id)
        raise


def _claim(work: Work, config: Config, task_id: str, responder: Doc, command: Doc) -> Doc:
    """The first claim wins: the task's next version is one conditional
    write that exactly one claimer makes."""
    task = task_of(work.store, task_id)
    if task["status"] != rules.OFFERED:
        raise Conflict("task {} is {}: it cannot be claimed".format(task_id, task["status"]),
                       {"status": [task["status"]]}, code="already_taken")
    kind, cap = _cap(config, task, responder)
    if task["mode"] == rules.MODE_WISH:
        problem = _may_claim_wish(responder, task)
        if problem:
            raise Conflict(problem, {"responder_id": [problem]}, code="not_eligible")
    if work.store.take_slot(responder["_id"], kind, cap, task_id) is None:
        raise Conflict("{} holds {} open {}s, the cap".format(responder["_id"], cap, kind),
                       {"responder_id": ["at the cap of {} open {}s".format(cap, kind)]}, code="cap_reached")
    args = dict(command, member_id=responder.get("member_id"))

    def claim(task: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        changed, types = rules.transition(task, "claim", args, at, config)
        withdrawn = [rid for rid, o in changed["offers"].items() if o["status"] == rules.OFFER_WITHDRAWN
                     and task["offers"][rid]["status"] == rules.OFFER_LIVE]
        return changed, _about(types, changed, responder["_id"]) + [
            ("task.withdrawn", rid, "claimed_by_another") for rid in withdrawn]
    return _holding_a_slot(work, config, task_id, responder, claim)


def _request_takeover(work: Work, config: Config, task_id: str, responder: Doc) -> Doc:
    kind, cap = _cap(config, task_of(work.store, task_id), responder)
    if work.store.take_slot(responder["_id"], kind, cap, task_id) is None:
        raise Conflict("{} is at the cap of {} open {}s".format(responder["_id"], cap, kind),
                       {"responder_id": ["at the cap"]}, code="cap_reached")
    requester = {"responder_id": responder["_id"], "member_id": responder.get("member_id")}

    def ask(task: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        changed, types = rules.request_takeover(task, requester, at, config)
        return changed, _about(types, changed, responder["_id"])
    return _holding_a_slot(work, config, task_id, responder, ask)


def task_of(store: Any, task_id: str, internal: bool = False) -> Doc:
    task: Doc | None = store.get_task(task_id, internal=internal)
    if task is None:
        raise NotFound("no task {} in park {}".format(task_id, store.park_id), {"task_id": ["unknown"]})
    return task


def change_task(work: Work, config: Config, task_id: str, change: Decide) -> Doc:
    """Read, decide (``change(task, at)`` → (task after, events)), write the
    next version with its events (Events.change); on a lost race read again,
    and the rules decide on what the winner left (a claim that lost finds the
    task claimed: 409)."""
    store = work.store

    def decide(task: Doc) -> Change:
        at = utcnow()
        after, types = change(task, at)
        after["next_check_at"] = rules.next_check(after, config)
        fields = {k: after.get(k) for k in rules.TASK_STATE}
        return Change(fields, task_events(work, after, types, at),
                      (dict(after, **fields, version=task["version"] + 1), types, at))

    after, types, at = work.events.change(
        lambda: task_of(store, task_id, internal=True), decide, store.write_task,
        conflict=Conflict("task {} kept changing; try again".format(task_id), {"version": ["changed concurrently"]}))
    store.note_work([rid for t, rid, _ in types if t == "task.offered"], at)
    for event_type, _, _ in types:
        TASK_TRANSITIONS.labels(work.park_id, event_type).inc()
    result: Doc = after
    return result


def tasks_of(work: Work, responder_id: str) -> tuple[list[Doc], list[Doc]]:
    """(held, offered): what a responder holds and what is offered to them now."""
    store = work.store
    held = [t for t in store.tasks_held_by(responder_id) if t["status"] in rules.HELD]
    offered = [t for t in store.tasks_offered_to(responder_id)
               if t["offers"].get(responder_id, {}).get("status") == rules.OFFER_LIVE]
    return held, offered


def wishes(work: Work, limit: int) -> list[Doc]:
    """The public wish list: micro-wishes nobody has claimed yet."""
    if not isinstance(limit, int) or not 1 <= limit <= 200:
        raise BadInput("limit is 1-200", {"limit": [str(limit)]})
    work.config()
    found: list[Doc] = work.store.wishes(limit)
    return found


# the sweep: expiry, offers again, the night squad, stale claims, take-overs ----------------------
def sweep(work: Work, config: Config, tz: tzinfo, batch: int) -> dict[str, int]:
    """Every task of the park whose next check is due: how many of each step were taken."""
    done = {"expire": 0, "reoffer": 0, "night_page": 0, "release_stale": 0, "transfer": 0}
    for task in work.store.tasks_due(utcnow(), batch):
        try:
            steps = _sweep_task(work, config, tz, task["task_id"])
        except (Skip, Conflict):
            continue  # another replica's sweep, or a responder, got there first
        for step in steps:
            done[step] += 1
    return done


def _sweep_task(work: Work, config: Config, tz: tzinfo, task_id: str) -> list[str]:
    taken: dict[str, Any] = {}

    def change(task: Doc, at: datetime) -> tuple[Doc, list[Event]]:
        steps = rules.sweep_steps(task, at, tz, config)
        if not steps:
            raise Skip()
        task = rules.copy_task(task)
        events: list[Event] = []
        for step in steps:
            if step == "expire":
                expired = [rid for rid, o in task["offers"].items()
                           if o["status"] == rules.OFFER_LIVE and o["expires_at"] <= at]
                rules.expire_offers(task, at)
                events += [("task.offer_expired", rid, "expired") for rid in expired]
                if not rules.live_offers(task):
                    events += offer_round(work, config, task, at, "expired")
            elif step == "reoffer":
                task["retry_at"] = None
                events += offer_round(work, config, task, at, "retry")
            elif step == "night_page":
                events += _night_page(work, config, task, at)
            elif step == "release_stale":
                taken["freed"] = task["holder"]["responder_id"]
                task.update(status=rules.OFFERED, holder=None, claimed_at=None, started_at=None, takeover=None)
                task["history"].append({"at": at, "what": "released", "reason": "stale_claim"})
                events += [("task.released", taken["freed"], "stale_claim")]
                events += offer_round(work, config, task, at, "released")
            elif step == "transfer":
                taken["freed"] = task["holder"]["responder_id"]
                task = rules.transfer(task, at, "no_answer")
                events += [("task.transferred", task["holder"]["responder_id"], "no_answer")]
        taken["steps"] = steps
        return task, events

    change_task(work, config, task_id, change)
    if taken.get("freed"):
        work.store.free_slot(taken["freed"], task_id)
    steps: list[str] = taken["steps"]
    return steps


def _night_page(work: Work, config: Config, task: Doc, at: datetime) -> list[Event]:
    squad = [r for r in work.store.active_in_teams(rosters.squad_teams(config)) if r["kind"] == "volunteer"]
    fresh = [r for r in squad if r["_id"] not in task["offered_to"]]
    task["escalations"].append({"level": "night_squad", "at": at, "to": [r["_id"] for r in squad]})
    TASK_ESCALATIONS.labels(work.park_id, "night_squad").inc()
    if fresh:
        rules.add_offers(task, fresh, at, config, "night_squad")
    escalated: list[Event] = [("task.escalated", None, "night_squad")]
    return escalated + [("task.offered", r["_id"], "night_squad") for r in fresh]


def _about(types: list[str], task: Doc, who: str) -> list[Event]:
    """The rules' event types as events: a transfer concerns the new holder,
    anything else the one who acted."""
    return [(t, task["holder"]["responder_id"] if t == "task.transferred" else who, None) for t in types]


def _may_claim_wish(responder: Doc, task: Doc) -> str | None:
    if responder.get("kind") != "volunteer":
        return "only a volunteer claims a wish"
    if not responder.get("active", True):
        return "a paused responder cannot claim"
    if not set(task.get("skills") or ()) <= set(responder.get("skills") or ()):
        return "the wish needs skills: " + ", ".join(task["skills"])
    return None
