"""The one way an entry is appended to the ledger, with its events: what a
posting, a reversal and a discipline account's yearly opening write."""
from collections.abc import Callable
from typing import Any

from lamplight.clock import utcnow
from lamplight.errors import BadInput
from lamplight.shapes import Doc, Envelope
from services.points import domain
from services.points.handlers import SYSTEM, Work, fingerprint
from services.points.metrics import POINTS_ENTRIES
from services.points.schemas import PointsEntrySchema, ThresholdCrossedSchema

_entry_event = PointsEntrySchema()
_threshold_event = ThresholdCrossedSchema()

# (member id, account kind, year or None)
AccountRef = tuple[str, str, int | None]


def append(work: Work, account_ref: AccountRef, build: Callable[[Doc], Doc], key: str, body: Any) -> tuple[Doc, bool]:
    """Append the entry ``build(account)`` makes, with its events in its
    outbox; (entry, created), or the entry already under ``key``."""
    entry, created = work.store.append(account_ref, build, key, fingerprint(body),
                                       lambda entry, before: work.events.staging(_events_for(work, entry, before)))
    if created:
        POINTS_ENTRIES.labels(work.park_id, entry["account_kind"], entry["kind"]).inc()
    return entry, created


def _events_for(work: Work, entry: Doc, before: Doc) -> list[Envelope]:
    data = dict(entry, entry_id=entry["_id"], source_event_id=entry["metadata"].get("source_event_id"))
    envelopes = [work.events.new(domain.event_type_for(entry), park_id=entry["park_id"], subject=entry["member_id"],
                                 data=_entry_event.dump(data))]
    if entry["account_kind"] == domain.DISCIPLINE:
        for threshold, level in domain.crossings(before["balance"], entry["balance_after"]):
            envelopes.append(work.events.new(
                "points.threshold_crossed", park_id=entry["park_id"], subject=entry["member_id"],
                data=_threshold_event.dump({"member_id": entry["member_id"], "year": entry["year"],
                                            "threshold": threshold, "level": level,
                                            "balance": entry["balance_after"], "entry_id": entry["_id"]})))
    return envelopes


def _open_discipline(work: Work, member_id: str, year: int) -> None:
    """The member's discipline account for ``year`` opens at 12 with its first entry."""
    account = work.store.account(member_id, domain.DISCIPLINE, year, roll=False)
    if account["seq"] == 0:
        key = "open:{}".format(account["_id"])
        append(work, (member_id, domain.DISCIPLINE, year), lambda acc: domain.next_entry(
            acc, kind=domain.OPENING, amount=domain.YEARLY_OPENING_POINTS, at=utcnow(), idempotency_key=key,
            actor=SYSTEM, reason="yearly opening"), key, {"open": account["_id"]})


def post(work: Work, *, member_id: str, rule: Doc, amount: int, key: str, body: Any, actor: str, reason: str,
         metadata: Doc, year: int | None = None) -> tuple[Doc, bool]:
    """A posting of ``rule`` (``amount`` points) to the member's account it names."""
    year = year or utcnow().year
    if rule["account"] == domain.DISCIPLINE:
        _open_discipline(work, member_id, year)
    ref = (member_id, rule["account"], year if rule["account"] == domain.DISCIPLINE else None)
    return append(work, ref, lambda acc: domain.next_entry(
        acc, kind=domain.POSTING, amount=amount, rule=rule, at=utcnow(), idempotency_key=key, actor=actor,
        reason=reason, metadata=metadata), key, body)


def reverse(work: Work, original: Doc, actor: str, reason: str, metadata: Doc | None = None) -> tuple[Doc, bool]:
    """The entry that takes ``original`` back (once, whoever asks)."""
    key = "reverse:{}".format(original["_id"])
    amount = domain.reversal_of(original)
    ref = (original["member_id"], original["account_kind"], original.get("year"))
    return append(work, ref, lambda acc: domain.next_entry(
        acc, kind=domain.REVERSAL, amount=amount, at=utcnow(), idempotency_key=key, actor=actor, reason=reason,
        reverses=original["_id"], metadata=dict(metadata or {}, reversed_rule=original.get("rule_code"))),
        key, {"reverse": original["_id"], "actor": actor, "reason": reason})


def rule_of(work: Work, code: str) -> Doc:
    """The park's rule ``code`` (BadInput naming the park's rules otherwise)."""
    rules = {r["code"]: r for r in work.store.catalogue()["rules"]}
    if code not in rules:
        raise BadInput("unknown rule {}".format(code), {"rule_code": ["unknown; this park's rules are: {}".format(
            ", ".join(sorted(rules)) or "none")]})
    rule: Doc = rules[code]
    return rule
