"""The points service: rule catalogues, the ledger, the warning ladder, stars,
redemption and awards."""
import hashlib
import json
from datetime import timedelta

from nameko.timer import timer

from lamplight import ids, logs
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, Conflict, load_or_reject, time_or_reject
from lamplight.ids import new_id
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id
from services.points import domain
from services.points.metrics import POINTS_ENTRIES, POINTS_SKIPPED
from services.points.schemas import (
    AccountViewSchema,
    ApprovalViewSchema,
    CatalogueSchema,
    DecisionSchema,
    EntryViewSchema,
    MoveSchema,
    PointsEntrySchema,
    PostingSchema,
    RedeemSchema,
    RedemptionViewSchema,
    ReversalSchema,
    RewardSchema,
    SourceEventSchema,
    ThresholdCrossedSchema,
)
from services.points.store import INDEXES, PointsStore, parks_with_expired_redemptions, utcnow

SYSTEM = "system"
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
_entry_event = PointsEntrySchema()
_threshold_event = ThresholdCrossedSchema()
_log = logs.get_logger(component="points")


def fingerprint(body):
    # the digests already stored (entries, approvals, redemptions) were made of ASCII-escaped JSON
    return ids.fingerprint(body, ensure_ascii=True)


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

    # the ledger's one write path --------------------------------------------------------
    def _append(self, store, account_ref, build, key, body):
        """Append an entry with its events in its outbox; returns (entry, created)."""
        entry, created = store.append(account_ref, build, key, fingerprint(body),
                                      lambda entry, before: self.events.staging(self._events_for(entry, before)))
        if created:
            POINTS_ENTRIES.labels(store.park_id, entry["account_kind"], entry["kind"]).inc()
        return entry, created

    def _events_for(self, entry, before):
        data = dict(entry, entry_id=entry["_id"], source_event_id=entry["metadata"].get("source_event_id"))
        envelopes = [self.events.new(domain.event_type_for(entry), park_id=entry["park_id"], subject=entry["member_id"],
                                     data=_entry_event.dump(data))]
        if entry["account_kind"] == domain.DISCIPLINE:
            for threshold, level in domain.crossings(before["balance"], entry["balance_after"]):
                envelopes.append(self.events.new(
                    "points.threshold_crossed", park_id=entry["park_id"], subject=entry["member_id"],
                    data=_threshold_event.dump({"member_id": entry["member_id"], "year": entry["year"],
                                                "threshold": threshold, "level": level,
                                                "balance": entry["balance_after"], "entry_id": entry["_id"]})))
        return envelopes

    def _discipline(self, store, member_id, year):
        """The member's discipline account for ``year``, opened at 12 if new."""
        account = store.account(member_id, domain.DISCIPLINE, year, roll=False)
        if account["seq"] == 0:
            key = "open:{}".format(account["_id"])
            self._append(store, (member_id, domain.DISCIPLINE, year), lambda acc: domain.next_entry(
                acc, kind=domain.OPENING, amount=domain.YEARLY_OPENING_POINTS, at=utcnow(), idempotency_key=key,
                actor=SYSTEM, reason="yearly opening"), key, {"open": account["_id"]})
        return account

    def _post(self, store, *, member_id, rule, amount, key, body, actor, reason, metadata, year=None):
        year = year or utcnow().year
        if rule["account"] == domain.DISCIPLINE:
            self._discipline(store, member_id, year)
        ref = (member_id, rule["account"], year if rule["account"] == domain.DISCIPLINE else None)
        return self._append(store, ref, lambda acc: domain.next_entry(
            acc, kind=domain.POSTING, amount=amount, rule=rule, at=utcnow(), idempotency_key=key, actor=actor,
            reason=reason, metadata=metadata), key, body)

    def _reverse(self, store, original, actor, reason, metadata=None):
        key = "reverse:{}".format(original["_id"])
        amount = domain.reversal_of(original)
        ref = (original["member_id"], original["account_kind"], original.get("year"))
        return self._append(store, ref, lambda acc: domain.next_entry(
            acc, kind=domain.REVERSAL, amount=amount, at=utcnow(), idempotency_key=key, actor=actor, reason=reason,
            reverses=original["_id"], metadata=dict(metadata or {}, reversed_rule=original.get("rule_code"))),
            key, {"reverse": original["_id"], "actor": actor, "reason": reason})

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

    def _rule(self, store, code):
        rules = {r["code"]: r for r in store.catalogue()["rules"]}
        if code not in rules:
            raise BadInput("unknown rule {}".format(code),
                           {"rule_code": ["unknown; this park's rules are: {}".format(
                               ", ".join(sorted(rules)) or "none")]})
        return rules[code]

    # manual postings and reversals -------------------------------------------------------
    @rpc
    def post(self, park_id, payload, idempotency_key=None):
        data = load_or_reject(_posting, payload, "the posting")
        store = PointsStore(self.db, park_id)
        rule = self._rule(store, data["rule_code"])
        if rule["mode"] == "auto":
            raise BadInput("rule {} is posted automatically from {}".format(rule["code"], rule["event_type"]),
                           {"rule_code": ["automatic rule"]})
        key = idempotency_key or new_id("post")
        if rule.get("approval_required"):
            return self._request_approval(store, data, key)
        entry, created = self._post(store, member_id=data["member_id"], rule=rule, amount=rule["points"],
                                    key=key, body=data, actor=data["actor"], reason=data["reason"],
                                    metadata=data["metadata"], year=data["year"])
        return dict(_entry_view.dump(entry), created=created)

    # approval of rules that need a second person ----------------------------------------
    def _request_approval(self, store, data, key):
        """Nothing is posted yet: a pending request waits for an approver
        other than the actor."""
        approval, created = store.open_approval(dict(
            data, _id="{}/approval/{}".format(store.park_id, hashlib.sha256(key.encode()).hexdigest()[:24]),
            status="pending", requested_at=utcnow(), fingerprint=fingerprint(data)))
        if not created and approval["fingerprint"] != fingerprint(data):
            raise Conflict("idempotency key {!r} was already used for another posting".format(key),
                           {"idempotency_key": ["reused with a different body"]})
        return dict(_approval_view.dump(approval), approval_pending=True, created=created)

    @rpc
    def approvals(self, park_id, status="pending", limit=100):
        if status not in ("pending", "approved", "rejected") or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise BadInput("status is pending, approved or rejected; limit 1-500", {"status": [status]})
        return [_approval_view.dump(a) for a in PointsStore(self.db, park_id).approvals_with(status, limit)]

    @rpc
    def approve(self, park_id, approval_id, payload):
        """Post what was requested. Asking again returns the same entry."""
        decision = load_or_reject(_decision, payload, "the approval")
        store = PointsStore(self.db, park_id)
        approval = store.approval(approval_id)
        if approval["status"] == "rejected":
            raise Conflict("approval {} was rejected".format(approval_id), {"status": ["rejected"]})
        if decision["approver"] == approval["actor"]:
            raise BadInput("the approver must be another person than {}".format(approval["actor"]),
                           {"approver": ["must not be the actor"]})
        rule = self._rule(store, approval["rule_code"])
        entry, _ = self._post(store, member_id=approval["member_id"], rule=rule, amount=rule["points"],
                              key="approval:" + approval_id, body={"approval": approval_id},
                              actor=approval["actor"], reason=approval["reason"],
                              metadata=dict(approval["metadata"], approved_by=decision["approver"],
                                            approval_id=approval_id), year=approval["year"])
        store.decide_approval(approval_id, {"status": "approved", "decided_by": decision["approver"],
                                            "decided_at": utcnow(), "entry_id": entry["_id"]})
        return _entry_view.dump(entry)

    @rpc
    def reject(self, park_id, approval_id, payload):
        decision = load_or_reject(_decision, payload, "the rejection")
        store = PointsStore(self.db, park_id)
        if not decision["reason"]:
            raise BadInput("a rejection gives its reason", {"reason": ["Missing data for required field."]})
        decided = store.decide_approval(approval_id, {"status": "rejected", "decided_by": decision["approver"],
                                                      "decided_at": utcnow(), "decision_reason": decision["reason"]})
        approval = decided or store.approval(approval_id)
        if approval["status"] != "rejected":
            raise Conflict("approval {} was already {}".format(approval_id, approval["status"]),
                           {"status": [approval["status"]]})
        return _approval_view.dump(approval)

    @rpc
    def reverse(self, park_id, entry_id, payload):
        data = load_or_reject(_reversal, payload, "the reversal")
        store = PointsStore(self.db, park_id)
        entry, created = self._reverse(store, store.entry(entry_id), data["actor"], data["reason"])
        return dict(_entry_view.dump(entry), created=created)

    # postings from events -----------------------------------------------------------------
    def _post_from_event(self, envelope):
        park_id = envelope["parkid"]
        source = load_or_reject(_source, envelope["data"], "{} data".format(envelope["type"]))
        store = PointsStore(self.db, park_id)
        rules = [r for r in store.catalogue()["rules"] if r.get("event_type") == envelope["type"]]
        if not rules:
            return
        if not source["member_id"]:
            POINTS_SKIPPED.labels(park_id, envelope["type"], "no_member").inc()
            self.log.info("points.event_without_member", event_type=envelope["type"])
            return
        metadata = {"source_event_id": envelope["id"], "source_event_type": envelope["type"],
                    **{k: source[k] for k in ("need_id", "task_id", "visit_id") if source.get(k)}}
        for rule in rules:
            if rule.get("rating_at_most") and (source["rating"] is None or source["rating"] > rule["rating_at_most"]):
                continue
            amount = rule["points"]
            if rule.get("per_hour"):
                amount = int(round(rule["points"] * (source["hours"] or 0)))
                if amount == 0:
                    continue
            key = "{}:{}".format(envelope["id"], rule["code"])
            try:
                self._post(store, member_id=source["member_id"], rule=rule, amount=amount, key=key,
                           body={"event": envelope["id"], "rule": rule["code"], "amount": amount},
                           actor=SYSTEM, reason="{} ({})".format(rule["name"], envelope["type"]), metadata=metadata)
            except domain.PointsRefused as exc:
                if exc.code != domain.CAP_REACHED:
                    raise
                POINTS_SKIPPED.labels(park_id, envelope["type"], "cap_reached").inc()

    @subscribe("volunteers", "task.completed")
    @subscribe("volunteers", "volunteer.service_hours")
    @subscribe("volunteers", "visit.missed")
    @subscribe("needs", "need.closed")
    @subscribe("needs", "need.evaluated")
    def on_posting_event(self, envelope):
        """Each of these events posts what the park's automatic rules say (one queue per type)."""
        self._post_from_event(envelope)

    @subscribe("needs", "need.reopened")
    def on_need_reopened(self, envelope):
        """A reopened need takes back what its closing posted."""
        source = load_or_reject(_source, envelope["data"], "need.reopened data")
        if not source["need_id"]:
            raise BadInput("need.reopened without need_id", {"need_id": ["missing"]})
        store = PointsStore(self.db, envelope["parkid"])
        for entry in store.entries_for_need(source["need_id"]):
            if entry["kind"] == domain.POSTING and entry["metadata"].get("source_event_type") == "need.closed":
                self._reverse(store, entry, SYSTEM, "need {} reopened".format(source["need_id"]),
                              {"source_event_id": envelope["id"], "need_id": source["need_id"]})

    # reading -----------------------------------------------------------------------
    @rpc
    def account(self, park_id, member_id, kind=domain.DISCIPLINE, year=None, at=None):
        if kind not in domain.ACCOUNT_KINDS:
            raise BadInput("kind must be discipline or service", {"kind": ["one of discipline, service"]})
        year = year or utcnow().year
        if not isinstance(year, int) or not 2000 <= year <= 2100:
            raise BadInput("year is out of range", {"year": ["must be 2000-2100"]})
        store = PointsStore(self.db, park_id)
        ref_year = year if kind == domain.DISCIPLINE else None
        account = store.account(member_id, kind, ref_year, create=False) or domain.new_account(
            park_id, member_id, kind, ref_year, None)
        if account["seq"] == 0 and kind == domain.DISCIPLINE:
            account = dict(account, balance=domain.YEARLY_OPENING_POINTS)  # opens at 12 on its first entry
        if at is not None:
            when = time_or_reject(at, "at")
            balance, held, seq = store.balance_at(account["_id"], when)
            account = dict(account, balance=balance, held=held, seq=seq, as_of=when)
        view = dict(account, available=account["balance"])
        if kind == domain.DISCIPLINE:
            thresholds = store.catalogue().get("star_thresholds")
            view["stars"], view["eligible_for_awards"] = domain.stars(account["balance"], thresholds)
            view["warning"] = domain.warning_level(account["balance"])
        return _account_view.dump(view)

    @rpc
    def history(self, park_id, member_id, kind=domain.DISCIPLINE, year=None, limit=50, include_previous_parks=True):
        if not isinstance(limit, int) or not 1 <= limit <= 500:
            raise BadInput("limit must be 1 to 500", {"limit": ["1-500"]})
        year = year or utcnow().year
        rows, park, seen = [], park_id, set()
        while park and park not in seen and len(rows) < limit:
            seen.add(park)
            store = PointsStore(self.db, park)
            aid = domain.account_id(park, member_id, kind, year if kind == domain.DISCIPLINE else None)
            rows += store.history(aid, limit - len(rows))
            member = store.member(member_id) if include_previous_parks else None
            park = member.get("moved_from") if member else None
        return [_entry_view.dump(e) for e in rows]

    @rpc
    def leaderboard(self, park_id, kind=domain.SERVICE, year=None, limit=20):
        if kind not in domain.ACCOUNT_KINDS or not isinstance(limit, int) or not 1 <= limit <= 200:
            raise BadInput("kind is discipline or service, limit 1-200", {"kind": [kind], "limit": [limit]})
        rows = PointsStore(self.db, park_id).leaderboard(kind, year or utcnow().year, limit)
        return [{"rank": i + 1, "member_id": r["member_id"], "balance": r["balance"]} for i, r in enumerate(rows)]

    # rewards and redemption ------------------------------------------------------------
    @rpc
    def put_reward(self, park_id, payload):
        data = load_or_reject(_reward, payload, "the reward")
        if data["window_start"] and data["window_end"] and data["window_end"] <= data["window_start"]:
            raise BadInput("the window ends before it starts", {"window_end": ["before window_start"]})
        reward = PointsStore(self.db, park_id).put_reward(data)
        return {k: reward[k] for k in ("code", "name", "cost", "stock")}

    @rpc
    def rewards(self, park_id):
        return [{k: r.get(k) for k in ("code", "name", "cost", "stock")} for r in PointsStore(self.db,
                                                                                              park_id).list_rewards()]

    @rpc
    def redeem(self, park_id, payload, idempotency_key=None):
        """Hold the points and a unit of stock; the redemption is then confirmed
        or voided (voided by itself when its hold times out)."""
        data = load_or_reject(_redeem, payload, "the redemption")
        store = PointsStore(self.db, park_id)
        reward = store.reward(data["reward_code"])
        now = utcnow()
        domain.check_reward_open(reward, now)
        rid = "rdm_" + hashlib.sha256("{}:{}".format(park_id,
                                                     idempotency_key or new_id("rdm")).encode()).hexdigest()[:24]
        redemption, created = store.open_redemption({
            "_id": rid, "park_id": park_id, "member_id": data["member_id"], "reward_code": reward["code"],
            "cost": reward["cost"], "status": "pending", "created_at": now,
            "expires_at": now + timedelta(minutes=reward.get("hold_minutes", 30)), "fingerprint": fingerprint(data)})
        if not created:
            if redemption["fingerprint"] != fingerprint(data):
                raise Conflict("idempotency key was already used for another redemption",
                               {"idempotency_key": ["reused with a different body"]})
            if redemption["status"] != "pending":
                return dict(_redemption_view.dump(redemption), created=False)
        if not store.reserve_stock(reward["code"], rid):
            store.set_redemption(rid, ["pending"], {"status": domain.VOIDED, "reason": "out of stock"})
            raise Conflict("reward {} is out of stock".format(reward["code"]),
                           {"reward_code": ["out of stock"], "available": 0}, code="out_of_stock")
        key = "hold:" + rid
        try:
            self._append(store, (data["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
                acc, kind=domain.HOLD, amount=-reward["cost"], held_delta=reward["cost"], at=utcnow(),
                idempotency_key=key, actor=data["member_id"], reason="redeem " + reward["code"],
                metadata={"redemption_id": rid, "reward_code": reward["code"]}), key, {"hold": rid})
        except (Conflict, domain.PointsRuleError):
            store.return_stock(reward["code"], rid)
            store.set_redemption(rid, ["pending"], {"status": domain.VOIDED, "reason": "insufficient points"})
            raise
        held = store.set_redemption(rid, ["pending"], {"status": domain.HELD})
        return dict(_redemption_view.dump(held or store.redemption(rid)), created=created)

    @rpc
    def confirm_redemption(self, park_id, redemption_id, actor):
        store = PointsStore(self.db, park_id)
        redemption = store.redemption(redemption_id)
        if redemption["status"] == domain.CONFIRMED:
            return _redemption_view.dump(redemption)
        domain.check_redemption_transition(redemption, domain.CONFIRMED)
        key = "redeem:" + redemption_id
        self._append(store, (redemption["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
            acc, kind=domain.REDEEM, amount=0, held_delta=-redemption["cost"], at=utcnow(), idempotency_key=key,
            actor=actor, reason="redeemed " + redemption["reward_code"],
            metadata={"redemption_id": redemption_id, "reward_code": redemption["reward_code"]}),
            key, {"redeem": redemption_id})
        store.consume_stock(redemption["reward_code"], redemption_id)
        done = store.set_redemption(redemption_id, [domain.HELD], {"status": domain.CONFIRMED, "confirmed_by": actor})
        return _redemption_view.dump(done or store.redemption(redemption_id))

    @rpc
    def void_redemption(self, park_id, redemption_id, actor, reason="voided"):
        store = PointsStore(self.db, park_id)
        redemption = store.redemption(redemption_id)
        if redemption["status"] == domain.VOIDED:
            return _redemption_view.dump(redemption)
        if redemption["status"] != "pending":
            domain.check_redemption_transition(redemption, domain.VOIDED)
        self._release(store, redemption, actor, reason)
        return _redemption_view.dump(store.redemption(redemption_id))

    def _release(self, store, redemption, actor, reason):
        rid = redemption["_id"]
        if store.find_by_key("hold:" + rid) is not None:  # the points were held: give them back
            key = "release:" + rid
            self._append(store, (redemption["member_id"], domain.SERVICE, None), lambda acc: domain.next_entry(
                acc, kind=domain.RELEASE, amount=redemption["cost"], held_delta=-redemption["cost"], at=utcnow(),
                idempotency_key=key, actor=actor, reason=reason,
                metadata={"redemption_id": rid, "reward_code": redemption["reward_code"]}), key, {"release": rid})
        store.return_stock(redemption["reward_code"], rid)
        store.set_redemption(rid, ["pending", domain.HELD], {"status": domain.VOIDED, "reason": reason})

    @timer(interval=30)
    def void_expired_holds(self):
        now = utcnow()
        for park_id in parks_with_expired_redemptions(self.db, now):
            store = PointsStore(self.db, park_id)
            for redemption in store.expired_redemptions(now):
                self._release(store, redemption, SYSTEM, "hold timed out")

    # awards and moves --------------------------------------------------------------------
    @rpc
    def freeze_award(self, park_id, period, limit=10):
        """The half-year's excellent-volunteer ranking, computed once from the
        ledger and frozen; asking again returns the same snapshot."""
        start, end = domain.half_year(period)
        store = PointsStore(self.db, park_id)
        existing = store.award(period)
        if existing:
            return _award_view(existing)
        if utcnow() < end:
            raise Conflict("{} is not over until {}".format(period, end.date().isoformat()), {"period": ["not over"]})
        earned = store.earned_in(start, end)
        scores = store.discipline_scores(start.year, sorted(earned))
        eligibility = {m: domain.stars(s, store.catalogue().get("star_thresholds"))[1] for m, s in scores.items()}
        ranking = domain.award_ranking({m: p for m, (p, _) in earned.items()}, eligibility, limit)
        digest = hashlib.sha256(json.dumps(ranking, sort_keys=True).encode()).hexdigest()
        snapshot, _ = store.freeze_award({
            "_id": store.award_id(period), "period": period, "ranking": ranking, "digest": digest,
            "entries_counted": sum(n for _, n in earned.values()), "frozen_at": utcnow(),
            "excluded_not_eligible": sorted(m for m, ok in eligibility.items() if not ok)})
        return _award_view(snapshot)

    @rpc
    def move_member(self, park_id, member_id, payload):
        """Move a member's balances to another park; the history stays and
        is followed from the new park."""
        data = load_or_reject(_move, payload, "the move")
        to_park = check_park_id(data["to_park"])
        if to_park == park_id:
            raise BadInput("the member is already in {}".format(park_id), {"to_park": ["same park"]})
        here, there = PointsStore(self.db, park_id), PointsStore(self.db, to_park)
        year = utcnow().year
        for kind, ref_year in ((domain.SERVICE, None), (domain.DISCIPLINE, year)):
            account = here.account(member_id, kind, ref_year, create=False)
            if account is None or account["seq"] == 0:
                continue
            if account["held"]:
                raise Conflict("{} points are held by a redemption; confirm or void it first".format(account["held"]),
                               {"held": account["held"]})
            balance, move = account["balance"], "{}->{}:{}".format(park_id, to_park, account["_id"])
            self._append(here, (member_id, kind, ref_year), lambda acc: domain.next_entry(
                acc, kind=domain.TRANSFER_OUT, amount=-acc["balance"], at=utcnow(), idempotency_key="out:" + move,
                actor=data["actor"], reason="moved to " + to_park, metadata={"to_park": to_park}),
                "out:" + move, {"move": move})
            self._append(there, (member_id, kind, ref_year), lambda acc: domain.next_entry(
                acc, kind=domain.TRANSFER_IN, amount=balance, at=utcnow(), idempotency_key="in:" + move,
                actor=data["actor"], reason="moved from " + park_id,
                metadata={"from_park": park_id, "from_account": account["_id"]}), "in:" + move, {"move": move})
        here.set_member(member_id, {"moved_to": to_park, "moved_at": utcnow()})
        there.set_member(member_id, {"moved_from": park_id, "moved_at": utcnow()})
        return {"member_id": member_id, "from_park": park_id, "to_park": to_park}


def _load_catalogue(body, what):
    """A catalogue as a configuration: its version, its rules checked (codes
    unique, caps sane), its star thresholds."""
    loaded = load_or_reject(_catalogue, body, what)
    return {"version": loaded["version"], "rules": domain.validate_catalogue(loaded["rules"]),
            "star_thresholds": loaded["star_thresholds"]}


def _award_view(snapshot):
    return {k: snapshot[k] for k in ("period", "ranking", "digest", "entries_counted", "excluded_not_eligible")} | {
        "frozen_at": snapshot["frozen_at"].isoformat()}
