"""Marshmallow schemas of the needs service: park configuration, commands,
views and event payloads."""
from functools import lru_cache

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.registry import Published
from services.needs import domain

CODE = validate.Regexp(r"^[a-z0-9_-]{1,64}$", error="lower-case letters, digits, _ and - (1-64)")
ACTOR = validate.Length(min=1, max=64)
NOTE = validate.Length(max=1000)
TITLE_MAX = 200
DESCRIPTION_MAX = 5000


# park configuration -----------------------------------------------------------------
FIELD_TYPES = ("string", "text", "integer", "number", "boolean", "date", "choice", "phone")


class FieldSpecSchema(Schema):
    """One typed extra field of an item (like an Open311 service attribute)."""

    name = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"))
    label = fields.String(load_default=None, validate=validate.Length(max=100))
    type = fields.String(required=True, validate=validate.OneOf(FIELD_TYPES))
    required = strict.Boolean(load_default=False)
    max_length = strict.Integer(load_default=None, validate=validate.Range(min=1, max=DESCRIPTION_MAX))
    min = strict.Float(load_default=None)
    max = strict.Float(load_default=None)
    choices = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=None)

    @validates_schema
    def choices_for_choice(self, data, **_):
        if data["type"] == "choice" and not data.get("choices"):
            raise ValidationError("a choice field lists its choices", "choices")
        if data["type"] != "choice" and data.get("choices"):
            raise ValidationError("only a choice field has choices", "choices")


class ItemSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    default_grade = fields.String(load_default=None, validate=CODE)
    default_team = fields.String(load_default=None, validate=CODE)
    default_unit = fields.String(load_default=None, validate=validate.Length(max=100))
    fields_ = fields.List(fields.Nested(FieldSpecSchema), data_key="fields", attribute="fields",
                          load_default=list, validate=validate.Length(max=30))


class CategorySchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    default_team = fields.String(load_default=None, validate=CODE)
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1, max=200))


class GradeSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    due_minutes = strict.Float(required=True, validate=validate.Range(min=0, max=60 * 24 * 366, min_inclusive=False))


class RungSchema(Schema):
    level = fields.String(required=True, validate=CODE)
    after_minutes = strict.Float(required=True, validate=validate.Range(min=0))


class NeedsConfigSchema(Schema):
    """PUT /api/v1/parks/{park}/needs/config — the park's taxonomy, grades and
    supervision rules, versioned: ``version`` is the current version + 1."""

    version = strict.Integer(required=True, validate=validate.Range(min=1))
    name = fields.String(load_default=None, validate=validate.Length(max=100))
    categories = fields.List(fields.Nested(CategorySchema), required=True, validate=validate.Length(min=1, max=100))
    grades = fields.List(fields.Nested(GradeSchema), required=True, validate=validate.Length(min=1, max=20))
    kind_grades = fields.Dict(keys=fields.String(validate=validate.OneOf(domain.NEED_KINDS)),
                              values=fields.String(validate=CODE), load_default=dict)
    auto_triage = strict.Boolean(load_default=True)
    duplicate_window_hours = strict.Float(load_default=168, validate=validate.Range(min=0, max=24 * 366))
    evaluation_days = strict.Float(load_default=7, validate=validate.Range(min=0, max=366, min_inclusive=False))
    escalation = fields.List(fields.Nested(RungSchema), load_default=lambda: [
        {"level": "supervisor", "after_minutes": 0}, {"level": "park_admin", "after_minutes": 1440}],
        validate=validate.Length(min=1, max=10))

    @validates_schema
    def references(self, data, **_):
        grades = [g["code"] for g in data["grades"]]
        errors = {}
        if len(set(grades)) != len(grades):
            errors["grades"] = ["grade codes repeat"]
        codes = [c["code"] for c in data["categories"]]
        items = [i["code"] for c in data["categories"] for i in c["items"]]
        if len(set(codes)) != len(codes):
            errors["categories"] = ["category codes repeat"]
        elif len(set(items)) != len(items):
            errors["categories"] = ["item codes repeat across the park"]
        bad = sorted({i["default_grade"] for c in data["categories"] for i in c["items"]
                      if i["default_grade"] and i["default_grade"] not in grades}
                     | {g for g in data["kind_grades"].values() if g not in grades})
        if bad:
            errors["grades"] = ["grades used but not defined: " + ", ".join(bad)]
        for category in data["categories"]:
            for item in category["items"]:
                names = [f["name"] for f in item["fields"]]
                if len(set(names)) != len(names):
                    errors.setdefault("categories", []).append("item {} repeats a field name".format(item["code"]))
        ladder = [r["after_minutes"] for r in data["escalation"]]
        if ladder != sorted(ladder) or len({r["level"] for r in data["escalation"]}) != len(ladder):
            errors["escalation"] = ["rungs climb in order of after_minutes, each level once"]
        if errors:
            raise ValidationError(errors)


