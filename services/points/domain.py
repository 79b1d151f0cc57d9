"""Points: pure rules, no I/O.

Wuhan's party-member points system (seed 003, DOMAIN.md "Points ledger"): 25
behaviours are scored against 12 points a year, added and deducted
quantitatively. A yearly score below 12 caps the star rating at 4 stars and
bars the member from awards; at 9, 6, 3 and 0 remaining points the member
gets a reminder, a red warning, a yellow alert and handling. Volunteer
service points are earned and redeemed.

Two kinds of account per member and park:
- ``discipline``: one per year, opens at 12; it may fall below 0.
- ``service``: earned and redeemed; its balance never goes below 0, and
  ``held`` points (reserved by a redemption) are not available.

An account's state is a pure function of its entries (:func:`apply`); the
account document in the database is a cache of it.
"""
from datetime import datetime, timedelta
from typing import Any

from lamplight.errors import DomainError
from lamplight.shapes import Doc
from services.points.chain import GENESIS, seal

DISCIPLINE = "discipline"
SERVICE = "service"
ACCOUNT_KINDS = (DISCIPLINE, SERVICE)
YEARLY_OPENING_POINTS = 12
AWARD_MIN_SCORE = 12  # below it: at most 4 stars and no awards
CAPPED_STARS = 4
WARNING_LADDER = ((9, "reminder"), (6, "red_warning"), (3, "yellow_alert"), (0, "handling"))
# stars -> lowest yearly score for them; a park may set its own
DEFAULT_STAR_THRESHOLDS = {5: 12, 4: 10, 3: 8, 2: 6, 1: 0}

OPENING, POSTING, REVERSAL = "opening", "posting", "reversal"
HOLD, RELEASE, REDEEM = "hold", "release", "redeem"
TRANSFER_OUT, TRANSFER_IN = "transfer_out", "transfer_in"
PERIODS = (("day", "%Y-%m-%d"), ("month", "%Y-%m"), ("year", "%Y"))

HELD, CONFIRMED, VOIDED = "held", "confirmed", "voided"
REDEMPTION_TRANSITIONS = {HELD: (CONFIRMED, VOIDED), CONFIRMED: (), VOIDED: ()}
DEFAULT_HOLD_TIMEOUT = timedelta(minutes=30)


INSUFFICIENT_POINTS = "insufficient_points"
CAP_REACHED = "cap_reached"


class PointsRuleError(DomainError):
    """What the points rules refuse (lamplight.errors.DomainError)."""


class PointsInvalid(PointsRuleError):
    """A command that cannot be right: a catalogue that is not valid, an entry that cannot be reversed."""


class PointsRefused(PointsRuleError):
    """A command the accounts refuse as they are: a cap reached, too few points, a closed reward."""

    kind = "conflict"


# --- accounts -------------------------------------------------------------------
def account_id(park_id: str, member_id: str, kind: str, year: int | None = None) -> str:
    if kind == DISCIPLINE:
        return "{}/{}/{}/{}".format(park_id, member_id, kind, year)
    return "{}/{}/{}".format(park_id, member_id, kind)


def entry_id(account: str, seq: int) -> str:
    return "{}:{:09d}".format(account, seq)


def new_account(park_id: str, member_id: str, kind: str, year: int | None, opened_at: datetime | None) -> Doc:
    """A member's account before its first entry (``opened_at`` None: one shown, not yet opened)."""
    return {
        "_id": account_id(park_id, member_id, kind, year), "park_id": park_id, "member_id": member_id,
        "kind": kind, "year": year if kind == DISCIPLINE else None, "seq": 0, "balance": 0, "held": 0,
        "head_hash": GENESIS, "counters": {}, "opened_at": opened_at,
    }


def apply(account: Doc, entry: Doc) -> Doc:
    """The account state after ``entry`` (which must be the next in its chain)."""
    return dict(account, seq=entry["seq"], balance=entry["balance_after"], held=entry["held_after"],
                head_hash=entry["hash"], counters=entry.get("counters_after", account.get("counters", {})),
                last_at=entry["at"])


