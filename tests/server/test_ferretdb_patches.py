"""The development server with ferretdb/patches, against the stock FerretDB
v1.24.2 built beside it (``./dev test`` builds both into .stack/bin).

Each server runs here in its own process and data directory on 127.0.0.1.
What the patches must give, as MongoDB does:
- _id lookups, updates and deletes, top-level equalities on a compound
  index's fields and a range on a date after them, served by the index (the
  server's explain, and time that stays flat as the collection grows);
- an equality on an array field reads only the arrays holding the value,
  as a multikey index does (0010);
- a conditional update or findAndModify has exactly one winner;
- every filter returns exactly the documents the stock server returns;
- every stored value reads back as it was written, as the stock server
  reads it (0005 decodes values without a json.Decoder each);
- a write waits for its turn behind the database's other writers, however
  long, rather than failing with "database is locked" (0012);
- a document is stored with its fields before its schema, and one stored
  the other way round (as the stock server does) reads as written (0013).
"""
import os
import re
import sqlite3
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument

from tests.server.ferretdb import Server

BIN = Path(os.environ.get("FERRETDB_BIN_DIR") or Path(__file__).resolve().parents[2] / ".stack" / "bin")
# FERRETDB_TEST_LARGE=100000 for the full size; the default keeps CI short
LARGE = int(os.environ.get("FERRETDB_TEST_LARGE", "30000"))


@pytest.fixture(scope="module")
def patched():
    server = Server(BIN / "ferretdb")
    yield server.client
    server.close()


@pytest.fixture(scope="module")
def stock():
    server = Server(BIN / "ferretdb-stock")
    yield server.client
    server.close()


def _scans(plan):
    """Whether SQLite reads a table whole (json_each over one array, 0010, is not that)."""
    return re.search(r"SCAN (?!element VIRTUAL TABLE)", plan) is not None


def _plan(client, coll, filter_):
    out = client.test.command("explain", {"find": coll, "filter": filter_})
    return " ".join(out["queryPlanner"]["Plan"])


BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _fill(coll, n, start=0):
    docs = [{"_id": "need_{:07d}".format(i), "park_id": "park-{}".format(i % 20),
             "status": ("open", "routed", "resolved", "closed")[i % 4], "seq": i,
             "due_at": BASE + timedelta(minutes=i)}
            for i in range(start, start + n)]
    for i in range(0, len(docs), 5000):
        coll.insert_many(docs[i:i + 5000], ordered=False)


