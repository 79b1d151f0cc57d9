"""The notify service's only door to MongoDB."""
from pymongo import ASCENDING, DESCENDING, IndexModel

INDEXES = {
    "notices": [
        IndexModel([("park_id", ASCENDING), ("recipient_id", ASCENDING), ("created_at", DESCENDING)],
                   name="park_recipient_created"),
    ],
}


class NotifyStore:
    def __init__(self, store, park_id):
        self.notices = store.park(park_id)["notices"]

    def insert_notice(self, notice):
        """False when the notice exists already (a duplicate delivery)."""
        return self.notices.insert_once(notice)

    def inbox(self, recipient_id, unread_only=False, limit=50):
        query = {"recipient_id": recipient_id}
        if unread_only:
            query["read"] = False
        cursor = self.notices.find(query, {"_outbox": 0}).sort("created_at", DESCENDING).limit(limit)
        return list(cursor)

    def mark_read(self, recipient_id, notice_id):
        return self.notices.update_one({"_id": notice_id, "recipient_id": recipient_id},
                                       {"$set": {"read": True}}).matched_count == 1