def _field_for(spec):
    required = spec["required"]
    extra = {"required": True} if required else {"load_default": None, "allow_none": True}
    bounds = validate.Range(min=spec.get("min"), max=spec.get("max"))
    kind = spec["type"]
    if kind in ("string", "text"):
        limit = spec.get("max_length") or (500 if kind == "string" else DESCRIPTION_MAX)
        return fields.String(validate=validate.Length(min=1 if required else 0, max=limit), **extra)
    if kind == "integer":
        return strict.Integer(strict=True, validate=bounds, **extra)
    if kind == "number":
        return strict.Float(validate=bounds, allow_nan=False, **extra)
    if kind == "boolean":
        return strict.Boolean(**extra)
    if kind == "date":
        return fields.Date(**extra)
    if kind == "choice":
        return fields.String(validate=validate.OneOf(spec["choices"]), **extra)
    return fields.String(validate=validate.Regexp(r"^\+?[0-9-]{5,20}$", error="not a phone number"), **extra)


@lru_cache(maxsize=1024)
def _details_schema(park_id, version, item_code, specs_key):
    specs = [dict(s) for s in specs_key]
    cls = Schema.from_dict({s["name"]: _field_for(s) for s in specs}, name="Details_{}".format(item_code))
    return cls(unknown=RAISE)


def details_schema(park_id, config, item):
    """The schema of one item's extra fields, built from the park's config
    (cached per park, config version and item)."""
    key = tuple(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in s.items()))
                for s in item.get("fields", []))
    return _details_schema(park_id, config["version"], item["code"], key)


# intake ------------------------------------------------------------------------------
class RequesterSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(domain.REQUESTER_KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(load_default=None, validate=validate.Regexp(r"^\+?[0-9-]{5,20}$"))
    enterprise = fields.String(load_default=None, validate=validate.Length(max=200))
    member_id = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$"))


class NeedSubmissionSchema(Schema):
    """POST /api/v1/parks/{park}/needs. ``entered_by`` names desk staff
    entering the need on the requester's behalf (a walk-in, a hotline call)."""

    kind = fields.String(required=True, validate=validate.OneOf(domain.NEED_KINDS))
    category = fields.String(required=True, validate=CODE)
    item = fields.String(load_default=None, validate=CODE)
    grade = fields.String(load_default=None, validate=CODE)
    channel = fields.String(required=True, validate=validate.OneOf(domain.CHANNELS))
    title = fields.String(required=True, validate=validate.Length(min=2, max=TITLE_MAX))
    description = fields.String(load_default="", validate=validate.Length(max=DESCRIPTION_MAX))
    requester = fields.Nested(RequesterSchema, required=True)
    details = fields.Dict(keys=fields.String(), load_default=dict)
    entered_by = fields.String(load_default=None, validate=ACTOR)
    # the zone of the park the need is in (a code of the park's volunteers
    # configuration): dispatch offers it to responders nearby first
    zone = fields.String(load_default=None, validate=CODE)


class MeetingSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=2, max=200))
    held_on = fields.Date(required=True)
    minutes_ref = fields.String(load_default=None, validate=validate.Length(max=200))


