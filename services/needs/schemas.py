"""Marshmallow schemas of the needs service: commands, views, event payloads."""
from marshmallow import Schema, fields, validate

from services.needs import domain


class RequesterSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(domain.REQUESTER_KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(load_default=None, validate=validate.Regexp(r"^\+?[0-9-]{5,20}$"))
    enterprise = fields.String(load_default=None, validate=validate.Length(max=200))


class NeedSubmissionSchema(Schema):
    """POST /api/v1/parks/{park}/needs"""

    kind = fields.String(required=True, validate=validate.OneOf(domain.NEED_KINDS))
    category = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{1,64}$"))
    item = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z0-9_-]{1,64}$"))
    grade = fields.String(load_default=None, validate=validate.OneOf(tuple(domain.DEFAULT_GRADES)))
    channel = fields.String(required=True, validate=validate.OneOf(domain.CHANNELS))
    title = fields.String(required=True, validate=validate.Length(min=2, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    requester = fields.Nested(RequesterSchema, required=True)
    entered_by = fields.String(load_default=None, validate=validate.Length(max=64))


class TimelineEntrySchema(Schema):
    at = fields.DateTime()
    status = fields.String()
    note = fields.String()


class NeedViewSchema(Schema):
    """What the desk and the requester see (the echo wall has its own view)."""

    id = fields.String(attribute="_id")
    park_id = fields.String()
    status = fields.String()
    kind = fields.String()
    category = fields.String()
    item = fields.String(allow_none=True)
    grade = fields.String()
    channel = fields.String()
    title = fields.String()
    description = fields.String()
    requester = fields.Nested(RequesterSchema)
    submitted_at = fields.DateTime()
    due_at = fields.DateTime()
    timeline = fields.List(fields.Nested(TimelineEntrySchema))


class NeedSubmittedSchema(Schema):
    """Payload of need.submitted v1. No personal data: the requester is named
    by kind only and the summary has numbers masked."""

    need_id = fields.String(required=True)
    kind = fields.String(required=True)
    category = fields.String(required=True)
    item = fields.String(allow_none=True)
    grade = fields.String(required=True)
    channel = fields.String(required=True)
    requester_kind = fields.String(required=True)
    summary = fields.String(required=True)
    submitted_at = fields.DateTime(required=True)
    due_at = fields.DateTime(required=True)
