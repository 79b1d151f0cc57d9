"""Marshmallow schemas of the points service: commands, views, event payloads."""
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.registry import Published
from services.points import domain

CODE = validate.Regexp(r"^[a-z0-9_.-]{1,64}$")
MEMBER = validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$")
# the events a rule can post from automatically
AUTO_EVENT_TYPES = ("task.completed", "volunteer.service_hours", "visit.missed", "need.closed", "need.evaluated")


class CapsSchema(Schema):
    day = strict.Integer(load_default=None, validate=validate.Range(min=1))
    month = strict.Integer(load_default=None, validate=validate.Range(min=1))
    year = strict.Integer(load_default=None, validate=validate.Range(min=1))


class RuleSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    account = fields.String(required=True, validate=validate.OneOf(domain.ACCOUNT_KINDS))
    points = strict.Integer(required=True, validate=validate.Range(min=-100, max=100))
    caps = fields.Nested(CapsSchema, load_default=dict)
    mode = fields.String(load_default="manual", validate=validate.OneOf(("manual", "auto")))
    event_type = fields.String(load_default=None, validate=validate.OneOf(AUTO_EVENT_TYPES))
    per_hour = strict.Boolean(load_default=False)
    rating_at_most = strict.Integer(load_default=None, validate=validate.Range(min=1, max=5))
    approval_required = strict.Boolean(load_default=False)

    @validates_schema
    def auto_needs_event(self, data, **_):
        if data["mode"] == "auto" and not data.get("event_type"):
            raise ValidationError("an automatic rule names the event it posts from", "event_type")
        if data["mode"] == "manual" and data.get("event_type"):
            raise ValidationError("only automatic rules post from events", "event_type")


class CatalogueSchema(Schema):
    """PUT /api/v1/parks/{park}/points/rules"""

    version = strict.Integer(required=True, validate=validate.Range(min=1))
    rules = fields.List(fields.Nested(RuleSchema), required=True, validate=validate.Length(min=1, max=200))
    star_thresholds = fields.Dict(keys=fields.String(validate=validate.OneOf(("1", "2", "3", "4", "5"))),
                                  values=strict.Integer(), load_default=None)


class PostingSchema(Schema):
    """POST /api/v1/parks/{park}/points/entries — a manual posting."""

    member_id = fields.String(required=True, validate=MEMBER)
    rule_code = fields.String(required=True, validate=CODE)
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = fields.String(required=True, validate=validate.Length(min=2, max=500))
    year = strict.Integer(load_default=None, validate=validate.Range(min=2000, max=2100))
    metadata = fields.Dict(load_default=dict)


class DecisionSchema(Schema):
    """POST …/points/approvals/{id}/approve or /reject"""

    approver = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = fields.String(load_default=None, validate=validate.Length(min=2, max=500))


class ApprovalViewSchema(Schema):
    id = fields.String(attribute="_id")
    status = fields.String()
    member_id = fields.String()
    rule_code = fields.String()
    actor = fields.String()
    reason = fields.String()
    requested_at = fields.DateTime()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    entry_id = fields.String(allow_none=True)


class ReversalSchema(Schema):
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = fields.String(required=True, validate=validate.Length(min=2, max=500))


class RewardSchema(Schema):
    """PUT /api/v1/parks/{park}/points/rewards/{code}"""

    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    cost = strict.Integer(required=True, validate=validate.Range(min=1, max=100000))
    stock = strict.Integer(required=True, validate=validate.Range(min=0, max=1000000))
    window_start = fields.AwareDateTime(load_default=None)
    window_end = fields.AwareDateTime(load_default=None)
    hold_minutes = strict.Integer(load_default=30, validate=validate.Range(min=1, max=7 * 24 * 60))


class RedeemSchema(Schema):
    member_id = fields.String(required=True, validate=MEMBER)
    reward_code = fields.String(required=True, validate=CODE)


class MoveSchema(Schema):
    to_park = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,62}$"))
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))


class EntryViewSchema(Schema):
    id = fields.String(attribute="_id")
    park_id = fields.String()
    account_id = fields.String()
    member_id = fields.String()
    account_kind = fields.String()
    year = strict.Integer(allow_none=True)
    seq = strict.Integer()
    kind = fields.String()
    amount = strict.Integer()
    balance_after = strict.Integer()
    held_after = strict.Integer()
    rule_code = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    metadata = fields.Dict()
    idempotency_key = fields.String()
    reverses = fields.String(allow_none=True)
    at = fields.DateTime()
    hash = fields.String()


class AccountViewSchema(Schema):
    id = fields.String(attribute="_id")
    park_id = fields.String()
    member_id = fields.String()
    kind = fields.String()
    year = strict.Integer(allow_none=True)
    balance = strict.Integer()
    held = strict.Integer()
    available = strict.Integer()
    entries = strict.Integer(attribute="seq")
    warning = fields.String(allow_none=True)
    stars = strict.Integer(allow_none=True)
    eligible_for_awards = strict.Boolean(allow_none=True)
    as_of = fields.DateTime(allow_none=True)


class RedemptionViewSchema(Schema):
    id = fields.String(attribute="_id")
    member_id = fields.String()
    reward_code = fields.String()
    cost = strict.Integer()
    status = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    expires_at = fields.DateTime()


class PointsEntrySchema(Schema):
    """Payload of points.credited, points.debited, points.reversed,
    points.held, points.released and points.redeemed v1."""

    entry_id = fields.String(required=True)
    account_id = fields.String(required=True)
    member_id = fields.String(required=True)
    account_kind = fields.String(required=True)
    year = strict.Integer(allow_none=True)
    amount = strict.Integer(required=True)
    balance_after = strict.Integer(required=True)
    held_after = strict.Integer(required=True)
    rule_code = fields.String(allow_none=True)
    reverses = fields.String(allow_none=True)
    source_event_id = fields.String(allow_none=True)


class ThresholdCrossedSchema(Schema):
    """Payload of points.threshold_crossed v1."""

    member_id = fields.String(required=True)
    year = strict.Integer(required=True)
    threshold = strict.Integer(required=True)
    level = fields.String(required=True)
    balance = strict.Integer(required=True)
    entry_id = fields.String(required=True)


class SourceEventSchema(Schema):
    """What the points service reads of the events it posts from (a tolerant
    reader: any other field is ignored)."""

    class Meta:
        unknown = EXCLUDE

    member_id = fields.String(load_default=None, validate=MEMBER)
    need_id = fields.String(load_default=None)
    task_id = fields.String(load_default=None)
    visit_id = fields.String(load_default=None)
    hours = strict.Float(load_default=None, validate=validate.Range(min=0, max=24))
    rating = strict.Integer(load_default=None, validate=validate.Range(min=1, max=5))


# what this service publishes (lamplight.registry; the catalogue is generated from it)
PUBLISHED = (
    Published("points.credited", PointsEntrySchema, "Points were added to a member's account."),
    Published("points.debited", PointsEntrySchema, "Points were taken from a member's account."),
    Published("points.reversed", PointsEntrySchema, "An entry was reversed (the one correction)."),
    Published("points.held", PointsEntrySchema, "Service points were held for a redemption."),
    Published("points.released", PointsEntrySchema, "A hold was released (voided or expired)."),
    Published("points.redeemed", PointsEntrySchema, "Held points were redeemed for a reward."),
    Published("points.threshold_crossed", ThresholdCrossedSchema,
              "A discipline balance crossed 9, 6, 3 or 0 (reminder, red warning, yellow alert, handling)."),
)
