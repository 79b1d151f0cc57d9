"""The platform's one clock.

UTC, to the millisecond: what MongoDB stores, so that a time read back
compares equal to the one computed before it was written, and what an
envelope's ``time`` carries.
"""
from datetime import datetime, timezone


def utcnow() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(at: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``."""
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(utcnow())
