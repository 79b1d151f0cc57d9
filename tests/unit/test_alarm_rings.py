"""A process's alarm rings in one request: how a batch's outcomes reach each caller."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from pymongo.errors import BulkWriteError, PyMongoError

from lamplight.alarms import RingCommit

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


class Collection:
    """Answers each bulk_write with the next of ``answers`` (a write error per index, or an exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def bulk_write(self, ops, ordered):
        self.requests.append([(op._filter["_id"], op._doc, op._upsert) for op in ops])
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        if answer:
            raise BulkWriteError({"writeErrors": [dict(index=i, **e) for i, e in answer.items()]})


def ring_all(collection, rings):
    commit = RingCommit(collection, max_batch=256, wait_s=0.05)
    thread = eventlet.spawn(commit.run)

    def ring(args):
        try:
            commit.ring(*args)
            return "rung"
        except PyMongoError as exc:
            return str(exc)

    try:
        return list(eventlet.GreenPool(len(rings)).imap(ring, rings))
    finally:
        thread.kill()


def test_a_parks_rings_in_one_batch_are_one_update_at_the_soonest_counting_each():
    collection = Collection()
    outcomes = ring_all(collection, [("send", "p1", NOW + timedelta(seconds=30)), ("send", "p2", NOW),
                                     ("send", "p1", NOW + timedelta(seconds=10)), ("sweep", "p1", NOW)])
    assert outcomes == ["rung"] * 4
    (request,) = collection.requests
    assert sorted((_id, doc["$min"]["at"], doc["$inc"]["v"], upsert) for _id, doc, upsert in request) == [
        ("send:p1", NOW + timedelta(seconds=10), 2, True), ("send:p2", NOW, 1, True), ("sweep:p1", NOW, 1, True)]


def test_a_first_ring_that_lost_the_race_to_create_the_alarm_is_written_again_without_upsert():
    collection = Collection({1: {"code": 11000, "errmsg": "duplicate key"}})
    outcomes = ring_all(collection, [("send", "p1", NOW), ("send", "p2", NOW), ("send", "p2", NOW)])
    assert outcomes == ["rung"] * 3
    first, again = collection.requests
    assert [(_id, bool(upsert)) for _id, _, upsert in again] == [("send:p2", False)]
    assert again[0][1]["$inc"]["v"] == 2


@pytest.mark.parametrize("answer", [
    {0: {"code": 2, "errmsg": "bad alarm"}},
    PyMongoError("connection closed"),
])
def test_a_ring_that_failed_fails_its_callers_and_only_those_when_the_failure_is_its_own(answer):
    collection = Collection(answer)
    outcomes = ring_all(collection, [("send", "p1", NOW), ("send", "p2", NOW), ("send", "p1", NOW)])
    if isinstance(answer, Exception):
        assert outcomes == ["connection closed"] * 3
    else:
        assert outcomes == ["bad alarm", "rung", "bad alarm"]
