"""Volunteers: pure rules, no I/O, by subdomain.

- ``rosters``: responders, colour teams, zones and weekly shift templates in
  the park's own time zone: who is on duty when;
- ``dispatch``: who may be offered a task and in what order, and the task's
  state machine (offers, claims, take-overs, the sweep's steps);
- ``visits``: the six must-visits, their months, grace and escalation;
- ``emergency``: the park's mode and who a call-out reaches.

What the rules refuse they raise as :class:`RuleBroken`.
"""
from typing import Any

from lamplight.errors import DomainError


class RuleBroken(DomainError):
    """A command the rules refuse (lamplight.errors.DomainError): ``code``
    says which rule, ``fields`` what is wrong. An action that does not
    exist is bad input; anything else conflicts with the task's state."""

    def __init__(self, message: str, code: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message, fields, code=code, kind="bad_input" if code == "unknown_action" else "conflict")
