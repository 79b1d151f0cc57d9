"""The volunteers service's only door to MongoDB.

A park's responders, tasks, slots, visits and call-outs live in collections
of their own (``tasks.<park>``, see lamplight.storage.Partitions): dispatch in
one park reads only that park's documents, however big the other parks are.

Atomicity, on every server we support: a task changes through
``VersionedDocument`` (one conditional update on its version: of fifty
concurrent claimers exactly one wins), and a responder's cap on open tasks
is a set of numbered slot documents ``<responder>#task<n>`` taken by
insert, so two claims at once cannot both take the last slot.
"""

from datetime import datetime, timezone

from pymongo import ASCENDING, IndexModel

from lamplight.alarms import INDEXES as ALARM_INDEXES
from lamplight.alarms import ParkAlarm
from lamplight.parkconfig import ParkConfig
from lamplight.storage import DuplicateKeyError, VersionedDocument, utcnow  # noqa: F401 (utcnow re-exported)
from services.volunteers.domain.dispatch import check_sooner

PARTITIONED = ("responders", "tasks", "task_versions", "slots", "households", "visits", "visit_versions",
               "callouts", "callout_recipients")
INDEXES = {
    "responders": [
        IndexModel([("park_id", ASCENDING), ("ref", ASCENDING)], unique=True, name="park_ref"),
        # "who is on duty in hour h of the week": one multikey index lookup
        IndexModel([("park_id", ASCENDING), ("duty_hours", ASCENDING)], name="park_duty_hours"),
        IndexModel([("park_id", ASCENDING), ("teams", ASCENDING), ("active", ASCENDING)], name="park_teams"),
    ],
    "tasks": [
        IndexModel([("park_id", ASCENDING), ("next_check_at", ASCENDING)], name="park_next_check"),
        IndexModel([("park_id", ASCENDING), ("mode", ASCENDING), ("status", ASCENDING)], name="park_mode_status"),
        IndexModel([("park_id", ASCENDING), ("holder.responder_id", ASCENDING), ("status", ASCENDING)],
                   name="park_holder_status"),
        IndexModel([("park_id", ASCENDING), ("need_id", ASCENDING)], name="park_need"),
    ],
    "slots": [IndexModel([("park_id", ASCENDING), ("responder_id", ASCENDING)], name="park_responder")],
    "visits": [IndexModel([("park_id", ASCENDING), ("month", ASCENDING), ("status", ASCENDING)],
                          name="park_month_status"),
               # the sweep's question: missed visits still waiting for the supervisors
               IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("supervision_pending", ASCENDING)],
                          name="park_status_supervision")],
    "households": [IndexModel([("park_id", ASCENDING), ("active", ASCENDING)], name="park_active")],
    "callout_recipients": [IndexModel([("park_id", ASCENDING), ("callout_id", ASCENDING), ("answer", ASCENDING)],
                                      name="park_callout_answer")],
    "configs": [],
    "parkstate": [],
    **ALARM_INDEXES,
}
# the sweep's alarms (lamplight.alarms): rung at a task's next check, a month's visit deadline,
# a missed visit's next rung
SWEEP_LOOP = "sweep"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NO_PII = {"name": 0, "phone": 0, "_outbox": 0}
# what dispatch reads of a candidate: enough to rule on duty, cap, team, skills and distance
DISPATCH_FIELDS = {f: 1 for f in ("park_id", "kind", "active", "teams", "skills", "zone", "max_open_tasks",
                                   "member_id", "last_work_at", "intervals", "leave", "extra")}


