"""The volunteers repository the handler tests run against: in memory, or the
real VolunteersStore on the MongoDB-protocol server. Both give the same
answers; the in-memory one is what makes the handler tests take milliseconds."""
import copy

from services.volunteers.domain.dispatch import check_sooner
from services.volunteers.schemas import VolunteersConfigSchema
from tests.parks import volunteers_config
from tests.unit.installed import InstalledConfig
from tests.unit.installed import configured as installed

OUTBOX = ("_outbox", "_outbox_at", "_outbox_by")
NO_PII = ("name", "phone", "_outbox")


def configured(**dispatch):
    """The demo park's volunteers configuration as installed (loaded by its schema, version 1)."""
    return installed(VolunteersConfigSchema(), volunteers_config(**dispatch))


def _without(doc, names):
    return None if doc is None else {k: copy.deepcopy(v) for k, v in doc.items() if k not in names}


def _apply(doc, update):
    """$set and the outbox's $push (with $each and $slice) of one update."""
    doc.update(copy.deepcopy(update.get("$set", {})))
    for name, push in update.get("$push", {}).items():
        doc[name] = (doc.get(name, []) + copy.deepcopy(push["$each"]))[push.get("$slice", 0) or None:]


class InMemoryAlarm:
    """A park's alarm (lamplight.alarms.ParkAlarm): the soonest time it was rung at."""

    def __init__(self):
        self.rings_at = None

    def ring(self, at):
        if at is not None:
            self.rings_at = at if self.rings_at is None else min(self.rings_at, at)

    def at(self):
        return self.rings_at