# --- rules and caps -----------------------------------------------------------------
def period_keys(at: datetime) -> dict[str, str]:
    return {name: at.strftime(fmt) for name, fmt in PERIODS}


def counters_after(counters: dict[str, Any], rule: Doc, amount: int, at: datetime) -> dict[str, Any]:
    """Per-rule points used in the current day, month and year, after a
    posting of ``amount`` under ``rule``; Conflict (cap_reached) past a cap."""
    keys = period_keys(at)
    current = dict(counters.get(rule["code"], {}))
    updated = {}
    for name, key in keys.items():
        used = current.get(name, 0) if current.get(name + "_key") == key else 0
        total = used + abs(amount)
        cap = (rule.get("caps") or {}).get(name)
        if cap is not None and total > cap:
            raise PointsRefused("rule {} allows {} points a {}; {} are used".format(rule["code"], cap, name, used),
                           {"rule_code": ["{} cap of {} reached".format(name, cap)], "available": cap - used},
                           code=CAP_REACHED)
        updated[name], updated[name + "_key"] = total, key
    return dict(counters, **{rule["code"]: updated})


def validate_catalogue(rules: list[Doc]) -> list[Doc]:
    """A park's rule catalogue: codes unique, amounts non-zero, caps positive."""
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule["code"] in seen:
            errors.setdefault(str(i), []).append("duplicate code {}".format(rule["code"]))
        seen.add(rule["code"])
        if rule["points"] == 0:
            errors.setdefault(str(i), []).append("points must not be 0")
        for name, cap in (rule.get("caps") or {}).items():
            if cap is not None and cap < abs(rule["points"]):
                errors.setdefault(str(i), []).append("{} cap {} is below one posting".format(name, cap))
    if errors:
        raise PointsInvalid("the rule catalogue is not valid", errors)
    return rules


# --- the warning ladder and stars --------------------------------------------------------
def crossings(before: int, after: int) -> list[tuple[int, str]]:
    """Thresholds a discipline balance crossed on its way down, in order.

    A crossing is ``before > threshold >= after``: once per crossing, and again
    if credits lifted the balance above the threshold and it falls once more."""
    return [(threshold, level) for threshold, level in WARNING_LADDER if before > threshold >= after]


def warning_level(balance: int) -> str | None:
    """The most severe warning the balance has reached, or None."""
    level = None
    for threshold, name in WARNING_LADDER:
        if balance <= threshold:
            level = name
    return level


def stars(score: int, thresholds: dict[Any, int] | None = None) -> tuple[int, bool]:
    """(stars, eligible for awards) for a yearly discipline score."""
    thresholds = thresholds or DEFAULT_STAR_THRESHOLDS
    rating = 0
    for count, minimum in sorted(((int(k), v) for k, v in thresholds.items()), reverse=True):
        if score >= minimum:
            rating = count
            break
    eligible = score >= AWARD_MIN_SCORE
    if not eligible:
        rating = min(rating, CAPPED_STARS)
    return rating, eligible


# --- entries ---------------------------------------------------------------------------
def next_entry(account: Doc, *, kind: str, amount: int, at: datetime, idempotency_key: str, actor: str | None,
               reason: str | None, rule: Doc | None = None, metadata: dict[str, Any] | None = None,
               reverses: str | None = None, held_delta: int = 0, fingerprint: str | None = None) -> Doc:
    """The next entry of ``account`` and the events it causes, sealed into the chain.

    Raises Conflict (code insufficient_points) when a service account's
    available points (its balance; held points are out of it) would go below
    zero, Conflict (code cap_reached) when the rule's cap is exceeded."""
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # MongoDB keeps milliseconds; the hash must match
    balance_after = account["balance"] + amount
    held_after = account["held"] + held_delta
    if account["kind"] == SERVICE and (balance_after < 0 or held_after < 0):
        raise PointsRefused(
            "{} points are available, {} are needed".format(account["balance"], -amount),
            {"amount": ["more than the {} points available".format(account["balance"])],
             "available": account["balance"]}, code=INSUFFICIENT_POINTS)
    counters = account.get("counters", {})
    if rule is not None and kind == POSTING:
        counters = counters_after(counters, rule, amount, at)
    seq = account["seq"] + 1
    entry = {
        "_id": entry_id(account["_id"], seq), "park_id": account["park_id"], "account_id": account["_id"],
        "member_id": account["member_id"], "account_kind": account["kind"], "year": account.get("year"),
        "seq": seq, "kind": kind, "amount": amount, "balance_after": balance_after, "held_after": held_after,
        "rule_code": rule["code"] if rule else None, "reason": reason, "actor": actor,
        "metadata": metadata or {}, "idempotency_key": idempotency_key, "reverses": reverses, "at": at,
        "fingerprint": fingerprint, "counters_after": counters,
    }
    return seal(entry, account["head_hash"])


