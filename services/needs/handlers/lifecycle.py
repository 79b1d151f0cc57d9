"""The lifecycle: a command on a need, with optimistic concurrency, and the
events its changes publish."""
import collections
import functools
import time
from datetime import datetime
from typing import Any, Callable

from lamplight import settings
from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict, NotFound
from lamplight.publishing import Change
from lamplight.shapes import Doc, Envelope
from services.needs import domain
from services.needs.handlers import Work, need_of
from services.needs.metrics import NEEDS_OPEN, NEEDS_OVERDUE, NEEDS_SKIPPED_EVENTS, NEEDS_TRANSITIONS
from services.needs.schemas import NeedChangedSchema, WallEntryChangedSchema

SYSTEM = "system"
_changed = NeedChangedSchema()
_wall_event = WallEntryChangedSchema()


def act(work: Work, taxonomy: domain.Taxonomy, need_id: str, action: str, command: Doc) -> Doc:
    """One lifecycle command (loaded by its schema) on a need."""
    return transition(work, need_id, action,
                      lambda current: resolve_args(work.store, taxonomy, current, action, dict(command)),
                      command["actor"], command.get("note"))


def resolve_args(store: Any, taxonomy: domain.Taxonomy, need: Doc, action: str, command: Doc) -> Doc:
    """The command's arguments with everything the configuration decides
    filled in, so the timeline entry alone replays it."""
    args = {k: v for k, v in command.items() if k not in ("actor", "note") and v is not None}
    if action == "triage":
        category = args.get("category") or need["category"]
        item_code = args["item"] if "item" in args else (need["item"] if category == need["category"] else None)
        item = taxonomy.item(category, item_code)
        grade = args.get("grade") or (item or {}).get("default_grade") or need["grade"]
        taxonomy.grade(grade)
        team, unit = taxonomy.routing(category, item)
        args.update(category=category, item=item_code, grade=grade, due_minutes=taxonomy.due_minutes(grade),
                    team=args.get("team") or team, unit=args.get("unit") or unit)
    elif action in ("reopen", "evaluate"):
        args["due_minutes"] = taxonomy.due_minutes(need["grade"])
    elif action == "resolve":
        args["evaluation_days"] = taxonomy.config["evaluation_days"]
    elif action == "link_duplicate":
        if args["of"] == need["need_id"]:
            raise BadInput("a need cannot duplicate itself", {"of": ["same need"]})
        original = store.get(args["of"])
        if original is None or original["status"] == domain.CANCELLED:
            raise BadInput("need {} is not an open need of park {}".format(args["of"], store.park_id),
                           {"of": ["unknown or cancelled"]})
    elif action == "review":
        args.pop("public_note", None)
    return args


def transition(work: Work, need_id: str, action: str, build_args: Callable[[Doc], Doc], actor: Any,
               note: str | None) -> Doc:
    """Apply ``action`` with optimistic concurrency (Events.change): the
    arguments are built and the rules applied to the need as last read."""
    store, events = work.store, work.events

    def decide(need: Doc) -> Change:
        args = build_args(need)
        at = utcnow()
        changes = domain.apply(need, action, args, at, need["submitted_at"])
        entries = [domain.timeline_entry(at, action, args, need["status"], changes.get("status") or need["status"],
                                         actor, note)]
        after = dict(need, **changes, version=need["version"] + 1, updated_at=at)
        after["timeline"] = need["timeline"] + entries
        envelopes = [changed_event(events, after, action, need["status"], at, args, event_type=t)
                     for t in domain.events_for(action, changes)] + [wall_event(events, after)]
        # the whole state, absolute: a versioned write may be applied again or after a newer one
        fields = dict({k: after[k] for k in domain.STATE_FIELDS}, updated_at=at, timeline=after["timeline"])
        return Change(fields, envelopes, after)

    written: Doc = events.change(
        lambda: need_of(store, need_id, internal=True), decide, store.apply_change,
        conflict=Conflict("need {} kept changing; try again".format(need_id), {"version": ["changed concurrently"]}))
    NEEDS_TRANSITIONS.labels(store.park_id, action).inc()
    work.log.info("need.changed", need_id=need_id, action=action, status=written["status"])
    return written


# the events a need's changes publish ----------------------------------------------------------------
def changed_event(events: Any, need: Doc, action: str, from_status: str | None, at: Any, args: Doc,
                  event_type: str | None = None) -> Envelope:
    evaluation = need.get("evaluation") or {}
    data = dict(need, action=action, from_status=from_status, at=at, summary=domain.public_summary(need["title"]),
                requester_member_id=need["requester"].get("member_id"), public_note=args.get("public_note"),
                rating=evaluation.get("rating") if action == "evaluate" else None,
                outcome=evaluation.get("outcome") if action in ("evaluate", "close_unevaluated") else None,
                redirect_to=(need.get("rejection") or {}).get("redirect_to"),
                level=args.get("level"), reviewer=args.get("by"), score=args.get("score"))
    envelope: Envelope = events.new(event_type or domain.EVENT_FOR[action], park_id=need["park_id"],
                                    subject=need["need_id"], data=_changed.dump(data))
    return envelope


def wall_event(events: Any, need: Doc) -> Envelope:
    envelope: Envelope = events.new("wall.entry_changed", park_id=need["park_id"], subject=need["need_id"],
                                    data=_wall_event.dump(domain.wall_entry(need)))
    return envelope


