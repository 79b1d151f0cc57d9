"""Errors that cross service boundaries.

Each is registered with nameko's ``deserialize_to_instance`` so an RPC caller
gets the same class back (not a generic ``RemoteError``) and the gateway can
map it to an HTTP status in one place.
"""
import json
from datetime import datetime, timezone
from typing import Any

from marshmallow import Schema, ValidationError
from nameko.exceptions import deserialize_to_instance


class LamplightError(Exception):
    """Base class: ``code`` is the stable machine-readable error code; a more
    specific one can be given per instance (it travels with the error over
    RPC, unlike a subclass the caller does not know)."""

    code = "error"

    def __init__(self, message: str, fields: dict[str, Any] | list[Any] | str | None = None,
                 code: str | None = None) -> None:
        # nameko turns every scalar in an exception's args into a string on
        # the way over RPC, so fields travel as one JSON string and come back
        # with their types
        if isinstance(fields, str):
            fields = json.loads(fields)
        fields = fields or {}
        super().__init__(message, json.dumps(fields, ensure_ascii=False, default=str), code or "")
        self.message = message
        self.fields = fields
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fields": self.fields}


@deserialize_to_instance
class BadInput(LamplightError):
    """A command failed validation; ``fields`` maps each field to its problems."""

    code = "bad_input"


@deserialize_to_instance
class NotFound(LamplightError):
    code = "not_found"


@deserialize_to_instance
class Conflict(LamplightError):
    """The same idempotency key was reused with a different body, or a state
    change raced another one."""

    code = "conflict"


class UnscopedQuery(LamplightError):
    """Store code tried to reach park data without naming the park.

    Never sent over RPC on purpose: it is a programming error and must surface
    as one in the service that made it.
    """

    code = "unscoped_query"


class DomainError(Exception):
    """A rule of a domain refused something. Each service's pure domain has one base of its
    own deriving from this (no domain raises the API's errors): ``kind`` says which answer it
    is — "bad_input" (the command cannot be right), "conflict" (it cannot be done in the state
    things are in) or "not_found" — ``code`` which rule, ``fields`` what is wrong. It becomes
    the API error of its kind in one place, where it leaves the service (:func:`api_error`:
    the RPC entrypoint's reply, lamplight.rpc; an event handler's dead letter, lamplight.consuming)."""

    kind = "bad_input"

    def __init__(self, message: str, fields: dict[str, Any] | None = None, code: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.code = code
        if kind is not None:
            self.kind = kind
        if self.kind not in _KINDS:
            raise ValueError("a domain error is one of {}, not {!r}".format(", ".join(_KINDS), self.kind))

    def __str__(self) -> str:
        return self.message


_KINDS = {"bad_input": BadInput, "conflict": Conflict, "not_found": NotFound}


def api_error(exc: DomainError) -> LamplightError:
    """The API error a domain's refusal is answered with."""
    error: LamplightError = _KINDS[exc.kind](exc.message, exc.fields, code=exc.code)
    return error


# what an entrypoint answers without it being a fault of the service (logged as a warning)
EXPECTED = (BadInput, Conflict, NotFound, DomainError)


def load_or_reject(schema: Schema, payload: Any, what: str) -> Any:
    """Load a command or event payload with its marshmallow schema, or raise
    BadInput naming every wrong field (``what`` says what was invalid)."""
    try:
        return schema.load(payload if payload is not None else {})
    except ValidationError as exc:
        raise BadInput("{} is not valid".format(what), exc.messages)


def code_or_reject(code: Any) -> str:
    """A park's own code (a resource, a household …): 1-64 letters, digits, _ or -."""
    if not isinstance(code, str) or not code or len(code) > 64 or not all(c.isalnum() or c in "_-" for c in code):
        raise BadInput("a code is 1-64 letters, digits, _ or -", {"code": [str(code)[:80]]})
    return code


def time_or_reject(value: Any, name: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone), or BadInput naming ``name``."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadInput("{} must be an ISO 8601 time".format(name), {name: ["not a time: {!r}".format(value)]})
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
