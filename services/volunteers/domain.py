"""Volunteers: pure rules, no I/O.

Dispatch in the foundation is the simplest rule that is still right: the
active responders whose categories cover the need, one chosen by a stable hash
of the need id. Stable matters: a redelivered need.submitted must choose the
same responder, so the offer's key is the same and the second delivery has no
effect. Rosters, caps, fairness and claiming come with the volunteers issue.
"""
import hashlib

RESPONDER_KINDS = ("volunteer", "unit")
# Wuhan's four colour teams; parks may define more.
COLOUR_TEAMS = ("green", "blue", "red", "orange")
OFFERED = "offered"


def covers(responder, category):
    categories = responder.get("categories") or []
    return not categories or category in categories


def candidates(responders, category):
    return sorted(
        (r for r in responders if r.get("active", True) and covers(r, category)),
        key=lambda r: r["_id"],
    )


def choose(responders, need_id, category):
    """The responder to offer the need to, or None."""
    pool = candidates(responders, category)
    if not pool:
        return None
    digest = int(hashlib.sha256(need_id.encode()).hexdigest()[:12], 16)
    return pool[digest % len(pool)]


def offer_id(need_id, round_=1):
    """One offer per need and round: the idempotency key of dispatch."""
    return "{}:offer:{}".format(need_id, round_)


def new_offer(need, responder, offered_at, round_=1):
    return {
        "_id": offer_id(need["need_id"], round_),
        "park_id": need["park_id"],
        "need_id": need["need_id"],
        "responder_id": responder["_id"],
        "round": round_,
        "status": OFFERED,
        "category": need["category"],
        "grade": need["grade"],
        "summary": need["summary"],
        "due_at": need["due_at"],
        "offered_at": offered_at,
    }