# dispatch's events move needs along -----------------------------------------------------------------
class Skip(Exception):
    """Nothing to do for this event or sweep step."""


def from_task(work: Work, taxonomy: domain.Taxonomy, envelope: Envelope, task: Doc, action: str,
              already_or_moot: Callable[[Doc, Doc], bool]) -> bool:
    """Apply a dispatch event (``task``: its data); False when it changes
    nothing — a redelivery, or an event about a task the need has moved past
    (counted, not retried)."""
    def build(need: Doc) -> Doc:
        if already_or_moot(need, task):
            raise Skip()
        args = {k: task[k] for k in ("responder_id", "member_id", "task_id") if task.get(k)}
        if action == "resolve":
            args["evaluation_days"] = taxonomy.config["evaluation_days"]
        return args

    try:
        transition(work, task["need_id"], action, build, "dispatch", task.get("note"))
        return True
    except (Skip, NotFound):
        NEEDS_SKIPPED_EVENTS.labels(work.store.park_id, envelope["type"]).inc()
    except domain.IllegalTransition as exc:
        NEEDS_SKIPPED_EVENTS.labels(work.store.park_id, envelope["type"]).inc()
        work.log.warning("need.dispatch_event_skipped", need_id=task["need_id"], type=envelope["type"],
                         reason=str(exc))
    return False


# time limits and supervision ----------------------------------------------------------------------
def sweep(work: Work, taxonomy: domain.Taxonomy, batch: int) -> dict[str, int]:
    """Every need of the park whose time limit or evaluation window is due:
    supervised up its ladder, or closed unevaluated. How many of each."""
    return swept(work, taxonomy, batch)[0]


def swept(work: Work, taxonomy: domain.Taxonomy, batch: int) -> tuple[dict[str, int], datetime | None]:
    """The sweep, and when the park next wants one (None: no need's clock runs
    and none awaits its evaluation): the soonest of a late need's next rung,
    a time limit and an evaluation deadline ahead."""
    store, now = work.store, utcnow()
    done = {"overdue": 0, "supervise": 0, "close_unevaluated": 0}
    read = store.due_for_sweep(now, batch)
    full = len(read) >= batch
    found = [n for n in read if _kept_sweep_at(store, n) <= now]
    late = [n for n in found if n["status"] in domain.CLOCK_RUNNING]
    for need in found:
        steps = [("close_unevaluated", None)] if domain.evaluation_lapsed(need, now) else \
            domain.supervision_due(need, taxonomy.ladder, now)
        for action, level in steps:
            try:
                transition(work, need["need_id"], action, functools.partial(
                    _sweep_args, action=action, level=level, taxonomy=taxonomy, now=now), SYSTEM, None)
                done[action] += 1
            except (Skip, Conflict):
                pass  # another replica's sweep, or a desk, got there first
    # every late need was read above unless a batch was full: counted from them, not read again
    # (a late need stays late through its ladder; it leaves the count through a write that rings)
    overdue = store.overdue_counts(utcnow(), domain.CLOCK_RUNNING) if full else \
        collections.Counter(need["category"] for need in late)
    for category in taxonomy.categories:
        NEEDS_OVERDUE.labels(store.park_id, category).set(overdue.get(category, 0))
    count_open(store, taxonomy)
    if full:
        return done, now  # more than a batch was due: the next sweep goes on at once
    wanted = [domain.next_rung_at(need, taxonomy.ladder, now) for need in late]
    return done, min((at for at in wanted + [store.next_due(now)] if at is not None), default=None)


def count_open(store: Any, taxonomy: domain.Taxonomy) -> bool:
    """The park's open needs counted for ``lamplight_needs_open`` (a read of
    every open need), unless this process counted them within
    NEEDS_OPEN_GAUGE_S; and the sweep_at of any of them that does not say
    what its state does set right. True when it counted."""
    if time.monotonic() - _OPEN_COUNTED.get(store.park_id, -1e9) < settings.get_float("NEEDS_OPEN_GAUGE_S"):
        return False
    _OPEN_COUNTED[store.park_id] = time.monotonic()
    opened: collections.Counter[str] = collections.Counter()
    for need in store.open_needs(domain.OPEN):
        opened[need["category"]] += 1
        _kept_sweep_at(store, need)
    for category in taxonomy.categories:
        NEEDS_OPEN.labels(store.park_id, category).set(opened.get(category, 0))
    return True


def _kept_sweep_at(store: Any, need: Doc) -> datetime:
    """The sweep_at that ``need``'s state says, written where the stored one
    differs: a need written before sweep_at existed, or changed by a process
    of an earlier release during a rolling update, which left it as it was
    (the sweep would not find it when due, or would read it again and again)."""
    at = domain.sweep_at(need)
    if need.get("sweep_at") != at:
        store.correct_sweep_at(need, at)
    return at


def _sweep_args(need: Doc, action: str, level: Any, taxonomy: domain.Taxonomy, now: Any) -> Doc:
    # the sweep decided on a stale read: decide again on the need as it is now
    if action == "close_unevaluated":
        if not domain.evaluation_lapsed(need, now):
            raise Skip()
        return {}
    steps = domain.supervision_due(need, taxonomy.ladder, now)
    if (action, level) not in steps:
        raise Skip()
    return {"level": level}


# park -> when this process last counted its open needs (NEEDS_OPEN_GAUGE_S)
_OPEN_COUNTED: dict[str, float] = {}
