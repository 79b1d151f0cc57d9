"""The points service: rule catalogues, the ledger, the warning ladder, stars,
redemption and awards.

This class decodes a call, hands it to the service layer (handlers/: ledger,
postings, rewards, members) with the park's repository, and encodes the answer.
"""

from lamplight.consuming import subscribe
from lamplight.errors import load_or_reject, time_or_reject
from lamplight.lanes import timer
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id
from services.points import domain
from services.points.handlers import Work, members, postings, rewards
from services.points.schemas import (
    AccountViewSchema,
    ApprovalViewSchema,
    CatalogueSchema,
    DecisionSchema,
    EntryViewSchema,
    MoveSchema,
    PostingSchema,
    RedeemSchema,
    RedemptionViewSchema,
    ReversalSchema,
    RewardSchema,
    SourceEventSchema,
)
from services.points.store import INDEXES, PointsStore, parks_with_expired_redemptions, utcnow

_catalogue = CatalogueSchema()
_posting = PostingSchema()
_reversal = ReversalSchema()
_decision = DecisionSchema()
_approval_view = ApprovalViewSchema()
_reward = RewardSchema()
_redeem = RedeemSchema()
_move = MoveSchema()
_source = SourceEventSchema()
_entry_view = EntryViewSchema()
_account_view = AccountViewSchema()
_redemption_view = RedemptionViewSchema()


class LedgerOutbox(EventOutbox):
    """The ledger's outbox: taking over a dead writer also moves the account
    heads past the entries it wrote but did not apply, so every read of an
    account document — the leaderboard's too — is right again within the
    relay's grace period after a crash."""

    def took_over(self, writer, docs_by_collection):
        store = self.mongo.store()
        heal = {(d["park_id"], d["_id"].rsplit(":", 1)[0]) for d in docs_by_collection.get("entries", [])}
        for park_id, account_id in sorted(heal):
            ledger = PointsStore(store, park_id)
            account = ledger.accounts.find_one({"_id": account_id})
            if account is not None:
                ledger.roll_forward(account)


