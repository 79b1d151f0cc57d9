"""The needs service: intake of needs from every channel."""
from datetime import datetime, timezone

from lamplight.rpc import rpc

from lamplight.errors import BadInput, Conflict, NotFound, load_or_reject
from lamplight.ids import new_id
from lamplight.metrics import NEEDS_SUBMITTED
from lamplight.observability import Observability
from lamplight.publishing import EventOutbox
from lamplight.storage import Mongo
from services.needs import domain
from services.needs.schemas import NeedSubmissionSchema, NeedSubmittedSchema, NeedViewSchema
from services.needs.store import INDEXES, NeedsStore

_submission = NeedSubmissionSchema()
_view = NeedViewSchema()
_submitted = NeedSubmittedSchema()
EXPECTED = (BadInput, Conflict, NotFound)


class NeedsService:
    name = "needs"

    log = Observability()
    db = Mongo(indexes=INDEXES, group_commit=("needs",))
    events = EventOutbox(collections=("needs",))

    @rpc(expected_exceptions=EXPECTED)
    def submit(self, park_id, payload, idempotency_key=None):
        """Accept a need. The same idempotency key with the same body returns
        the need already accepted; with another body it is a Conflict."""
        submission = load_or_reject(_submission, payload, "the need")
        now = datetime.now(timezone.utc)
        need = domain.open_need(new_id("need"), park_id, submission, now, idempotency_key)
        event = self.events.new("need.submitted", park_id=park_id, subject=need["_id"], data=_submitted.dump({
            "need_id": need["_id"], "kind": need["kind"], "category": need["category"],
            "item": need["item"], "grade": need["grade"], "channel": need["channel"],
            "requester_kind": need["requester"]["kind"], "summary": domain.public_summary(need["title"]),
            "submitted_at": need["submitted_at"], "due_at": need["due_at"],
        }))
        with self.events.staged([event]) as outbox:
            need.update(outbox)
            existing = NeedsStore(self.db, park_id).insert(need)
        if existing is not None:
            self.events.discard([event])
            if existing["fingerprint"] != need["fingerprint"]:
                raise Conflict("idempotency key {!r} was already used for another need".format(
                    need["idempotency_key"]), {"idempotency_key": ["reused with a different body"]})
            return dict(_view.dump(existing), created=False)
        self.events.publish([event])
        NEEDS_SUBMITTED.labels(park_id, need["category"], need["channel"]).inc()
        self.log.info("need.submitted", need_id=need["_id"], category=need["category"])
        return dict(_view.dump(need), created=True)

    @rpc(expected_exceptions=EXPECTED)
    def get(self, park_id, need_id):
        need = NeedsStore(self.db, park_id).get(need_id)
        if need is None:
            raise NotFound("no need {} in park {}".format(need_id, park_id))
        return _view.dump(need)
