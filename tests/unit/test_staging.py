"""The one way a service writes a document with its events (Events.staging,
change, insert_many), against a provider of our own: what is staged is
published exactly when the write took effect, discarded otherwise."""
import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError, NetworkTimeout, ServerSelectionTimeoutError

from lamplight.errors import Conflict
from lamplight.publishing import Change
from tests.unit.outbox import RecordingOutbox, ids
from tests.unit.outbox import events as outbox_events


def events():
    provider = RecordingOutbox()
    return outbox_events(provider), provider


def ev(n):
    return {"id": "e{}".format(n), "type": "x"}


def test_an_insert_that_took_effect_publishes_and_one_that_did_not_discards():
    events_, outbox = events()
    doc = {"_id": "a"}
    with events_.staging([ev(1)]) as staged:
        doc.update(staged.fields())
        staged.written = True
    assert doc["_outbox"] == [ev(1)] and doc["_outbox_by"] == "needs-test-1"
    with events_.staging([ev(2)]) as staged:
        staged.update()
        staged.written = False  # a duplicate
    assert (ids(outbox.published), ids(outbox.discarded), outbox.staged) == (["e1"], ["e2"], {})


def test_a_write_that_raises_discards_and_the_error_goes_on():
    events_, outbox = events()
    with pytest.raises(RuntimeError):
        with events_.staging([ev(1)]) as staged:
            staged.fields()
            staged.written = True
            raise RuntimeError("the database went away")
    assert (ids(outbox.published), ids(outbox.discarded), outbox.staged) == ([], ["e1"], {})


@pytest.mark.parametrize("lost", [AutoReconnect("connection reset by peer"), NetworkTimeout("timed out")])
def test_a_write_whose_connection_went_after_it_was_sent_leaves_its_events_in_doubt_not_discarded(lost):
    # the server may have applied it: a retry that then finds the document
    # written would otherwise leave these events unpublished for good
    events_, outbox = events()
    with pytest.raises(type(lost)):
        with events_.staging([ev(1)]) as staged:
            staged.fields()
            raise lost
    assert (ids(outbox.published), ids(outbox.discarded), ids(outbox.doubtful)) == ([], [], ["e1"])
    assert list(outbox.staged) == ["e1"]  # still holding the checkpoint


@pytest.mark.parametrize("refused", [ServerSelectionTimeoutError("no server"), DuplicateKeyError("dup")])
def test_a_write_that_never_reached_a_server_or_was_refused_discards(refused):
    events_, outbox = events()
    with pytest.raises(type(refused)):
        with events_.staging([ev(1)]) as staged:
            staged.fields()
            raise refused
    assert (ids(outbox.discarded), ids(outbox.doubtful), outbox.staged) == (["e1"], [], {})


def test_insert_many_whose_connection_went_leaves_every_event_in_doubt():
    events_, outbox = events()
    with pytest.raises(AutoReconnect):
        events_.insert_many([{"_id": 1}, {"_id": 2}], [ev(1), ev(2)],
                            lambda docs: (_ for _ in ()).throw(AutoReconnect("reset")))
    assert (ids(outbox.doubtful), outbox.discarded) == (["e1", "e2"], [])


def test_events_are_staged_into_one_write_only():
    events_, _ = events()
    with pytest.raises(RuntimeError, match="staged already"):
        with events_.staging([ev(1)]) as staged:
            staged.fields()
            staged.update()


def test_a_lost_race_decides_again_on_what_the_winner_left_and_only_the_winner_is_published():
    events_, outbox = events()
    store = {"doc": {"_id": "d", "version": 1, "n": 0, "_outbox": [ev(0)]}}
    races = [True, True]  # someone else writes twice before we win
    seen = []

    def read():
        return dict(store["doc"])

    def decide(doc):
        seen.append(doc["version"])
        return Change({"n": doc["n"] + 1}, [ev(10 + doc["version"])], doc["n"] + 1)

    def write(doc, fields):
        if races:
            races.pop()
            store["doc"] = dict(store["doc"], version=store["doc"]["version"] + 1, n=store["doc"]["n"] + 5)
            return False
        assert doc["version"] == store["doc"]["version"]
        store["doc"] = dict(doc, **fields, version=doc["version"] + 1)
        return True

    result = events_.change(read, decide, write, conflict=Conflict("busy"))
    assert seen == [1, 2, 3] and result == 11
    assert ids(outbox.published) == ["e13"] and ids(outbox.discarded) == ["e11", "e12"] and outbox.staged == {}
    assert [e["id"] for e in store["doc"]["_outbox"]] == ["e0", "e13"]


def test_a_decision_to_write_nothing_is_returned_as_it_is():
    events_, outbox = events()
    assert events_.change(lambda: {"_id": "d"}, lambda doc: "unchanged", None, conflict=Conflict("busy")) == "unchanged"
    assert outbox.staged == {} and outbox.published == []


def test_a_change_that_keeps_losing_is_a_conflict_with_nothing_left_staged():
    events_, outbox = events()
    with pytest.raises(Conflict, match="kept changing"):
        events_.change(lambda: {"_id": "d"}, lambda doc: Change({}, [ev(len(outbox.discarded))]),
                       lambda doc, fields: False, conflict=Conflict("d kept changing"), attempts=3)
    assert ids(outbox.discarded) == ["e0", "e1", "e2"] and outbox.staged == {} and outbox.published == []


def test_insert_many_publishes_the_events_of_the_documents_inserted_now():
    events_, outbox = events()
    docs = [{"_id": i} for i in range(4)]
    inserted = events_.insert_many(docs, [ev(i) for i in range(4)], lambda ds: [d for d in ds if d["_id"] % 2])
    assert [d["_id"] for d in inserted] == [1, 3] and all("_outbox" in d for d in docs)
    assert (ids(outbox.published), ids(outbox.discarded), outbox.staged) == (["e1", "e3"], ["e0", "e2"], {})
    with pytest.raises(ValueError):
        events_.insert_many(docs, [ev(9)], lambda ds: ds)


def test_insert_many_that_raises_discards_every_event_and_the_error_goes_on():
    events_, outbox = events()

    def insert(docs):
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        events_.insert_many([{"_id": i} for i in range(3)], [ev(i) for i in range(3)], insert)
    assert (ids(outbox.published), ids(outbox.discarded), outbox.staged) == ([], ["e0", "e1", "e2"], {})
