"""What the benchmarks' scan finder calls a query that reads its park whole."""
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from pymongo import ASCENDING, IndexModel

from lamplight.storage import ScanFinder, _shape

PROVIDER = SimpleNamespace(
    indexes={"needs": [IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)]),
                       IndexModel([("park_id", ASCENDING), ("item", ASCENDING)])]},
    kernel_indexes={"needs": [IndexModel([("_outbox_by", ASCENDING), ("_outbox_at", ASCENDING)])]})
NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("filter_, reads_the_park", [
    ({"park_id": "p", "status": "open"}, False),
    ({"park_id": "p", "status": {"$in": ["open", "triaged"]}, "due_at": {"$lte": NOW}}, False),
    ({"park_id": "p", "item": "wages", "title": "x"}, False),  # the index narrows; the rest is filtered after
    ({"park_id": "p", "_id": "p/need_1", "title": "x"}, False),
    ({"_outbox_by": "w1", "_outbox_at": {"$gte": NOW}}, False),  # the relay, through the kernel's index
    ({"park_id": "p"}, False),  # a listing of the park is what it asks for
    ({}, False),
    ({"park_id": "p", "title": "x"}, True),
    ({"park_id": "p", "due_at": {"$lte": NOW}}, True),  # due_at comes after status in the index
    ({"park_id": "p", "status": {"$ne": "closed"}}, True),  # not an equality
    ({"park_id": "p", "_id": {"$ne": "x"}}, True),
])
def test_a_query_reads_its_park_whole_when_no_index_narrows_it_past_the_park(filter_, reads_the_park):
    assert ScanFinder("needs", PROVIDER, log=None).scans("needs", filter_) is reads_the_park


def test_a_shape_is_the_fields_and_operators_without_the_values():
    assert _shape({"park_id": "a", "status": {"$in": ["x", "y"]}}) == _shape({"status": {"$in": ["z"]}, "park_id": "b"})
    assert _shape({"park_id": "a", "status": "x"}) != _shape({"park_id": "a", "item": "x"})
    assert _shape({"$or": [{"a": 1}, {"b": {"$lt": 2}}], "c": [1, {"d": 2}]})  # mixed lists sort
