"""Identifiers: a short kind prefix and a ULID, so ids sort by creation time
and say what they name in logs (``need_01J…``, ``evt_01J…``)."""
import hashlib
import json
from typing import Any

from ulid import ULID


def new_id(kind: str) -> str:
    return "{}_{}".format(kind, str(ULID()).lower())


def fingerprint(body: Any, ensure_ascii: bool = False) -> str:
    """Stable digest of a command body, to tell a retried request (same
    idempotency key, same body) from a reused key (same key, other body)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=ensure_ascii, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
