"""The notify service's only door to MongoDB.

Everything a park's notices need lives in collections of that park's own
(``notices.<park>``, see lamplight.storage.Partitions): a broadcast to 20,000
people in one park does not slow the next park's notices.

Writes are inserts with deterministic ids wherever it matters: a notice
``<source>:<recipient>:<channel>``, its delivery log lines
``<notice>#<step>``, its place in the send queue ``pending`` under the
notice's id. A redelivered event or a fan-out started again inserts nothing
twice, and an attempt to send is claimed by inserting ``<notice>#try<n>``, so
two processes never send the same attempt (written when the stock development
server's conditional updates were not atomic; it holds on every server, and
the log line is wanted anyway).
"""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, IndexModel

from lamplight.alarms import INDEXES as ALARM_INDEXES
from lamplight.alarms import ParkAlarm
from lamplight.parkconfig import CachedProjection, CachedRecords, ParkConfig
from services.notify import domain

PARTITIONED = ("recipients", "responders", "followers", "notices", "deliveries", "pending", "broadcasts",
               "leases", "templates")
INDEXES = {
    "recipients": [
        IndexModel([("park_id", ASCENDING), ("member_id", ASCENDING)], name="park_member"),
        IndexModel([("park_id", ASCENDING), ("teams", ASCENDING)], name="park_teams"),
        IndexModel([("park_id", ASCENDING), ("building", ASCENDING)], name="park_building"),
        IndexModel([("park_id", ASCENDING), ("roles", ASCENDING)], name="park_roles"),
    ],
    "responders": [
        IndexModel([("park_id", ASCENDING), ("member_id", ASCENDING)], name="park_member"),
        IndexModel([("park_id", ASCENDING), ("teams", ASCENDING)], name="park_teams"),
    ],
    "followers": [IndexModel([("park_id", ASCENDING), ("need_id", ASCENDING)], name="park_need")],
    "notices": [
        IndexModel([("park_id", ASCENDING), ("recipient_id", ASCENDING), ("created_at", DESCENDING)],
                   name="park_recipient_created"),
    ],
    "deliveries": [
        IndexModel([("park_id", ASCENDING), ("recipient_id", ASCENDING), ("at", ASCENDING)], name="park_recipient_at"),
        IndexModel([("park_id", ASCENDING), ("source_id", ASCENDING)], name="park_source"),
        IndexModel([("park_id", ASCENDING), ("notice_id", ASCENDING)], name="park_notice"),
    ],
    # the send loop's question, one priority at a time: what is due, soonest first; and when
    # the park's next send is due, for its alarm
    "pending": [IndexModel([("park_id", ASCENDING), ("rank", ASCENDING), ("due_at", ASCENDING)],
                           name="park_rank_due"),
                IndexModel([("park_id", ASCENDING), ("due_at", ASCENDING)], name="park_due")],
    # the send loop's housekeeping: a fan-out that died with its process, oldest first
    "broadcasts": [IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("requested_at", ASCENDING)],
                              name="park_status_requested")],
    "configs": [],
    **ALARM_INDEXES,
}
# the send loop's alarms (lamplight.alarms): rung by every write to a park's send queue
SEND_LOOP = "send"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# a broadcast still fanning out this long after it was asked for lost its process: the send loop
# finishes it (its alarm is rung for then when the broadcast is stored)
ABANDONED_AFTER = timedelta(minutes=5)
PROFILE_FIELDS = ("locale", "addresses", "channels", "opted_out", "shifts", "member_id", "building", "teams", "roles")
CHUNK = 1000


