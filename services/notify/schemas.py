"""Marshmallow schemas of the notify service."""
import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.parkconfig import time_zone
from lamplight.registry import Published
from services.notify import domain

CLOCK = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$", error="not a time of day HH:MM[:SS]")
RECIPIENT_ID = validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,100}$", error="letters, digits and _.:@- only, at most 100")
MEMBER = validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$")
CODE = validate.Regexp(r"^[a-z0-9_-]{1,40}$", error="lower-case letters, digits, _ and - only")
PHONE = re.compile(r"^\+?[0-9]{6,20}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
ADDRESS_FORMS = {"sms": (PHONE, "a phone number"), "email": (EMAIL, "an e-mail address"),
                 "webhook": (URL, "an http(s) URL"), "wechat": (OPENID, "an official-account openid")}


class NightSchema(Schema):
    start = fields.String(required=True, validate=CLOCK)
    end = fields.String(required=True, validate=CLOCK)


class QuietSchema(Schema):
    night = fields.Nested(NightSchema, load_default=lambda: {"start": "22:00", "end": "07:00"})
    sleep_hours = strict.Float(load_default=8.0, validate=validate.Range(min=0.001, max=16))
    settle_minutes = strict.Float(load_default=30.0, validate=validate.Range(min=0, max=240))


class DigestSchema(Schema):
    at = fields.String(load_default="20:00", validate=CLOCK)


class RetrySchema(Schema):
    attempts = strict.Integer(load_default=3, validate=validate.Range(min=1, max=10))
    backoff_s = strict.Float(load_default=2.0, validate=validate.Range(min=0.05, max=600))


class ChannelSettingsSchema(Schema):
    # this channel's own retries, where its provider differs from the park's default
    retry = fields.Nested(RetrySchema, load_default=None)


class EmailSettingsSchema(ChannelSettingsSchema):
    host = fields.String(required=True)
    port = strict.Integer(required=True, validate=validate.Range(min=1, max=65535))
    sender = fields.Email(required=True)
    starttls = strict.Boolean(load_default=False)
    username = fields.String(load_default=None)
    password = fields.String(load_default=None)
    timeout_s = strict.Float(load_default=10, validate=validate.Range(min=0.1, max=60))


class WebhookSettingsSchema(ChannelSettingsSchema):
    secret = fields.String(required=True, validate=validate.Length(min=16, max=200))
    timeout_s = strict.Float(load_default=5, validate=validate.Range(min=0.1, max=60))


class SmsSettingsSchema(ChannelSettingsSchema):
    provider = fields.String(required=True, validate=validate.OneOf(("aliyun", "tencent")))
    endpoint = fields.Url(required=True, require_tld=False)
    sign_name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    template_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # Aliyun
    access_key_id = fields.String(load_default=None)
    access_key_secret = fields.String(load_default=None)
    region = fields.String(load_default=None)
    # Tencent
    secret_id = fields.String(load_default=None)
    secret_key = fields.String(load_default=None)
    sdk_app_id = fields.String(load_default=None)
    timeout_s = strict.Float(load_default=5, validate=validate.Range(min=0.1, max=60))

    @validates_schema
    def _credentials(self, data, **kwargs):
        wanted = {"aliyun": ("access_key_id", "access_key_secret"),
                  "tencent": ("secret_id", "secret_key", "sdk_app_id")}[data["provider"]]
        missing = {k: ["required for provider {}".format(data["provider"])] for k in wanted if not data.get(k)}
        if missing:
            raise ValidationError(missing)


class WeChatSettingsSchema(ChannelSettingsSchema):
    endpoint = fields.Url(required=True, require_tld=False)
    app_id = fields.String(required=True)
    app_secret = fields.String(required=True)
    template_id = fields.String(required=True)
    # template keyword -> what fills it (title, body or time)
    fields_ = fields.Dict(data_key="fields", attribute="fields", keys=fields.String(),
                          values=fields.String(validate=validate.OneOf(("title", "body", "time"))), load_default=None)
    link = fields.String(load_default=None)
    timeout_s = strict.Float(load_default=5, validate=validate.Range(min=0.1, max=60))


class ChannelsSchema(Schema):
    email = fields.Nested(EmailSettingsSchema, load_default=None)
    webhook = fields.Nested(WebhookSettingsSchema, load_default=None)
    sms = fields.Nested(SmsSettingsSchema, load_default=None)
    wechat = fields.Nested(WeChatSettingsSchema, load_default=None)


class NotifyConfigSchema(Schema):
    """PUT /api/v1/parks/{park}/notify/config"""

    version = strict.Integer(required=True, validate=validate.Range(min=1))
    timezone = fields.String(load_default="Asia/Shanghai", validate=time_zone)
    channels = fields.Nested(ChannelsSchema, load_default=dict)
    quiet = fields.Nested(QuietSchema, load_default=lambda: QuietSchema().load({}))
    digest = fields.Nested(DigestSchema, load_default=lambda: DigestSchema().load({}))
    retry = fields.Nested(RetrySchema, load_default=lambda: RetrySchema().load({}))
    # sends per second per channel, for the whole park across every process
    rate_limits = fields.Dict(keys=fields.String(validate=validate.OneOf(domain.PUSH_CHANNELS)),
                              values=strict.Integer(validate=validate.Range(min=1, max=10000)), load_default=dict)


SECRET_KEYS = ("password", "secret", "access_key_secret", "secret_key", "app_secret")


class ShiftSchema(Schema):
    day = fields.String(required=True, validate=validate.OneOf(domain.DAYS))
    start = fields.String(required=True, validate=CLOCK)
    end = fields.String(required=True, validate=CLOCK)
    overnight = strict.Boolean(load_default=False)

    @validates_schema
    def _ends_after_start(self, data, **kwargs):
        if not data["overnight"] and domain.parse_clock(data["end"]) <= domain.parse_clock(data["start"]):
            raise ValidationError({"end": ["the shift ends ({}) before it starts ({}); mark it overnight if it ends "
                                           "the next day".format(data["end"], data["start"])]})


class AddressesSchema(Schema):
    sms = fields.String(load_default=None)
    email = fields.String(load_default=None)
    wechat = fields.String(load_default=None)
    webhook = fields.String(load_default=None)

    @validates_schema
    def _forms(self, data, **kwargs):
        wrong = {k: ["not {}".format(ADDRESS_FORMS[k][1])] for k, v in data.items()
                 if v is not None and not ADDRESS_FORMS[k][0].match(v)}
        if wrong:
            raise ValidationError(wrong)


class RecipientSchema(Schema):
    """PUT /api/v1/parks/{park}/notify/recipients/{id}: how a person (or a
    department system) is reached, and when not."""

    locale = fields.String(load_default="zh-CN", validate=validate.OneOf(domain.LOCALES))
    addresses = fields.Nested(AddressesSchema, load_default=dict)
    # push channels in order of preference; the in-app inbox is always on
    channels = fields.List(fields.String(validate=validate.OneOf(domain.PUSH_CHANNELS)), load_default=list)
    opted_out = fields.List(fields.String(validate=validate.OneOf(domain.TOPICS)), load_default=list)
    # the recipient's work roster in the park's time zone: quiet hours follow it
    shifts = fields.List(fields.Nested(ShiftSchema), load_default=list, validate=validate.Length(max=28))
    member_id = fields.String(load_default=None, validate=MEMBER)
    building = fields.String(load_default=None, validate=CODE)
    teams = fields.List(fields.String(validate=CODE), load_default=list)
    roles = fields.List(fields.String(validate=validate.OneOf(domain.ROLES)), load_default=list)

    @validates_schema
    def _reachable(self, data, **kwargs):
        if len(set(data["channels"])) != len(data["channels"]):
            raise ValidationError({"channels": ["a channel is listed twice"]})
        missing = [c for c in data["channels"] if not (data["addresses"] or {}).get(c)]
        if missing:
            raise ValidationError({"addresses": ["no address for channel {}".format(c) for c in missing]})


class RecipientImportSchema(RecipientSchema):
    id = fields.String(required=True, validate=RECIPIENT_ID)


class RecipientBatchSchema(Schema):
    """POST …/notify/recipients: {"recipients": [RecipientImport, …]}. The
    rows are checked one by one (RecipientImportSchema), so that every bad
    row is named at once; the documented body says what each row is."""

    recipients = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=5000))


