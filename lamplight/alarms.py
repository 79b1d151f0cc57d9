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

A process's rings share requests (``RingCommit``): the rings its workers
ask for while the last request is out go in one ``update`` command, the
rings of one park in it merged into one (the soonest time, the version
counting each). Each ring still returns only once written, after its work: a busy
park's many writes a second ring its alarm in a few requests, not one each.

MongoDB and the development server (ferretdb/patches/0002) both make a
conditional single-document update atomic, which is all this needs. An
alarm left rung by a process that died mid-visit stays rung: the next
round (of any replica) visits the park again.
"""
from datetime import datetime, timezone
from typing import Any

from eventlet.event import Event
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from lamplight.shapes import Doc
from lamplight.storage import Batcher

COLLECTION = "_alarms"
# the time of an alarm with nothing queued behind it
NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)
INDEXES = {COLLECTION: [IndexModel([("loop", ASCENDING), ("at", ASCENDING)], name="loop_at")]}


def _ring(loop: str, park_id: str, at: datetime, rings: int = 1) -> Doc:
    return {"$min": {"at": at}, "$inc": {"v": rings}, "$setOnInsert": {"loop": loop, "park_id": park_id}}


class RingCommit(Batcher):
    """The rings of a process's workers, many in one request (see the module)."""

    def ring(self, loop: str, park_id: str, at: datetime) -> None:
        self.submit_one((loop, park_id, at)).wait()

    def _flush(self, batch: list[tuple[tuple[str, str, datetime], Event]]) -> None:
        # (loop, park) -> the soonest time rung and how many rings: the version counts each
        merged: dict[tuple[str, str], tuple[datetime, int]] = {}
        for (loop, park_id, at), _ in batch:
            soonest, rings = merged.get((loop, park_id), (at, 0))
            merged[(loop, park_id)] = (min(at, soonest), rings + 1)
        keys = list(merged)
        ops = [UpdateOne({"_id": _alarm_id(loop, park_id)}, _ring(loop, park_id, *merged[(loop, park_id)]),
                         upsert=True) for loop, park_id in keys]
        failed: dict[tuple[str, str], Exception] = {}
        try:
            self.collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            raced = [keys[e["index"]] for e in errors if e.get("code") == 11000]
            failed.update({keys[e["index"]]: PyMongoError(e.get("errmsg", "ring failed"))
                           for e in errors if e.get("code") != 11000})
            if raced:
                # first rings of a park that raced another process to insert: the alarm exists now
                try:
                    self.collection.bulk_write([UpdateOne({"_id": _alarm_id(loop, park_id)},
                                                          _ring(loop, park_id, *merged[(loop, park_id)]))
                                                for loop, park_id in raced], ordered=False)
                except Exception as again:  # each caller hears it
                    failed.update({k: again for k in raced})
        except Exception as exc:  # the whole request failed: every caller hears it
            failed = {k: exc for k in keys}
        for (loop, park_id, _), done in batch:
            problem = failed.get((loop, park_id))
            if problem is None:
                done.send(None)
            else:
                done.send_exception(problem)


def _alarm_id(loop: str, park_id: str) -> str:
    return "{}:{}".format(loop, park_id)


class Alarms:
    """The alarms of one loop (``loop``) in a service's database."""

    def __init__(self, store: Any, loop: str) -> None:
        self._c = store.unscoped(COLLECTION, reason="the {} loop's alarms, across parks".format(loop))
        self._rings = store.batched(COLLECTION, RingCommit)
        self.loop = loop

    def _id(self, park_id: str) -> str:
        return _alarm_id(self.loop, park_id)

    def ring(self, park_id: str, at: datetime) -> None:
        """Work for ``park_id`` is due at ``at``: call after writing it."""
        if self._rings is not None:
            self._rings.ring(self.loop, park_id, at)
            return
        update = _ring(self.loop, park_id, at)
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