class BatchSchema(Schema):
    """POST /api/v1/parks/{park}/needs/batch — the needs raised at one liaison
    meeting, entered from its minutes: all accepted or none."""

    meeting = fields.Nested(MeetingSchema, required=True)
    entered_by = fields.String(required=True, validate=ACTOR)
    needs = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=200))


# lifecycle commands --------------------------------------------------------------------
class ActionSchema(Schema):
    """What every lifecycle command carries: who, and notes. ``note`` stays
    inside; ``public_note`` is shown on the echo wall."""

    actor = fields.String(required=True, validate=ACTOR)
    note = fields.String(load_default=None, validate=NOTE)
    public_note = fields.String(load_default=None, validate=validate.Length(max=300))


class TriageSchema(ActionSchema):
    category = fields.String(load_default=None, validate=CODE)
    item = fields.String(load_default=None, validate=CODE)
    grade = fields.String(load_default=None, validate=CODE)
    team = fields.String(load_default=None, validate=CODE)
    unit = fields.String(load_default=None, validate=validate.Length(max=100))
    public = strict.Boolean(load_default=None)
    public_title = fields.String(load_default=None, validate=validate.Length(min=2, max=TITLE_MAX))


class AssignSchema(ActionSchema):
    responder_id = fields.String(load_default=None, validate=validate.Length(max=100))
    unit = fields.String(load_default=None, validate=validate.Length(max=100))
    member_id = fields.String(load_default=None, validate=validate.Length(max=64))
    task_id = fields.String(load_default=None, validate=validate.Length(max=200))

    @validates_schema
    def someone(self, data, **_):
        if not data.get("responder_id") and not data.get("unit"):
            raise ValidationError("assign to a responder_id or a unit", "responder_id")


class ReasonSchema(ActionSchema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=500))


class EscalateSchema(ActionSchema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=100))


class RejectSchema(ReasonSchema):
    redirect_to = fields.String(load_default=None, validate=validate.Length(max=200))


class DuplicateSchema(ActionSchema):
    of = fields.String(required=True, validate=validate.Length(min=1, max=100))


class EvaluationSchema(Schema):
    """The requester's answer: a rating and whether it was fixed."""

    rating = strict.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    outcome = fields.String(required=True, validate=validate.OneOf(domain.EVALUATION_OUTCOMES))
    comment = fields.String(load_default=None, validate=NOTE)
    actor = fields.String(load_default="requester", validate=ACTOR)


class ReviewSchema(ActionSchema):
    by = fields.String(required=True, validate=validate.OneOf(domain.REVIEWERS))
    score = strict.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))


COMMAND_SCHEMAS = {
    "triage": TriageSchema(), "assign": AssignSchema(), "start": ActionSchema(), "wait": ReasonSchema(),
    "resume": ActionSchema(), "escalate": EscalateSchema(), "release": ActionSchema(), "resolve": ActionSchema(),
    "evaluate": EvaluationSchema(), "reopen": ReasonSchema(), "reject": RejectSchema(), "cancel": ReasonSchema(),
    "link_duplicate": DuplicateSchema(), "review": ReviewSchema(),
}


class FollowSchema(Schema):
    follower_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,100}$"))


# the three lists -------------------------------------------------------------------
class ProviderSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(
        ("department", "enterprise", "community", "park", "social_organisation")))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))


