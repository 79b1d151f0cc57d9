"""Hash-chained ledger entries: the integrity half of an append-only ledger.

Each entry of an account carries ``amount`` (its effect on the balance),
``balance_after``, ``seq`` (1, 2, 3 … with no gaps),
``prev_hash`` (the hash of entry seq-1, or GENESIS) and ``hash``, the SHA-256
of its own content and ``prev_hash``. Editing a stored entry changes its hash;
deleting one leaves a gap in ``seq`` and a ``prev_hash`` that points nowhere.
:func:`verify_chain` finds both, and ``lamplight points verify`` runs it over
a database.
"""
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from lamplight.shapes import Doc

GENESIS = "0" * 64

# the fields that make an entry what it is; bookkeeping (_outbox …) is not hashed
HASHED_FIELDS = (
    "park_id", "account_id", "member_id", "seq", "kind", "amount", "balance_after", "held_after",
    "rule_code", "reason", "actor", "metadata", "idempotency_key", "reverses", "at",
)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def entry_hash(entry: Doc, prev_hash: str | None) -> str:
    content = {field: _canonical(entry.get(field)) for field in HASHED_FIELDS}
    content["prev_hash"] = prev_hash
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal(entry: Doc, prev_hash: str) -> Doc:
    """Set prev_hash and hash on a new entry."""
    entry["prev_hash"] = prev_hash
    entry["hash"] = entry_hash(entry, prev_hash)
    return entry


def verify_chain(entries: Iterable[Doc], head: Doc | None = None) -> list[tuple[str, str]]:
    """Problems in one account's chain, as ``(entry id or account, problem)``.

    ``entries`` in any order; ``head`` is the account document (its ``seq``,
    ``head_hash`` and ``balance``), if there is one.
    """
    problems = []
    ordered = sorted(entries, key=lambda e: e["seq"])
    prev_hash: str | None = GENESIS
    expected_seq, balance = 1, 0
    for entry in ordered:
        if entry["seq"] != expected_seq:
            problems.append((entry["_id"], "seq {} follows {}: entries {}-{} are missing".format(
                entry["seq"], expected_seq - 1, expected_seq, entry["seq"] - 1)))
        if entry.get("prev_hash") != prev_hash:
            problems.append((entry["_id"], "prev_hash does not match the entry before it"))
        if entry.get("hash") != entry_hash(entry, entry.get("prev_hash")):
            problems.append((entry["_id"], "content does not match its hash: the entry was edited"))
        if entry.get("balance_after") != balance + entry.get("amount", 0):
            problems.append((entry["_id"], "balance_after {} is not {} + {}".format(
                entry.get("balance_after"), balance, entry.get("amount"))))
        prev_hash, expected_seq, balance = entry.get("hash"), entry["seq"] + 1, entry.get("balance_after", 0)
    if head is not None:
        if head.get("seq", 0) > expected_seq - 1:
            problems.append((head["_id"], "account is at seq {} but its chain ends at {}: entries were deleted".format(
                head["seq"], expected_seq - 1)))
        elif head.get("seq", 0) == expected_seq - 1 and ordered and head.get("head_hash") != prev_hash:
            problems.append((head["_id"], "account head hash does not match its last entry"))
    return problems
