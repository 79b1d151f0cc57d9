"""The event registry and the catalogue generated from it: every published
type declared, the committed catalogue fresh, examples that match their
schemas, the compatibility check against the released catalogue, and the
previous version published beside the new one for its window."""
import copy
import io
import json
import os
from datetime import date, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from marshmallow import fields

from lamplight import registry
from lamplight.envelope import new_event
from lamplight.publishing import Events
from lamplight_tools import eventsctl
from services.needs.schemas import NeedSubmittedSchema

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


def test_the_committed_catalogue_is_what_the_code_generates():
    out = io.StringIO()
    assert eventsctl.catalog(check=True, out=out) == 0, out.getvalue()
    assert "55 event types" in out.getvalue()  # needs 19, volunteers 24, points 7, notify 4, gateway 1


def test_the_catalogue_is_a_valid_asyncapi_3_document():
    """Checked against the AsyncAPI 3.0.0 JSON Schema of @asyncapi/specs (fetched by ./dev test)."""
    path = os.environ.get("LAMPLIGHT_ASYNCAPI_SCHEMA") or str(
        Path(__file__).resolve().parents[2] / ".stack" / "asyncapi-specs-6.11.1" / "package" / "schemas"
        / "3.0.0-without-$id.json")
    assert Path(path).exists(), "no AsyncAPI JSON Schema at {}: run the tests with ./dev test".format(path)
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(spec)(spec)
    doc = yaml.safe_load(eventsctl.rendered()[registry.ASYNCAPI_PATH])
    errors = [jsonschema.exceptions.best_match([e]).message for e in validator.iter_errors(doc)]
    assert errors == []


def test_the_code_is_compatible_with_the_released_catalogue():
    assert registry.check_compatibility(eventsctl.released(), registry.catalogue()) == []


def test_a_stale_catalogue_is_reported_by_name(tmp_path):
    for path, text in eventsctl.rendered().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text.replace("need.submitted", "need.sent", 1), encoding="utf-8")
    out = io.StringIO()
    assert eventsctl.catalog(root=tmp_path, check=True, out=out) == 1
    assert "stale: docs/asyncapi.yaml, docs/events.md" in out.getvalue()


def test_the_catalogue_lists_every_type_with_where_to_bind_and_an_example_that_fits_its_schema():
    cat = registry.catalogue()
    assert {item["source"] for item in cat.values()} == {"needs", "volunteers", "points", "notify", "gateway"}
    for event_type, item in cat.items():
        current = item["versions"][0]
        assert item["exchange"] == item["source"] + ".events" and current["routing_key"] == event_type
        jsonschema.validate(item["example"], current["schema"])
    doc = yaml.safe_load(eventsctl.rendered()[registry.ASYNCAPI_PATH])
    assert doc["asyncapi"] == "3.0.0" and len(doc["operations"]) == len(cat)
    message = doc["components"]["messages"]["need_submitted_v1"]
    envelope = message["examples"][0]["payload"]
    jsonschema.validate(envelope, registry.ENVELOPE_SCHEMA)
    jsonschema.validate(envelope["data"], doc["components"]["schemas"]["need_submitted_v1"])


def test_a_service_cannot_build_an_event_it_does_not_declare():
    class Provider:
        service = "needs"
        registered = registry.published_by("needs")

    class Ctx:
        context_data = {}

    events = Events(Provider(), Ctx())
    assert events.new("need.triaged", park_id="p", subject="s", data={})["dataschema"].endswith(":v1")
    with pytest.raises(registry.UnregisteredEvent, match="needs publishes need.teleported but does not declare it"):
        events.new("need.teleported", park_id="p", subject="s", data={})


# schema evolution --------------------------------------------------------------------------
class WithoutSummary(NeedSubmittedSchema):
    class Meta:
        exclude = ("summary",)


class WithNewRequiredField(NeedSubmittedSchema):
    enterprise_size = fields.Integer(required=True)


class WithNewOptionalField(NeedSubmittedSchema):
    zone = fields.String(allow_none=True)


