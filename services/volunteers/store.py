"""The volunteers service's only door to MongoDB."""
import time

from pymongo import ASCENDING, IndexModel

from lamplight.storage import DuplicateKeyError

INDEXES = {
    "responders": [
        IndexModel([("park_id", ASCENDING), ("active", ASCENDING)], name="park_active"),
        IndexModel([("park_id", ASCENDING), ("ref", ASCENDING)], unique=True, name="park_ref"),
    ],
    "tasks": [
        IndexModel([("park_id", ASCENDING), ("responder_id", ASCENDING), ("status", ASCENDING)],
                   name="park_responder_status"),
        IndexModel([("park_id", ASCENDING), ("need_id", ASCENDING)], name="park_need"),
    ],
}

# Dispatch reads a park's responders on every need; a few seconds of
# staleness is harmless for offers, and the process that registers a
# responder drops its cached copy at once.
ROSTER_CACHE_S = 5.0
_roster_cache = {}


class VolunteersStore:
    def __init__(self, store, park_id):
        self.park_id = park_id
        self.responders = store.park(park_id)["responders"]
        self.tasks = store.park(park_id)["tasks"]

    def add_responder(self, responder):
        """Insert; returns None, or the responder already registered under
        the same ref."""
        try:
            self.responders.insert_one(responder)
        except DuplicateKeyError:
            return self.responders.find_one({"ref": responder["ref"]})
        _roster_cache.pop(self.park_id, None)
        return None

    def get_responder(self, responder_id):
        return self.responders.find_one({"_id": responder_id})

    def roster(self):
        cached = _roster_cache.get(self.park_id)
        if cached and time.monotonic() - cached[0] < ROSTER_CACHE_S:
            return cached[1]
        responders = list(self.responders.find({"active": True}, {"name": 0, "phone": 0}))
        _roster_cache[self.park_id] = (time.monotonic(), responders)
        return responders

    def insert_offer(self, offer):
        """False when this offer exists already (a duplicate delivery)."""
        return self.tasks.insert_once(offer)

    def tasks_of(self, responder_id):
        return list(self.tasks.find({"responder_id": responder_id}, {"_outbox": 0}))