class RecipientImportBatchSchema(Schema):
    """The body of POST …/notify/recipients as documented (RecipientBatchSchema loads it)."""

    recipients = fields.List(fields.Nested(RecipientImportSchema), required=True,
                             validate=validate.Length(min=1, max=5000))


class TemplateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=500))
    body = fields.String(required=True, validate=validate.Length(min=1, max=5000))


class PreviewSchema(Schema):
    key = fields.String(required=True, validate=validate.OneOf(domain.TEMPLATE_KEYS))
    locale = fields.String(load_default="zh-CN", validate=validate.OneOf(domain.LOCALES))
    title = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    body = fields.String(load_default=None, validate=validate.Length(min=1, max=5000))
    data = fields.Dict(load_default=None)


class AudienceSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("park", "team", "building", "role")))
    value = fields.String(load_default=None, validate=validate.Length(min=1, max=40))

    @validates_schema
    def _value(self, data, **kwargs):
        if data["kind"] != "park" and not data["value"]:
            raise ValidationError({"value": ["which {} the broadcast goes to".format(data["kind"])]})
        if data["kind"] == "role" and data["value"] not in domain.ROLES:
            raise ValidationError({"value": ["one of " + ", ".join(domain.ROLES)]})


class BroadcastSchema(Schema):
    """POST /api/v1/parks/{park}/notify/broadcasts (the red broadcast, an
    emergency alert): one notice per person in the audience."""

    title = fields.String(required=True, validate=validate.Length(min=1, max=domain.TITLE_MAX))
    body = fields.String(required=True, validate=validate.Length(min=1, max=domain.BODY_MAX))
    audience = fields.Nested(AudienceSchema, load_default=lambda: {"kind": "park", "value": None})
    critical = strict.Boolean(load_default=False)
    channels = fields.List(fields.String(validate=validate.OneOf(domain.PUSH_CHANNELS)), load_default=None)
    actor = fields.String(required=True, validate=validate.Length(min=1, max=64))


