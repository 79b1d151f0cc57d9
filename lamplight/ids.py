"""Identifiers: a short kind prefix and a ULID, so ids sort by creation time
and say what they name in logs (``need_01J…``, ``evt_01J…``)."""
from ulid import ULID


def new_id(kind):
    return "{}_{}".format(kind, str(ULID()).lower())
