"""marshmallow fields that take JSON's own types and nothing else.

marshmallow's Boolean takes "yes", "on", "1" and 1 for true, and its Integer
and Float take "5" and true: a client sending ``"critical": "yes"`` got a
critical broadcast. A boolean here is a JSON boolean; a number is a JSON
number (an integer may be written 5 or 5.0, which JSON does not tell apart),
never a string and never a boolean. Anything else is 422 naming the field.
Every schema of the platform uses these instead of marshmallow's.
"""
from collections.abc import Mapping
from typing import Any

from marshmallow import fields


class Boolean(fields.Boolean):
    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Integer(fields.Integer):
    def _validated(self, value: Any) -> int:
        if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Float(fields.Float):
    def _validated(self, value: Any) -> float:
        if not _is_number(value):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)