# views ---------------------------------------------------------------------------------
class NoticeViewSchema(Schema):
    id = fields.String(attribute="_id")
    recipient_id = fields.String()
    channel = fields.String()
    type = fields.String()
    topic = fields.String()
    priority = fields.String()
    subject = fields.String(allow_none=True)
    source_id = fields.String()
    title = fields.String()
    body = fields.String()
    read = strict.Boolean()
    created_at = fields.DateTime()


class DeliveryViewSchema(Schema):
    notice_id = fields.String()
    recipient_id = fields.String()
    channel = fields.String()
    type = fields.String()
    source_id = fields.String()
    status = fields.String()
    at = fields.DateTime()
    reason = fields.String(allow_none=True)
    until = fields.DateTime(allow_none=True)
    attempt = strict.Integer(allow_none=True)
    provider_id = fields.String(allow_none=True)


# events ----------------------------------------------------------------------------------
class SourceEventSchema(Schema):
    """What notify reads of the events it notifies on (a tolerant reader:
    templates see every field the publisher sent)."""

    class Meta:
        unknown = EXCLUDE

    responder_id = fields.String(load_default=None, allow_none=True)
    member_id = fields.String(load_default=None, allow_none=True)
    requester_member_id = fields.String(load_default=None, allow_none=True)
    need_id = fields.String(load_default=None, allow_none=True)
    level = fields.String(load_default=None, allow_none=True)
    to = fields.List(fields.String(), load_default=list)  # the responders a rung names


class VolunteerEventSchema(Schema):
    """What notify keeps of volunteer.registered / volunteer.changed."""

    class Meta:
        unknown = EXCLUDE

    responder_id = fields.String(required=True)
    member_id = fields.String(load_default=None, allow_none=True)
    teams = fields.List(fields.String(), load_default=list)
    zone = fields.String(load_default=None, allow_none=True)
    active = strict.Boolean(required=True)


class NeedFollowedSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    need_id = fields.String(required=True)
    follower_id = fields.String(required=True)
    following = strict.Boolean(required=True)


class NoticeSentSchema(Schema):
    """Payload of notice.sent and notice.failed v1."""

    notice_id = fields.String(required=True)
    recipient_id = fields.String(required=True)
    channel = fields.String(required=True)
    type = fields.String(required=True)
    topic = fields.String(required=True)
    subject = fields.String(allow_none=True)
    source_event_id = fields.String(required=True)
    reason = fields.String(allow_none=True)


class BroadcastEventSchema(Schema):
    """Payload of broadcast.requested and broadcast.completed v1."""

    broadcast_id = fields.String(required=True)
    audience = fields.Dict(required=True)
    critical = strict.Boolean(required=True)
    actor = fields.String(required=True)
    recipients = strict.Integer(allow_none=True)
    at = fields.DateTime(required=True)


# what this service publishes (lamplight.registry; the catalogue is generated from it)
PUBLISHED = (
    Published("notice.sent", NoticeSentSchema, "A notice reached a recipient's inbox or a provider took it "
                                               "(not published for each in-app notice of a broadcast)."),
    Published("notice.failed", NoticeSentSchema, "A notice failed on every channel the recipient has (reason)."),
    Published("broadcast.requested", BroadcastEventSchema, "A broadcast was accepted; its fan-out follows."),
    Published("broadcast.completed", BroadcastEventSchema,
              "A broadcast reached everyone in its audience (recipients)."),
)
