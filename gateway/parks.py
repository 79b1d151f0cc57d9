"""Parks: each park's whole configuration, versioned, announced as events.

A park's configuration is one document with a section per service — the
needs taxonomy, grades and due times and supervision ladder (``needs``), the
teams, zones and dispatch rules (``volunteers``), quiet hours, digest and
channels (``notify``), the points rules (``points``). Each change names the
version it makes (the current + 1); every version is kept. A change is
published as ``park.configured`` with the whole configuration, in the same
write (the outbox), and each service projects its own section: what a
service was sent is what the gateway validated with that service's own schema.
"""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.parkconfig import ParkConfig
from lamplight.registry import Published
from services.needs.schemas import NeedsConfigSchema
from services.notify.schemas import NotifyConfigSchema
from services.points import domain as points_domain
from services.points.schemas import CatalogueSchema
from services.volunteers.schemas import VolunteersConfigSchema

SECTIONS = {
    "needs": NeedsConfigSchema(),
    "volunteers": VolunteersConfigSchema(),
    "notify": NotifyConfigSchema(),
    "points": CatalogueSchema(),
}


class ParkSchema(Schema):
    """PUT /api/v1/parks/{park}: the park's name and a section per service;
    ``version`` is the current version + 1 (1 creates the park)."""

    version = strict.Integer(required=True, validate=validate.Range(min=1))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    needs = fields.Dict(required=True, metadata={"description": "as PUT …/needs/config, without version"})
    volunteers = fields.Dict(load_default=None, metadata={"description": "as PUT …/volunteers/config"})
    notify = fields.Dict(load_default=None, metadata={"description": "as PUT …/notify/config"})
    points = fields.Dict(load_default=None, metadata={"description": "as PUT …/points/rules: rules, star_thresholds"})

    @validates_schema
    def sections_valid(self, data, **_):
        errors = {}
        for name, schema in SECTIONS.items():
            section = data.get(name)
            if section is None:
                continue
            if "version" in section:
                errors[name] = {"version": ["a section has no version of its own; the park's version counts"]}
                continue
            try:
                loaded = schema.load(dict(section, version=1))
            except ValidationError as exc:
                errors[name] = exc.messages
                continue
            if name == "points":
                try:
                    points_domain.validate_catalogue(loaded["rules"])
                except points_domain.PointsRuleError as exc:
                    errors[name] = {"rules": exc.fields}
        if errors:
            raise ValidationError(errors)


class ParkViewSchema(Schema):
    park_id = fields.String()
    version = strict.Integer()
    name = fields.String()
    needs = fields.Dict()
    volunteers = fields.Dict(allow_none=True)
    notify = fields.Dict(allow_none=True)
    points = fields.Dict(allow_none=True)
    saved_at = fields.DateTime()
    saved_by = fields.String(allow_none=True)


class ParkConfiguredSchema(Schema):
    """Data of park.configured: the whole configuration as of ``version``."""

    park_id = fields.String(required=True)
    version = strict.Integer(required=True)
    name = fields.String(required=True)
    sections = fields.Dict(keys=fields.String(validate=validate.OneOf(tuple(SECTIONS))), values=fields.Dict(),
                           required=True, metadata={"description": "needs, volunteers, notify, points: what each "
                                                    "service installs (sections left out are not changed)"})
    changed = fields.List(fields.String(), required=True,
                          metadata={"description": "the sections that differ from the previous version"})
    saved_by = fields.String(allow_none=True)


def park_config(scope):
    return ParkConfig(scope, "park configuration")


def view(park_id, doc):
    return {"park_id": park_id, "version": doc["version"], "name": doc.get("name"),
            **{name: doc.get(name) for name in SECTIONS},
            "saved_at": doc.get("saved_at").isoformat() if doc.get("saved_at") else None,
            "saved_by": doc.get("saved_by")}


def changed_sections(previous, config):
    previous = previous or {}
    return [name for name in ("name",) + tuple(SECTIONS) if previous.get(name) != config.get(name)]


PUBLISHED = [
    Published("park.configured", ParkConfiguredSchema,
              "A park was created or its configuration changed; each service installs its section.",
              example={"park_id": "quanlinan", "version": 2, "name": "全力南集聚区（武汉经开区）",
                       "sections": {"notify": {"timezone": "Asia/Shanghai", "digest": {"at": "20:00"}}},
                       "changed": ["notify"], "saved_by": "key:3f1c9a7e5b2d4c60"}),
]