def _median_ms(fn, runs=30):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def test_id_and_compound_equalities_are_served_by_indexes(patched, stock):
    for client in (patched, stock):
        client.test.plan.create_index([("park_id", ASCENDING), ("status", ASCENDING)], name="park_status")
        _fill(client.test.plan, 200)
    assert "USING INDEX" in _plan(patched, "plan", {"_id": "need_0000042"})
    assert _scans(_plan(stock, "plan", {"_id": "need_0000042"}))
    compound = _plan(patched, "plan", {"park_id": "park-3", "status": "routed"})
    assert "park_status" in compound and not _scans(compound), compound
    assert "park_status" not in _plan(stock, "plan", {"park_id": "park-3", "status": "routed"})
    within = _plan(patched, "plan", {"park_id": "park-3", "status": {"$in": ["open", "routed"]}})
    assert "park_status" in within and not _scans(within), within
    # a range on a date after the equalities: an index range (0008), on the stock server a scan
    for client in (patched, stock):
        client.test.plan.create_index([("park_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)],
                                      name="park_status_due")
    due = {"park_id": "park-3", "status": {"$in": ["open", "routed"]}, "due_at": {"$lte": BASE + timedelta(hours=1)}}
    ranged = _plan(patched, "plan", due)
    assert "park_status_due" in ranged and not _scans(ranged), ranged
    assert _scans(_plan(stock, "plan", due))
    # the outbox relay taking over a dead writer's events: that writer's, since its checkpoint,
    # through the kernel's (_outbox_by, _outbox_at) index rather than the whole collection
    for client in (patched, stock):
        client.test.plan.create_index([("_outbox_by", ASCENDING), ("_outbox_at", ASCENDING)], name="outbox_writer")
    relay = _plan(patched, "plan", {"_outbox_by": "needs-1", "_outbox_at": {"$gte": BASE}})
    assert "outbox_writer" in relay and not _scans(relay) and "<expr>=? AND <expr>>?" in relay, relay
    # a field no index serves is left to the handler (checking it row by row in SQL costs more)
    unindexed = patched.test.command("explain", {"find": "plan", "filter": {"status": "routed"}})
    assert unindexed["filterPushdown"] is False and _scans(" ".join(unindexed["queryPlanner"]["Plan"]))


def test_an_equality_on_an_array_field_reads_only_the_arrays_holding_the_value(patched, stock):
    # A MongoDB multikey index finds the documents whose array holds the value. In the SQLite
    # index an array is one column value (its JSON text): the search also looks for the element
    # in it (0010), so that the handler decodes only the arrays that can match. Asking who is
    # on duty in an hour nobody is is then a fraction of the time of reading the park.
    teams = ("green", "blue", "red", "orange")
    hours = [{"_id": i, "park_id": "p{}".format(i % 2), "teams": [teams[i % 4]] + (["squad"] if i % 50 == 0 else []),
              "active": i % 20 != 0, "duty_hours": [h for h in range(168) if (h + i // 2) % 2 == 0]}
             for i in range(4000)]
    for client in (patched, stock):
        client.test.duty.create_index([("park_id", ASCENDING), ("duty_hours", ASCENDING)], name="park_duty_hours")
        client.test.duty.insert_many([dict(d) for d in hours])
    on_duty = {"park_id": "p0", "duty_hours": 37}
    plan = _plan(patched, "duty", on_duty)
    assert "park_duty_hours" in plan and "UNION ALL" in plan and not _scans(plan), plan
    for filter_ in (on_duty, {"park_id": "p0", "duty_hours": {"$in": [37, 38]}, "teams": "green", "active": True},
                    {"park_id": "p0", "duty_hours": 37, "teams": {"$in": ["squad", "red"]}},
                    {"park_id": "p0", "duty_hours": 999}, {"park_id": "p0", "duty_hours": 37, "teams": "nobody"},
                    # as many values as dispatch's question about 1,000 candidates' slots
                    {"park_id": "p0", "duty_hours": {"$in": list(range(150, 1150))}},
                    {"park_id": {"$in": ["p{}".format(i) for i in range(1000)]}, "duty_hours": 37}):
        ours = sorted(d["_id"] for d in patched.test.duty.find(filter_, {"_id": 1}))
        theirs = sorted(d["_id"] for d in stock.test.duty.find(filter_, {"_id": 1}))
        assert ours == theirs, filter_
    assert len(list(patched.test.duty.find(on_duty))) == len([
        d for d in hours if d["park_id"] == "p0" and 37 in d["duty_hours"]]) > 0
    coll = patched.test.duty
    park = _median_ms(lambda: list(coll.find({"park_id": "p0"})), runs=5)
    nobody_at_that_hour = _median_ms(lambda: list(coll.find({"park_id": "p0", "duty_hours": 999})), runs=5)
    assert nobody_at_that_hour < park / 5, (park, nobody_at_that_hour)


def test_lookups_and_updates_by_id_stay_flat_as_the_collection_grows(patched):
    coll = patched.test.flat
    coll.create_index([("park_id", ASCENDING), ("status", ASCENDING)], name="park_status")
    coll.create_index([("park_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)], name="park_status_due")
    _fill(coll, 1000)
    # what a sweep asks: a park's open documents due by now (the first 400 minutes: 20 of them)
    due = {"park_id": "park-8", "status": "open", "due_at": {"$lte": BASE + timedelta(minutes=400)}}
    assert coll.count_documents(due) == 20
    small = {
        "find due": _median_ms(lambda: list(coll.find(due))),
        "find _id": _median_ms(lambda: coll.find_one({"_id": "need_0000500"})),
        "update _id": _median_ms(lambda: coll.update_one({"_id": "need_0000500"}, {"$inc": {"seq": 1}})),
        "find park+status": _median_ms(lambda: coll.find_one({"park_id": "park-7", "status": "closed",
                                                               "seq": 7})),
    }
    _fill(coll, LARGE - 1000, start=1000)
    large = {
        "find due": _median_ms(lambda: list(coll.find(due))),
        "find _id": _median_ms(lambda: coll.find_one({"_id": "need_0000500"})),
        "update _id": _median_ms(lambda: coll.update_one({"_id": "need_0000500"}, {"$inc": {"seq": 1}})),
        # a park's share of the documents grows with the collection: this one
        # is bounded by the index search, not by the whole collection
        "find park+status": _median_ms(lambda: coll.find_one({"park_id": "park-7", "status": "closed",
                                                               "seq": 7})),
    }
    for what in ("find _id", "update _id", "find due"):
        # 3x, with a floor of 2 ms for timer noise at these sizes
        assert large[what] <= max(3 * small[what], 2.0), (what, small, large)
    assert coll.count_documents({}) == LARGE


def _race(coll, attempt, writers=20):
    barrier = threading.Barrier(writers)
    wins = []

    def run():
        barrier.wait()
        if attempt():
            wins.append(1)

    threads = [threading.Thread(target=run) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(wins)


@pytest.mark.parametrize("how", ["update_one", "find_one_and_update"])
def test_a_conditional_update_has_exactly_one_winner(patched, how):
    coll = patched.test["race_" + how]
    for trial in range(20):
        doc_id = "doc-{}".format(trial)
        coll.insert_one({"_id": doc_id, "park_id": "p", "version": 1, "owner": None})

        def attempt(owner=threading.get_ident):
            cond = {"_id": doc_id, "version": 1}
            change = {"$set": {"version": 2, "owner": owner()}}
            if how == "update_one":
                return coll.update_one(cond, change).modified_count == 1
            return coll.find_one_and_update(cond, change, return_document=ReturnDocument.AFTER) is not None

        assert _race(coll, attempt) == 1, "trial {}".format(trial)
        assert coll.find_one({"_id": doc_id})["version"] == 2


OID = ObjectId("5f0c3e9b8d1e4a2b3c4d5e6f")
WHEN = datetime(2026, 10, 22, 7, 0, tzinfo=timezone.utc)
DOCS = [
    {"_id": 1, "s": "open", "n": 5, "b": True, "d": WHEN},
    {"_id": 2, "s": ["open", "x"], "n": 5.0, "b": False},
    {"_id": 3, "s": "[open]", "n": 0, "b": [True]},
    {"_id": 4, "s": None, "n": -0.0, "b": None},
    {"_id": 5, "n": 9007199254740993, "o": OID},
    {"_id": 6, "s": "5f0c3e9b8d1e4a2b3c4d5e6f", "o": "5f0c3e9b8d1e4a2b3c4d5e6f", "n": 5.5},
    {"_id": 7, "s": {"a": 1}, "n": [5, 6], "d": [WHEN]},
    {"_id": 8, "s": "<a&b> \u2028 工资", "n": 1e21, "sub": {"s": "open"}},
    {"_id": 9, "s": [{"a": "open"}], "n": 2.0 ** 60, "b": "true"},
    {"_id": "10", "s": "OPEN", "n": "5", "d": WHEN.timestamp() * 1000},
    {"_id": OID, "s": "", "n": 1152921504606846976},
    # dates before 1970 and past 2286 (their milliseconds have other lengths), a date's
    # milliseconds as a number, booleans, strings and arrays where a date is expected
    {"_id": 12, "d": datetime(1960, 5, 1, tzinfo=timezone.utc), "s": "open"},
    {"_id": 13, "d": datetime(2300, 1, 1, tzinfo=timezone.utc)},
    {"_id": 14, "d": True, "n": 1},
    {"_id": 15, "d": "2026-10-22", "n": True},
    {"_id": 16, "d": [1, datetime(2026, 10, 21, tzinfo=timezone.utc)], "s": "open"},
    {"_id": 17, "d": int(WHEN.timestamp() * 1000), "n": 0.0},
    {"_id": 18, "d": datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=timezone.utc), "s": ["x", "open"]},
    # 0010: arrays narrowed to those holding an equal element. Elements of every kind (a
    # date's and a number's milliseconds, booleans beside 1, ObjectIDs beside their hex,
    # strings with escapes, documents), and strings in the array range: valid JSON or not
    {"_id": 19, "s": ["[", "open]", {"s": "open"}], "n": [7, 1.0, True], "d": [WHEN, "x"]},
    {"_id": 20, "s": "[1, \"open\"]", "n": [False, -0.0, 2.0 ** 60]},
    {"_id": 21, "s": "[not json", "n": [int(WHEN.timestamp() * 1000)]},
    {"_id": 22, "s": [OID, "<a&b> \u2028 工资"], "n": [], "d": [datetime(2027, 1, 1, tzinfo=timezone.utc)]},
    {"_id": 23, "s": ["5f0c3e9b8d1e4a2b3c4d5e6f"], "n": ["7", 5.5, 9007199254740993]},
]
FILTERS = [
    {"_id": 1}, {"_id": "10"}, {"_id": OID}, {"_id": {"$in": [1, "10", OID]}},
    {"s": "open"}, {"s": {"$eq": "open"}}, {"s": {"$in": ["open", "OPEN"]}}, {"s": "[open]"},
    {"s": None}, {"s": ""}, {"s": "5f0c3e9b8d1e4a2b3c4d5e6f"}, {"s": "<a&b> \u2028 工资"},
    {"s": ["open", "x"]}, {"s": {"a": 1}}, {"s": {"$in": []}}, {"s": {"$ne": "open"}},
    {"n": 5}, {"n": 5.0}, {"n": 0}, {"n": -0.0}, {"n": 9007199254740993}, {"n": 5.5}, {"n": 1e21},
    {"n": 2.0 ** 60}, {"n": 1152921504606846976}, {"n": "5"}, {"n": {"$in": [0, 6]}},
    {"b": True}, {"b": False}, {"b": "true"}, {"b": None},
    {"o": OID}, {"o": "5f0c3e9b8d1e4a2b3c4d5e6f"},
    {"d": WHEN}, {"d": WHEN.timestamp() * 1000},
    {"sub.s": "open"}, {"missing": None}, {"missing": "x"},
    {"s": "open", "n": 5}, {"s": "open", "n": 5, "b": True, "d": WHEN, "_id": 1},
    {"$or": [{"s": "open"}, {"n": 0}]}, {"s": "open", "$comment": "x"},
    # 0008: dates in numeric order in a typed column, ranges on them pushed down
    {"d": {"$lte": WHEN}}, {"d": {"$lt": WHEN}}, {"d": {"$gte": WHEN}}, {"d": {"$gt": WHEN}},
    {"d": {"$gt": datetime(1950, 1, 1, tzinfo=timezone.utc)}},
    {"d": {"$gte": datetime(1965, 1, 1, tzinfo=timezone.utc), "$lt": datetime(2027, 1, 1, tzinfo=timezone.utc)}},
    {"d": {"$lte": datetime(2400, 1, 1, tzinfo=timezone.utc)}}, {"d": {"$lt": datetime(1970, 1, 2,
                                                                                       tzinfo=timezone.utc)}},
    {"d": {"$lte": WHEN}, "s": "open"}, {"s": "open", "d": {"$gte": datetime(2000, 1, 1, tzinfo=timezone.utc)}},
    {"d": True}, {"n": True}, {"n": 1}, {"d": "2026-10-22"}, {"n": {"$lte": 5}}, {"d": {"$in": [WHEN, 1]}},
    # 0010: an element equal to the value, or to one of $in's
    {"s": "["}, {"s": "open]"}, {"s": OID}, {"s": "<a&b> \u2028 工资"}, {"s": {"$in": ["x", "[", "nope"]}},
    {"s": "[not json"}, {"s": "[1, \"open\"]"}, {"n": 7}, {"n": "7"}, {"n": False}, {"n": 2.0 ** 60},
    {"n": {"$in": [7, 1]}}, {"n": WHEN}, {"n": int(WHEN.timestamp() * 1000)}, {"d": {"$in": ["x", WHEN]}},
    {"d": datetime(2027, 1, 1, tzinfo=timezone.utc)}, {"s": "open", "d": WHEN}, {"s": "x", "d": {"$lte": WHEN}},
]


@pytest.mark.parametrize("filter_", FILTERS, ids=[repr(f) for f in FILTERS])
def test_every_filter_returns_what_the_stock_server_returns(patched, stock, filter_):
    for client in (patched, stock):
        coll = client.test.table
        if coll.estimated_document_count() == 0:
            coll.create_index([("s", ASCENDING), ("n", ASCENDING)], name="s_n")
            coll.create_index([("d", ASCENDING)], name="d")
            coll.create_index([("s", ASCENDING), ("d", ASCENDING)], name="s_d")
            coll.create_index([("n", ASCENDING)], name="n_unique_free")
            coll.insert_many([dict(d) for d in DOCS])
    ours = sorted(repr(d["_id"]) for d in patched.test.table.find(filter_))
    theirs = sorted(repr(d["_id"]) for d in stock.test.table.find(filter_))
    assert ours == theirs
    assert patched.test.table.count_documents(filter_) == len(theirs)


# 0009: a sort whose first key has a date range in the filter is read in the index's order.
# Values of every kind where the date is expected (arrays holding dates among them, which
# sort by their largest or smallest element), arrays where the park or status is expected,
# and many ties (twelve distinct times), so that a run of equal times is sorted by the next keys
def _sorted_docs():
    import random
    rnd = random.Random(15)
    times = [BASE + timedelta(minutes=7 * k) for k in range(12)]
    odd = [None, 5, 5.5, True, "2026-01-01", [times[3], times[9]], [times[11]], [], OID,
           {"at": times[2]}, int(times[4].timestamp() * 1000)]
    docs = []
    for i in range(600):
        doc = {"_id": i, "park_id": rnd.choice(["p1", "p1", "p1", "p2", ["p1", "p3"]]),
               "status": rnd.choice(["open", "open", "routed", ["open", "x"]]), "n": rnd.randrange(4)}
        at = rnd.choice(times) if rnd.random() < 0.85 else rnd.choice(odd + ["missing"])
        if at != "missing":
            doc["at"] = at
        docs.append(doc)
    return docs, times


SORT_FILTERS = [
    {"park_id": "p1", "at": {"$lte": BASE + timedelta(days=1)}},
    {"park_id": "p1", "status": "open", "at": {"$lt": BASE + timedelta(minutes=50)}},
    {"park_id": "p1", "status": "open", "at": {"$gte": BASE + timedelta(minutes=14),
                                               "$lte": BASE + timedelta(hours=9)}},
    {"park_id": "p1", "status": {"$in": ["open", "routed"]}, "at": {"$gt": BASE}},
    {"park_id": "p2", "status": "routed", "at": {"$lte": BASE + timedelta(days=1)}, "n": {"$lt": 3}},
    {"park_id": "p1", "at": {"$lte": BASE + timedelta(days=1)}, "$or": [{"n": 1}, {"status": "routed"}]},
    {"park_id": "p1", "status": "open"},  # no range on the sort key: sorted by the handler, as before
]
SORTS = [[("at", -1), ("_id", 1)], [("at", 1), ("_id", -1)], [("at", -1), ("n", 1), ("_id", -1)],
         [("n", 1), ("at", -1), ("_id", 1)]]
PAGES = [(0, 0), (1, 0), (5, 0), (20, 3), (200, 0)]


@pytest.mark.parametrize("filter_", SORT_FILTERS, ids=[repr(f) for f in SORT_FILTERS])
def test_every_sorted_page_returns_what_the_stock_server_returns(patched, stock, filter_):
    for client in (patched, stock):
        coll = client.test.sorted
        if coll.estimated_document_count() == 0:
            coll.create_index([("park_id", ASCENDING), ("status", ASCENDING), ("at", -1)], name="park_status_at")
            coll.create_index([("park_id", ASCENDING), ("at", ASCENDING)], name="park_at")
            coll.insert_many(_sorted_docs()[0])
    for sort in SORTS:
        for limit, skip in PAGES:
            ours = [d["_id"] for d in patched.test.sorted.find(filter_).sort(sort).skip(skip).limit(limit)]
            theirs = [d["_id"] for d in stock.test.sorted.find(filter_).sort(sort).skip(skip).limit(limit)]
            assert ours == theirs, (sort, limit, skip)
    # one key: ties in any order (MongoDB leaves it open), so the values are compared, not the
    # ids, and without arrays (an array ties with its smallest or largest element)
    scalars = dict(filter_, **{"$and": [{"at": {"$not": {"$type": "array"}}}]})
    for direction in (-1, 1):
        for limit, skip in PAGES:
            ours = [repr(d.get("at")) for d in patched.test.sorted.find(scalars).sort("at", direction)
                    .skip(skip).limit(limit)]
            theirs = [repr(d.get("at")) for d in stock.test.sorted.find(scalars).sort("at", direction)
                      .skip(skip).limit(limit)]
            assert ours == theirs, (direction, limit, skip)
    # a cursor read in batches (getMore) goes on where the first batch stopped
    ours = [d["_id"] for d in patched.test.sorted.find(filter_).sort(SORTS[0]).batch_size(7)]
    assert ours == [d["_id"] for d in stock.test.sorted.find(filter_).sort(SORTS[0])]


def test_a_page_sorted_by_one_key_does_not_read_a_run_of_equal_times_whole(patched):
    # a broadcast queues 20,000 sends due at the same millisecond: a page of them by due time
    # reads the page, not the run (with no other key there is nothing to sort the run by)
    coll = patched.test.ties
    coll.create_index([("park_id", ASCENDING), ("due_at", ASCENDING)], name="park_due")
    n = 20000
    coll.insert_many([{"_id": i, "park_id": "p", "due_at": BASE if i < n else BASE + timedelta(seconds=i)}
                      for i in range(2 * n)])
    until = {"$lte": BASE + timedelta(days=1)}

    def page(filter_):
        return lambda: list(coll.find(filter_).sort("due_at", 1).limit(20))

    equal = _median_ms(page({"park_id": "p", "due_at": until}), runs=5)
    distinct = _median_ms(page({"park_id": "p", "due_at": {"$gt": BASE, "$lte": until["$lte"]}}), runs=5)
    assert equal < 10 * distinct + 5, (equal, distinct)


def test_a_sorted_page_on_a_date_range_is_read_in_the_index_order(patched):
    coll = patched.test.sorted_plan
    coll.create_index([("park_id", ASCENDING), ("status", ASCENDING), ("at", -1)], name="park_status_at")
    coll.insert_many(_sorted_docs()[0])

    def explain(filter_, sort):
        out = patched.test.command("explain", {"find": "sorted_plan", "filter": filter_, "sort": sort, "limit": 20})
        return out["sortPushdown"], " ".join(out["queryPlanner"]["Plan"])

    ranged = {"park_id": "p1", "status": "open", "at": {"$lte": BASE + timedelta(days=1)}}
    for direction in (-1, 1):
        pushed, plan = explain(ranged, {"at": direction, "_id": 1})
        assert pushed and "park_status_at" in plan and "TEMP B-TREE" not in plan and not _scans(plan), plan
    # without the range the handler sorts (which order a date has among other types needs the whole set)
    pushed, plan = explain({"park_id": "p1", "status": "open"}, {"at": -1})
    assert not pushed
    # sorted first by another field: the handler sorts
    pushed, plan = explain(ranged, {"n": 1, "at": -1})
    assert not pushed


# what 0005's direct parsing must read as json.Unmarshal did: integers at the edges of
# their width, strings with escapes, control characters, quotes, backslashes and
# characters past the BMP, booleans inside arrays, and arrays of every kind (no nested arrays: FerretDB v1 refuses them)
VALUES = {
    "int32": [0, -1, 2 ** 31 - 1, -2 ** 31, 7, -0],
    "int64": [2 ** 31, -2 ** 31 - 1, 2 ** 63 - 1, -2 ** 63, 9007199254740993],
    "double": [0.5, -0.0, 1e21, 2.0 ** 60, 5.0, -1e-300, 1.7976931348623157e308],
    "strings": ["", "plain", "工资 拖欠", "a\"b", "back\\slash", "tab\tnew\nline\r", "\u0000nul", "\u001f",
                "\u2028\u2029", "emoji \U0001F600", "<a&b>", "[open]", "5f0c3e9b8d1e4a2b3c4d5e6f", "\x7f del"],
    "bools": [True, False, True],
    "mixed": [1, "1", 1.5, True, None, {"a": [2, "b"]}, {"x": [3, 4]}, WHEN, OID, 2 ** 40],
    "duty_hours": list(range(168)),
    "nested": {"k": "v", "n": -42, "t": True, "deep": {"e": "\"quoted\"", "l": [2 ** 31 - 1]}},
    # 0007 splits arrays and documents without decoding them: brackets, quotes and
    # escapes inside strings, keys that need escaping, empty and deep structures
    "brackets": ["]", "[", "}", "{", ",", ":", "\\", "\\\"", "]},{[", "", "\"],[\""],
    "keys": {"a\"b": 1, "c\\d": [{"]": "}"}], "工\n资": {"": True}, "x y": [], "z": {}},
    "deep_docs": [{"l": [{"m": [{"n": ["end", {"o": None}]}]}]}, {}, {"p": [1, {"q": "]"}]}],
}


def test_every_value_reads_back_as_written_and_as_the_stock_server_reads_it(patched, stock):
    doc = dict(VALUES, _id="values", when=WHEN, oid=OID, flag=False, empty=[], none=None)
    read = []
    for client in (patched, stock):
        coll = client.test.values
        coll.delete_many({})
        coll.insert_one(dict(doc))
        read.append(coll.find_one({"_id": "values"}))
    ours, theirs = read
    assert ours == theirs
    assert ours["strings"] == VALUES["strings"]
    assert ours["int64"] == VALUES["int64"] and ours["int32"] == VALUES["int32"]
    assert [type(v) for v in ours["mixed"]] == [type(v) for v in theirs["mixed"]]
    assert ours["duty_hours"] == list(range(168))
    assert ours["nested"] == VALUES["nested"]
    for key in ("brackets", "keys", "deep_docs"):
        assert ours[key] == VALUES[key], key


def test_a_document_is_stored_fields_first_and_one_stored_schema_first_reads_as_written(tmp_path):
    doc = dict(VALUES, _id="values", when=WHEN, oid=OID, flag=False, empty=[], none=None)
    stock = Server(BIN / "ferretdb-stock", directory=tmp_path)
    try:
        stock.client.test.values.insert_one(dict(doc))
        written = stock.client.test.values.find_one({"_id": "values"})
    finally:
        stock.close()
    ours = Server(BIN / "ferretdb", directory=tmp_path)
    try:
        assert ours.client.test.values.find_one({"_id": "values"}) == written
        ours.client.test.values.insert_one(dict(doc, _id="again"))
        assert ours.client.test.values.find_one({"_id": "again"}) == dict(written, _id="again")
    finally:
        ours.close()
    db = sqlite3.connect(str(tmp_path / "test.sqlite"))
    try:
        (table,) = db.execute("SELECT table_name FROM _ferretdb_collections WHERE name = 'values'").fetchone()
        rows = [r for (r,) in db.execute('SELECT _ferretdb_sjson FROM "{}"'.format(table))]
    finally:
        db.close()
    # the stock server's row leads with its schema; ours with the _id, the schema last
    assert sorted(r[:12] for r in rows) == sorted(['{"$s":{"p":{', '{"_id":"agai'])


@pytest.mark.parametrize("turns", ["on", "off"])
def test_a_write_waits_its_turn_behind_a_long_one_instead_of_failing(turns):
    """0012: writers to one database queue in the server. The server here gives SQLite's busy
    handler 50 ms (the default is 10 s) and inserts a batch of 20,000 documents in one
    transaction, so that writes that come meanwhile wait longer than that. With the writers'
    turns (the patched server as it runs) every one of them waits and succeeds; with
    LAMPLIGHT_FERRETDB_WRITE_TURNS=off (as before 0012) some fail with "database is locked",
    which is what this test would catch without the patch."""
    server = Server(BIN / "ferretdb", query="?_pragma=busy_timeout(50)", FERRETDB_TEST_BATCH_SIZE="100000",
                    LAMPLIGHT_FERRETDB_WRITE_TURNS=turns)
    try:
        db = server.client.turns
        db.big.insert_one({"i": -1})
        db.small.insert_one({"i": -1})
        written, failures = 0, []
        for trial in range(3 if turns == "on" else 5):
            started = threading.Event()

            def big():
                started.set()
                db.big.insert_many([{"i": i, "trial": trial, "pad": "p" * 400} for i in range(20000)])

            thread = threading.Thread(target=big)
            thread.start()
            started.wait()
            time.sleep(0.1)
            while thread.is_alive():
                try:
                    db.small.insert_one({"trial": trial})
                    written += 1
                except Exception as exc:  # the server's "database is locked", as an OperationFailure
                    failures.append(str(exc))
            thread.join()
            if turns == "off" and failures:
                break
        assert written > 0
        if turns == "on":
            assert failures == []
            assert db.small.count_documents({}) == written + 1
            assert db.big.count_documents({}) == 3 * 20000 + 1
        else:
            # the control: the same load without the turns does fail, so the test can tell them apart
            assert failures and all("database is locked" in f for f in failures), failures[:3]
    finally:
        server.close()
