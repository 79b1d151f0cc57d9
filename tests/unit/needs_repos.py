"""The needs repository the handler tests run against: in memory, or the
real NeedsStore on the MongoDB-protocol server. Both give the same answers;
the in-memory one is what makes the handler tests take milliseconds."""
import copy

from services.needs.schemas import NeedsConfigSchema
from services.needs.store import RECENT_PER_REQUESTER
from tests.parks import needs_config
from tests.unit.installed import InstalledConfig
from tests.unit.installed import configured as installed


def configured(**overrides):
    """The demo park's needs configuration as installed (loaded by its schema, version 1)."""
    return installed(NeedsConfigSchema(), needs_config(**overrides))


class InMemoryNeedsStore:
    """What the lifecycle handlers ask of NeedsStore, kept in dicts: a need
    per ``_id``, unique idempotency keys, a write conditional on the version
    read, and each requester's recent needs."""

    def __init__(self, park_id, config):
        self.park_id = park_id
        self.park_config = InstalledConfig(config)
        self.needs = {}

    def key(self, local_id):
        return "{}/{}".format(self.park_id, local_id)

    def insert(self, need):
        for existing in self.needs.values():
            if existing["idempotency_key"] == need["idempotency_key"]:
                return copy.deepcopy(existing)
        if need["_id"] in self.needs:
            return copy.deepcopy(self.needs[need["_id"]])
        self.needs[need["_id"]] = copy.deepcopy(need)
        return None

    def get(self, need_id, internal=False):
        need = self.needs.get(self.key(need_id))
        if need is None:
            return None
        need = copy.deepcopy(need)
        if not internal:
            for name in ("_outbox", "_outbox_at", "_outbox_by"):
                need.pop(name, None)
        return need

    def apply_change(self, need, fields):
        stored = self.needs.get(need["_id"])
        if stored is None or stored["version"] != need["version"]:
            return False
        stored.update(copy.deepcopy(fields), version=need["version"] + 1)
        return True

    def recent_of(self, requester_key, since):
        recent = sorted((n for n in self.needs.values()
                         if n.get("requester_key") == requester_key and n["submitted_at"] >= since),
                        key=lambda n: n["submitted_at"], reverse=True)[:RECENT_PER_REQUESTER]
        return [{"need_id": n["need_id"], "item": n["item"], "category": n["category"], "title": n["title"],
                 "at": n["submitted_at"]} for n in copy.deepcopy(recent)]
