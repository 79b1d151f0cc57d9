"""Marshmallow schemas of the points service."""
from marshmallow import Schema, fields


class AccountViewSchema(Schema):
    park_id = fields.String()
    member_id = fields.String()
    year = fields.Integer()
    balance = fields.Integer()
    entries = fields.Integer()
    warning = fields.String(allow_none=True)
