"""The points repository the handler tests run against: in memory, or the
real PointsStore on the MongoDB-protocol server. Both give the same answers;
the in-memory one is what makes the handler tests take milliseconds."""
import copy

from lamplight.clock import utcnow
from lamplight.errors import Conflict, NotFound
from services.points import domain
from services.points.schemas import CatalogueSchema

RULES = [
    {"code": "missed-meeting", "name": "无故缺席组织生活", "account": "discipline", "points": -3},
    {"code": "serious-breach", "name": "严重违纪", "account": "discipline", "points": -3, "approval_required": True},
    {"code": "volunteer-award", "name": "志愿服务奖励", "account": "service", "points": 10},
    {"code": "task-done", "name": "完成服务任务", "account": "service", "points": 2, "mode": "auto",
     "event_type": "task.completed", "caps": {"day": 4}},
    {"code": "need-closed", "name": "办结群众需求", "account": "service", "points": 3, "mode": "auto",
     "event_type": "need.closed"},
]


def catalogue(version=1):
    """The rule catalogue as installed."""
    loaded = CatalogueSchema().load({"version": version, "rules": RULES})
    return {"version": version, "rules": domain.validate_catalogue(loaded["rules"]),
            "star_thresholds": loaded["star_thresholds"]}


def _plain(doc):
    return None if doc is None else {k: copy.deepcopy(v) for k, v in doc.items() if k != "_outbox"}


class InMemoryPointsStore:
    """What the points handlers ask of PointsStore, kept in dicts: entries
    inserted once by ``<account>:<seq>`` and by idempotency key, the account
    a head moved after each entry, approvals, redemptions and rewards whose
    stock is taken by the redemption that reserves it."""

    def __init__(self, park_id, installed):
        self.park_id = park_id
        self.installed = installed
        self.accounts, self.entries, self.approvals, self.redemptions, self.rewards = {}, {}, {}, {}, {}
        self.members = {}

    def catalogue(self):
        return copy.deepcopy(self.installed)

    # the ledger -----------------------------------------------------------------------------
    def account(self, member_id, kind, year=None, create=True, roll=True):
        aid = domain.account_id(self.park_id, member_id, kind, year)
        if aid not in self.accounts:
            if not create:
                return None
            self.accounts[aid] = domain.new_account(self.park_id, member_id, kind, year, utcnow())
        return copy.deepcopy(self.accounts[aid])

    def append(self, account_ref, build, idempotency_key, fingerprint, stage):
        account = self.account(*account_ref)
        if self.find_by_key(idempotency_key) is not None:
            return self._existing(idempotency_key, fingerprint), False
        entry = build(account)
        entry["idempotency_key"], entry["fingerprint"] = idempotency_key, fingerprint
        with stage(entry, account) as staged:
            entry.update(staged.fields())
            self.entries[entry["_id"]] = copy.deepcopy(entry)
            self.accounts[account["_id"]] = domain.apply(account, entry)
            staged.written = True
        return entry, True

    def _existing(self, idempotency_key, fingerprint):
        existing = self.find_by_key(idempotency_key)
        if existing.get("fingerprint") != fingerprint:
            raise Conflict("idempotency key {!r} was already used for another posting".format(idempotency_key),
                           {"idempotency_key": ["reused with a different body"]})
        return existing

    def find_by_key(self, idempotency_key):
        return next((_plain(e) for e in self.entries.values() if e["idempotency_key"] == idempotency_key), None)

    def entry(self, entry_id):
        if entry_id not in self.entries:
            raise NotFound("no entry {} in park {}".format(entry_id, self.park_id))
        return _plain(self.entries[entry_id])

    def entries_for_need(self, need_id):
        return [_plain(e) for e in self.entries.values() if e["metadata"].get("need_id") == need_id]

    def history(self, account_id, limit=50):
        found = sorted((e for e in self.entries.values() if e["account_id"] == account_id), key=lambda e: -e["seq"])
        return [_plain(e) for e in found[:limit]]

    def balance_at(self, account_id, at):
        found = [e for e in self.entries.values() if e["account_id"] == account_id and e["at"] <= at]
        last = max(found, key=lambda e: e["seq"], default=None)
        return (last["balance_after"], last["held_after"], last["seq"]) if last else (0, 0, 0)

    def member(self, member_id):
        return copy.deepcopy(self.members.get(member_id))

    def set_member(self, member_id, fields):
        self.members.setdefault(member_id, {"member_id": member_id}).update(fields)

    # approvals --------------------------------------------------------------------------------
    def open_approval(self, approval):
        if approval["_id"] in self.approvals:
            return copy.deepcopy(self.approvals[approval["_id"]]), False
        self.approvals[approval["_id"]] = copy.deepcopy(approval)
        return approval, True

    def approval(self, approval_id):
        if approval_id not in self.approvals:
            raise NotFound("no approval request {} in park {}".format(approval_id, self.park_id))
        return copy.deepcopy(self.approvals[approval_id])

    def decide_approval(self, approval_id, changes):
        approval = self.approvals.get(approval_id)
        if approval is None or approval["status"] != "pending":
            return None
        approval.update(changes)
        return copy.deepcopy(approval)

    # rewards and redemptions --------------------------------------------------------------------
    def put_reward(self, reward):
        self.rewards.setdefault(reward["code"], {"reserved": []}).update(copy.deepcopy(reward))
        return self.reward(reward["code"])

    def reward(self, code):
        if code not in self.rewards:
            raise NotFound("no reward {} in park {}".format(code, self.park_id), {"reward_code": ["unknown"]})
        return copy.deepcopy(self.rewards[code])

    def reserve_stock(self, code, redemption_id):
        reward = self.rewards[code]
        if redemption_id in reward["reserved"]:
            return True
        if reward["stock"] <= 0:
            return False
        reward["stock"] -= 1
        reward["reserved"].append(redemption_id)
        return True

    def return_stock(self, code, redemption_id):
        reward = self.rewards[code]
        if redemption_id in reward["reserved"]:
            reward["stock"] += 1
            reward["reserved"].remove(redemption_id)

    def consume_stock(self, code, redemption_id):
        if redemption_id in self.rewards[code]["reserved"]:
            self.rewards[code]["reserved"].remove(redemption_id)

    def open_redemption(self, redemption):
        if redemption["_id"] in self.redemptions:
            return copy.deepcopy(self.redemptions[redemption["_id"]]), False
        self.redemptions[redemption["_id"]] = copy.deepcopy(redemption)
        return redemption, True

    def redemption(self, redemption_id):
        if redemption_id not in self.redemptions:
            raise NotFound("no redemption {} in park {}".format(redemption_id, self.park_id))
        return copy.deepcopy(self.redemptions[redemption_id])

    def set_redemption(self, redemption_id, from_status, changes):
        redemption = self.redemptions.get(redemption_id)
        if redemption is None or redemption["status"] not in from_status:
            return None
        redemption.update(changes)
        return copy.deepcopy(redemption)

    def expired_redemptions(self, now, limit=100):
        return [copy.deepcopy(r) for r in self.redemptions.values()
                if r["status"] in ("pending", domain.HELD) and r["expires_at"] < now][:limit]