class VolunteersStore:
    def __init__(self, store, park_id):
        self.park_id = park_id
        scope = store.park(park_id)
        self.responders = scope["responders"]
        self.tasks = scope["tasks"]
        self.slots = scope["slots"]
        self.households = scope["households"]
        self.visits = scope["visits"]
        self.callouts = scope["callouts"]
        self.recipients = scope["callout_recipients"]
        self.park_config = ParkConfig(scope, "volunteers configuration")
        self.parkstate = scope["parkstate"]
        # every version of a task is kept (its claim): who claimed, started, released, when
        self.versioned_tasks = VersionedDocument(self.tasks)  # its history is the audit trail
        self.versioned_visits = VersionedDocument(self.visits)
        self.versioned_state = VersionedDocument(self.parkstate, scope["parkstate_versions"])  # mode switches
        self.alarm = ParkAlarm(store, SWEEP_LOOP, park_id)

    def key(self, local_id):
        return "{}/{}".format(self.park_id, local_id)

    # configuration --------------------------------------------------------------------
    def config(self):
        return self.park_config.current()

    # responders ---------------------------------------------------------------------
    def add_responder(self, responder):
        """Insert; returns None, or the responder already registered under the same ref."""
        try:
            self.responders.insert_one(responder)
        except DuplicateKeyError:
            return self.responders.find_one({"ref": responder["ref"]})
        return None

    def get_responder(self, responder_id, pii=False):
        return self.responders.find_one({"_id": responder_id}, None if pii else NO_PII)

    def responders_by_ref(self, refs):
        return list(self.responders.find({"ref": {"$in": list(refs)}}, NO_PII)) if refs else []

    def set_responder(self, responder_id, fields, outbox):
        """Set fields of a responder with their event in the same write."""
        return self.responders.update_one({"_id": responder_id}, dict(outbox, **{"$set": dict(
            fields, **outbox["$set"], changed_at=utcnow())})).matched_count == 1

    def note_work(self, responder_ids, at):
        """Fairness: when each was last given work. A plain last-writer-wins
        set: two dispatchers racing write nearly the same time."""
        if responder_ids:  # one request for all of them
            self.responders.update_many({"_id": {"$in": list(responder_ids)}}, {"$set": {"last_work_at": at}})

    def on_duty_candidates(self, hours, teams=None, skills=None, now=None, kind="volunteer"):
        """Active responders of ``teams`` whose weekly template touches any of
        ``hours`` (hours of the week) or who have an extra shift ending after
        ``now``; the exact minute is checked by the caller."""
        query = {"active": True, "kind": kind,
                 "$or": [{"duty_hours": {"$in": sorted(hours)}}, {"extra_until": {"$gt": now}}]}
        if teams is not None:
            query["teams"] = {"$in": list(teams)}
        if skills:
            query["skills"] = {"$all": list(skills)}
        return list(self.responders.find(query, DISPATCH_FIELDS))

    def active_in_teams(self, teams):
        return list(self.responders.find({"active": True, "teams": {"$in": list(teams)}}, NO_PII))

    def unit(self, ref):
        return self.responders.find_one({"ref": ref, "kind": "unit"}, NO_PII)

    # slots: the cap on open tasks ----------------------------------------------------------
    def open_counts(self, responder_ids, kind="task"):
        """responder -> slots held, for these responders (dispatch's candidates)."""
        counts = {}
        for chunk in (list(responder_ids)[i:i + 1000] for i in range(0, len(responder_ids), 1000)):
            for slot in self.slots.find({"responder_id": {"$in": chunk}, "kind": kind}, {"responder_id": 1}):
                counts[slot["responder_id"]] = counts.get(slot["responder_id"], 0) + 1
        return counts

    def take_slot(self, responder_id, kind, cap, task_id):
        """Take a free slot (1..cap) for ``task_id``; the slot id, or None at
        the cap. Taking a slot already held for this task returns it."""
        for n in range(1, cap + 1):
            slot_id = "{}#{}{}".format(responder_id, kind, n)
            try:
                self.slots.insert_one({"_id": slot_id, "responder_id": responder_id, "kind": kind,
                                       "task_id": task_id, "taken_at": utcnow()})
                return slot_id
            except DuplicateKeyError:
                held = self.slots.find_one({"_id": slot_id})
                if held is not None and held["task_id"] == task_id:
                    return slot_id
        return None

    def free_slot(self, responder_id, task_id):
        for slot in self.slots.find({"responder_id": responder_id}, {"task_id": 1}):
            if slot["task_id"] == task_id:
                self.slots.delete_one({"_id": slot["_id"]})

    def slots_of(self, responder_id):
        return list(self.slots.find({"responder_id": responder_id}))

    # tasks ------------------------------------------------------------------------------
    def insert_task(self, task):
        """False when the task exists (a redelivered need event). Either way the
        sweep's alarm rings at its next check (a redelivery rings what a crash missed)."""
        inserted = self.tasks.insert_once(task)
        self.alarm.ring(task.get("next_check_at"))
        return inserted

    def get_task(self, task_id, internal=False):
        projection = None if internal else {"_outbox": 0, "_outbox_at": 0, "_outbox_by": 0}
        return self.tasks.find_one({"_id": task_id}, projection)

    def write_task(self, task, fields):
        written = self.versioned_tasks.write(task, fields)
        if written:
            self.alarm.ring(check_sooner(task, fields))
        return written

    def next_check(self):
        """The soonest of the park's tasks' next checks, or None. (The range on the
        date lets the development server read the sort in the index's order:
        ferretdb/patches/0009.)"""
        for task in self.tasks.find({"next_check_at": {"$gte": _EPOCH}}, {"next_check_at": 1}).sort(
                "next_check_at", ASCENDING).limit(1):
            return task["next_check_at"]
        return None

    def tasks_due(self, now, limit):
        return list(self.tasks.find({"next_check_at": {"$lte": now}}, {"_outbox": 0}).limit(limit))

    def tasks_of_need(self, need_id):
        return list(self.tasks.find({"need_id": need_id}, {"_outbox": 0}))

    def tasks_held_by(self, responder_id):
        return list(self.tasks.find({"holder.responder_id": responder_id}, {"_outbox": 0}))

    def tasks_offered_to(self, responder_id, limit=200):
        return list(self.tasks.find({"status": "offered", "offered_to": responder_id}, {"_outbox": 0}).limit(limit))

    def wishes(self, limit):
        return list(self.tasks.find({"mode": "wish", "status": "offered"}, {"_outbox": 0}).sort(
            "created_at", ASCENDING).limit(limit))

    # visits ------------------------------------------------------------------------------
    def put_household(self, code, doc):
        doc = dict(doc, _id=code, code=code, updated_at=utcnow())
        self.households.update_one({"_id": code}, {"$set": doc}, upsert=True)
        return doc

    def active_households(self):
        return list(self.households.find({"active": True}))

    def insert_visits(self, visits):
        return self.visits.insert_many_once(visits)

    def get_visit(self, visit_id, internal=False):
        return self.visits.find_one({"_id": visit_id}, None if internal else {"_outbox": 0})

    def visits_of(self, month=None, status=None, limit=500):
        query = {}
        if month:
            query["month"] = month
        if status:
            query["status"] = status
        return list(self.visits.find(query, {"_outbox": 0}).sort("_id", ASCENDING).limit(limit))

    def planned_before(self, month, limit):
        return list(self.visits.find({"status": "planned", "month": {"$lt": month}}, {"_outbox": 0}).limit(limit))

    def missed_to_supervise(self, limit):
        """Missed visits told to their lead, whose next rung (the park's supervisors) is still to come."""
        return list(self.visits.find({"status": "missed", "supervision_pending": True}, {"_outbox": 0})
                    .limit(limit))

    def first_planned_month(self):
        """The earliest month with a visit still planned, or None."""
        for visit in self.visits.find({"status": "planned"}, {"month": 1}).sort("month", ASCENDING).limit(1):
            return visit["month"]
        return None

    def first_to_supervise(self):
        """The missed visit waiting longest for the supervisors' rung, or None."""
        for visit in self.visits.find({"status": "missed", "supervision_pending": True}, {"escalations": 1}).sort(
                "closed_at", ASCENDING).limit(1):
            return visit
        return None

    def write_visit(self, visit, fields):
        return self.versioned_visits.write(visit, fields)

    # emergency -----------------------------------------------------------------------------
    def emergency(self):
        return self.parkstate.find_one({"_id": self.key("emergency")}) or {
            "_id": self.key("emergency"), "version": 0, "mode": "normal"}

    def write_emergency(self, state, fields):
        return self.versioned_state.write(state, fields)

    def insert_callout(self, callout):
        return self.callouts.insert_or_get(callout)

    def get_callout(self, callout_id):
        return self.callouts.find_one({"_id": callout_id})

    def insert_recipients(self, docs):
        return self.recipients.insert_many_once(docs)

    def recipient(self, callout_id, responder_id):
        return self.recipients.find_one({"_id": "{}:{}".format(callout_id, responder_id)})

    def answer(self, callout_id, responder_id, answer, note, at, outbox):
        """Record a reply; the newest reply stands."""
        _id = "{}:{}".format(callout_id, responder_id)
        return self.recipients.update_one({"_id": _id}, dict(outbox, **{"$set": dict(
            outbox["$set"], answer=answer, note=note, answered_at=at)})).matched_count == 1

    def reply_counts(self, callout_id):
        counts = {}
        for doc in self.recipients.find({"callout_id": callout_id}, {"answer": 1}):
            answer = doc.get("answer") or "no_answer"
            counts[answer] = counts.get(answer, 0) + 1
        return counts


def parks_with(store, collection):
    """The parks that have a partition of ``collection`` (the sweep visits each)."""
    return [park for park, _ in store.partitions(collection, "the sweep visits every park with {}".format(
        collection)) if park]
