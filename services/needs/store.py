"""The needs service's only door to MongoDB."""
from pymongo import ASCENDING, IndexModel

from lamplight.storage import DuplicateKeyError

INDEXES = {
    "needs": [
        IndexModel([("park_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
                   name="park_idempotency_key"),
        IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)],
                   name="park_status_due"),
    ],
}


class NeedsStore:
    def __init__(self, store, park_id):
        self.needs = store.park(park_id)["needs"]

    def insert(self, need):
        """Insert a new need; returns None, or the need already stored under
        the same idempotency key."""
        try:
            self.needs.insert_one(need)
            return None
        except DuplicateKeyError:
            existing = self.needs.find_one({"idempotency_key": need["idempotency_key"]})
            if existing is None:  # the clash was on _id: a retried relay of this very need
                existing = self.needs.find_one({"_id": need["_id"]})
            return existing

    def get(self, need_id):
        return self.needs.find_one({"_id": need_id}, {"_outbox": 0})
