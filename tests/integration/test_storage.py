"""The Mongo provider against the real MongoDB-protocol server."""
import json
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from nameko import config
from nameko.rpc import rpc
from pymongo import ASCENDING, IndexModel

from lamplight.alarms import INDEXES as ALARM_INDEXES
from lamplight.alarms import NEVER, Alarms
from lamplight.errors import UnscopedQuery
from lamplight.metrics import DB_REQUESTS, DB_SCANS
from lamplight.storage import DuplicateKeyError, Mongo, VersionedDocument
from tests.conftest import wait_for

INDEXES = {"things": [IndexModel([("park_id", ASCENDING), ("kind", ASCENDING)], name="park_kind"),
                      IndexModel([("park_id", ASCENDING), ("key", ASCENDING)], name="park_key", unique=True)]}


class StorageService:
    name = "storage"
    db = Mongo(indexes=dict(INDEXES, **ALARM_INDEXES), group_commit=("things",))

    @rpc
    def noop(self):
        pass


@pytest.fixture
def store(container_factory, service_config):
    container = container_factory(StorageService)
    container.start()
    provider = next(d for d in container.dependencies if isinstance(d, Mongo))
    return provider.store()


def test_indexes_are_created_at_start(store, db):
    assert {"park_kind", "park_key"} <= set(db("storage").things.index_information())


class RetiringService:
    name = "storage"
    db = Mongo(indexes={"things": INDEXES["things"][1:]}, retired={"things": ["park_kind", "never_made"]})

    @rpc
    def noop(self):
        pass


def test_a_retired_index_is_dropped_at_start_and_one_already_gone_is_no_error(container_factory, service_config, db):
    container_factory(StorageService).start()
    assert "park_kind" in db("storage").things.index_information()
    for _ in range(2):  # the second start finds it gone
        container = container_factory(RetiringService)
        container.start()
        container.stop()
    assert set(db("storage").things.index_information()) == {"_id_", "park_key"}


def test_indexes_are_not_recreated_on_restart(container_factory, service_config, db):
    # FerretDB 1.24 drops the connection on a createIndexes that re-creates several
    for _ in range(2):
        container = container_factory(StorageService)
        container.start()
        container.stop()
    assert {"park_kind", "park_key"} <= set(db("storage").things.index_information())


@pytest.mark.parametrize("call", [
    lambda c: c.find({}),
    lambda c: c.find({"kind": "wish"}),
    lambda c: c.find_one({"park_id": {"$in": ["a", "b"]}}),
    lambda c: c.count_documents({"park_id": {"$exists": True}}),
    lambda c: c.update_many({"kind": "wish"}, {"$set": {"kind": "x"}}),
    lambda c: c.delete_one({"_id": "t1"}),
    lambda c: c.insert_one({"_id": "t9", "kind": "wish"}),
    lambda c: c.aggregate([{"$group": {"_id": "$kind"}}]),
], ids=["find-all", "find-by-field", "find-many-parks", "count-exists", "update-many", "delete",
        "insert-without-park", "aggregate-without-match"])
def test_a_query_without_park_id_is_refused(store, call, db):
    db("storage").things.insert_one({"_id": "t1", "park_id": "a", "kind": "wish", "key": 1})
    with pytest.raises(UnscopedQuery, match="park"):
        call(store["things"])
    assert db("storage").things.count_documents({}) == 1  # nothing written, nothing deleted


def test_guarded_collection_serves_a_query_naming_one_park(store):
    store.park("a")["things"].insert_one({"_id": "t1", "kind": "wish", "key": 1})
    assert store["things"].find_one({"park_id": "a", "kind": "wish"})["_id"] == "t1"
    assert store["things"].find_one({"park_id": "b", "kind": "wish"}) is None


def test_park_scope_sees_only_its_park(store):
    store.park("a")["things"].insert_one({"_id": "a1", "kind": "wish", "key": 1})
    store.park("b")["things"].insert_one({"_id": "b1", "kind": "wish", "key": 1})
    assert [d["_id"] for d in store.park("a")["things"].find({"kind": "wish"})] == ["a1"]
    assert store.park("b")["things"].find_one({"_id": "a1"}) is None
    assert store.park("a")["things"].find_one({"_id": "a1"})["park_id"] == "a"
    assert [d["_id"] for d in store.park("b")["things"].aggregate([{"$match": {"kind": "wish"}}])] == ["b1"]


