"""The points service layer: a function a command and an event.

- ``ledger``: the one way an entry is appended (with its events) — postings,
  reversals, the yearly opening of a discipline account;
- ``postings``: manual postings and their approval by a second person,
  postings from events, reversals, and reading accounts;
- ``rewards``: the reward catalogue, holds, redemption and its timeout;
- ``members``: half-year awards and a member's move to another park.

A handler gets a :class:`Work` — the park's repository (``PointsStore``),
the worker's ``Events`` (lamplight.publishing), a logger, and a way to the
repository of another park (a member's history follows their moves). It
holds no nameko and no broker: the nameko class (service.py) decodes a call,
makes the Work, calls the handler and encodes its answer.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lamplight import ids

SYSTEM = "system"


@dataclass(frozen=True)
class Work:
    """What one handler call works with: the park's repository, the worker's
    Events, a logger and ``park(park_id)``, the repository of another park."""

    store: Any
    events: Any
    log: Any
    park: Callable[[str], Any]

    @property
    def park_id(self) -> str:
        park_id: str = self.store.park_id
        return park_id

    def elsewhere(self, park_id: str) -> "Work":
        """The same work in another park."""
        return Work(self.park(park_id), self.events, self.log, self.park)


def fingerprint(body: Any) -> str:
    # the digests already stored (entries, approvals, redemptions) were made of ASCII-escaped JSON
    digest: str = ids.fingerprint(body, ensure_ascii=True)
    return digest
