"""The points service's only door to MongoDB."""
from pymongo import ASCENDING, IndexModel

INDEXES = {
    "accounts": [
        IndexModel([("park_id", ASCENDING), ("member_id", ASCENDING), ("year", ASCENDING)],
                   unique=True, name="park_member_year"),
    ],
}


class PointsStore:
    def __init__(self, store, park_id):
        self.accounts = store.park(park_id)["accounts"]

    def account(self, member_id, year):
        return self.accounts.find_one({"member_id": member_id, "year": year}, {"_outbox": 0})