def test_park_scope_refuses_to_reach_into_another_park(store):
    things = store.park("a")["things"]
    with pytest.raises(UnscopedQuery):
        things.find_one({"park_id": "b"})
    with pytest.raises(UnscopedQuery):
        things.insert_one({"_id": "x", "park_id": "b", "key": 3})
    with pytest.raises(UnscopedQuery):
        things.update_one({"_id": "x"}, {"$set": {"park_id": "b"}})


def test_kernel_collections_are_not_park_data(store):
    with pytest.raises(UnscopedQuery):
        store.park("a")["_writers"]


def test_group_commit_batches_concurrent_inserts_and_reports_each_outcome(store, db):
    things = store.park("a")["things"]
    things.insert_one({"_id": "dup-id", "kind": "x", "key": -1})

    def insert(i):
        doc = {"_id": "dup-id" if i == 7 else "g{}".format(i), "kind": "x", "key": 13 if i == 8 else i}
        try:
            return things.insert_one(doc)
        except DuplicateKeyError:
            return "duplicate"

    pool = eventlet.GreenPool(200)
    results = list(pool.imap(insert, range(200)))
    assert results[7] == "duplicate"  # _id taken
    # i == 8 and i == 13 both carry key 13: exactly one wins the unique (park_id, key)
    assert sorted([results[8], results[13]]) == ["duplicate", "g13" if results[8] == "duplicate" else "g8"]
    assert results.count("duplicate") == 2
    assert db("storage").things.count_documents({"park_id": "a"}) == 199


def test_an_id_that_names_another_park_is_refused_and_every_filter_is_scoped(store, db):
    things = store.park("a")["things"]
    things.insert_one({"_id": "a/t1", "kind": "wish", "key": 1})
    assert things.find_one({"_id": "a/t1"})["park_id"] == "a"
    # every filter names the park (the _id index serves {_id, park_id}: no shortcut for ids that begin with it)
    assert things._filter({"_id": "a/t1"}) == {"_id": "a/t1", "park_id": "a"}
    assert things._filter({"_id": "b/t1"}) == {"_id": "b/t1", "park_id": "a"}
    assert store.park("b")["things"].find_one({"_id": "a/t1"}) is None
    with pytest.raises(UnscopedQuery, match="another park"):
        things.insert_one({"_id": "b/t2", "kind": "wish", "key": 2})
    with pytest.raises(UnscopedQuery, match="another park"):
        store.park("b")["things"].insert_one({"_id": "a/t3", "kind": "wish", "key": 3})


def test_an_upsert_by_a_park_id_creates_a_document_of_that_park(store, db):
    store.park("a")["things"].update_one({"_id": "a/u1"}, {"$set": {"kind": "x", "key": 9}}, upsert=True)
    assert db("storage").things.find_one({"_id": "a/u1"})["park_id"] == "a"
    assert [d["_id"] for d in store.park("a")["things"].find({"kind": "x"})] == ["a/u1"]


def test_a_versioned_write_and_a_conditional_update_each_have_exactly_one_winner(store):
    """On MongoDB, and on the development server with ferretdb/patches (stock
    FerretDB let 2 to 7 of 20 win)."""
    scope = store.park("p1")
    docs, history = scope["counters"], scope["counter_versions"]
    versioned = VersionedDocument(docs, history)

    def race(write):
        docs.delete_one({"_id": "p1/c"})
        docs.insert_one({"_id": "p1/c", "version": 1, "by": None})
        return sum(eventlet.GreenPool(20).imap(write, range(20)))

    def versioned_write(n):
        return versioned.write({"_id": "p1/c", "version": 1}, {"by": n})

    def conditional_update(n):
        return docs.update_one({"_id": "p1/c", "version": 1}, {"$set": {"version": 2, "by": n}}).modified_count

    for trial in range(5):
        history.delete_one({"_id": "p1/c@2"})
        assert race(versioned_write) == 1
        stored = docs.find_one({"_id": "p1/c"})
        assert stored["version"] == 2 and history.find_one({"_id": "p1/c@2"})["fields"]["by"] == stored["by"]
        assert race(conditional_update) == 1


