"""Half-year awards, frozen once from the ledger; a member's move to another park."""
import hashlib
import json

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict
from lamplight.shapes import Doc
from lamplight.storage import check_park_id
from services.points import domain
from services.points.handlers import Work
from services.points.handlers.ledger import append


def freeze_award(work: Work, period: str, limit: int) -> Doc:
    """The half-year's excellent-volunteer ranking, computed once from the
    ledger and frozen; asking again returns the same snapshot."""
    start, end = domain.half_year(period)
    store = work.store
    existing = store.award(period)
    if existing:
        return award_view(existing)
    if utcnow() < end:
        raise Conflict("{} is not over until {}".format(period, end.date().isoformat()), {"period": ["not over"]})
    earned = store.earned_in(start, end)
    scores = store.discipline_scores(start.year, sorted(earned))
    thresholds = store.catalogue().get("star_thresholds")
    eligibility = {m: domain.stars(s, thresholds)[1] for m, s in scores.items()}
    ranking = domain.award_ranking({m: p for m, (p, _) in earned.items()}, eligibility, limit)
    digest = hashlib.sha256(json.dumps(ranking, sort_keys=True).encode()).hexdigest()
    snapshot, _ = store.freeze_award({
        "_id": store.award_id(period), "period": period, "ranking": ranking, "digest": digest,
        "entries_counted": sum(n for _, n in earned.values()), "frozen_at": utcnow(),
        "excluded_not_eligible": sorted(m for m, ok in eligibility.items() if not ok)})
    return award_view(snapshot)


def award_view(snapshot: Doc) -> Doc:
    return {k: snapshot[k] for k in ("period", "ranking", "digest", "entries_counted", "excluded_not_eligible")} | {
        "frozen_at": snapshot["frozen_at"].isoformat()}


def move(work: Work, member_id: str, data: Doc) -> Doc:
    """Move a member's balances to another park; the history stays and is
    followed from the new park."""
    to_park = check_park_id(data["to_park"])
    if to_park == work.park_id:
        raise BadInput("the member is already in {}".format(work.park_id), {"to_park": ["same park"]})
    there = work.elsewhere(to_park)
    year = utcnow().year
    for kind, ref_year in ((domain.SERVICE, None), (domain.DISCIPLINE, year)):
        account = work.store.account(member_id, kind, ref_year, create=False)
        if account is None or account["seq"] == 0:
            continue
        if account["held"]:
            raise Conflict("{} points are held by a redemption; confirm or void it first".format(account["held"]),
                           {"held": account["held"]})
        balance, moved = account["balance"], "{}->{}:{}".format(work.park_id, to_park, account["_id"])
        append(work, (member_id, kind, ref_year), lambda acc: domain.next_entry(
            acc, kind=domain.TRANSFER_OUT, amount=-acc["balance"], at=utcnow(), idempotency_key="out:" + moved,
            actor=data["actor"], reason="moved to " + to_park, metadata={"to_park": to_park}),
            "out:" + moved, {"move": moved})
        append(there, (member_id, kind, ref_year), lambda acc: domain.next_entry(
            acc, kind=domain.TRANSFER_IN, amount=balance, at=utcnow(), idempotency_key="in:" + moved,
            actor=data["actor"], reason="moved from " + work.park_id,
            metadata={"from_park": work.park_id, "from_account": account["_id"]}), "in:" + moved, {"move": moved})
    work.store.set_member(member_id, {"moved_to": to_park, "moved_at": utcnow()})
    there.store.set_member(member_id, {"moved_from": work.park_id, "moved_at": utcnow()})
    return {"member_id": member_id, "from_park": work.park_id, "to_park": to_park}
