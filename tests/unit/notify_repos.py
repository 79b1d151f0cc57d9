"""The notify repository the handler tests run against: in memory, or the
real NotifyStore on the MongoDB-protocol server. Both give the same answers;
the in-memory one is what makes the handler tests take milliseconds."""
import copy

from services.notify import domain
from services.notify.schemas import NotifyConfigSchema

SECRET = "a-webhook-secret-of-the-park"


def configured(**overrides):
    """A park's notify configuration as installed: a webhook and an e-mail
    channel, quick retries."""
    body = dict({"version": 1, "channels": {
        "webhook": {"secret": SECRET},
        "email": {"host": "127.0.0.1", "port": 2525, "sender": "centre@example.org"}},
        "retry": {"attempts": 3, "backoff_s": 0.05}}, **overrides)
    return NotifyConfigSchema().load(body)


class _Config:
    """The part of ParkConfig the handlers read: this process's cached configuration."""

    def __init__(self, config):
        self.config = config

    def cached(self):
        return copy.deepcopy(self.config)


def _copies(docs):
    return [{k: copy.deepcopy(v) for k, v in d.items() if k != "_outbox"} for d in docs]


class InMemoryNotifyStore:
    """What the notify handlers ask of NotifyStore, kept in dicts: notices,
    delivery-log lines and the send queue inserted once by id, a lease per
    (name, window), broadcasts inserted or got."""

    def __init__(self, park_id, config):
        self.park_id = park_id
        self.config = _Config(config)
        self.recipients, self.responders, self.followers, self.templates = {}, {}, {}, {}
        self.notices, self.deliveries, self.pending, self.leases, self.broadcasts = {}, {}, {}, {}, {}

    # recipients ------------------------------------------------------------------------
    def put_recipient(self, recipient_id, profile, at):
        doc = dict(copy.deepcopy(profile), _id=recipient_id, updated_at=at)
        self.recipients[recipient_id] = doc
        return doc

    def import_recipients(self, docs):
        existing = [d["_id"] for d in docs if d["_id"] in self.recipients]
        self.recipients.update({d["_id"]: copy.deepcopy(d) for d in docs if d["_id"] not in existing})
        return existing

    def recipient(self, recipient_id):
        return copy.deepcopy(self.recipients.get(recipient_id))

    def profiles(self, ids):
        return [dict(copy.deepcopy(self.recipients[i]), known=True) if i in self.recipients
                else domain.default_profile(i) for i in sorted(set(ids))]

    def members(self, member_id):
        ids = [k for k, d in self.recipients.items() if d.get("member_id") == member_id]
        return ids or [k for k, d in self.responders.items() if d.get("member_id") == member_id]

    def audience(self, kind, value):
        if kind == "park":
            profiles = {k: dict(copy.deepcopy(d), known=True) for k, d in self.recipients.items()}
            profiles.update({k: domain.default_profile(k) for k, d in self.responders.items()
                             if d["active"] and k not in profiles})
        else:
            field = {"team": "teams", "building": "building", "role": "roles"}[kind]
            profiles = {k: dict(copy.deepcopy(d), known=True) for k, d in self.recipients.items()
                        if d.get(field) == value or value in (d.get(field) or ())}
            if kind == "team":
                missing = [k for k, d in self.responders.items()
                           if d["active"] and value in d["teams"] and k not in profiles]
                profiles.update((p["_id"], p) for p in self.profiles(missing))
        return [profiles[k] for k in sorted(profiles)]

    def project_responder(self, data, at):
        self.responders[data["responder_id"]] = {"_id": data["responder_id"], "member_id": data.get("member_id"),
                                                 "teams": data.get("teams", []), "active": data["active"], "at": at}

    def set_following(self, need_id, follower_id, following, at):
        doc_id = "{}:{}".format(need_id, follower_id)
        if following:
            self.followers[doc_id] = {"need_id": need_id, "follower_id": follower_id}
        else:
            self.followers.pop(doc_id, None)

    def followers_of(self, need_id):
        return [d["follower_id"] for d in self.followers.values() if d["need_id"] == need_id]

    # templates -----------------------------------------------------------------------------
    def overrides(self):
        return dict(self.templates)

    def put_template(self, key, locale, title, body, at):
        self.templates[(key, locale)] = (title, body)

    def delete_template(self, key, locale):
        return self.templates.pop((key, locale), None) is not None

    # notices, their log, the send queue ---------------------------------------------------------
    @staticmethod
    def _insert_once(documents, docs):
        fresh = [d for d in docs if d["_id"] not in documents]
        documents.update({d["_id"]: copy.deepcopy(d) for d in fresh})
        return fresh

    def write_plan(self, notices, records, pending):
        fresh = self._insert_once(self.notices, notices)
        self._insert_once(self.deliveries, records)
        self._insert_once(self.pending, pending)
        return fresh

    def notice(self, nid):
        return _copies([self.notices[nid]])[0] if nid in self.notices else None

    def notices_of(self, nids):
        return _copies([self.notices[nid] for nid in nids if nid in self.notices])

    def inbox(self, recipient_id, unread_only=False, limit=50):
        found = [n for n in self.notices.values() if n["recipient_id"] == recipient_id and
                 n["channel"] == domain.INAPP and n["shown"] and not (unread_only and n.get("read"))]
        return _copies(sorted(found, key=lambda n: n["created_at"], reverse=True)[:limit])

    def mark_read(self, recipient_id, nid):
        notice = self.notices.get(nid)
        if notice is None or notice["recipient_id"] != recipient_id:
            return False
        notice["read"] = True
        return True

    def log(self, query, limit):
        found = [d for d in self.deliveries.values() if all(d.get(k) == v for k, v in query.items())]
        return _copies(sorted(found, key=lambda d: (d["at"], d["_id"]))[:limit])

    def add_record(self, doc):
        return bool(self._insert_once(self.deliveries, [doc]))

    def record(self, record_id):
        return _copies([self.deliveries[record_id]])[0] if record_id in self.deliveries else None

    def has_record(self, record_id):
        return record_id in self.deliveries

    def due(self, now, limit):
        ready = [p for p in self.pending.values() if p["due_at"] <= now]
        return copy.deepcopy(sorted(ready, key=lambda p: (p["rank"], p["due_at"]))[:limit])

    def reschedule(self, nid, due_at, attempt, failures=None):
        if nid in self.pending:
            self.pending[nid].update(due_at=due_at, attempt=attempt)
            if failures is not None:
                self.pending[nid]["failures"] = failures

    def done(self, nids):
        for nid in nids:
            self.pending.pop(nid, None)

    def next_due(self):
        return min((p["due_at"] for p in self.pending.values()), default=None)

    def pending_count(self):
        return len(self.pending)

    def take_lease(self, name, window, at):
        return bool(self._insert_once(self.leases, [{"_id": "{}@{}".format(name, window), "at": at}]))

    def drop_leases(self, before):
        for key in [k for k, d in self.leases.items() if d["at"] < before]:
            del self.leases[key]

    # broadcasts ----------------------------------------------------------------------------
    def add_broadcast(self, doc):
        if doc["_id"] in self.broadcasts:
            return copy.deepcopy(self.broadcasts[doc["_id"]]), False
        self.broadcasts[doc["_id"]] = copy.deepcopy(doc)
        return doc, True

    def broadcast(self, broadcast_id):
        found = self.broadcasts.get(broadcast_id)
        return None if found is None else _copies([found])[0]

    def broadcast_shown(self, broadcast_id, at):
        self.broadcasts[broadcast_id].setdefault("shown_at", at)

    def finish_broadcast(self, broadcast_id, update):
        doc = self.broadcasts.get(broadcast_id)
        if doc is None:
            return False
        doc.update(copy.deepcopy(update["$set"]))
        return True

    def unfinished_broadcasts(self, before):
        return _copies([d for d in self.broadcasts.values()
                        if d["status"] == "fanning_out" and d["requested_at"] < before])

    def first_unfinished_broadcast(self):
        return min((d["requested_at"] for d in self.broadcasts.values() if d["status"] == "fanning_out"),
                   default=None)
