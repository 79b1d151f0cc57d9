"""Postings: by hand (with a second person's approval where the rule asks
for one), from events by the park's automatic rules, reversals; and reading
an account, its history and the leaderboard."""
import hashlib
from datetime import datetime

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict
from lamplight.ids import new_id
from lamplight.shapes import Doc, Envelope
from services.points import domain
from services.points.handlers import SYSTEM, Work, fingerprint, ledger
from services.points.metrics import POINTS_SKIPPED


def post(work: Work, data: Doc, idempotency_key: str | None) -> tuple[Doc, bool, bool]:
    """A manual posting: (the entry or the approval request, created, waiting for approval)."""
    rule = ledger.rule_of(work, data["rule_code"])
    if rule["mode"] == "auto":
        raise BadInput("rule {} is posted automatically from {}".format(rule["code"], rule["event_type"]),
                       {"rule_code": ["automatic rule"]})
    key = idempotency_key or new_id("post")
    if rule.get("approval_required"):
        approval, created = _request_approval(work, data, key)
        return approval, created, True
    entry, created = ledger.post(work, member_id=data["member_id"], rule=rule, amount=rule["points"], key=key,
                                 body=data, actor=data["actor"], reason=data["reason"], metadata=data["metadata"],
                                 year=data["year"])
    return entry, created, False


def _request_approval(work: Work, data: Doc, key: str) -> tuple[Doc, bool]:
    """Nothing is posted yet: a pending request waits for an approver other than the actor."""
    approval, created = work.store.open_approval(dict(
        data, _id="{}/approval/{}".format(work.park_id, hashlib.sha256(key.encode()).hexdigest()[:24]),
        status="pending", requested_at=utcnow(), fingerprint=fingerprint(data)))
    if not created and approval["fingerprint"] != fingerprint(data):
        raise Conflict("idempotency key {!r} was already used for another posting".format(key),
                       {"idempotency_key": ["reused with a different body"]})
    return approval, created


def approve(work: Work, approval_id: str, decision: Doc) -> Doc:
    """Post what was requested. Asking again returns the same entry."""
    store = work.store
    approval = store.approval(approval_id)
    if approval["status"] == "rejected":
        raise Conflict("approval {} was rejected".format(approval_id), {"status": ["rejected"]})
    if decision["approver"] == approval["actor"]:
        raise BadInput("the approver must be another person than {}".format(approval["actor"]),
                       {"approver": ["must not be the actor"]})
    rule = ledger.rule_of(work, approval["rule_code"])
    entry, _ = ledger.post(work, member_id=approval["member_id"], rule=rule, amount=rule["points"],
                           key="approval:" + approval_id, body={"approval": approval_id}, actor=approval["actor"],
                           reason=approval["reason"], metadata=dict(approval["metadata"],
                                                                    approved_by=decision["approver"],
                                                                    approval_id=approval_id), year=approval["year"])
    store.decide_approval(approval_id, {"status": "approved", "decided_by": decision["approver"],
                                        "decided_at": utcnow(), "entry_id": entry["_id"]})
    return entry


def reject(work: Work, approval_id: str, decision: Doc) -> Doc:
    store = work.store
    if not decision["reason"]:
        raise BadInput("a rejection gives its reason", {"reason": ["Missing data for required field."]})
    decided = store.decide_approval(approval_id, {"status": "rejected", "decided_by": decision["approver"],
                                                  "decided_at": utcnow(), "decision_reason": decision["reason"]})
    approval: Doc = decided or store.approval(approval_id)
    if approval["status"] != "rejected":
        raise Conflict("approval {} was already {}".format(approval_id, approval["status"]),
                       {"status": [approval["status"]]})
    return approval


def approvals(work: Work, status: str, limit: int) -> list[Doc]:
    if status not in ("pending", "approved", "rejected") or not isinstance(limit, int) or not 1 <= limit <= 500:
        raise BadInput("status is pending, approved or rejected; limit 1-500", {"status": [status]})
    found: list[Doc] = work.store.approvals_with(status, limit)
    return found


def reverse(work: Work, entry_id: str, data: Doc) -> tuple[Doc, bool]:
    return ledger.reverse(work, work.store.entry(entry_id), data["actor"], data["reason"])