def reversal_of(original: Doc) -> int:
    """Amount and held change that undo ``original``."""
    if original["kind"] not in (POSTING, OPENING, TRANSFER_IN):
        raise PointsInvalid("a {} entry cannot be reversed".format(original["kind"]),
                       {"entry_id": ["only postings, openings and transfers in can be reversed"]})
    return -original["amount"]


def event_type_for(entry: Doc) -> str:
    if entry["kind"] == REVERSAL:
        return "points.reversed"
    if entry["kind"] in (HOLD, RELEASE, REDEEM):
        return {HOLD: "points.held", RELEASE: "points.released", REDEEM: "points.redeemed"}[entry["kind"]]
    return "points.credited" if entry["amount"] >= 0 else "points.debited"


# --- redemption ------------------------------------------------------------------------
def check_redemption_transition(redemption: Doc, target: str) -> None:
    allowed = REDEMPTION_TRANSITIONS[redemption["status"]]
    if target not in allowed:
        raise PointsRefused("redemption {} is {}; it can go to {}".format(
            redemption["_id"], redemption["status"], ", ".join(allowed) or "nothing"),
            {"status": ["allowed: {}".format(", ".join(allowed) or "none")]})


def check_reward_open(reward: Doc, at: datetime) -> None:
    if reward.get("window_start") and at < reward["window_start"]:
        raise PointsRefused("reward {} opens at {}".format(reward["code"], reward["window_start"].isoformat()),
                       {"reward_code": ["not yet open"]})
    if reward.get("window_end") and at >= reward["window_end"]:
        raise PointsRefused("reward {} closed at {}".format(reward["code"], reward["window_end"].isoformat()),
                       {"reward_code": ["closed"]})


# --- awards -----------------------------------------------------------------------------
def half_year(period: str) -> tuple[datetime, datetime]:
    """'2026H2' -> (start, end) datetimes (UTC); BadInput otherwise."""
    try:
        year, half = int(period[:4]), period[4:]
        if half not in ("H1", "H2") or not 2000 <= year <= 2100:
            raise ValueError
    except ValueError:
        raise PointsInvalid("period must look like 2026H1 or 2026H2", {"period": ["not a half-year"]})
    from datetime import timezone
    start = datetime(year, 1 if half == "H1" else 7, 1, tzinfo=timezone.utc)
    end = datetime(year, 7, 1, tzinfo=timezone.utc) if half == "H1" else datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    return start, end


def award_ranking(earned: dict[str, int], eligibility: dict[str, bool], limit: int) -> list[dict[str, Any]]:
    """Rank members by service points earned in the period; ties by member id.

    ``earned`` maps member -> points earned, ``eligibility`` member -> bool
    (a discipline score below 12 bars a member from awards)."""
    ranked = sorted(((points, member) for member, points in earned.items() if points > 0),
                    key=lambda pm: (-pm[0], pm[1]))
    rows, rank = [], 0
    for points, member in ranked:
        if not eligibility.get(member, True):
            continue
        rank += 1
        rows.append({"rank": rank, "member_id": member, "points": points})
        if rank >= limit:
            break
    return rows
