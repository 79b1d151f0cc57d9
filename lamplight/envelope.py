"""CloudEvents 1.0 envelopes (structured JSON mode) for every Lamplight event."""
import os
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from lamplight.clock import now_iso
from lamplight.errors import BadInput
from lamplight.ids import new_id
from lamplight.shapes import Envelope

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

# W3C trace context: version-traceid-parentid-flags
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_traceparent() -> str:
    return "00-{}-{}-01".format(os.urandom(16).hex(), os.urandom(8).hex())


def child_traceparent(parent: str | None) -> str:
    """Same trace, new span id: the hop that publishes is a child of the one
    that caused it."""
    if parent and _TRACEPARENT.match(parent):
        return "{}-{}-01".format(parent[:35], os.urandom(8).hex())
    return new_traceparent()


def trace_id(traceparent: str | None) -> str | None:
    if traceparent and _TRACEPARENT.match(traceparent):
        return traceparent[3:35]
    return None


def dataschema_uri(event_type: str, version: int) -> str:
    return "urn:lamplight:events:{}:v{}".format(event_type, version)




def new_event(event_type: str, *, source: str, park_id: str, subject: str | None, data: dict[str, Any],
              version: int = 1, traceparent: str | None = None, request_id: str | None = None) -> Envelope:
    """Build an envelope. ``source`` is the publishing service's name;
    ``request_id``, the HTTP request that caused it, becomes the CloudEvents
    extension attribute ``requestid`` when there is one."""
    envelope = {
        "specversion": SPECVERSION,
        "id": new_id("evt"),
        "source": "lamplight/{}".format(source),
        "type": event_type,
        "subject": subject,
        "time": now_iso(),
        "datacontenttype": CONTENT_TYPE,
        "dataschema": dataschema_uri(event_type, version),
        "parkid": park_id,
        "traceparent": child_traceparent(traceparent),
        "data": data,
    }
    if request_id:
        envelope["requestid"] = request_id
    return envelope


class EnvelopeSchema(Schema):
    specversion = fields.String(required=True, validate=validate.Equal(SPECVERSION))
    id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    source = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True, validate=validate.Regexp(r"^[a-z_]+(\.[a-z_]+)+$"))
    subject = fields.String(required=True, allow_none=True)
    time = fields.String(required=True)
    datacontenttype = fields.String(required=True, validate=validate.Equal(CONTENT_TYPE))
    dataschema = fields.String(required=True)
    parkid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    traceparent = fields.String(required=True, validate=validate.Regexp(_TRACEPARENT))
    requestid = fields.String(validate=validate.Length(min=1, max=128))
    data = fields.Dict(required=True)


_envelope_schema = EnvelopeSchema()


def validate_envelope(body: Any) -> Envelope:
    """Return the envelope or raise BadInput naming every wrong attribute."""
    if not isinstance(body, dict):
        raise BadInput("event body is not a JSON object", {"_envelope": ["not an object"]})
    try:
        return _envelope_schema.load(body)
    except ValidationError as exc:
        raise BadInput("event envelope is invalid", exc.messages)
