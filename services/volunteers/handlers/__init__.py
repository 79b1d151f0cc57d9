"""The volunteers service layer: a function a command and an event, by subdomain.

- ``responders``: registration, rosters, pauses, who is on duty;
- ``dispatch``: routed needs become tasks offered to the best K, claims and
  the task's lifecycle, the sweep of offers, stale claims and take-overs;
- ``visits``: households, the month's must-visits, proofs, misses;
- ``emergency``: the park's mode, call-outs and replies.

A handler gets a :class:`Work` — the park's repository (``VolunteersStore``;
an in-memory one in the handler tests), the worker's ``Events``
(lamplight.publishing) and a logger. It holds no nameko, no broker and no
database of its own: the nameko class (service.py) decodes a call, makes the
Work, calls the handler and encodes its answer. What the rules refuse they
raise as the domain's errors; the RPC boundary answers them.
"""
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from lamplight.errors import NotFound
from lamplight.shapes import Config, Doc
from services.volunteers.domain import rosters


@dataclass(frozen=True)
class Work:
    """What one handler call works with: the park's repository, the worker's
    Events and a logger."""

    store: Any
    events: Any
    log: Any

    @property
    def park_id(self) -> str:
        park_id: str = self.store.park_id
        return park_id

    def config(self) -> Config:
        """The park's volunteers configuration (NotFound when it has none)."""
        config: Config = self.store.park_config.require()
        return config


def responder_of(store: Any, responder_id: str) -> Doc:
    responder: Doc | None = store.get_responder(responder_id)
    if responder is None:
        raise NotFound("no responder {} in park {}".format(responder_id, store.park_id),
                       {"responder_id": ["unknown"]})
    return responder


def on_duty_now(store: Any, at: datetime, tz: tzinfo, teams: list[str] | None = None) -> list[Doc]:
    """Who is on duty at ``at``: the hour's bucket of the duty index, then the
    exact minute, leave and extra shifts."""
    return [r for r in store.on_duty_candidates({rosters.hour_of_week(at, tz)}, teams=teams, now=at)
            if rosters.on_duty(r, at, tz)]


def team_leads(store: Any, config: Config, teams: list[str]) -> list[Doc]:
    """The active responders who lead any of ``teams`` (the configuration names them by ref)."""
    refs = {ref for t in config["teams"] if t["code"] in teams for ref in t.get("leads", ())}
    return [r for r in store.responders_by_ref(refs) if r.get("active", True)] if refs else []