def test_an_alarm_rings_at_its_soonest_work_and_a_settle_never_hides_work_queued_during_the_visit(store):
    alarms = Alarms(store, "send")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    assert alarms.rung(now) == {} and alarms.when("p1") is None
    alarms.ring("p1", now + timedelta(seconds=60))
    alarms.ring("p2", now - timedelta(seconds=1))
    alarms.ring("p1", now + timedelta(seconds=120))  # later: the soonest stays
    assert alarms.when("p1") == (now + timedelta(seconds=60), 2)
    assert alarms.rung(now) == {"p2": 1}
    assert alarms.rung(now + timedelta(seconds=60)) == {"p1": 2, "p2": 1}
    # a visit read p2 at version 1; work queued during the visit rings it again: the settle
    # that follows loses, and p2 stays rung for the next round
    alarms.ring("p2", now + timedelta(seconds=30))
    assert alarms.settle("p2", 1, now + timedelta(seconds=300)) is False
    assert alarms.rung(now) == {"p2": 2}
    # settled at the version it read: asleep until its next work, or for good with none
    assert alarms.settle("p2", 2, now + timedelta(seconds=300)) is True
    assert alarms.rung(now) == {} and alarms.when("p2") == (now + timedelta(seconds=300), 2)
    assert alarms.settle("p1", 2, None) is True and alarms.when("p1") == (NEVER, 2)
    # another loop's alarms are its own
    assert Alarms(store, "digest").rung(NEVER) == {}


def test_first_rings_of_a_park_racing_to_create_its_alarm_all_count(store):
    alarms = Alarms(store, "race")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    list(eventlet.GreenPool(20).imap(lambda n: alarms.ring("p1", now + timedelta(seconds=n)), range(20)))
    assert alarms.when("p1") == (now, 20)


def test_a_process_rings_many_alarms_in_few_requests_each_park_at_its_soonest(store):
    # 200 rings at once from one process, 40 to each of five parks: they share requests, a
    # park's merged into one update that keeps the soonest time and counts every ring
    alarms = Alarms(store, "shared")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    before = DB_REQUESTS.labels("storage", "update", "_alarms")._value.get()
    list(eventlet.GreenPool(200).imap(
        lambda n: alarms.ring("p{}".format(n % 5), now + timedelta(seconds=n)), range(200)))
    requests = DB_REQUESTS.labels("storage", "update", "_alarms")._value.get() - before
    assert requests <= 20, requests  # one each would be 200
    assert {"p{}".format(i): alarms.when("p{}".format(i)) for i in range(5)} == {
        "p{}".format(i): (now + timedelta(seconds=i), 40) for i in range(5)}


def test_first_rings_of_a_park_from_two_processes_racing_to_create_its_alarm_all_count(
        container_factory, service_config):
    stores = []
    for _ in range(2):
        container = container_factory(StorageService)
        container.start()
        stores.append(next(d for d in container.dependencies if isinstance(d, Mongo)).store())
    rings = [Alarms(s, "race2") for s in stores]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for park in ("q1", "q2", "q3"):
        list(eventlet.GreenPool(40).imap(lambda n: rings[n % 2].ring(park, now + timedelta(seconds=n)), range(40)))
        assert rings[0].when(park) == (now, 40)


def test_a_projection_keeps_the_newest_version_whatever_the_order(store):
    scope = store.park("p1")
    docs = scope["lines"]
    versioned = VersionedDocument(docs)
    assert versioned.project("p1/l", {"version": 2, "n": 2}) is True
    assert versioned.project("p1/l", {"version": 1, "n": 1}) is False  # older, arriving late
    assert versioned.project("p1/l", {"version": 2, "n": 2}) is False  # the same, delivered again
    assert docs.find_one({"_id": "p1/l"})["n"] == 2
    assert versioned.project("p1/l", {"version": 3, "n": 3}) is True
    # concurrent projections of one new document: the newest stays
    outcomes = list(eventlet.GreenPool(10).imap(
        lambda v: versioned.project("p1/m", {"version": v, "n": v}), range(1, 11)))
    assert docs.find_one({"_id": "p1/m"})["n"] == 10 and outcomes[-1] is True


class PartitionedService:
    name = "partitioned"
    db = Mongo(indexes={"crews": [IndexModel([("park_id", ASCENDING), ("ref", ASCENDING)], name="park_ref",
                                             unique=True)]}, partitioned=("crews", "logs"), group_commit=("logs",))

    @rpc
    def noop(self):
        pass


