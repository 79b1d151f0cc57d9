"""The event registry: every event type the services publish, with its
schema, version, source service, exchange, routing key and an example.

Each service declares what it publishes as ``PUBLISHED = (Published(...),
...)`` and registers that declaration in the ``lamplight.published`` entry
points (``lamplight.installed``); the outbox refuses to build an event
of a publishing service that is not declared there, and the catalogue —
``docs/asyncapi.yaml`` (AsyncAPI 3.0) and ``docs/events.md`` — is generated
from it by ``lamplight events catalog`` and never written by hand.

Versions. Version 1 of a type is published with the type as routing key;
version n > 1 with ``<type>.v<n>``. A type whose schema changes
incompatibly gets the next version, and names the version before it as
``previous`` with the date its deprecation window ends: until then every
event is published in both versions (the old one on the old routing key,
with ``previous.downgrade`` turning the new data into the old shape), so a
subscriber has the window to move. ``docs/events-released.json`` is the
catalogue of the last release; the compatibility check compares the code's
schemas against it.
"""
import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Optional, Type

from marshmallow import EXCLUDE, Schema

from lamplight import installed
from lamplight.envelope import dataschema_uri
from lamplight.shapes import Envelope

ASYNCAPI_PATH = "docs/asyncapi.yaml"
MARKDOWN_PATH = "docs/events.md"
RELEASED_PATH = "docs/events-released.json"


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


@dataclass(frozen=True)
class Previous:
    """An older version still published beside the current one until ``until``."""

    version: int
    schema: type[Schema]
    until: str  # ISO date, the last day it is published
    downgrade: Callable[[dict[str, Any]], dict[str, Any]] = _same


@dataclass(frozen=True)
class Published:
    type: str
    schema: Type[Schema]  # the marshmallow schema of the payload ('type' is a field here)
    summary: str
    version: int = 1
    example: dict[str, Any] = field(default_factory=dict)  # values that read better than the generated ones
    previous: Optional[Previous] = None


class UnregisteredEvent(Exception):
    """A service built an event it does not declare in its PUBLISHED."""


def routing_key(event_type: str, version: int) -> str:
    return event_type if version == 1 else "{}.v{}".format(event_type, version)


def version_of(envelope: Envelope) -> int:
    """The version an envelope carries in its dataschema (urn:…:v<n>)."""
    try:
        return int(envelope["dataschema"].rsplit(":v", 1)[1])
    except (KeyError, IndexError, ValueError):
        return 1


def envelope_routing_key(envelope: Envelope) -> str:
    return routing_key(envelope["type"], version_of(envelope))


_loaded: dict[str, dict[str, Published]] = {}


def _declared_of(service: str) -> dict[str, Published]:
    """{type: Published} of one publishing service (imports only its own schemas)."""
    if service not in _loaded:
        by_type = {}
        for entry in installed.published_by(service):
            if entry.type in by_type:
                raise ValueError("{} declares {} twice".format(service, entry.type))
            by_type[entry.type] = entry
        _loaded[service] = by_type
    return _loaded[service]


def declared() -> dict[str, dict[str, Published]]:
    """{service: {type: Published}} of every publishing service."""
    return {service: _declared_of(service) for service in installed.publishers()}


def published_by(service: str) -> dict[str, Published] | None:
    """The types ``service`` declares, or None for a service that is not a
    registered publisher (kernel tests build their own)."""
    if service not in installed.publishers():
        return None
    return _declared_of(service)


def expand(envelopes: Iterable[Envelope], registered: dict[str, Published] | None,
           today: date | None = None) -> list[Envelope]:
    """``envelopes`` plus, for each whose type is inside a deprecation
    window, the same event in its previous version (a deterministic id, so
    staging, publishing and discarding agree)."""
    if not registered:
        return list(envelopes)
    day = (today or date.today()).isoformat()
    out = []
    for envelope in envelopes:
        out.append(envelope)
        entry = registered.get(envelope["type"])
        if entry is None or entry.previous is None or version_of(envelope) != entry.version:
            continue
        if day > entry.previous.until:
            continue
        schema = entry.previous.schema()
        # through the old schema both ways: what it does not know is dropped, what it needs is checked
        data = schema.dump(schema.load(entry.previous.downgrade(copy.deepcopy(envelope["data"])), unknown=EXCLUDE))
        old = dict(envelope, id="{}.v{}".format(envelope["id"], entry.previous.version),
                   dataschema=dataschema_uri(envelope["type"], entry.previous.version), data=data)
        out.append(old)
    return out