class ResourceSchema(Schema):
    """PUT /api/v1/parks/{park}/resources/{code}: what a department or an
    enterprise offers."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    provider = fields.Nested(ProviderSchema, required=True)
    items = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(min=1, max=50))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    capacity = fields.String(load_default=None, validate=validate.Length(max=200))


class ActivitySchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    month = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$", error="YYYY-MM"))
    status = fields.String(load_default="planned", validate=validate.OneOf(("planned", "done", "dropped")))


class ProjectSchema(Schema):
    """PUT /api/v1/parks/{park}/projects/{code}: a service project linking
    items of the needs list to resources, with its planned activities."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    items = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(min=1, max=50))
    resources = fields.List(fields.String(validate=CODE), required=True, validate=validate.Length(min=1, max=50))
    team = fields.String(load_default=None, validate=CODE)
    activities = fields.List(fields.Nested(ActivitySchema), load_default=list, validate=validate.Length(max=100))


# views -------------------------------------------------------------------------------
class TimelineEntrySchema(Schema):
    at = fields.DateTime()
    action = fields.String()
    from_status = fields.String(data_key="from")
    status = fields.String()
    actor = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    public_note = fields.String(allow_none=True)


class EvaluationViewSchema(Schema):
    rating = strict.Integer(allow_none=True)
    outcome = fields.String()
    at = fields.DateTime()


class ReviewViewSchema(Schema):
    score = strict.Integer()
    note = fields.String()
    at = fields.DateTime()