def test_a_partitioned_collection_keeps_each_park_apart_with_its_own_indexes(container_factory, service_config, db):
    container = container_factory(PartitionedService)
    container.start()
    store = next(d for d in container.dependencies if isinstance(d, Mongo)).store()
    a, b = store.park("park-a")["crews"], store.park("park-b")["crews"]
    a.insert_one({"_id": "c1", "ref": "R1"})
    b.insert_one({"_id": "c1", "ref": "R1"})  # the same _id and ref in another park's partition
    with pytest.raises(DuplicateKeyError):
        a.insert_one({"_id": "c2", "ref": "R1"})  # the partition's unique index, created on first use
    assert db("partitioned")["crews.park-a"].find_one({"_id": "c1"})["park_id"] == "park-a"
    assert a.count_documents({}) == 1 and b.find_one({"ref": "R1"})["park_id"] == "park-b"
    assert "park_ref" in db("partitioned")["crews.park-b"].index_information()
    # a partition's filters name the park too, so its indexes (which lead with park_id) serve them
    for i in range(50):
        a.insert_one({"_id": "m{}".format(i), "ref": "M{}".format(i)})
    plan = json.dumps(a.find({"ref": "M7"}).explain(), default=str)
    assert "park_ref" in plan, plan
    with pytest.raises(UnscopedQuery):
        a.find_one({"park_id": "park-b"})
    with pytest.raises(UnscopedQuery):
        store.unscoped("crews", "a cross-park job must walk the partitions")
    assert [park for park, _ in store.partitions("crews", "test")] == ["park-a", "park-b"]
    assert "crews" not in db("partitioned").list_collection_names()


def test_a_partition_group_commits_concurrent_inserts_each_caller_hearing_its_own_outcome(
        container_factory, service_config, db):
    container = container_factory(PartitionedService)
    container.start()
    store = next(d for d in container.dependencies if isinstance(d, Mongo)).store()
    logs = store.park("park-g")["logs"]
    logs.insert_one({"_id": "n3#1"})
    before = DB_REQUESTS.labels("partitioned", "insert", "logs")._value.get()

    def plan(n):  # a notice's log lines, one of them written before
        return [d["_id"] for d in logs.insert_many_once([{"_id": "n{}#{}".format(n, step)} for step in (1, 2)])]

    results = list(eventlet.GreenPool(50).imap(plan, range(50)))
    assert results[3] == ["n3#2"]  # only what was not there yet
    assert all(results[n] == ["n{}#1".format(n), "n{}#2".format(n)] for n in range(50) if n != 3)
    assert db("partitioned")["logs.park-g"].count_documents({}) == 100
    assert list(eventlet.GreenPool(5).imap(plan, range(5))) == [[]] * 5  # all there already
    # 50 callers at once share a few inserts, not one each
    assert DB_REQUESTS.labels("partitioned", "insert", "logs")._value.get() - before < 25
    # the other park's partition has a committer of its own
    assert store.park("park-h")["logs"].insert_many_once([{"_id": "n3#1"}]) != []


def test_a_bulk_insert_as_big_as_a_group_commit_batch_is_one_request_of_its_own(container_factory, service_config,
                                                                                db):
    """A broadcast's chunk of 1,000 log lines is one insert, not four of the committer's batches of
    256 queued behind the others; a duplicate among them is left out as before."""
    container = container_factory(PartitionedService)
    container.start()
    store = next(d for d in container.dependencies if isinstance(d, Mongo)).store()
    logs = store.park("park-bulk")["logs"]
    logs.insert_one({"_id": "b7#1"})
    requests = DB_REQUESTS.labels("partitioned", "insert", "logs")
    before = requests._value.get()
    written = logs.insert_many_once([{"_id": "b{}#1".format(n)} for n in range(1000)])
    assert requests._value.get() - before == 1
    assert len(written) == 999 and "b7#1" not in {d["_id"] for d in written}
    assert db("partitioned")["logs.park-bulk"].count_documents({}) == 1000


def test_with_scan_checks_each_new_shape_of_query_is_checked_once_and_those_reading_their_park_whole_counted(
        container_factory, service_config, db):
    with config.patch({"DB_CHECK_SCANS": 1}):
        container = container_factory(StorageService)
        container.start()
    store = next(d for d in container.dependencies if isinstance(d, Mongo)).store()
    things = store.park("scan")["things"]
    things.insert_one({"_id": "s1", "kind": "x", "key": 1, "colour": "red"})
    scans = DB_SCANS.labels("storage", "things")
    before = scans._value.get()
    for i in range(5):  # one shape, whatever its values: counted once
        assert things.find_one({"colour": "red-{}".format(i)}) is None  # no index names colour
    things.update_one({"colour": "blue"}, {"$set": {"n": 1}})  # the same shape in an update
    things.find_one({"kind": {"$in": ["x", "y"]}, "colour": "red"})  # (park_id, kind) serves it
    things.find_one({"_id": "s1", "colour": "red"})
    list(things.find({}))  # a listing of the park
    wait_for(lambda: scans._value.get() - before == 1, what="the scan counted")
    eventlet.sleep(0.5)
    assert scans._value.get() - before == 1