# JSON Schema ------------------------------------------------------------------------------
def _converter() -> tuple[Any, Any]:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    plugin = MarshmallowPlugin()
    spec = APISpec("lamplight", "1", "3.1.0", plugins=[plugin])
    return spec, plugin.converter


def json_schema(schema_cls: type[Schema]) -> dict[str, Any]:
    """The payload schema as JSON Schema (apispec's marshmallow converter,
    OpenAPI 3.1 flavour, which is JSON Schema), nested schemas inlined. A
    reader must accept fields it does not know: adding one is compatible."""
    spec, converter = _converter()
    out = converter.schema2jsonschema(schema_cls)
    components = spec.to_dict().get("components", {}).get("schemas", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(copy.deepcopy(components[node["$ref"].rsplit("/", 1)[1]]))
            return {k: inline(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(out)


# examples ---------------------------------------------------------------------------------
SAMPLES = {
    "need_id": "need_01jcx8mh3k4q7r9t2v5w8y0z1a", "task_id": "need_01jcx8mh3k4q7r9t2v5w8y0z1a:task:1",
    "responder_id": "rsp_01jcx8n2b7c9d3f5g7h9j1k3m5", "member_id": "QLN-M001", "requester_member_id": "QLN-M101",
    "callout_id": "co_01jcx8p4r6s8t0v2w4x6y8z0b2", "visit_id": "quanlinan/visit:H-001:2026-11",
    "entry_id": "ent_01jcx8q6t8v0w2y4z6a8c0e2g4", "account_id": "quanlinan/QLN-M001/discipline/2026",
    "notice_id": "evt_01jcx8r8v0x2z4b6d8f0h2k4m6:rsp_01jcx8n2b7c9d3f5g7h9j1k3m5:inapp",
    "broadcast_id": "bc_4f1c2a9e8d7b6a5c4e3f", "source_event_id": "evt_01jcx8r8v0x2z4b6d8f0h2k4m6",
    "follower_id": "worker-li", "category": "daily_life", "item": "facilities_repair", "grade": "routine",
    "kind": "micro_wish", "channel": "wish_wall", "team": "orange", "zone": "dorms", "summary": "宿舍区篮球场的灯坏了",
    "title": "宿舍区篮球场的灯坏了", "status": "triaged", "from_status": "submitted", "action": "triage",
    "requester_kind": "worker", "household": "H-001", "month": "2026-11", "reason": "offer", "level": "lead",
    "mode": "offer", "message": "北区仓库进水，请带沙袋到场。", "actor": "desk-01", "answer": "coming",
    "type": "task.offered", "topic": "tasks", "recipient_id": "rsp_01jcx8n2b7c9d3f5g7h9j1k3m5",
    "account_kind": "discipline", "rule_code": "absent-org-life", "why": "squad", "change": "registered",
}
_FORMATS = {"date-time": "2026-11-21T08:30:00.000Z", "date": "2026-11-21", "email": "someone@example.cn"}


def _sample(name: str, prop: dict[str, Any]) -> Any:
    types = prop.get("type", "string")
    types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"] or ["null"]
    kind = types[0]
    if kind == "string":
        return _FORMATS.get(prop.get("format") or "") or SAMPLES.get(name, name.replace("_", " "))
    if kind == "integer":
        return {"version": 2, "year": 2026, "round": 1, "routing": 1}.get(name, 3)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        items = prop.get("items", {})
        return [_example_of(items)] if items.get("type") == "object" else [_sample(name[:-1], items)]
    if kind == "object":
        return _example_of(prop)
    return None


def _example_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {name: _sample(name, prop) for name, prop in sorted(schema.get("properties", {}).items())}


def example(entry: Published, schema: dict[str, Any]) -> dict[str, Any]:
    return dict(_example_of(schema), **entry.example)


# the catalogue --------------------------------------------------------------------------------
def catalogue() -> dict[str, dict[str, Any]]:
    """Every published type: {type: {...}}, ordered by source and type."""
    out = {}
    for service, entries in declared().items():
        for event_type in sorted(entries):
            entry = entries[event_type]
            schema = json_schema(entry.schema)
            versions = [{"version": entry.version, "routing_key": routing_key(event_type, entry.version),
                         "dataschema": dataschema_uri(event_type, entry.version), "schema": schema}]
            if entry.previous is not None:
                versions.append({"version": entry.previous.version,
                                 "routing_key": routing_key(event_type, entry.previous.version),
                                 "dataschema": dataschema_uri(event_type, entry.previous.version),
                                 "schema": json_schema(entry.previous.schema),
                                 "deprecated_until": entry.previous.until})
            out[event_type] = {"type": event_type, "source": service, "exchange": "{}.events".format(service),
                               "summary": entry.summary, "versions": versions,
                               "example": example(entry, schema)}
    return out


ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
                 "parkid", "traceparent", "data"],
    "properties": {
        "specversion": {"const": "1.0"}, "id": {"type": "string", "maxLength": 128},
        "source": {"type": "string", "pattern": "^lamplight/[a-z]+$"}, "type": {"type": "string"},
        "subject": {"type": ["string", "null"]}, "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"}, "dataschema": {"type": "string"},
        "parkid": {"type": "string"}, "traceparent": {"type": "string",
                                                      "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
        "requestid": {"type": "string", "maxLength": 128,
                      "description": "the X-Request-Id of the HTTP request that caused the event, if one did"},
        "data": {"type": "object"},
    },
}


def asyncapi(cat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The catalogue as an AsyncAPI 3.0 document: one channel per exchange and
    routing key, one message per type and version, one receive operation each
    (what a subscriber may bind to)."""
    channels, operations, messages, schemas = {}, {}, {}, {"Envelope": ENVELOPE_SCHEMA}
    for event_type, item in cat.items():
        for v in item["versions"]:
            key = "{}_v{}".format(event_type.replace(".", "_"), v["version"])
            schemas[key] = v["schema"]
            message = {
                "name": event_type, "title": "{} v{}".format(event_type, v["version"]), "summary": item["summary"],
                "contentType": "application/cloudevents+json",
                "payload": {"allOf": [{"$ref": "#/components/schemas/Envelope"}, {
                    "type": "object", "properties": {
                        "type": {"const": event_type}, "dataschema": {"const": v["dataschema"]},
                        "data": {"$ref": "#/components/schemas/" + key}}}]},
                "bindings": {"amqp": {"bindingVersion": "0.3.0", "messageType": event_type}},
            }
            if v["version"] == item["versions"][0]["version"]:
                message["examples"] = [{"name": "example", "payload": {
                    "specversion": "1.0", "id": "evt_01jcx8r8v0x2z4b6d8f0h2k4m6",
                    "source": "lamplight/" + item["source"],
                    "type": event_type, "subject": item["example"].get("need_id") or "subject-id",
                    "time": "2026-11-21T08:30:00.000Z", "datacontenttype": "application/json",
                    "dataschema": v["dataschema"], "parkid": "quanlinan",
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "data": item["example"]}}]
            if "deprecated_until" in v:
                message["description"] = "Deprecated: published beside v{} until {}.".format(
                    item["versions"][0]["version"], v["deprecated_until"])
            messages[key] = message
            channels[key] = {
                "address": v["routing_key"], "title": "{} on {}".format(v["routing_key"], item["exchange"]),
                "messages": {key: {"$ref": "#/components/messages/" + key}},
                "bindings": {"amqp": {"bindingVersion": "0.3.0", "is": "routingKey", "exchange": {
                    "name": item["exchange"], "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}}},
            }
            operations["receive_" + key] = {"action": "receive", "channel": {"$ref": "#/channels/" + key},
                                            "messages": [{"$ref": "#/channels/{}/messages/{}".format(key, key)}],
                                            "summary": item["summary"],
                                            # published persistent; acknowledge after your own write
                                            "bindings": {"amqp": {"bindingVersion": "0.3.0", "ack": True}}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Lamplight events", "version": "1",
                 "description": "Every event the Lamplight services publish. Generated by `lamplight events "
                                "catalog` from the services' schemas; do not edit. Each event is a CloudEvents 1.0 "
                                "envelope in structured JSON on the topic exchange `<service>.events`, routing key "
                                "= type (`<type>.v<n>` for version n > 1). Bind your own durable queue."},
        "defaultContentType": "application/cloudevents+json",
        "servers": {"broker": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0-9-1"}},
        "channels": channels, "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def markdown(cat: dict[str, dict[str, Any]]) -> str:
    lines = ["# Lamplight events", "",
             "Generated by `lamplight events catalog` from the services' schemas (`PUBLISHED` in each "
             "`services/<name>/schemas.py`); do not edit. The machine-readable catalogue is "
             "[asyncapi.yaml](asyncapi.yaml).", "",
             "Every event is a CloudEvents 1.0 envelope (structured JSON): `id`, `source` (`lamplight/<service>`), "
             "`type`, `subject`, `time`, `datacontenttype`, `dataschema` (`urn:lamplight:events:<type>:v<n>`), "
             "`parkid`, `traceparent`, `data`, and `requestid` when an HTTP request caused it. "
             "It is published persistent to the topic exchange `<service>.events` "
             "with the type as routing key (`<type>.v<n>` from version 2 on). Bind your own durable queue, "
             "with patterns such as `need.*` or `points.#`; acknowledge after your own write; expect an event "
             "more than once (deduplicate by `id`) and ignore fields you do not know.", "",
             "{} types.".format(len(cat)), "", "| type | source | version | routing key | what happened |",
             "|---|---|---|---|---|"]
    for event_type, item in cat.items():
        for v in item["versions"]:
            note = " (deprecated, until {})".format(v["deprecated_until"]) if "deprecated_until" in v else ""
            lines.append("| `{}` | {} | {}{} | `{}` | {} |".format(event_type, item["source"], v["version"], note,
                                                              v["routing_key"], item["summary"]))
    for event_type, item in cat.items():
        schema = item["versions"][0]["schema"]
        required = set(schema.get("required", []))
        lines += ["", "## `{}`".format(event_type), "", item["summary"], "",
                  "Exchange `{}`, routing key `{}`, dataschema `{}`.".format(
                      item["exchange"], item["versions"][0]["routing_key"], item["versions"][0]["dataschema"]), "",
                  "| field | type | required |", "|---|---|---|"]
        for name, prop in sorted(schema.get("properties", {}).items()):
            kind = prop.get("type", "object")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            if prop.get("format"):
                kind += " ({})".format(prop["format"])
            lines.append("| `{}` | {} | {} |".format(name, kind, "yes" if name in required else ""))
        lines += ["", "```json", json.dumps(item["example"], ensure_ascii=False, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def released_view(cat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a release keeps of the catalogue: each type's versions, their
    schemas and deprecation windows."""
    return {t: {"source": item["source"], "versions": {
        str(v["version"]): {"schema": v["schema"], "deprecated_until": v.get("deprecated_until")}
        for v in item["versions"]}} for t, item in cat.items()}


# compatibility ------------------------------------------------------------------------------
def _types(prop: dict[str, Any]) -> set[str]:
    kind = prop.get("type")
    return set(kind if isinstance(kind, list) else [kind]) if kind else set()


def incompatible(old: dict[str, Any], new: dict[str, Any], path: str = "data") -> list[str]:
    """Why a reader of ``old`` could not read what ``new`` allows: a field
    removed, a field's type changed or narrowed, a field newly required."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name, prop in sorted(old_props.items()):
        where = "{}.{}".format(path, name)
        if name not in new_props:
            problems.append("{} removed".format(where))
            continue
        if _types(prop) and not _types(new_props[name]) <= _types(prop):
            problems.append("{} changed type from {} to {}".format(
                where, "/".join(sorted(_types(prop))), "/".join(sorted(_types(new_props[name])))))
        if name in old_required and name not in new_required:
            problems.append("{} is no longer always sent".format(where))
        if prop.get("type") == "object" or "properties" in prop:
            problems += incompatible(prop, new_props[name], where)
        if isinstance(prop.get("items"), dict) and "properties" in prop["items"]:
            problems += incompatible(prop["items"], new_props[name].get("items", {}), where + "[]")
    for name in sorted(new_required - old_required - (set(new_props) - set(old_props))):
        problems.append("{}.{} became required".format(path, name))
    for name in sorted((set(new_props) - set(old_props)) & new_required):
        problems.append("{}.{} is new and required".format(path, name))
    return problems


def check_compatibility(released: dict[str, Any], current: dict[str, Any], today: date | None = None) -> list[str]:
    """Problems of the current catalogue against the released one: each
    released version of each type is still published, and a reader of it can
    read what is published now — unless its deprecation window has ended."""
    day = (today or date.today()).isoformat()
    problems = []
    for event_type, old in sorted(released.items()):
        now = {str(v["version"]): v for v in current[event_type]["versions"]} if event_type in current else {}
        for version, was in sorted(old["versions"].items()):
            if was.get("deprecated_until") and was["deprecated_until"] < day:
                continue  # its window is over: it may go
            if version not in now:
                problems.append("{} v{} is no longer published (an incompatible change is a new version, and v{} "
                                "stays as its previous for a deprecation window)".format(event_type, version, version))
                continue
            for problem in incompatible(was["schema"], now[version]["schema"]):
                problems.append("{} v{}: {} — an incompatible change needs version {} (keep v{} as previous)".format(
                    event_type, version, problem, int(version) + 1, version))
    return problems
