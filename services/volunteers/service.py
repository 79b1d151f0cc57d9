"""The volunteers service: responders and dispatch of needs to them."""
from datetime import datetime, timezone

from lamplight.rpc import rpc

from lamplight.consuming import subscribe
from lamplight.errors import BadInput, NotFound, load_or_reject
from lamplight.ids import new_id
from lamplight.metrics import NEEDS_UNMATCHED, TASKS_OFFERED
from lamplight.observability import Observability
from lamplight.publishing import EventOutbox
from lamplight.storage import Mongo
from services.volunteers import domain
from services.volunteers.schemas import (
    NeedRoutedSchema, ResponderRegistrationSchema, ResponderViewSchema, TaskOfferedSchema,
)
from services.volunteers.store import INDEXES, VolunteersStore

_registration = ResponderRegistrationSchema()
_responder_view = ResponderViewSchema()
_need_routed = NeedRoutedSchema()
_task_offered = TaskOfferedSchema()
EXPECTED = (BadInput, NotFound)


class VolunteersService:
    name = "volunteers"

    log = Observability()
    db = Mongo(indexes=INDEXES, group_commit=("tasks",))
    events = EventOutbox(collections=("tasks",))

    @rpc(expected_exceptions=EXPECTED)
    def register_responder(self, park_id, payload):
        data = load_or_reject(_registration, payload, "the responder")
        responder_id = new_id("rsp")
        ref = data.pop("external_ref") or responder_id
        responder = dict(data, _id=responder_id, ref=ref, park_id=park_id,
                         registered_at=datetime.now(timezone.utc))
        existing = VolunteersStore(self.db, park_id).add_responder(responder)
        return dict(_responder_view.dump(existing or responder), created=existing is None)

    @rpc(expected_exceptions=EXPECTED)
    def get_responder(self, park_id, responder_id):
        responder = VolunteersStore(self.db, park_id).get_responder(responder_id)
        if responder is None:
            raise NotFound("no responder {} in park {}".format(responder_id, park_id))
        return _responder_view.dump(responder)

    @subscribe("needs", "need.triaged")
    @subscribe("needs", "need.reopened")
    def on_need_routed(self, envelope):
        """A need routed to a team (triaged, re-triaged or reopened) gets an
        offer round of its own."""
        park_id = envelope["parkid"]
        need = dict(load_or_reject(_need_routed, envelope["data"], envelope["type"] + " data"), park_id=park_id)
        store = VolunteersStore(self.db, park_id)
        responder = domain.choose(store.roster(), need["need_id"], need["category"])
        if responder is None:
            NEEDS_UNMATCHED.labels(park_id, need["category"]).inc()
            self.log.warning("dispatch.no_responder", need_id=need["need_id"], category=need["category"])
            return
        offer = domain.new_offer(need, responder, datetime.now(timezone.utc), need["routing"])
        event = self.events.new("task.offered", park_id=park_id, subject=offer["_id"], data=_task_offered.dump(
            dict(offer, task_id=offer["_id"])))
        with self.events.staged([event]) as outbox:
            offer.update(outbox)
            inserted = store.insert_offer(offer)
        if not inserted:
            self.events.discard([event])
            self.log.info("dispatch.duplicate_delivery", need_id=need["need_id"])
            return
        self.events.publish([event])
        TASKS_OFFERED.labels(park_id).inc()
