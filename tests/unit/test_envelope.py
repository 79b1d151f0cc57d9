import pytest

from lamplight.envelope import (
    child_traceparent,
    dataschema_uri,
    new_event,
    new_traceparent,
    trace_id,
    validate_envelope,
)
from lamplight.errors import BadInput


def test_new_event_is_a_cloudevent_with_park_and_trace():
    parent = new_traceparent()
    event = new_event("need.submitted", source="needs", park_id="quanlinan", subject="need_1",
                      data={"need_id": "need_1"}, version=2, traceparent=parent)
    assert event["specversion"] == "1.0"
    assert event["source"] == "lamplight/needs"
    assert event["type"] == "need.submitted"
    assert event["parkid"] == "quanlinan"
    assert event["dataschema"] == dataschema_uri("need.submitted", 2) == "urn:lamplight:events:need.submitted:v2"
    assert event["datacontenttype"] == "application/json"
    assert event["id"].startswith("evt_")
    assert trace_id(event["traceparent"]) == trace_id(parent)
    assert event["traceparent"] != parent  # a new span in the same trace
    assert validate_envelope(event) == event


def test_event_ids_are_unique_and_sortable():
    ids = [new_event("x.y", source="s", park_id="p", subject=None, data={})["id"] for _ in range(200)]
    assert len(set(ids)) == 200


def test_child_traceparent_starts_a_trace_when_parent_is_garbage():
    child = child_traceparent("not-a-traceparent")
    assert trace_id(child) is not None


def test_invalid_envelope_names_each_wrong_attribute():
    event = new_event("need.submitted", source="needs", park_id="p", subject="s", data={})
    del event["parkid"]
    event["specversion"] = "0.3"
    event["type"] = "NoDots"
    with pytest.raises(BadInput) as err:
        validate_envelope(event)
    assert set(err.value.fields) == {"parkid", "specversion", "type"}


def test_envelope_that_is_not_an_object_is_refused():
    with pytest.raises(BadInput):
        validate_envelope(["not", "an", "object"])


def test_errors_keep_their_code_and_typed_fields_over_rpc_serialization():
    from nameko.exceptions import deserialize, serialize

    from lamplight.errors import BadInput, Conflict

    sent = Conflict("6 points are available", {"available": 6, "amount": ["too many"]}, code="insufficient_points")
    received = deserialize(serialize(sent))
    assert type(received) is Conflict
    assert (received.code, received.fields, received.message) == (
        "insufficient_points", {"available": 6, "amount": ["too many"]}, "6 points are available")
    plain = deserialize(serialize(BadInput("bad", {"x": ["y"]})))
    assert (plain.code, plain.fields) == ("bad_input", {"x": ["y"]})
