"""The points service's only door to MongoDB: the ledger and what hangs off it.

Appending to an account without multi-document transactions:
1. read the account document (after a collision, also roll it forward: if
   entry ``seq+1`` exists — a concurrent writer, or one that crashed after
   inserting it — apply it and look again);
2. build entry ``seq+1`` from that state (balance checks, caps, the chain);
3. insert it — its ``_id`` is ``<account>:<seq+1>``, so of two concurrent
   writers exactly one inserts it; the other gets a duplicate key and starts
   over from 1. A duplicate on ``(park_id, idempotency_key)`` instead means
   the posting exists: the same body returns it, another body is a Conflict;
4. move the account document to the new head (conditional on its seq).
The entries are the truth; the account document is a cache that step 1 heals.
"""
import time

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from lamplight.clock import utcnow  # noqa: F401 (re-exported: the service's clock)
from lamplight.errors import Conflict, NotFound
from lamplight.parkconfig import ParkConfig
from lamplight.storage import DuplicateKeyError
from services.points import domain

INDEXES = {
    "accounts": [
        IndexModel([("park_id", ASCENDING), ("kind", ASCENDING), ("balance", DESCENDING)], name="park_kind_balance"),
        IndexModel([("park_id", ASCENDING), ("member_id", ASCENDING)], name="park_member"),
    ],
    "entries": [
        IndexModel([("park_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True, name="park_idempotency_key"),
        IndexModel([("park_id", ASCENDING), ("account_id", ASCENDING), ("seq", ASCENDING)], name="park_account_seq"),
        IndexModel([("park_id", ASCENDING), ("account_kind", ASCENDING), ("at", ASCENDING)], name="park_kind_at"),
        IndexModel([("park_id", ASCENDING), ("metadata.need_id", ASCENDING)], name="park_need"),
    ],
    "approvals": [
        IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("requested_at", ASCENDING)],
                   name="park_status_time"),
    ],
    "configs": [],
    "redemptions": [
        IndexModel([("park_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)],
                   name="park_status_expiry"),
    ],
}
MAX_ATTEMPTS = 200
# the parks (database, park) this process found no catalogue of the old kind for
_NO_LEGACY = set()


class PointsStore:
    def __init__(self, store, park_id):
        self.park_id = park_id
        self._store = store
        scope = store.park(park_id)
        self.accounts = scope["accounts"]
        self.entries = scope["entries"]
        self.park_config = ParkConfig(scope, "points rule catalogue")
        self.legacy_catalogues = scope["catalogues"]  # where catalogues were kept before (see _migrated)
        self.rewards = scope["rewards"]
        self.redemptions = scope["redemptions"]
        self.awards = scope["awards"]
        self.approvals = scope["approvals"]
        self.members = scope["members"]

    def _found(self, collection, doc_id, what):
        doc = collection.find_one({"_id": doc_id})
        if doc is None:
            raise NotFound("no {} {} in park {}".format(what, doc_id, self.park_id))
        return doc

    def _key(self, kind, name):
        """A document id unique across parks (one collection serves them all)."""
        return "{}/{}/{}".format(self.park_id, kind, name)

    # accounts ---------------------------------------------------------------------
    def account(self, member_id, kind, year=None, create=True, roll=True):
        """The account, rolled forward to its last entry (unless ``roll`` is
        False: a writer's first attempt trusts the cached head, because a
        stale head makes its insert collide and the retry rolls forward).
        None if absent and not ``create``."""
        aid = domain.account_id(self.park_id, member_id, kind, year)
        doc = self.accounts.find_one({"_id": aid})
        if doc is None:
            if not create:
                return None
            try:
                self.accounts.insert_one(domain.new_account(self.park_id, member_id, kind, year, utcnow()))
            except DuplicateKeyError:
                pass
            doc = self.accounts.find_one({"_id": aid})
        return self.roll_forward(doc) if roll else doc

    def roll_forward(self, doc):
        while True:
            following = self.entries.find_one({"_id": domain.entry_id(doc["_id"], doc["seq"] + 1)})
            if following is None:
                return doc
            moved = domain.apply(doc, following)
            result = self.accounts.update_one({"_id": doc["_id"], "seq": doc["seq"]}, {"$set": _head(moved)})
            doc = moved if result.matched_count else self.accounts.find_one({"_id": doc["_id"]})

    # appending --------------------------------------------------------------------
    def append(self, account_ref, build, idempotency_key, fingerprint, stage):
        """Append the entry ``build(account)`` makes; returns (entry, created).

        ``account_ref`` is (member_id, kind, year); ``stage(entry, before)``
        stages the entry's events (``Events.staging``): they are published
        once the entry and the account's head are written, discarded if not."""
        for attempt in range(MAX_ATTEMPTS):
            account = self.account(*account_ref, roll=attempt > 0)
            try:
                entry = build(account)
            except (Conflict, domain.PointsRuleError):
                # a replay of a posting that a cap or the balance would refuse
                # now must still get its first entry back
                if self.find_by_key(idempotency_key) is not None:
                    return self._existing(idempotency_key, fingerprint), False
                raise
            entry["idempotency_key"], entry["fingerprint"] = idempotency_key, fingerprint
            with stage(entry, account) as staged:
                entry.update(staged.fields())
                try:
                    self.entries.insert_one(entry)
                except DuplicateKeyError:
                    taken = self.entries.find_one({"_id": entry["_id"]}, {"idempotency_key": 1})
                    if taken is None or taken["idempotency_key"] == idempotency_key:
                        return self._existing(idempotency_key, fingerprint), False
                    time.sleep(0)  # lost the race for this seq: start over from the new head
                    continue
                self.accounts.update_one({"_id": account["_id"], "seq": account["seq"]},
                                         {"$set": _head(domain.apply(account, entry))})
                staged.written = True
            return entry, True
        raise Conflict("account {} is too busy; try again".format(domain.account_id(self.park_id, *account_ref)),
                       code="busy")

    def _existing(self, idempotency_key, fingerprint):
        existing = self.entries.find_one({"idempotency_key": idempotency_key}, {"_outbox": 0})
        if existing is None:
            raise Conflict("posting {} is being written; try again".format(idempotency_key), code="busy")
        if existing.get("fingerprint") != fingerprint:
            raise Conflict("idempotency key {!r} was already used for another posting".format(idempotency_key),
                           {"idempotency_key": ["reused with a different body"]})
        return existing

    def find_by_key(self, idempotency_key):
        return self.entries.find_one({"idempotency_key": idempotency_key}, {"_outbox": 0})

    def entry(self, entry_id):
        entry = self.entries.find_one({"_id": entry_id}, {"_outbox": 0})
        if entry is None:
            raise NotFound("no entry {} in park {}".format(entry_id, self.park_id))
        return entry

    def entries_for_need(self, need_id):
        return list(self.entries.find({"metadata.need_id": need_id}, {"_outbox": 0}))

    # reading ----------------------------------------------------------------------
    def history(self, account_id, limit=50, before_seq=None):
        query = {"account_id": account_id}
        if before_seq:
            query["seq"] = {"$lt": before_seq}
        return list(self.entries.find(query, {"_outbox": 0, "counters_after": 0})
                    .sort("seq", DESCENDING).limit(limit))

    def balance_at(self, account_id, at):
        last = list(self.entries.find({"account_id": account_id, "at": {"$lte": at}},
                                      {"balance_after": 1, "held_after": 1, "seq": 1})
                    .sort("seq", DESCENDING).limit(1))
        return (last[0]["balance_after"], last[0]["held_after"], last[0]["seq"]) if last else (0, 0, 0)

    def leaderboard(self, kind, year=None, limit=20):
        query = {"kind": kind}
        if kind == domain.DISCIPLINE:
            query["year"] = year
        return list(self.accounts.find(query, {"member_id": 1, "balance": 1, "held": 1})
                    .sort([("balance", DESCENDING), ("member_id", ASCENDING)]).limit(limit))

    def earned_in(self, start, end):
        """Service points earned per member in [start, end): postings and their reversals."""
        rows = self.entries.aggregate([
            {"$match": {"account_kind": domain.SERVICE, "kind": {"$in": [domain.POSTING, domain.REVERSAL]},
                        "at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": "$member_id", "points": {"$sum": "$amount"}, "entries": {"$sum": 1}}},
        ])
        return {row["_id"]: (row["points"], row["entries"]) for row in rows}

    def discipline_scores(self, year, members):
        scores = {}
        for member in members:
            account = self.account(member, domain.DISCIPLINE, year, create=False)
            scores[member] = account["balance"] if account else domain.YEARLY_OPENING_POINTS
        return scores

    # the rule catalogue ---------------------------------------------------------------
    def catalogue(self):
        """The park's rule catalogue — {version, rules, star_thresholds,
        park_version} — a park configuration like the other services'
        (lamplight.parkconfig: versioned, every version kept, cached in the
        process and announced to every process on change); version 0 with no
        rules before the first."""
        config = self.park_config.cached()
        if config is None and (self.park_config.cache_key not in _NO_LEGACY):
            config = self._migrated()
        return config or {"version": 0, "rules": [], "star_thresholds": None, "park_version": None}

    def _migrated(self):
        """A catalogue saved before catalogues were park configurations (in
        ``catalogues``, versioned on its own) becomes version 1 of the park's
        points configuration, the version it had kept beside it; read once
        per park and process."""
        legacy = self.legacy_catalogues.find_one({"_id": self._key("catalogue", "rules")})
        if legacy is None:
            _NO_LEGACY.add(self.park_config.cache_key)
            return None
        try:
            self.park_config.install({"version": 1, "rules": legacy["rules"],
                                      "star_thresholds": legacy.get("star_thresholds")},
                                     {"park_version": legacy.get("park_version") or 0,
                                      "migrated_from_version": legacy["version"]})
        except Conflict:
            pass  # another process migrated it, or a new catalogue was installed, meanwhile
        return self.park_config.current()

    # rewards and stock ------------------------------------------------------------------
    def put_reward(self, reward):
        self.rewards.update_one({"_id": self._key("reward", reward["code"])},
                                {"$set": reward, "$setOnInsert": {"reserved": []}}, upsert=True)
        return self.reward(reward["code"])

    def reward(self, code):
        reward = self.rewards.find_one({"_id": self._key("reward", code)})
        if reward is None:
            raise NotFound("no reward {} in park {}".format(code, self.park_id), {"reward_code": ["unknown"]})
        return reward

    def list_rewards(self):
        return list(self.rewards.find({}, {"reserved": 0}))

    def reserve_stock(self, code, redemption_id):
        """Take one unit for a redemption; idempotent; False when none is left."""
        done = self.rewards.update_one(
            {"_id": self._key("reward", code), "stock": {"$gt": 0}, "reserved": {"$ne": redemption_id}},
            {"$inc": {"stock": -1}, "$push": {"reserved": redemption_id}})
        if done.matched_count:
            return True
        return self.rewards.find_one({"_id": self._key("reward", code), "reserved": redemption_id}) is not None

    def return_stock(self, code, redemption_id):
        self.rewards.update_one({"_id": self._key("reward", code), "reserved": redemption_id},
                                {"$inc": {"stock": 1}, "$pull": {"reserved": redemption_id}})

    def consume_stock(self, code, redemption_id):
        self.rewards.update_one({"_id": self._key("reward", code), "reserved": redemption_id},
                                {"$pull": {"reserved": redemption_id}})

    # redemptions ----------------------------------------------------------------------
    def open_redemption(self, redemption):
        return self.redemptions.insert_or_get(redemption)

    def redemption(self, redemption_id):
        return self._found(self.redemptions, redemption_id, "redemption")

    def set_redemption(self, redemption_id, from_status, changes):
        return self.redemptions.find_one_and_update(
            {"_id": redemption_id, "status": {"$in": list(from_status)}}, {"$set": changes},
            return_document=ReturnDocument.AFTER)

    def expired_redemptions(self, now, limit=100):
        return list(self.redemptions.find({"status": {"$in": ["pending", domain.HELD]},
                                           "expires_at": {"$lt": now}}).limit(limit))

    # approvals ---------------------------------------------------------------------
    def open_approval(self, approval):
        return self.approvals.insert_or_get(approval)

    def approval(self, approval_id):
        return self._found(self.approvals, approval_id, "approval request")

    def decide_approval(self, approval_id, changes):
        return self.approvals.find_one_and_update({"_id": approval_id, "status": "pending"}, {"$set": changes},
                                                  return_document=ReturnDocument.AFTER)

    def approvals_with(self, status, limit=100):
        return list(self.approvals.find({"status": status}).sort("requested_at", ASCENDING).limit(limit))

    # awards -------------------------------------------------------------------------
    def award_id(self, period):
        return self._key("award", period)

    def award(self, period):
        return self.awards.find_one({"_id": self._key("award", period)})

    def freeze_award(self, snapshot):
        return self.awards.insert_or_get(snapshot)

    # members ------------------------------------------------------------------------
    def member(self, member_id):
        return self.members.find_one({"_id": self._key("member", member_id)})

    def set_member(self, member_id, fields):
        self.members.update_one({"_id": self._key("member", member_id)}, {"$set": dict(fields, member_id=member_id)},
                                upsert=True)


def parks_with_expired_redemptions(store, now):
    """The parks the hold sweeper has work in (a platform job across parks)."""
    return store.unscoped("redemptions", reason="hold timeout sweep").distinct(
        "park_id", {"status": {"$in": ["pending", domain.HELD]}, "expires_at": {"$lt": now}})


def _head(account):
    return {k: account[k] for k in ("seq", "balance", "held", "head_hash", "counters", "last_at") if k in account}
