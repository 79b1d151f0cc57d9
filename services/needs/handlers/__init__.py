"""The needs service layer: a function a command and an event.

- ``intake``: a need checked against the park's taxonomy and written with
  its events, one at a time or a liaison meeting's batch;
- ``lifecycle``: the state machine's commands, from a desk, from dispatch's
  events and from the time-limit sweep;
- ``wall``: the public echo wall (its lines, its pages, followers);
- ``lists``: the three lists and the statistics.

A handler gets a :class:`Work` — the park's repository (``NeedsStore``; an
in-memory one in the handler tests), the worker's ``Events`` and a logger —
and the park's ``Taxonomy``. It holds no nameko, no broker and no database of
its own: the nameko class (service.py) decodes a call, makes the Work, calls
the handler and encodes its answer. What the rules refuse they raise as the
domain's errors; the RPC boundary answers them (lamplight.errors.DomainError).
"""
from dataclasses import dataclass
from typing import Any

from lamplight.errors import NotFound
from lamplight.shapes import Doc


@dataclass(frozen=True)
class Work:
    """What one handler call works with: the park's repository, the worker's
    Events (lamplight.publishing) and a logger."""

    store: Any
    events: Any
    log: Any


def need_of(store: Any, need_id: str, internal: bool = False) -> Doc:
    need: Doc | None = store.get(need_id, internal=internal)
    if need is None:
        raise NotFound("no need {} in park {}".format(need_id, store.park_id), {"need_id": ["unknown"]})
    return need