def chunks(items, size=CHUNK):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class NotifyStore:
    def __init__(self, store, park_id):
        self.park_id = park_id
        scope = store.park(park_id)
        self.config = ParkConfig(scope, "notify configuration")
        for name in PARTITIONED:
            setattr(self, name, scope[name])
        self._templates = CachedProjection(self.templates, park_id, "templates", self._read_overrides)
        # every notice reads its recipients' profiles: kept in the process, dropped on any change
        self._profiles = CachedRecords(self.recipients, park_id, "recipients")
        self.alarm = ParkAlarm(store, SEND_LOOP, park_id)

    # recipients ------------------------------------------------------------------------
    def put_recipient(self, recipient_id, profile, at):
        doc = dict(profile, _id=recipient_id, updated_at=at)
        self.recipients.replace_one({"_id": recipient_id}, doc, upsert=True)
        self._profiles.changed()
        return doc

    def import_recipients(self, docs):
        """Insert the profiles not there yet; returns the ids already there."""
        inserted = set()
        try:
            for chunk in chunks(docs):
                inserted |= {d["_id"] for d in self.recipients.insert_many_once(chunk)}
        finally:
            if inserted:
                self._profiles.changed()
        return [d["_id"] for d in docs if d["_id"] not in inserted]

    def recipient(self, recipient_id):
        return self.recipients.find_one({"_id": recipient_id})

    def profiles(self, ids):
        """A profile for each id, the default where notify knows only the id
        (read through this process's cache of the park's profiles)."""
        ids = sorted(set(ids))
        found = self._profiles.get_many(ids, self._read_profiles)
        return [dict(found[i], known=True) if found.get(i) else domain.default_profile(i) for i in ids]

    def _read_profiles(self, ids):
        return [doc for chunk in chunks(ids) for doc in self.recipients.find({"_id": {"$in": chunk}})]

    def members(self, member_id):
        ids = [d["_id"] for d in self.recipients.find({"member_id": member_id}, {"_id": 1})]
        return ids or [d["_id"] for d in self.responders.find({"member_id": member_id}, {"_id": 1})]

    def audience(self, kind, value):
        """The profiles of a broadcast audience: a whole park, a team, a
        building or a role; a volunteer notify knows only from the
        volunteers service gets the default profile. Read with the audience's
        own filter, not by id: FerretDB answers ``$in`` over a long list
        slowly (measured: 0.96 s for 1,000 ids among 20,000 documents)."""
        if kind == "park":
            query, responders = {}, {"active": True}
        elif kind == "team":
            query, responders = {"teams": value}, {"teams": value, "active": True}
        elif kind == "building":
            query, responders = {"building": value}, None
        else:
            query, responders = {"roles": value}, None
        profiles = {d["_id"]: dict(d, known=True) for d in self.recipients.find(query)
                    if d["_id"] != CachedRecords.COUNTER}  # the counter of changes (CachedRecords) is no one
        if responders is not None:
            missing = [d["_id"] for d in self.responders.find(responders, {"_id": 1}) if d["_id"] not in profiles]
            # park-wide, every profile was read already: the rest have none; a team's
            # volunteer may have a profile that does not list the team
            found = ([domain.default_profile(i) for i in missing] if kind == "park" else self.profiles(missing))
            profiles.update((p["_id"], p) for p in found)
        return [profiles[k] for k in sorted(profiles)]

    def project_responder(self, data, at):
        self.responders.replace_one({"_id": data["responder_id"]}, {
            "_id": data["responder_id"], "member_id": data.get("member_id"), "teams": data.get("teams", []),
            "zone": data.get("zone"), "active": data["active"], "at": at}, upsert=True)

    def set_following(self, need_id, follower_id, following, at):
        doc_id = "{}:{}".format(need_id, follower_id)
        if following:
            self.followers.replace_one({"_id": doc_id}, {"_id": doc_id, "need_id": need_id,
                                                         "follower_id": follower_id, "at": at}, upsert=True)
        else:
            self.followers.delete_one({"_id": doc_id})

    def followers_of(self, need_id):
        return [d["follower_id"] for d in self.followers.find({"need_id": need_id})]

    # templates -------------------------------------------------------------------------
    def overrides(self):
        """The park's own templates, {(key, locale): (title, body)}: cached in
        the process (every notice rendered read them), current after any change."""
        return self._templates.get()

    def _read_overrides(self):
        return {(d["key"], d["locale"]): (d["title"], d["body"])
                for d in self.templates.find({}) if d["_id"] != CachedProjection.COUNTER}

    def put_template(self, key, locale, title, body, at):
        doc_id = "{}:{}".format(key, locale)
        self.templates.replace_one({"_id": doc_id}, {"_id": doc_id, "key": key, "locale": locale, "title": title,
                                                     "body": body, "saved_at": at}, upsert=True)
        self._templates.changed()

    def delete_template(self, key, locale):
        deleted = self.templates.delete_one({"_id": "{}:{}".format(key, locale)}).deleted_count == 1
        if deleted:
            self._templates.changed()
        return deleted

    # notices, their log, the send queue --------------------------------------------------
    def write_plan(self, notices, records, pending):
        """Insert what is not there yet; returns the notices inserted now."""
        fresh = []
        for chunk in chunks(notices):
            fresh += self.notices.insert_many_once(chunk)
        for chunk in chunks(records):
            self.deliveries.insert_many_once(chunk)
        for chunk in chunks(pending):
            self.pending.insert_many_once(chunk)
        if pending:  # after the queue's write: the send loop's visit must find it
            self.alarm.ring(min(p["due_at"] for p in pending))
        return fresh

    def notice(self, nid):
        return self.notices.find_one({"_id": nid}, {"_outbox": 0})

    def notices_of(self, nids):
        """The notices with these ids (one read; a digest's few), in that order."""
        found = {n["_id"]: n for n in self.notices.find({"_id": {"$in": list(nids)}}, {"_outbox": 0})}
        return [found[nid] for nid in nids if nid in found]

    def inbox(self, recipient_id, unread_only=False, limit=50):
        query = {"recipient_id": recipient_id, "channel": domain.INAPP, "shown": True}
        if unread_only:
            query["read"] = False
        return list(self.notices.find(query, {"_outbox": 0}).sort("created_at", DESCENDING).limit(limit))

    def mark_read(self, recipient_id, nid):
        return self.notices.update_one({"_id": nid, "recipient_id": recipient_id},
                                       {"$set": {"read": True}}).matched_count == 1

    def log(self, query, limit):
        return list(self.deliveries.find(query, {"_outbox": 0}).sort([("at", ASCENDING), ("_id", ASCENDING)])
                    .limit(limit))

    def add_record(self, doc):
        """Insert one line of the log; False when that step was taken already
        (the claim of an attempt, a step replayed after a crash)."""
        return self.deliveries.insert_once(doc)

    def record(self, record_id):
        return self.deliveries.find_one({"_id": record_id}, {"_outbox": 0})

    def has_record(self, record_id):
        return self.deliveries.find_one({"_id": record_id}, {"_id": 1}) is not None

    def due(self, now, limit):
        """At most ``limit`` sends and digests due by ``now``, by priority, then
        soonest first: a read of (rank, due_at) per priority, so that a critical
        notice passes a backlog of normal ones and a batch reads about as many
        entries as it takes (the development server reads a sort in its index's
        order only on a date range: ferretdb/patches/0009)."""
        due = []
        for rank in sorted(set(domain.RANK.values())):
            if len(due) >= limit:
                break
            due += self.pending.find({"rank": rank, "due_at": {"$lte": now}}).sort(
                "due_at", ASCENDING).limit(limit - len(due))
        return due

    def reschedule(self, nid, due_at, attempt, failures=None):
        fields = {"due_at": due_at, "attempt": attempt}
        if failures is not None:
            fields["failures"] = failures
        self.pending.update_one({"_id": nid}, {"$set": fields})
        self.alarm.ring(due_at)

    def done(self, nids):
        if nids:
            self.pending.delete_many({"_id": {"$in": list(nids)}})

    def next_due(self):
        """When the park's next send or digest is due; None when none is queued.
        (The range on due_at, which every entry's date is in, lets the development
        server read the sort in the index's order: ferretdb/patches/0009.)"""
        for doc in self.pending.find({"due_at": {"$gte": _EPOCH}}, {"due_at": 1}).sort("due_at", ASCENDING).limit(1):
            return doc["due_at"]
        return None

    def pending_count(self):
        return self.pending.count_documents({})

    def take_lease(self, name, window, at):
        """True for the one process that takes ``name`` for ``window``."""
        return self.leases.insert_once({"_id": "{}@{}".format(name, window), "at": at})

    def drop_leases(self, before):
        self.leases.delete_many({"at": {"$lt": before}})

    # broadcasts ------------------------------------------------------------------------
    def add_broadcast(self, doc):
        """(the broadcast stored, created): the one already under that id if there is one.
        The send loop's alarm is rung for when the fan-out would count as abandoned."""
        stored, created = self.broadcasts.insert_or_get(doc)
        if created:
            self.alarm.ring(doc["requested_at"] + ABANDONED_AFTER)
        return stored, created

    def broadcast(self, broadcast_id):
        return self.broadcasts.find_one({"_id": broadcast_id}, {"_outbox": 0})

    def broadcast_shown(self, broadcast_id, at):
        """When every in-app notice of a broadcast was written (the first time, if it is fanned out again)."""
        self.broadcasts.update_one({"_id": broadcast_id, "shown_at": {"$exists": False}}, {"$set": {"shown_at": at}})

    def finish_broadcast(self, broadcast_id, update):
        return self.broadcasts.update_one({"_id": broadcast_id}, update).matched_count == 1

    def unfinished_broadcasts(self, before):
        return list(self.broadcasts.find({"status": "fanning_out", "requested_at": {"$gte": _EPOCH, "$lt": before}}))

    def first_unfinished_broadcast(self):
        """When the oldest broadcast still fanning out was asked for, or None."""
        for doc in self.broadcasts.find({"status": "fanning_out", "requested_at": {"$gte": _EPOCH}},
                                        {"requested_at": 1}).sort("requested_at", ASCENDING).limit(1):
            return doc["requested_at"]
        return None