# postings from events --------------------------------------------------------------------------
def from_event(work: Work, envelope: Envelope, source: Doc) -> int:
    """What the park's automatic rules for this event's type post (``source``:
    what its data names); how many postings were made or found."""
    event_type = envelope["type"]
    rules = [r for r in work.store.catalogue()["rules"] if r.get("event_type") == event_type]
    if not rules:
        return 0
    if not source["member_id"]:
        POINTS_SKIPPED.labels(work.park_id, event_type, "no_member").inc()
        work.log.info("points.event_without_member", event_type=event_type)
        return 0
    metadata = {"source_event_id": envelope["id"], "source_event_type": event_type,
                **{k: source[k] for k in ("need_id", "task_id", "visit_id") if source.get(k)}}
    posted = 0
    for rule in rules:
        if rule.get("rating_at_most") and (source["rating"] is None or source["rating"] > rule["rating_at_most"]):
            continue
        amount = rule["points"]
        if rule.get("per_hour"):
            amount = int(round(rule["points"] * (source["hours"] or 0)))
            if amount == 0:
                continue
        key = "{}:{}".format(envelope["id"], rule["code"])
        try:
            ledger.post(work, member_id=source["member_id"], rule=rule, amount=amount, key=key,
                        body={"event": envelope["id"], "rule": rule["code"], "amount": amount},
                        actor=SYSTEM, reason="{} ({})".format(rule["name"], event_type), metadata=metadata)
            posted += 1
        except domain.PointsRefused as exc:
            if exc.code != domain.CAP_REACHED:
                raise
            POINTS_SKIPPED.labels(work.park_id, event_type, "cap_reached").inc()
    return posted


def need_reopened(work: Work, envelope: Envelope, need_id: str | None) -> None:
    """A reopened need takes back what its closing posted."""
    if not need_id:
        raise BadInput("need.reopened without need_id", {"need_id": ["missing"]})
    for entry in work.store.entries_for_need(need_id):
        if entry["kind"] == domain.POSTING and entry["metadata"].get("source_event_type") == "need.closed":
            ledger.reverse(work, entry, SYSTEM, "need {} reopened".format(need_id),
                           {"source_event_id": envelope["id"], "need_id": need_id})


# reading ----------------------------------------------------------------------------------------
def account(work: Work, member_id: str, kind: str, year: int | None, at: datetime | None) -> Doc:
    """A member's account (as of ``at``), with its stars and warning level for discipline."""
    if kind not in domain.ACCOUNT_KINDS:
        raise BadInput("kind must be discipline or service", {"kind": ["one of discipline, service"]})
    year = year or utcnow().year
    if not isinstance(year, int) or not 2000 <= year <= 2100:
        raise BadInput("year is out of range", {"year": ["must be 2000-2100"]})
    store = work.store
    ref_year = year if kind == domain.DISCIPLINE else None
    found = store.account(member_id, kind, ref_year, create=False) or domain.new_account(
        work.park_id, member_id, kind, ref_year, None)
    if found["seq"] == 0 and kind == domain.DISCIPLINE:
        found = dict(found, balance=domain.YEARLY_OPENING_POINTS)  # opens at 12 on its first entry
    if at is not None:
        balance, held, seq = store.balance_at(found["_id"], at)
        found = dict(found, balance=balance, held=held, seq=seq, as_of=at)
    view = dict(found, available=found["balance"])
    if kind == domain.DISCIPLINE:
        thresholds = store.catalogue().get("star_thresholds")
        view["stars"], view["eligible_for_awards"] = domain.stars(found["balance"], thresholds)
        view["warning"] = domain.warning_level(found["balance"])
    return view


def history(work: Work, member_id: str, kind: str, year: int | None, limit: int,
            include_previous_parks: bool) -> list[Doc]:
    """An account's entries, newest first, followed into the parks the member moved from."""
    if not isinstance(limit, int) or not 1 <= limit <= 500:
        raise BadInput("limit must be 1 to 500", {"limit": ["1-500"]})
    year = year or utcnow().year
    rows: list[Doc] = []
    park: str | None = work.park_id
    seen: set[str] = set()
    while park and park not in seen and len(rows) < limit:
        seen.add(park)
        store = work.park(park)
        aid = domain.account_id(park, member_id, kind, year if kind == domain.DISCIPLINE else None)
        rows += store.history(aid, limit - len(rows))
        member = store.member(member_id) if include_previous_parks else None
        park = member.get("moved_from") if member else None
    return rows


def leaderboard(work: Work, kind: str, year: int | None, limit: int) -> list[Doc]:
    if kind not in domain.ACCOUNT_KINDS or not isinstance(limit, int) or not 1 <= limit <= 200:
        raise BadInput("kind is discipline or service, limit 1-200", {"kind": [kind], "limit": [limit]})
    rows = work.store.leaderboard(kind, year or utcnow().year, limit)
    return [{"rank": i + 1, "member_id": r["member_id"], "balance": r["balance"]} for i, r in enumerate(rows)]