class InMemoryVolunteersStore:
    """What the volunteers handlers ask of VolunteersStore, kept in dicts: a
    responder per ``_id`` with a unique ref, tasks and visits written
    conditionally on the version read, numbered slots under a cap, and
    call-outs with one reply record per recipient."""

    def __init__(self, park_id, config):
        self.park_id = park_id
        self.park_config = InstalledConfig(config)
        self.responders, self.tasks, self.slots, self.households, self.visits = {}, {}, {}, {}, {}
        self.callouts, self.recipients, self.state = {}, {}, {}
        self.alarm = InMemoryAlarm()  # the sweep's

    def key(self, local_id):
        return "{}/{}".format(self.park_id, local_id)

    # responders ----------------------------------------------------------------------
    def add_responder(self, responder):
        for existing in self.responders.values():
            if existing["ref"] == responder["ref"]:
                return copy.deepcopy(existing)
        self.responders[responder["_id"]] = copy.deepcopy(responder)
        return None

    def get_responder(self, responder_id, pii=False):
        return _without(self.responders.get(responder_id), () if pii else NO_PII)

    def responders_by_ref(self, refs):
        return [_without(r, NO_PII) for r in self.responders.values() if r["ref"] in set(refs)]

    def set_responder(self, responder_id, fields, outbox):
        responder = self.responders.get(responder_id)
        if responder is None:
            return False
        _apply(responder, dict(outbox, **{"$set": dict(fields, **outbox["$set"])}))
        return True

    def note_work(self, responder_ids, at):
        for rid in responder_ids:
            self.responders[rid]["last_work_at"] = at

    def on_duty_candidates(self, hours, teams=None, skills=None, now=None, kind="volunteer"):
        def matches(r):
            return r.get("active") is True and r["kind"] == kind and (
                set(r.get("duty_hours") or ()) & set(hours) or (r.get("extra_until") and r["extra_until"] > now)) \
                and (teams is None or set(r["teams"]) & set(teams)) and set(skills or ()) <= set(r["skills"])
        return [_without(r, NO_PII) for r in self.responders.values() if matches(r)]

    def active_in_teams(self, teams):
        return [_without(r, NO_PII) for r in self.responders.values()
                if r.get("active") is True and set(r["teams"]) & set(teams)]

    def unit(self, ref):
        return next((_without(r, NO_PII) for r in self.responders.values()
                     if r["ref"] == ref and r["kind"] == "unit"), None)

    # slots --------------------------------------------------------------------------------
    def open_counts(self, responder_ids, kind="task"):
        counts = {}
        for slot in self.slots.values():
            if slot["responder_id"] in responder_ids and slot["kind"] == kind:
                counts[slot["responder_id"]] = counts.get(slot["responder_id"], 0) + 1
        return counts

    def take_slot(self, responder_id, kind, cap, task_id):
        for n in range(1, cap + 1):
            slot_id = "{}#{}{}".format(responder_id, kind, n)
            held = self.slots.get(slot_id)
            if held is None:
                self.slots[slot_id] = {"responder_id": responder_id, "kind": kind, "task_id": task_id}
                return slot_id
            if held["task_id"] == task_id:
                return slot_id
        return None

    def free_slot(self, responder_id, task_id):
        for slot_id, slot in list(self.slots.items()):
            if slot["responder_id"] == responder_id and slot["task_id"] == task_id:
                del self.slots[slot_id]

    def slots_of(self, responder_id):
        return [dict(s, _id=k) for k, s in self.slots.items() if s["responder_id"] == responder_id]

    # tasks and visits: a write names the version it read ---------------------------------------
    def insert_task(self, task):
        self.alarm.ring(task.get("next_check_at"))
        if task["_id"] in self.tasks:
            return False
        self.tasks[task["_id"]] = copy.deepcopy(task)
        return True

    def next_check(self):
        return min((t["next_check_at"] for t in self.tasks.values() if t.get("next_check_at")), default=None)

    def get_task(self, task_id, internal=False):
        return _without(self.tasks.get(task_id), () if internal else OUTBOX)

    @staticmethod
    def _write(documents, doc, fields):
        stored = documents.get(doc["_id"])
        if doc["version"] == 0 and stored is None:
            documents[doc["_id"]] = dict(copy.deepcopy(fields), _id=doc["_id"], version=1)
            return True
        if stored is None or stored["version"] != doc["version"]:
            return False
        stored.update(copy.deepcopy(fields), version=doc["version"] + 1)
        return True

    def write_task(self, task, fields):
        written = self._write(self.tasks, task, fields)
        if written:
            self.alarm.ring(check_sooner(task, fields))
        return written

    def tasks_due(self, now, limit):
        return [_without(t, ("_outbox",)) for t in self.tasks.values()
                if t.get("next_check_at") and t["next_check_at"] <= now][:limit]

    def tasks_held_by(self, responder_id):
        return [_without(t, ("_outbox",)) for t in self.tasks.values()
                if (t.get("holder") or {}).get("responder_id") == responder_id]

    def tasks_offered_to(self, responder_id, limit=200):
        return [_without(t, ("_outbox",)) for t in self.tasks.values()
                if t["status"] == "offered" and responder_id in t["offered_to"]][:limit]

    def wishes(self, limit):
        found = [t for t in self.tasks.values() if t["mode"] == "wish" and t["status"] == "offered"]
        return [_without(t, ("_outbox",)) for t in sorted(found, key=lambda t: t["created_at"])][:limit]

    def put_household(self, code, doc):
        doc = dict(doc, _id=code, code=code)
        self.households.setdefault(code, {}).update(copy.deepcopy(doc))
        return doc

    def active_households(self):
        return [copy.deepcopy(h) for h in self.households.values() if h.get("active")]

    def insert_visits(self, visits):
        fresh = [v for v in visits if v["_id"] not in self.visits]
        self.visits.update({v["_id"]: copy.deepcopy(v) for v in fresh})
        return fresh

    def get_visit(self, visit_id, internal=False):
        return _without(self.visits.get(visit_id), () if internal else ("_outbox",))

    def visits_of(self, month=None, status=None, limit=500):
        found = [v for k, v in sorted(self.visits.items())
                 if (not month or v["month"] == month) and (not status or v["status"] == status)]
        return [_without(v, ("_outbox",)) for v in found][:limit]

    def planned_before(self, month, limit):
        return [_without(v, ("_outbox",)) for v in self.visits.values()
                if v["status"] == "planned" and v["month"] < month][:limit]

    def missed_to_supervise(self, limit):
        return [_without(v, ("_outbox",)) for v in self.visits.values()
                if v["status"] == "missed" and v.get("supervision_pending") is True][:limit]

    def first_planned_month(self):
        return min((v["month"] for v in self.visits.values() if v["status"] == "planned"), default=None)

    def first_to_supervise(self):
        waiting = [v for v in self.visits.values() if v["status"] == "missed" and v.get("supervision_pending")]
        return copy.deepcopy(min(waiting, key=lambda v: v["closed_at"])) if waiting else None

    def write_visit(self, visit, fields):
        return self._write(self.visits, visit, fields)

    # emergency -----------------------------------------------------------------------------
    def emergency(self):
        return copy.deepcopy(self.state.get(self.key("emergency")) or {
            "_id": self.key("emergency"), "version": 0, "mode": "normal"})

    def write_emergency(self, state, fields):
        return self._write(self.state, state, fields)

    def insert_callout(self, callout):
        if callout["_id"] in self.callouts:
            return copy.deepcopy(self.callouts[callout["_id"]]), False
        self.callouts[callout["_id"]] = copy.deepcopy(callout)
        return callout, True

    def get_callout(self, callout_id):
        return copy.deepcopy(self.callouts.get(callout_id))

    def insert_recipients(self, docs):
        fresh = [d for d in docs if d["_id"] not in self.recipients]
        self.recipients.update({d["_id"]: copy.deepcopy(d) for d in fresh})
        return fresh

    def recipient(self, callout_id, responder_id):
        return copy.deepcopy(self.recipients.get("{}:{}".format(callout_id, responder_id)))

    def answer(self, callout_id, responder_id, answer, note, at, outbox):
        doc = self.recipients.get("{}:{}".format(callout_id, responder_id))
        if doc is None:
            return False
        _apply(doc, dict(outbox, **{"$set": dict(outbox["$set"], answer=answer, note=note, answered_at=at)}))
        return True

    def reply_counts(self, callout_id):
        counts = {}
        for doc in self.recipients.values():
            if doc["callout_id"] == callout_id:
                answer = doc.get("answer") or "no_answer"
                counts[answer] = counts.get(answer, 0) + 1
        return counts
