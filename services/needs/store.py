"""The needs service's only door to MongoDB.

Documents are keyed ``<park>/<id>`` so that a lookup by id is a filter on
``_id`` alone (see lamplight.storage). A lifecycle change is one
single-document update conditional on the need's ``version``: two desks (or a
desk and a dispatch event) changing the same need cannot both win, and the
change, its timeline entry and its events land together or not at all.
"""

from datetime import datetime, timezone

from pymongo import ASCENDING, DESCENDING, IndexModel

from lamplight.alarms import INDEXES as ALARM_INDEXES
from lamplight.alarms import ParkAlarm
from lamplight.parkconfig import ParkConfig
from lamplight.storage import DuplicateKeyError, VersionedDocument, utcnow  # noqa: F401 (utcnow re-exported)
from services.needs import domain

# utcnow (above) is millisecond-exact: a timeline replayed from the database computes what was computed before

INDEXES = {
    "needs": [
        IndexModel([("park_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
                   name="park_idempotency_key"),
        IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)],
                   name="park_status_due"),
        IndexModel([("park_id", ASCENDING), ("item", ASCENDING), ("status", ASCENDING)], name="park_item_status"),
        # the time-limit sweep: the needs due (late, or their evaluation window closed) and the
        # next time one is, each one range of this index (domain.sweep_at)
        IndexModel([("park_id", ASCENDING), ("sweep_at", ASCENDING)], name="park_sweep_at"),
        # a requester's recent needs, for the possible duplicates of a new one (recent_of)
        IndexModel([("park_id", ASCENDING), ("requester_key", ASCENDING), ("submitted_at", DESCENDING)],
                   name="park_requester_submitted"),
    ],
    "wall": [
        # a page filtered by status or category reads that status's or category's lines only
        # (listed first: where two indexes serve a filter equally, the development server takes
        # the first made); every other page goes through (park, public, updated_at)
        IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("updated_at", DESCENDING)],
                   name="park_status_updated"),
        IndexModel([("park_id", ASCENDING), ("category", ASCENDING), ("updated_at", DESCENDING)],
                   name="park_category_updated"),
        IndexModel([("park_id", ASCENDING), ("public", ASCENDING), ("updated_at", DESCENDING)],
                   name="park_public_updated"),
    ],
    "followers": [
        IndexModel([("park_id", ASCENDING), ("need_id", ASCENDING)], name="park_need"),
    ],
    **ALARM_INDEXES,
}
# indexes an earlier release made that nothing reads now (the sweep read resolved needs by
# evaluation deadline through it, before sweep_at), dropped when a needs process starts
RETIRED_INDEXES = {"needs": ["park_status_evaluation_due"]}
# the sweep's alarms (lamplight.alarms): rung by every write of a need at the time the sweep
# wants it (services.needs.domain.sweep_wanted)
SWEEP_LOOP = "sweep"
# how many of the newest public wall lines the head document of a park lists
# (need, version, time of change): the first page of the public wall is the
# head and the lines it names, read by _id. Only those three fields are kept:
# the head is read and written again for every change of the park's wall,
# and with whole lines it was 31 KB (a third of the database's work per need)
WALL_HEAD_SIZE = 60
HEAD_FIELDS = ("need_id", "version", "updated_at")
# the upper end of the first wall page's range of times (see NeedsStore.wall_page)
END_OF_TIME = datetime(9999, 12, 31, tzinfo=timezone.utc)


def head_line(line):
    """What the head keeps of a wall line (or of a head line written whole, before)."""
    return {k: line[k] for k in HEAD_FIELDS}


# how many of a requester's recent needs duplicate detection compares a new one with
RECENT_PER_REQUESTER = 20


