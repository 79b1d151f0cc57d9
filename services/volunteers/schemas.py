"""Marshmallow schemas of the volunteers service: the park's dispatch
configuration, commands, views and event payloads."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.parkconfig import time_zone
from lamplight.registry import Published
from services.volunteers.domain import emergency, rosters, visits

CODE = validate.Regexp(r"^[a-z0-9_-]{1,64}$", error="a code is 1-64 lowercase letters, digits, _ or -")
REF = validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$", error="1-64 letters, digits, _ . or -")
PHOTO_REF = validate.Regexp(r"^[A-Za-z0-9_./:-]{1,300}$",
                            error="a reference to a stored photo (letters, digits, _ . / : -)")
HHMM = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="a local time HH:MM")


class TeamSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    categories = fields.List(fields.String(validate=CODE), load_default=list)
    # the external refs of the team's leads: an offer nobody takes goes to them
    leads = fields.List(fields.String(validate=REF), load_default=list)
    # the emergency squad (应急小分队): paged at night, called out in an emergency
    squad = strict.Boolean(load_default=False)


class ZoneSchema(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    # metres on the park's own grid: how near a responder is to a need
    x = strict.Float(required=True)
    y = strict.Float(required=True)


class WindowSchema(Schema):
    start = fields.String(required=True, validate=HHMM)
    end = fields.String(required=True, validate=HHMM)


class DispatchSettingsSchema(Schema):
    offer_k = strict.Integer(load_default=3, validate=validate.Range(min=1, max=50))
    offer_minutes = strict.Float(load_default=30, validate=validate.Range(min=0.005, max=10080))
    default_cap = strict.Integer(load_default=3, validate=validate.Range(min=1, max=100))
    night = fields.Nested(WindowSchema, load_default=lambda: {"start": "22:00", "end": "06:00"})
    night_page_after_minutes = strict.Float(load_default=15, validate=validate.Range(min=0, max=1440))
    night_grades = fields.List(fields.String(validate=CODE), load_default=lambda: ["urgent"])


class WishSettingsSchema(Schema):
    claim_cap = strict.Integer(load_default=2, validate=validate.Range(min=1, max=50))
    stale_claim_hours = strict.Float(load_default=72, validate=validate.Range(min=0.0001, max=24 * 60))
    takeover_answer_hours = strict.Float(load_default=24, validate=validate.Range(min=0.0001, max=24 * 30))


class VisitRulesSchema(Schema):
    # a month's visits can be proved until its end plus this many days; then they are missed
    grace_days = strict.Integer(load_default=5, validate=validate.Range(min=0, max=28))
    # a missed visit goes to the party group's lead at once, and to the park's supervisors after this
    supervise_after_days = strict.Float(load_default=3, validate=validate.Range(min=0, max=60))


class VolunteersConfigSchema(Schema):
    """PUT /api/v1/parks/{park}/volunteers/config: the park's teams, skills,
    zones and dispatch rules, as the next version."""

    version = strict.Integer(required=True, validate=validate.Range(min=1))
    timezone = fields.String(load_default="Asia/Shanghai", validate=time_zone)
    teams = fields.List(fields.Nested(TeamSchema), required=True, validate=validate.Length(min=1, max=50))
    skills = fields.List(fields.String(validate=CODE), load_default=list)
    zones = fields.List(fields.Nested(ZoneSchema), load_default=list)
    # the skills an item of the needs taxonomy calls for
    item_skills = fields.Dict(keys=fields.String(validate=CODE), values=fields.List(fields.String(validate=CODE)),
                              load_default=dict)
    dispatch = fields.Nested(DispatchSettingsSchema, load_default=lambda: DispatchSettingsSchema().load({}))
    wishes = fields.Nested(WishSettingsSchema, load_default=lambda: WishSettingsSchema().load({}))
    visit_kinds = fields.List(fields.String(validate=CODE), load_default=lambda: list(visits.VISIT_KINDS))
    visit_rules = fields.Nested(VisitRulesSchema, load_default=lambda: VisitRulesSchema().load({}))

    @validates_schema
    def _consistent(self, data, **kwargs):
        errors = {}
        for what, codes in (("teams", [t["code"] for t in data["teams"]]),
                            ("zones", [z["code"] for z in data["zones"]]), ("skills", data["skills"])):
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                errors[what] = ["listed twice: " + ", ".join(dupes)]
        unknown = sorted({s for skills in data["item_skills"].values() for s in skills} - set(data["skills"]))
        if unknown:
            errors["item_skills"] = ["unknown skills: " + ", ".join(unknown)]
        if errors:
            raise ValidationError(errors)


class ShiftSchema(Schema):
    day = fields.String(required=True, validate=validate.OneOf(rosters.WEEKDAYS))
    start = fields.String(required=True, validate=HHMM)
    end = fields.String(required=True, validate=HHMM)
    # ends the next day (a night shift); a Sunday night shift ends on Monday
    overnight = strict.Boolean(load_default=False)

    @validates_schema
    def _ends_after_start(self, data, **kwargs):
        problem = rosters.check_shift(data)
        if problem:
            raise ValidationError({"end": [problem]})


class SpanSchema(Schema):
    """A dated span (leave, or an extra shift): ISO times with an offset."""

    start = fields.AwareDateTime(required=True)
    end = fields.AwareDateTime(required=True)
    reason = fields.String(load_default=None, validate=validate.Length(max=200))

    @validates_schema
    def _ends_after_start(self, data, **kwargs):
        if data["end"] <= data["start"]:
            raise ValidationError({"end": ["ends ({}) before it starts ({})".format(
                data["end"].isoformat(), data["start"].isoformat())]})


class RosterSchema(Schema):
    """PUT /api/v1/parks/{park}/responders/{id}/roster"""

    shifts = fields.List(fields.Nested(ShiftSchema), load_default=list, validate=validate.Length(max=50))
    leave = fields.List(fields.Nested(SpanSchema), load_default=list, validate=validate.Length(max=100))
    extra = fields.List(fields.Nested(SpanSchema), load_default=list, validate=validate.Length(max=100))


class ResponderRegistrationSchema(Schema):
    """POST /api/v1/parks/{park}/responders"""

    kind = fields.String(required=True, validate=validate.OneOf(rosters.RESPONDER_KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = fields.String(load_default=None, validate=validate.Regexp(r"^\+?[0-9-]{5,20}$"))
    party_member = strict.Boolean(load_default=False)
    member_id = fields.String(load_default=None, validate=validate.Length(max=64))
    # a unit is a department, the community or the park office
    unit_kind = fields.String(load_default=None, validate=validate.OneOf(rosters.UNIT_KINDS))
    teams = fields.List(fields.String(validate=CODE), load_default=list)
    skills = fields.List(fields.String(validate=CODE), load_default=list)
    zone = fields.String(load_default=None, validate=CODE)
    max_open_tasks = strict.Integer(load_default=None, validate=validate.Range(min=1, max=100))
    active = strict.Boolean(load_default=True)
    roster = fields.Nested(RosterSchema, load_default=None)
    # the park's own number for this responder; registering it again returns
    # the responder already registered
    external_ref = fields.String(load_default=None, validate=REF)

    @validates_schema
    def _unit(self, data, **kwargs):
        if data["kind"] == "unit" and not data["unit_kind"]:
            raise ValidationError({"unit_kind": ["a unit is one of: " + ", ".join(rosters.UNIT_KINDS)]})


class PauseSchema(Schema):
    active = strict.Boolean(required=True)
    reason = fields.String(load_default=None, validate=validate.Length(max=200))


class SpanViewSchema(Schema):
    start = fields.DateTime()
    end = fields.DateTime()
    reason = fields.String(allow_none=True)


class ResponderViewSchema(Schema):
    id = fields.String(attribute="responder_id")
    external_ref = fields.String(attribute="ref")
    park_id = fields.String()
    kind = fields.String()
    unit_kind = fields.String(allow_none=True)
    name = fields.String()
    party_member = strict.Boolean()
    member_id = fields.String(allow_none=True)
    teams = fields.List(fields.String())
    categories = fields.List(fields.String())
    skills = fields.List(fields.String())
    zone = fields.String(allow_none=True)
    max_open_tasks = strict.Integer(allow_none=True)
    active = strict.Boolean()
    shifts = fields.List(fields.Dict())
    leave = fields.List(fields.Nested(SpanViewSchema))
    extra = fields.List(fields.Nested(SpanViewSchema))
    duty_hours = fields.List(strict.Integer())


# tasks ------------------------------------------------------------------------------------
class TaskActionSchema(Schema):
    """POST /api/v1/parks/{park}/tasks/{task_id}/{action}"""

    responder_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    note = fields.String(load_default=None, validate=validate.Length(max=1000))
    # complete: proof of the work
    photo_ref = fields.String(load_default=None, validate=PHOTO_REF)
    place = fields.String(load_default=None, validate=validate.Length(max=200))
    hours = strict.Float(load_default=None, validate=validate.Range(min=0, max=24))
    # answer_takeover
    accept = strict.Boolean(load_default=None)


class OfferViewSchema(Schema):
    status = fields.String()
    round = strict.Integer()
    offered_at = fields.DateTime()
    expires_at = fields.DateTime()
    reason = fields.String()


class TaskViewSchema(Schema):
    task_id = fields.String()
    need_id = fields.String()
    routing = strict.Integer()
    kind = fields.String(allow_none=True)
    category = fields.String()
    item = fields.String(allow_none=True)
    grade = fields.String()
    summary = fields.String()
    due_at = fields.DateTime()
    zone = fields.String(allow_none=True)
    teams = fields.List(fields.String())
    skills = fields.List(fields.String())
    mode = fields.String()
    status = fields.String()
    round = strict.Integer()
    offers = fields.Dict(keys=fields.String(), values=fields.Nested(OfferViewSchema))
    holder = fields.Dict(allow_none=True)
    claimed_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    completion = fields.Dict(allow_none=True)
    escalations = fields.List(fields.Dict())
    takeover = fields.Dict(allow_none=True)
    version = strict.Integer()


class WishViewSchema(Schema):
    """A line of the public wish list: what is wished, not who wished it."""

    task_id = fields.String()
    need_id = fields.String()
    category = fields.String()
    item = fields.String(allow_none=True)
    summary = fields.String()
    zone = fields.String(allow_none=True)
    due_at = fields.DateTime()
    created_at = fields.DateTime()


class NeedRoutedSchema(Schema):
    """What dispatch reads of need.* events (a tolerant reader: unknown
    fields are ignored, so the publisher may add fields). ``routing`` counts
    the times the need was routed: one task each."""

    class Meta:
        unknown = EXCLUDE

    need_id = fields.String(required=True)
    kind = fields.String(load_default=None, allow_none=True)
    category = fields.String(required=True)
    item = fields.String(load_default=None, allow_none=True)
    grade = fields.String(required=True)
    summary = fields.String(required=True)
    due_at = fields.AwareDateTime(required=True)
    team = fields.String(load_default=None, allow_none=True)
    unit = fields.String(load_default=None, allow_none=True)
    zone = fields.String(load_default=None, allow_none=True)
    routing = strict.Integer(load_default=1)
    task_id = fields.String(load_default=None, allow_none=True)


class TaskEventSchema(Schema):
    """Payload of every task.* event v1: the task as it stands after the
    change, and whom the change concerns."""

    task_id = fields.String(required=True)
    need_id = fields.String(required=True)
    routing = strict.Integer(required=True)
    status = fields.String(required=True)
    mode = fields.String(required=True)
    category = fields.String(required=True)
    item = fields.String(allow_none=True)
    grade = fields.String(required=True)
    summary = fields.String(required=True)
    due_at = fields.DateTime(required=True)
    round = strict.Integer(required=True)
    # the responder the event is about (offered to, claimed by, completed by, …)
    responder_id = fields.String(allow_none=True)
    member_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    level = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    hours = strict.Float(allow_none=True)
    at = fields.DateTime(required=True)
    # kept for subscribers of the foundation's task.offered
    offered_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)


class ServiceHoursSchema(Schema):
    """Payload of volunteer.service_hours v1 (the points service credits it)."""

    responder_id = fields.String(required=True)
    member_id = fields.String(allow_none=True)
    task_id = fields.String(required=True)
    need_id = fields.String(required=True)
    hours = strict.Float(required=True)
    at = fields.DateTime(required=True)


class VolunteerEventSchema(Schema):
    """Payload of volunteer.registered and volunteer.changed v1 (no name or phone)."""

    responder_id = fields.String(required=True)
    kind = fields.String(required=True)
    member_id = fields.String(allow_none=True)
    teams = fields.List(fields.String())
    zone = fields.String(allow_none=True)
    active = strict.Boolean(required=True)
    change = fields.String(required=True)


# visits ------------------------------------------------------------------------------------
class HouseholdSchema(Schema):
    """PUT /api/v1/parks/{park}/households/{code}: a household on the must-visit list."""

    kind = fields.String(required=True, validate=CODE)
    # an alias, not a name: the list is published when visits are missed
    label = fields.String(required=True, validate=validate.Length(min=1, max=100))
    zone = fields.String(load_default=None, validate=CODE)
    # who visits: a volunteer (their external ref) or a party group (a team code)
    visitor_ref = fields.String(load_default=None, validate=REF)
    team = fields.String(load_default=None, validate=CODE)
    # how many people live there (Sujiacun: 321 households, 924 people)
    members = strict.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100))
    active = strict.Boolean(load_default=True)

    @validates_schema
    def _someone_visits(self, data, **kwargs):
        if not data["visitor_ref"] and not data["team"]:
            raise ValidationError({"visitor_ref": ["a household needs a responsible volunteer or team"]})


class VisitProofSchema(Schema):
    """POST /api/v1/parks/{park}/visits/{visit_id}/proof"""

    responder_id = fields.String(required=True)
    visited_at = fields.AwareDateTime(required=True)
    note = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    photo_ref = fields.String(load_default=None, validate=PHOTO_REF)
    place = fields.String(load_default=None, validate=validate.Length(max=200))


class VisitEventSchema(Schema):
    """Payload of visit.scheduled, visit.completed and visit.missed v1."""

    visit_id = fields.String(required=True)
    household = fields.String(required=True)
    kind = fields.String(required=True)
    month = fields.String(required=True)
    status = fields.String(required=True)
    responder_id = fields.String(allow_none=True)
    member_id = fields.String(allow_none=True)
    team = fields.String(allow_none=True)
    at = fields.DateTime(required=True)


class VisitEscalationEventSchema(VisitEventSchema):
    """Payload of visit.escalated v1: a missed visit reaches the party
    group's lead (``to``), then the park's supervisors."""

    level = fields.String(required=True, validate=validate.OneOf(("lead", "supervisor")))
    to = fields.List(fields.String(), required=True)


class VisitRungSchema(Schema):
    level = fields.String()
    at = fields.DateTime()
    to = fields.List(fields.String())


class VisitViewSchema(Schema):
    visit_id = fields.String()
    household = fields.String()
    label = fields.String()
    members = fields.Integer(allow_none=True)
    kind = fields.String()
    month = fields.String()
    status = fields.String()
    visitor_ref = fields.String(allow_none=True)
    team = fields.String(allow_none=True)
    proof = fields.Dict(allow_none=True)
    escalations = fields.List(fields.Nested(VisitRungSchema))


# emergency ---------------------------------------------------------------------------------
class EmergencySwitchSchema(Schema):
    """POST /api/v1/parks/{park}/emergency"""

    mode = fields.String(required=True, validate=validate.OneOf(emergency.MODES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CalloutSchema(Schema):
    """POST /api/v1/parks/{park}/emergency/callouts"""

    message = fields.String(required=True, validate=validate.Length(min=1, max=500))
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))


class ReplySchema(Schema):
    responder_id = fields.String(required=True)
    answer = fields.String(required=True, validate=validate.OneOf(("coming", "cannot")))
    note = fields.String(load_default=None, validate=validate.Length(max=500))


class EmergencyEventSchema(Schema):
    """Payload of emergency.declared and emergency.ended v1."""

    mode = fields.String(required=True)
    reason = fields.String(required=True)
    actor = fields.String(required=True)
    version = strict.Integer(required=True)
    at = fields.DateTime(required=True)


class CalloutEventSchema(Schema):
    """Payload of emergency.called_out (one per recipient) and emergency.replied v1."""

    callout_id = fields.String(required=True)
    responder_id = fields.String(required=True)
    message = fields.String(required=True)
    why = fields.String(required=True)
    answer = fields.String(allow_none=True)
    at = fields.DateTime(required=True)


# what this service publishes (lamplight.registry; the catalogue is generated from it)
PUBLISHED = (
    Published("task.offered", TaskEventSchema, "A task was offered to a responder (responder_id), or to a lead."),
    Published("task.claimed", TaskEventSchema, "A responder claimed a task (the first claim wins), or a unit got it."),
    Published("task.declined", TaskEventSchema, "A responder declined an offer."),
    Published("task.started", TaskEventSchema, "The holder started the task."),
    Published("task.completed", TaskEventSchema, "The holder completed the task (note, hours)."),
    Published("task.released", TaskEventSchema, "The holder gave the task back, or a stale claim was released."),
    Published("task.withdrawn", TaskEventSchema, "An offer was withdrawn: the task was taken or the need moved on."),
    Published("task.offer_expired", TaskEventSchema, "An offer expired unanswered."),
    Published("task.escalated", TaskEventSchema, "Nobody claimed in time: the lead, or the night squad, was called."),
    Published("task.unmatched", TaskEventSchema, "Nobody could be offered the task."),
    Published("task.takeover_requested", TaskEventSchema, "Someone asked to take over a claimed wish."),
    Published("task.transferred", TaskEventSchema, "A task passed to the responder who asked to take it over."),
    Published("task.takeover_refused", TaskEventSchema, "The holder refused a take-over."),
    Published("volunteer.registered", VolunteerEventSchema, "A responder was registered (no name or phone)."),
    Published("volunteer.changed", VolunteerEventSchema, "A responder's teams, zone, roster or active flag changed."),
    Published("volunteer.service_hours", ServiceHoursSchema, "Hours of service a completed task counts for."),
    Published("visit.scheduled", VisitEventSchema, "A must-visit was scheduled for the month."),
    Published("visit.completed", VisitEventSchema, "A must-visit was proved."),
    Published("visit.missed", VisitEventSchema, "A month closed with a must-visit not made."),
    Published("visit.escalated", VisitEscalationEventSchema,
              "A missed must-visit reached the party group's lead, or later the park's supervisors."),
    Published("emergency.declared", EmergencyEventSchema, "The park went into emergency mode."),
    Published("emergency.ended", EmergencyEventSchema, "The park went back to normal."),
    Published("emergency.called_out", CalloutEventSchema, "One person was called out in an emergency."),
    Published("emergency.replied", CalloutEventSchema, "A person called out answered (coming or cannot)."),
)