class PointsService:
    name = "points"

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park catalogues true
    db = Mongo(indexes=INDEXES, group_commit=("entries",))
    events = LedgerOutbox(collections=("entries",))

    def _work(self, park_id):
        return Work(PointsStore(self.db, park_id), self.events, self.log, lambda park: PointsStore(self.db, park))

    # the rule catalogue --------------------------------------------------------------
    @rpc
    def set_catalogue(self, park_id, payload):
        """Install the park's rules and star thresholds as the next version
        (the body's ``version`` is the current version + 1, as every park
        configuration); the same catalogue again changes nothing."""
        check_park_id(park_id)
        catalogue = _load_catalogue(editable(payload), "the rule catalogue")
        version, unchanged = PointsStore(self.db, park_id).park_config.install(catalogue)
        return {"version": version, "rules": len(catalogue["rules"]), "unchanged": unchanged}

    @subscribe("gateway", "park.configured")
    def on_park_configured(self, envelope):
        """The points section of a park's configuration, installed as the next
        version of its catalogue; an older park version arriving late changes nothing."""
        data = envelope["data"]
        section = data["sections"].get("points")
        if section is not None:
            PointsStore(self.db, envelope["parkid"]).park_config.project(
                section, data["version"], lambda body: _load_catalogue(body, "the points section"))

    @rpc
    def catalogue(self, park_id):
        doc = PointsStore(self.db, park_id).catalogue()
        return {"version": doc["version"], "rules": doc["rules"], "star_thresholds": doc.get("star_thresholds"),
                "park_version": doc.get("park_version")}

    # manual postings, approvals and reversals ----------------------------------------------
    @rpc
    def post(self, park_id, payload, idempotency_key=None):
        data = load_or_reject(_posting, payload, "the posting")
        made, created, pending = postings.post(self._work(park_id), data, idempotency_key)
        if pending:
            return dict(_approval_view.dump(made), approval_pending=True, created=created)
        return dict(_entry_view.dump(made), created=created)

    @rpc
    def approvals(self, park_id, status="pending", limit=100):
        return [_approval_view.dump(a) for a in postings.approvals(self._work(park_id), status, limit)]

    @rpc
    def approve(self, park_id, approval_id, payload):
        """Post what was requested. Asking again returns the same entry."""
        decision = load_or_reject(_decision, payload, "the approval")
        return _entry_view.dump(postings.approve(self._work(park_id), approval_id, decision))

    @rpc
    def reject(self, park_id, approval_id, payload):
        decision = load_or_reject(_decision, payload, "the rejection")
        return _approval_view.dump(postings.reject(self._work(park_id), approval_id, decision))

    @rpc
    def reverse(self, park_id, entry_id, payload):
        data = load_or_reject(_reversal, payload, "the reversal")
        entry, created = postings.reverse(self._work(park_id), entry_id, data)
        return dict(_entry_view.dump(entry), created=created)

    # postings from events -----------------------------------------------------------------
    @subscribe("volunteers", "task.completed")
    @subscribe("volunteers", "volunteer.service_hours")
    @subscribe("volunteers", "visit.missed")
    @subscribe("needs", "need.closed")
    @subscribe("needs", "need.evaluated")
    def on_posting_event(self, envelope):
        """Each of these events posts what the park's automatic rules say (one queue per type)."""
        source = load_or_reject(_source, envelope["data"], "{} data".format(envelope["type"]))
        postings.from_event(self._work(envelope["parkid"]), envelope, source)

    @subscribe("needs", "need.reopened")
    def on_need_reopened(self, envelope):
        """A reopened need takes back what its closing posted."""
        source = load_or_reject(_source, envelope["data"], "need.reopened data")
        postings.need_reopened(self._work(envelope["parkid"]), envelope, source["need_id"])

    # reading -----------------------------------------------------------------------
    @rpc
    def account(self, park_id, member_id, kind=domain.DISCIPLINE, year=None, at=None):
        when = time_or_reject(at, "at") if at is not None else None
        return _account_view.dump(postings.account(self._work(park_id), member_id, kind, year, when))

    @rpc
    def history(self, park_id, member_id, kind=domain.DISCIPLINE, year=None, limit=50, include_previous_parks=True):
        rows = postings.history(self._work(park_id), member_id, kind, year, limit, include_previous_parks)
        return [_entry_view.dump(e) for e in rows]

    @rpc
    def leaderboard(self, park_id, kind=domain.SERVICE, year=None, limit=20):
        return postings.leaderboard(self._work(park_id), kind, year, limit)

    # rewards and redemption ------------------------------------------------------------
    @rpc
    def put_reward(self, park_id, payload):
        return rewards.put_reward(self._work(park_id), load_or_reject(_reward, payload, "the reward"))

    @rpc
    def rewards(self, park_id):
        return rewards.rewards(self._work(park_id))

    @rpc
    def redeem(self, park_id, payload, idempotency_key=None):
        """Hold the points and a unit of stock; the redemption is then confirmed
        or voided (voided by itself when its hold times out)."""
        data = load_or_reject(_redeem, payload, "the redemption")
        redemption, created = rewards.redeem(self._work(park_id), data, idempotency_key)
        return dict(_redemption_view.dump(redemption), created=created)

    @rpc
    def confirm_redemption(self, park_id, redemption_id, actor):
        return _redemption_view.dump(rewards.confirm(self._work(park_id), redemption_id, actor))

    @rpc
    def void_redemption(self, park_id, redemption_id, actor, reason="voided"):
        return _redemption_view.dump(rewards.void(self._work(park_id), redemption_id, actor, reason))

    @timer(interval=30)
    def void_expired_holds(self):
        now = utcnow()
        for park_id in parks_with_expired_redemptions(self.db, now):
            rewards.void_expired(self._work(park_id), now)

    # awards and moves --------------------------------------------------------------------
    @rpc
    def freeze_award(self, park_id, period, limit=10):
        """The half-year's excellent-volunteer ranking, computed once from the
        ledger and frozen; asking again returns the same snapshot."""
        return members.freeze_award(self._work(park_id), period, limit)

    @rpc
    def move_member(self, park_id, member_id, payload):
        """Move a member's balances to another park; the history stays and
        is followed from the new park."""
        return members.move(self._work(park_id), member_id, load_or_reject(_move, payload, "the move"))


def _load_catalogue(body, what):
    """A catalogue as a configuration: its version, its rules checked (codes
    unique, caps sane), its star thresholds."""
    loaded = load_or_reject(_catalogue, body, what)
    return {"version": loaded["version"], "rules": domain.validate_catalogue(loaded["rules"]),
            "star_thresholds": loaded["star_thresholds"]}