class NeedViewSchema(Schema):
    """What the desk sees (the echo wall has its own view)."""

    id = fields.String(attribute="need_id")
    park_id = fields.String()
    version = strict.Integer()
    status = fields.String()
    allowed_actions = fields.Method("_allowed")
    kind = fields.String()
    category = fields.String()
    item = fields.String(allow_none=True)
    grade = fields.String()
    team = fields.String(allow_none=True)
    unit = fields.String(allow_none=True)
    responder_id = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    channel = fields.String()
    title = fields.String()
    public_title = fields.String()
    public = strict.Boolean()
    description = fields.String()
    details = fields.Dict()
    requester = fields.Nested(RequesterSchema)
    entered_by = fields.String(allow_none=True)
    meeting = fields.Dict(allow_none=True)
    submitted_at = fields.DateTime()
    due_at = fields.DateTime()
    paused_at = fields.DateTime(allow_none=True)
    overdue_count = strict.Integer()
    ladder_level = fields.String(allow_none=True)
    escalated_to = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    evaluation_due = fields.DateTime(allow_none=True)
    evaluation = fields.Nested(EvaluationViewSchema, allow_none=True)
    rejection = fields.Dict(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    duplicate_of = fields.String(allow_none=True)
    possible_duplicates = fields.List(fields.String())
    reopen_count = strict.Integer()
    reviews = fields.Dict(keys=fields.String(), values=fields.Nested(ReviewViewSchema))
    timeline = fields.List(fields.Nested(TimelineEntrySchema))

    def _allowed(self, need):
        return domain.allowed_actions(need["status"])


class WallNoteSchema(Schema):
    at = fields.DateTime()
    status = fields.String()
    note = fields.String()


class WallEntrySchema(Schema):
    """One line of the echo wall: public by construction — no requester,
    no details, no internal notes, no responder."""

    need_id = fields.String(required=True)
    version = strict.Integer(required=True)
    public = strict.Boolean(required=True)
    title = fields.String(required=True)
    kind = fields.String(required=True)
    category = fields.String(required=True)
    item = fields.String(allow_none=True)
    status = fields.String(required=True)
    submitted_at = fields.DateTime(required=True)
    due_at = fields.DateTime(required=True)
    resolved_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    rating = strict.Integer(allow_none=True)
    outcome = fields.String(allow_none=True)
    redirect_to = fields.String(allow_none=True)
    overdue_count = strict.Integer(required=True)
    clock_running = strict.Boolean(required=True)
    notes = fields.List(fields.Nested(WallNoteSchema), required=True)
    updated_at = fields.DateTime(required=True)


# event payloads ----------------------------------------------------------------------
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
    possible_duplicates = fields.List(fields.String(), required=True)


class NeedChangedSchema(Schema):
    """Payload of every other need.* event v1: where the need stands after
    the change. Optional fields are set by the actions they belong to."""

    need_id = fields.String(required=True)
    version = strict.Integer(required=True)
    action = fields.String(required=True)
    from_status = fields.String(required=True)
    status = fields.String(required=True)
    kind = fields.String(required=True)
    category = fields.String(required=True)
    item = fields.String(allow_none=True)
    grade = fields.String(required=True)
    team = fields.String(allow_none=True)
    unit = fields.String(allow_none=True)
    routing = strict.Integer(required=True)
    summary = fields.String(required=True)
    due_at = fields.DateTime(required=True)
    at = fields.DateTime(required=True)
    responder_id = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    member_id = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    requester_member_id = fields.String(allow_none=True)
    public_note = fields.String(allow_none=True)
    rating = strict.Integer(allow_none=True)
    outcome = fields.String(allow_none=True)
    redirect_to = fields.String(allow_none=True)
    level = fields.String(allow_none=True)
    escalated_to = fields.String(allow_none=True)
    duplicate_of = fields.String(allow_none=True)
    zone = fields.String(allow_none=True)
    reviewer = fields.String(allow_none=True)
    score = strict.Integer(allow_none=True)


class NeedFollowedSchema(Schema):
    need_id = fields.String(required=True)
    follower_id = fields.String(required=True)
    following = strict.Boolean(required=True)


class WallEntryChangedSchema(WallEntrySchema):
    """Payload of wall.entry_changed v1: the public line of one need, as the
    echo wall shows it from this version on."""


class TaskEventSchema(Schema):
    """What the needs service reads of dispatch events (task.claimed,
    task.started, task.completed, task.released); other fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    need_id = fields.String(required=True)
    task_id = fields.String(load_default=None)
    responder_id = fields.String(load_default=None)
    member_id = fields.String(load_default=None, allow_none=True)
    note = fields.String(load_default=None, allow_none=True)


# what this service publishes (lamplight.registry; the catalogue is generated from it)
PUBLISHED = (
    Published("need.submitted", NeedSubmittedSchema,
              "A need was accepted (no personal data: the requester by kind only)."),
    Published("need.triaged", NeedChangedSchema, "A need was classified, graded and routed to a team or unit."),
    Published("need.assigned", NeedChangedSchema, "A need was given to a handler (a volunteer's claim or the desk)."),
    Published("need.started", NeedChangedSchema, "The handler started work on a need."),
    Published("need.waiting", NeedChangedSchema, "A need waits on its requester; its clock is paused."),
    Published("need.resumed", NeedChangedSchema, "A need waiting on its requester resumed; its clock runs again."),
    Published("need.escalated", NeedChangedSchema, "A need was escalated by the desk."),
    Published("need.released", NeedChangedSchema, "A handler gave a need back; it is routed again."),
    Published("need.resolved", NeedChangedSchema, "The handler resolved a need; the requester may evaluate it."),
    Published("need.evaluated", NeedChangedSchema, "The requester rated the result (rating, outcome)."),
    Published("need.closed", NeedChangedSchema, "A need was closed, evaluated or with no answer in time."),
    Published("need.reopened", NeedChangedSchema, "A need was reopened (not fixed, or by the desk)."),
    Published("need.rejected", NeedChangedSchema, "A need was not taken, with where to go instead."),
    Published("need.cancelled", NeedChangedSchema, "A need was cancelled or linked as a duplicate."),
    Published("need.overdue", NeedChangedSchema, "A need passed its due time (once per due time)."),
    Published("need.supervision_raised", NeedChangedSchema,
              "An overdue need climbed a rung of the supervision ladder."),
    Published("need.reviewed", NeedChangedSchema, "A closed need was reviewed (organisation, committee, park audit)."),
    Published("need.followed", NeedFollowedSchema, "Someone started or stopped following a need on the echo wall."),
    Published("wall.entry_changed", WallEntryChangedSchema, "A need's public line on the echo wall, as it now reads."),
)