class NeedsStore:
    def __init__(self, store, park_id):
        self.park_id = park_id
        scope = store.park(park_id)
        self.needs = scope["needs"]
        self.park_config = ParkConfig(scope, "needs configuration")
        self.wall = scope["wall"]
        self.wall_heads = scope["wall_heads"]
        self.followers = scope["followers"]
        self.resources = scope["resources"]
        self.projects = scope["projects"]
        self.versioned_needs = VersionedDocument(self.needs)  # its timeline is the audit trail
        self.versioned_heads = VersionedDocument(self.wall_heads)
        self.versioned_lines = VersionedDocument(self.wall)
        self.alarm = ParkAlarm(store, SWEEP_LOOP, park_id)

    def key(self, local_id):
        return "{}/{}".format(self.park_id, local_id)

    # configuration ------------------------------------------------------------------
    def config(self):
        return self.park_config.current()

    # needs --------------------------------------------------------------------------
    def insert(self, need):
        """Insert a new need; returns None, or the need already stored under
        the same idempotency key."""
        try:
            self.needs.insert_one(need)
            self.alarm.ring(domain.sweep_wanted(None, need, utcnow()))
            return None
        except DuplicateKeyError:
            existing = self.needs.find_one({"idempotency_key": need["idempotency_key"]})
            if existing is None:  # the clash was on _id: a retried relay of this very need
                existing = self.needs.find_one({"_id": need["_id"]})
            return existing

    def get(self, need_id, internal=False):
        projection = None if internal else {"_outbox": 0, "_outbox_at": 0, "_outbox_by": 0}
        return self.needs.find_one({"_id": self.key(need_id)}, projection)

    def apply_change(self, need, fields):
        """Write one change of ``need`` (as read at its version): absolute
        values of the changed fields, the whole timeline and the outbox, in
        one update of that one document. False when another change got there
        first."""
        written = self.versioned_needs.write(need, fields)
        if written:
            self.alarm.ring(domain.sweep_wanted(need, dict(need, **fields), utcnow()))
        return written

    def next_due(self, now):
        """The soonest sweep_at ahead of ``now`` (a time limit of a need whose
        clock runs, or an evaluation deadline): the first entry of an index
        range. None when no need has one."""
        for doc in self.needs.find({"sweep_at": {"$gt": now, "$lt": domain.NO_SWEEP}},
                                   {"_id": 0, "sweep_at": 1}).sort("sweep_at", ASCENDING).limit(1):
            return doc["sweep_at"]
        return None

    def due_for_sweep(self, now, limit):
        """Needs whose time limit has passed while their clock runs, and
        resolved needs whose evaluation window has closed: up to ``limit``,
        soonest first."""
        return list(self.needs.find({"sweep_at": {"$lte": now}}, {"timeline": 0, "_outbox": 0})
                    .sort("sweep_at", ASCENDING).limit(limit))

    def correct_sweep_at(self, need, at):
        """Set the sweep_at of ``need`` (as read, at its version) that was
        written without one or left as it was by a process of an earlier
        release, and ring the alarm for it. False when the need changed
        meanwhile (its change wrote its own)."""
        if self.needs.update_one({"_id": need["_id"], "version": need["version"]},
                                 {"$set": {"sweep_at": at}}).modified_count != 1:
            return False
        self.alarm.ring(at if at < domain.NO_SWEEP else None)
        return True

    def open_needs(self, open_statuses):
        """Every open need of the park, with what its count and its sweep_at
        are made of."""
        return self.needs.find({"status": {"$in": list(open_statuses)}},
                               {"need_id": 1, "version": 1, "category": 1, "status": 1, "due_at": 1,
                                "evaluation_due": 1, "sweep_at": 1})

    def overdue_counts(self, now, running):
        """category -> how many needs with a running clock are past their due
        time (read through the (park, sweep_at) index)."""
        overdue = {}
        for doc in self.needs.find({"sweep_at": {"$lte": now}, "status": {"$in": list(running)}}, {"category": 1}):
            overdue[doc["category"]] = overdue.get(doc["category"], 0) + 1
        return overdue

    def statistics_rows(self):
        return self.needs.find({}, {"status": 1, "category": 1, "grade": 1, "item": 1, "submitted_at": 1,
                                    "resolved_at": 1, "paused_seconds": 1, "overdue_count": 1, "evaluation": 1,
                                    "details": 1})

    # duplicates -----------------------------------------------------------------------
    def recent_of(self, requester_key, since):
        """The requester's needs submitted since ``since``, newest first (at
        most RECENT_PER_REQUESTER): one indexed read of the needs themselves,
        where a per-requester list was a read and a write for every need."""
        return [{"need_id": d["need_id"], "item": d["item"], "category": d["category"], "title": d["title"],
                 "at": d["submitted_at"]}
                for d in self.needs.find({"requester_key": requester_key, "submitted_at": {"$gte": since}},
                                         {"need_id": 1, "item": 1, "category": 1, "title": 1, "submitted_at": 1})
                .sort("submitted_at", DESCENDING).limit(RECENT_PER_REQUESTER)]

    # the echo wall --------------------------------------------------------------------
    def project_wall(self, entry):
        """Set one public line, whatever order its versions arrive in; False
        when this version was projected already (a redelivery)."""
        return self.versioned_lines.project(self.key(entry["need_id"]), entry)

    def merge_wall_head(self, entry, known=None, attempts=50):
        """Keep the park's newest lines in one small document (compare and
        set on its version: concurrent projections retry). ``known`` is the
        head as this process last wrote it: tried without a read, and read
        again only when another writer moved it. Returns the head as it now
        stands for this process (None when it must be read next time)."""
        _id = self.key("wall-head")
        head = known
        for _ in range(attempts):
            if head is None:
                head = self.wall_heads.find_one({"_id": _id})
            if head is None:
                lines = [head_line(entry)] if entry["public"] else []
                doc = {"_id": _id, "version": 1, "lines": lines, "complete": True}
                try:
                    self.wall_heads.insert_one(dict(doc))
                    return doc
                except DuplicateKeyError:
                    continue
            current = next((line for line in head["lines"] if line["need_id"] == entry["need_id"]), None)
            if current is not None and current["version"] >= entry["version"]:
                # a head known here may be behind the stored one, never ahead: nothing to write
                return head
            lines = [head_line(line) for line in head["lines"] if line["need_id"] != entry["need_id"]]
            if entry["public"]:
                lines.append(head_line(entry))
            lines.sort(key=lambda line: (line["updated_at"], line["need_id"]), reverse=True)
            # complete: the head holds every public line of the park (nothing was ever cut off its end)
            fields = {"lines": lines[:WALL_HEAD_SIZE],
                      "complete": head.get("complete", True) and len(lines) <= WALL_HEAD_SIZE}
            if self.versioned_heads.write(head, fields):
                return dict(head, version=head["version"] + 1, **fields)
            head = None  # another writer moved it: read it again
        raise RuntimeError("wall head of {} kept changing".format(self.park_id))

    def wall_head(self):
        head = self.wall_heads.find_one({"_id": self.key("wall-head")})
        return head or {"lines": [], "complete": True}

    def wall_page(self, status=None, category=None, before=None, limit=20, before_need=None):
        """A page of the wall, newest change first: (updated_at, need_id)
        descending, after the cursor (``before``, ``before_need``)."""
        query = {"public": True}
        if status:
            query["status"] = status
        if category:
            query["category"] = category
        # every page is a range of times, the first up to the end of time: an index range on
        # (park, status or category, updated_at) read in its order and stopped after the page
        # (ferretdb/patches/0009 reads a sort that way only when its field has a date range)
        if before is not None and before_need is not None:
            query["updated_at"] = {"$lte": before}
            query["$or"] = [{"updated_at": {"$lt": before}}, {"need_id": {"$lt": before_need}}]
        else:
            query["updated_at"] = {"$lt": before if before is not None else END_OF_TIME}
        return list(self.wall.find(query, {"_id": 0, "park_id": 0}).sort(
            [("updated_at", DESCENDING), ("need_id", DESCENDING)]).limit(limit))

    def head_lines(self, head_lines):
        """The wall lines the head lists, in its order; None when one is no
        longer the version the head lists (it changed after the head was read)."""
        if not head_lines:
            return []
        found = {line["need_id"]: line for line in self.wall.find(
            {"_id": {"$in": [self.key(h["need_id"]) for h in head_lines]}}, {"_id": 0, "park_id": 0})}
        lines = [found.get(h["need_id"]) for h in head_lines]
        if all(line is not None and line["version"] == h["version"] for line, h in zip(lines, head_lines)):
            return lines
        return None

    def wall_line(self, need_id):
        return self.wall.find_one({"_id": self.key(need_id)}, {"_id": 0, "park_id": 0})

    # followers ---------------------------------------------------------------------------
    def set_following(self, need_id, follower_id, following, outbox_update):
        """Follow or stop following, with the event in the same write; False
        when it already was so."""
        _id = self.key("{}/{}".format(need_id, follower_id))
        current = self.followers.find_one({"_id": _id}, {"following": 1})
        if (current or {}).get("following", False) == following:
            return False
        update = dict(outbox_update, **{"$set": dict(outbox_update["$set"], need_id=need_id, follower_id=follower_id,
                                                      following=following, changed_at=utcnow())})
        self.followers.update_one({"_id": _id}, update, upsert=True)
        return True

    def followers_of(self, need_id, limit=1000):
        return [d["follower_id"] for d in self.followers.find({"need_id": need_id, "following": True}).limit(limit)]

    # the three lists ---------------------------------------------------------------------
    def needs_by_item(self):
        """The park's needs as the three lists count them (typed details included, for the sums)."""
        return list(self.needs.find({}, {"_id": 0, "category": 1, "item": 1, "status": 1, "details": 1}))

    def put_listing(self, collection, code, doc):
        collection = getattr(self, collection)
        doc = dict(doc, _id=self.key(code), code=code, updated_at=utcnow())
        collection.update_one({"_id": doc["_id"]}, {"$set": doc}, upsert=True)
        return doc

    def listings(self, collection):
        return list(getattr(self, collection).find({}, {"_id": 0, "park_id": 0}).sort("code", ASCENDING))


def parks_with_config(store):
    """Every park that has a needs configuration (the sweep visits each)."""
    return sorted(store.unscoped("configs", "the sweep visits every configured park").distinct("park_id"))
