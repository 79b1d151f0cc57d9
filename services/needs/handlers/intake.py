"""Intake: a need checked against the park's taxonomy and written with its events."""
from datetime import timedelta
from typing import Any, Callable

from marshmallow import ValidationError

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict
from lamplight.ids import new_id
from lamplight.shapes import Doc
from services.needs import domain
from services.needs.handlers import Work
from services.needs.handlers.lifecycle import changed_event, wall_event
from services.needs.metrics import NEEDS_SUBMITTED
from services.needs.schemas import NeedSubmittedSchema, details_schema

_submitted = NeedSubmittedSchema()


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
    window_hours = taxonomy.config["duplicate_window_hours"]
    duplicates = domain.possible_duplicates(store.recent_of(requester_key, now - timedelta(hours=window_hours)),
                                            submission, now, window_hours)
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
    NEEDS_SUBMITTED.labels(park_id, need["category"], need["channel"]).inc()
    work.log.info("need.submitted", need_id=need_id, category=need["category"], auto_triaged=bool(auto),
                  possible_duplicates=len(duplicates))
    return need, True


def accept_batch(work: Work, taxonomy: domain.Taxonomy, batch: Doc, idempotency_key: str,
                 load: Callable[[Any, str], Doc]) -> tuple[Doc, list[tuple[Doc, bool]]]:
    """The needs of one liaison meeting from its minutes (``batch`` loaded;
    ``load(raw, what)`` loads one need of it). Every need is validated before
    any is written; each has the key ``<key>#<n>``, so sending the batch again
    (after a timeout, say) adds nothing twice. Returns (the meeting, [(need, created)])."""
    submissions, errors = [], {}
    for n, raw in enumerate(batch["needs"]):
        raw = dict({"channel": "liaison_meeting", "entered_by": batch["entered_by"]}, **raw)
        try:
            what = "need {}".format(n)
            submissions.append(validate(taxonomy, work.store, load(raw, what), what))
        except (BadInput, domain.UnknownCode) as exc:
            errors[str(n)] = exc.fields
    if errors:
        raise BadInput("{} of {} needs in the batch are not valid; nothing was written".format(
            len(errors), len(batch["needs"])), {"needs": errors})
    meeting = dict(batch["meeting"], held_on=batch["meeting"]["held_on"].isoformat())
    return meeting, [accept(work, taxonomy, s, "{}#{}".format(idempotency_key, n), meeting)
                     for n, s in enumerate(submissions)]