class WithRetypedField(NeedSubmittedSchema):
    possible_duplicates = fields.Integer(required=True)


@pytest.fixture
def patched_needs(monkeypatch):
    """Replace need.submitted's declaration for one test."""
    original = registry._declared_of("needs")

    def patch(entry):
        changed = dict(original, **{entry.type: entry})
        monkeypatch.setitem(registry._loaded, "needs", changed)
        return registry.check_compatibility(eventsctl.released(), registry.catalogue())
    return patch


SUMMARY = "A need was accepted."


@pytest.mark.parametrize("schema,problem", [
    (WithoutSummary, "need.submitted v1: data.summary removed"),
    (WithNewRequiredField, "need.submitted v1: data.enterprise_size is new and required"),
    (WithRetypedField, "need.submitted v1: data.possible_duplicates changed type from array to integer"),
])
def test_an_incompatible_change_fails_until_the_version_is_bumped(patched_needs, schema, problem):
    problems = patched_needs(registry.Published("need.submitted", schema, SUMMARY))
    assert problems and problems[0].startswith(problem) and "needs version 2" in problems[0]
    # version 2, with v1 kept beside it for a window: compatible
    bumped = registry.Published("need.submitted", schema, SUMMARY, version=2,
                                previous=registry.Previous(1, NeedSubmittedSchema, until=TOMORROW))
    assert patched_needs(bumped) == []
    # dropping v1 before its window ends is not
    assert patched_needs(registry.Published("need.submitted", schema, SUMMARY, version=2)) == [
        "need.submitted v1 is no longer published (an incompatible change is a new version, and v1 stays as its "
        "previous for a deprecation window)"]


def test_adding_an_optional_field_is_compatible(patched_needs):
    assert patched_needs(registry.Published("need.submitted", WithNewOptionalField, SUMMARY)) == []


def test_a_version_whose_window_has_ended_may_go():
    cat = registry.catalogue()
    released = copy.deepcopy(registry.released_view(cat))
    released["need.submitted"]["versions"]["0"] = {"schema": {"properties": {"gone": {"type": "string"}}},
                                                   "deprecated_until": YESTERDAY}
    assert registry.check_compatibility(released, cat) == []
    released["need.submitted"]["versions"]["0"]["deprecated_until"] = TOMORROW
    assert registry.check_compatibility(released, cat)[0].startswith("need.submitted v0 is no longer published")


def test_during_its_window_the_previous_version_is_published_beside_the_new_one():
    def downgrade(data):
        return dict(data, summary=data.pop("headline"))

    class V2(WithoutSummary):
        headline = fields.String(required=True)

    entry = registry.Published("need.submitted", V2, SUMMARY, version=2,
                               previous=registry.Previous(1, NeedSubmittedSchema, until=TOMORROW, downgrade=downgrade))
    data = {"need_id": "n1", "kind": "micro_wish", "category": "daily_life", "item": None, "grade": "routine",
            "channel": "wish_wall", "requester_kind": "worker", "headline": "路灯坏了",
            "submitted_at": "2026-11-21T08:00:00+00:00", "due_at": "2026-11-28T08:00:00+00:00",
            "possible_duplicates": []}
    envelope = new_event("need.submitted", source="needs", park_id="p", subject="n1", data=data, version=2)
    both = registry.expand([envelope], {"need.submitted": entry})
    assert [registry.envelope_routing_key(e) for e in both] == ["need.submitted.v2", "need.submitted"]
    assert both[1]["id"] == envelope["id"] + ".v1" and both[1]["dataschema"].endswith(":v1")
    assert both[1]["data"]["summary"] == "路灯坏了" and "headline" not in both[1]["data"]
    assert registry.expand([envelope], {"need.submitted": entry}) == both  # the same every time
    jsonschema.validate(both[1]["data"], registry.json_schema(NeedSubmittedSchema))
    after = registry.expand([envelope], {"need.submitted": entry}, today=date.today() + timedelta(days=2))
    assert after == [envelope]
