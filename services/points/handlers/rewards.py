"""Rewards and redemption: a redemption holds the points and a unit of stock,
then is confirmed, or voided — by hand, or by itself when its hold times out."""
import hashlib
from datetime import datetime, timedelta

from lamplight.clock import utcnow
from lamplight.errors import BadInput, Conflict
from lamplight.ids import new_id
from lamplight.shapes import Doc
from services.points import domain
from services.points.handlers import SYSTEM, Work, fingerprint
from services.points.handlers.ledger import append

FIELDS = ("code", "name", "cost", "stock")


def put_reward(work: Work, data: Doc) -> Doc:
    if data["window_start"] and data["window_end"] and data["window_end"] <= data["window_start"]:
        raise BadInput("the window ends before it starts", {"window_end": ["before window_start"]})
    reward = work.store.put_reward(data)
    return {k: reward[k] for k in FIELDS}


def rewards(work: Work) -> list[Doc]:
    return [{k: r.get(k) for k in FIELDS} for r in work.store.list_rewards()]


def redeem(work: Work, data: Doc, idempotency_key: str | None) -> tuple[Doc, bool]:
    """Hold the points and a unit of stock: (the redemption, created)."""
    store = work.store
    reward = store.reward(data["reward_code"])
    now = utcnow()
    domain.check_reward_open(reward, now)
    rid = "rdm_" + hashlib.sha256("{}:{}".format(
        work.park_id, idempotency_key or new_id("rdm")).encode()).hexdigest()[:24]
    redemption, created = store.open_redemption({
        "_id": rid, "park_id": work.park_id, "member_id": data["member_id"], "reward_code": reward["code"],
        "cost": reward["cost"], "status": "pending", "created_at": now,
        "expires_at": now + timedelta(minutes=reward.get("hold_minutes", 30)), "fingerprint": fingerprint(data)})
    if not created:
        if redemption["fingerprint"] != fingerprint(data):
            raise Conflict("idempotency key was already used for another redemption",
                           {"idempotency_key": ["reused with a different body"]})
        if redemption["status"] != "pending":
            return redemption, False
    if not store.reserve_stock(reward["code"], rid):
        store.set_redemption(rid, ["pending"], {"status": domain.VOIDED, "reason": "out of stock"})
        raise Conflict("reward {} is out of stock".format(reward["code"]),
                       {"reward_code": ["out of stock"], "available": 0}, code="out_of_stock")
    key = "hold:" + rid
    try:
        append(work, (data["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
            acc, kind=domain.HOLD, amount=-reward["cost"], held_delta=reward["cost"], at=utcnow(),
            idempotency_key=key, actor=data["member_id"], reason="redeem " + reward["code"],
            metadata={"redemption_id": rid, "reward_code": reward["code"]}), key, {"hold": rid})
    except (Conflict, domain.PointsRuleError):
        store.return_stock(reward["code"], rid)
        store.set_redemption(rid, ["pending"], {"status": domain.VOIDED, "reason": "insufficient points"})
        raise
    held: Doc = store.set_redemption(rid, ["pending"], {"status": domain.HELD}) or store.redemption(rid)
    return held, created


def confirm(work: Work, redemption_id: str, actor: str) -> Doc:
    store = work.store
    redemption: Doc = store.redemption(redemption_id)
    if redemption["status"] == domain.CONFIRMED:
        return redemption
    domain.check_redemption_transition(redemption, domain.CONFIRMED)
    key = "redeem:" + redemption_id
    append(work, (redemption["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
        acc, kind=domain.REDEEM, amount=0, held_delta=-redemption["cost"], at=utcnow(), idempotency_key=key,
        actor=actor, reason="redeemed " + redemption["reward_code"],
        metadata={"redemption_id": redemption_id, "reward_code": redemption["reward_code"]}),
        key, {"redeem": redemption_id})
    store.consume_stock(redemption["reward_code"], redemption_id)
    done: Doc = store.set_redemption(redemption_id, [domain.HELD], {"status": domain.CONFIRMED,
                                                                      "confirmed_by": actor})
    return done or store.redemption(redemption_id)


def void(work: Work, redemption_id: str, actor: str, reason: str) -> Doc:
    redemption: Doc = work.store.redemption(redemption_id)
    if redemption["status"] == domain.VOIDED:
        return redemption
    if redemption["status"] != "pending":
        domain.check_redemption_transition(redemption, domain.VOIDED)
    _release(work, redemption, actor, reason)
    voided: Doc = work.store.redemption(redemption_id)
    return voided


def void_expired(work: Work, now: datetime) -> int:
    """Release the park's redemptions whose hold timed out; how many."""
    expired = work.store.expired_redemptions(now)
    for redemption in expired:
        _release(work, redemption, SYSTEM, "hold timed out")
    return len(expired)


def _release(work: Work, redemption: Doc, actor: str, reason: str) -> None:
    store, rid = work.store, redemption["_id"]
    if store.find_by_key("hold:" + rid) is not None:  # the points were held: give them back
        key = "release:" + rid
        append(work, (redemption["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
            acc, kind=domain.RELEASE, amount=redemption["cost"], held_delta=-redemption["cost"], at=utcnow(),
            idempotency_key=key, actor=actor, reason=reason,
            metadata={"redemption_id": rid, "reward_code": redemption["reward_code"]}), key, {"release": rid})
    store.return_stock(redemption["reward_code"], rid)
    store.set_redemption(rid, ["pending", domain.HELD], {"status": domain.VOIDED, "reason": reason})
