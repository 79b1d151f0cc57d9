"""When each park next has work for a loop that visits parks.

A loop that serves every park (notify's send loop) used to ask every park
whether anything was due, every round: with 100 parks and nothing to send,
300 reads a second, and the database server busy on a platform that does
nothing. Background work must grow with the work, not with the parks.

So the loop keeps an alarm per park, one document in the service's
``_alarms`` collection (kernel bookkeeping, read across parks):

- whoever queues work for a loop *rings* the park's alarm at the time the
  work is due, after writing the work: ``$min`` on the alarm's time and
  ``$inc`` on its version, one single-document update (upserted);
- the loop reads, once a round, the parks whose alarm time has come
  (one indexed read of ``(loop, at)``), and visits only those;
- after a visit the loop reads the park's next due time from the work
  itself and *settles* the alarm there (or far in the future, nothing
  queued) — a compare-and-set on the version it read before the visit.
  Work queued meanwhile bumped the version, the settle does nothing, and
  the alarm stays rung: a ring is never lost, and the worst a race costs
  is one more visit.

MongoDB and the development server (ferretdb/patches/0002) both make a
conditional single-document update atomic, which is all this needs. An
alarm left rung by a process that died mid-visit stays rung: the next
round (of any replica) visits the park again.
"""
from datetime import datetime, timezone
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

COLLECTION = "_alarms"
# the time of an alarm with nothing queued behind it
NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)
INDEXES = {COLLECTION: [IndexModel([("loop", ASCENDING), ("at", ASCENDING)], name="loop_at")]}


class Alarms:
    """The alarms of one loop (``loop``) in a service's database."""

    def __init__(self, store: Any, loop: str) -> None:
        self._c = store.unscoped(COLLECTION, reason="the {} loop's alarms, across parks".format(loop))
        self.loop = loop

    def _id(self, park_id: str) -> str:
        return "{}:{}".format(self.loop, park_id)

    def ring(self, park_id: str, at: datetime) -> None:
        """Work for ``park_id`` is due at ``at``: call after writing it."""
        update = {"$min": {"at": at}, "$inc": {"v": 1}, "$setOnInsert": {"loop": self.loop, "park_id": park_id}}
        try:
            self._c.update_one({"_id": self._id(park_id)}, update, upsert=True)
        except DuplicateKeyError:
            # two first rings of a park raced to insert: the alarm exists now
            self._c.update_one({"_id": self._id(park_id)}, update)

    def rung(self, now: datetime) -> dict[str, int]:
        """{park: alarm version} of the parks with work due by ``now``."""
        return {doc["park_id"]: doc["v"] for doc in self._c.find(
            {"loop": self.loop, "at": {"$lte": now}}, {"park_id": 1, "v": 1})}

    def settle(self, park_id: str, version: int, at: datetime | None) -> bool:
        """After a visit that read the alarm at ``version``: the park's next
        work is due at ``at`` (None: nothing queued). False, and the alarm
        left as it is, when work was queued since."""
        return self._c.update_one({"_id": self._id(park_id), "v": version},
                                  {"$set": {"at": at or NEVER}}).matched_count == 1

    def when(self, park_id: str) -> tuple[datetime, int] | None:
        """(time, version) of a park's alarm; None when it never rang."""
        doc = self._c.find_one({"_id": self._id(park_id)})
        return None if doc is None else (doc["at"], doc["v"])


class ParkAlarm:
    """One park's alarm of one loop, as that park's store rings it."""

    def __init__(self, store: Any, loop: str, park_id: str) -> None:
        self._alarms = Alarms(store, loop)
        self.park_id = park_id

    def ring(self, at: datetime | None) -> None:
        """The loop is wanted in this park at ``at`` (None: not for this write)."""
        if at is not None:
            self._alarms.ring(self.park_id, at)

    def at(self) -> datetime | None:
        """When the alarm rings (None: it never rang)."""
        found = self._alarms.when(self.park_id)
        return None if found is None else found[0]
