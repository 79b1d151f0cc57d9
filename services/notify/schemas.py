"""Marshmallow schemas of the notify service."""
from marshmallow import EXCLUDE, Schema, fields


class TaskOfferedSchema(Schema):
    """What notify reads of task.offered v1 (tolerant reader)."""

    class Meta:
        unknown = EXCLUDE

    task_id = fields.String(required=True)
    need_id = fields.String(required=True)
    responder_id = fields.String(required=True)
    category = fields.String(required=True)
    summary = fields.String(required=True)
    due_at = fields.String(required=True)


class NoticeViewSchema(Schema):
    id = fields.String(attribute="_id")
    recipient_id = fields.String()
    channel = fields.String()
    topic = fields.String()
    subject = fields.String()
    title = fields.String()
    body = fields.String()
    read = fields.Boolean()
    created_at = fields.DateTime()


class NoticeSentSchema(Schema):
    """Payload of notice.sent v1."""

    notice_id = fields.String(required=True)
    recipient_id = fields.String(required=True)
    channel = fields.String(required=True)
    topic = fields.String(required=True)
    subject = fields.String(required=True)
    source_event_id = fields.String(required=True)
