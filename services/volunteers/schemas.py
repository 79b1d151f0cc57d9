"""Marshmallow schemas of the volunteers service."""
from marshmallow import EXCLUDE, Schema, fields, validate

from services.volunteers import domain


class ResponderRegistrationSchema(Schema):
    """POST /api/v1/parks/{park}/responders"""

    kind = fields.String(required=True, validate=validate.OneOf(domain.RESPONDER_KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(load_default=None, validate=validate.Regexp(r"^\+?[0-9-]{5,20}$"))
    party_member = fields.Boolean(load_default=False)
    member_id = fields.String(load_default=None, validate=validate.Length(max=64))
    teams = fields.List(fields.String(validate=validate.Regexp(r"^[a-z0-9_-]{1,32}$")), load_default=list)
    categories = fields.List(fields.String(validate=validate.Regexp(r"^[a-z0-9_-]{1,64}$")), load_default=list)
    skills = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list)
    zone = fields.String(load_default=None, validate=validate.Length(max=64))
    active = fields.Boolean(load_default=True)
    # the park's own number for this responder; registering it again returns
    # the responder already registered
    external_ref = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))


class ResponderViewSchema(Schema):
    id = fields.String(attribute="_id")
    external_ref = fields.String(attribute="ref")
    park_id = fields.String()
    kind = fields.String()
    name = fields.String()
    party_member = fields.Boolean()
    member_id = fields.String(allow_none=True)
    teams = fields.List(fields.String())
    categories = fields.List(fields.String())
    skills = fields.List(fields.String())
    zone = fields.String(allow_none=True)
    active = fields.Boolean()


class NeedRoutedSchema(Schema):
    """What dispatch reads of need.triaged and need.reopened v1 (a tolerant
    reader: unknown fields are ignored, so the publisher may add fields).
    ``routing`` counts the times the need was routed: one offer round each."""

    class Meta:
        unknown = EXCLUDE

    need_id = fields.String(required=True)
    category = fields.String(required=True)
    grade = fields.String(required=True)
    summary = fields.String(required=True)
    due_at = fields.String(required=True)
    team = fields.String(load_default=None, allow_none=True)
    routing = fields.Integer(load_default=1)


class TaskOfferedSchema(Schema):
    """Payload of task.offered v1."""

    task_id = fields.String(required=True)
    need_id = fields.String(required=True)
    responder_id = fields.String(required=True)
    round = fields.Integer(required=True)
    category = fields.String(required=True)
    grade = fields.String(required=True)
    summary = fields.String(required=True)
    due_at = fields.String(required=True)
    offered_at = fields.DateTime(required=True)
