"""The needs service layer: intake and the lifecycle, a function a command.

A handler gets a :class:`Work` — the park's repository (``NeedsStore``; an
in-memory one in the handler tests), the worker's ``Events`` and a logger —
and the park's ``Taxonomy``. It holds no nameko, no broker and no database of
its own: the nameko class (service.py) decodes a call, makes the Work, calls
the handler and encodes its answer. What the rules refuse they raise as the
domain's errors; the RPC boundary answers them (lamplight.errors.DomainError).
"""
from dataclasses import dataclass
from typing import Any, Callable

from marshmallow import ValidationError

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict, NotFound
from lamplight.ids import new_id
from lamplight.publishing import Change
from lamplight.shapes import Doc, Envelope
from services.needs import domain
from services.needs.metrics import NEEDS_SUBMITTED, NEEDS_TRANSITIONS
from services.needs.schemas import NeedChangedSchema, NeedSubmittedSchema, WallEntryChangedSchema, details_schema

_submitted = NeedSubmittedSchema()
_changed = NeedChangedSchema()
_wall_event = WallEntryChangedSchema()


@dataclass(frozen=True)
class Work:
    """What one handler call works with: the park's repository, the worker's
    Events (lamplight.publishing) and a logger."""

    store: Any
    events: Any
    log: Any


# intake -----------------------------------------------------------------------------------------
def validate(taxonomy: domain.Taxonomy, store: Any, submission: Doc, what: str) -> Doc:
    """A loaded submission checked against the park's taxonomy, its item's typed details loaded."""
    item = taxonomy.item(submission["category"], submission["item"])
    if submission["grade"] is not None:
        taxonomy.grade(submission["grade"])
    try:
        submission["details"] = details_schema(store.park_id, taxonomy.config, item or {"code": "-"}).load(
            submission["details"])
    except ValidationError as exc:
        raise BadInput("{}: the details of item {} are not valid".format(what, submission["item"]),
                       {"details": exc.messages})
    submission["details"] = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                             for k, v in submission["details"].items() if v is not None}
    return submission


def accept(work: Work, taxonomy: domain.Taxonomy, submission: Doc, idempotency_key: str | None,
           meeting: Doc | None = None) -> tuple[Doc, bool]:
    """Write a need with its events; (the need, True), or (the need already
    accepted under ``idempotency_key``, False). The key reused for another
    body is a Conflict."""
    store = work.store
    now = utcnow()
    park_id = store.park_id
    need_id = new_id("need")
    requester_key = domain.requester_key(park_id, submission["requester"])
    duplicates = domain.possible_duplicates(store.recent_of(requester_key), submission, now,
                                            taxonomy.config["duplicate_window_hours"])
    need, auto = domain.new_need(taxonomy, park_id, need_id, submission, now, idempotency_key, duplicates,
                                 meeting, requester_key)
    envelopes = [work.events.new("need.submitted", park_id=park_id, subject=need_id, data=_submitted.dump({
        "need_id": need_id, "kind": need["kind"], "category": need["category"], "item": need["item"],
        "grade": need["grade"], "channel": need["channel"], "requester_kind": need["requester"]["kind"],
        "summary": domain.public_summary(need["title"]), "submitted_at": now, "due_at": need["due_at"],
        "possible_duplicates": duplicates}))]
    if auto:
        envelopes.append(changed_event(work.events, need, "triage", domain.SUBMITTED, now, {}))
    envelopes.append(wall_event(work.events, need))
    with work.events.staging(envelopes) as staged:
        need.update(staged.fields())
        existing = store.insert(need)
        staged.written = existing is None
    if existing is not None:
        if existing["fingerprint"] != need["fingerprint"]:
            raise Conflict("idempotency key {!r} was already used for another need".format(
                need["idempotency_key"]), {"idempotency_key": ["reused with a different body"]})
        return existing, False
    store.remember(requester_key, need)
    NEEDS_SUBMITTED.labels(park_id, need["category"], need["channel"]).inc()
    work.log.info("need.submitted", need_id=need_id, category=need["category"], auto_triaged=bool(auto),
                  possible_duplicates=len(duplicates))
    return need, True


def need_of(store: Any, need_id: str, internal: bool = False) -> Doc:
    need: Doc | None = store.get(need_id, internal=internal)
    if need is None:
        raise NotFound("no need {} in park {}".format(need_id, store.park_id), {"need_id": ["unknown"]})
    return need


# the lifecycle ------------------------------------------------------------------------------------
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
