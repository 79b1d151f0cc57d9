"""The notify service: notices to people; the foundation's channel is the in-app inbox."""
from datetime import datetime, timezone

from lamplight.rpc import rpc

from lamplight.consuming import subscribe
from lamplight.errors import BadInput, NotFound, load_or_reject
from lamplight.metrics import NOTICES
from lamplight.observability import Observability
from lamplight.publishing import EventOutbox
from lamplight.storage import Mongo
from services.notify import domain
from services.notify.schemas import NoticeSentSchema, NoticeViewSchema, TaskOfferedSchema
from services.notify.store import INDEXES, NotifyStore

_task_offered = TaskOfferedSchema()
_notice_view = NoticeViewSchema()
_notice_sent = NoticeSentSchema()
EXPECTED = (BadInput, NotFound)


class NotifyService:
    name = "notify"

    log = Observability()
    db = Mongo(indexes=INDEXES, group_commit=("notices",))
    events = EventOutbox(collections=("notices",))

    @subscribe("volunteers", "task.offered")
    def on_task_offered(self, envelope):
        data = load_or_reject(_task_offered, envelope["data"], "task.offered data")
        notice = domain.new_notice(dict(envelope, data=data), data["responder_id"], domain.INAPP,
                                   datetime.now(timezone.utc))
        event = self.events.new("notice.sent", park_id=envelope["parkid"], subject=notice["_id"],
                                data=_notice_sent.dump(dict(notice, notice_id=notice["_id"])))
        with self.events.staged([event]) as outbox:
            notice.update(outbox)
            inserted = NotifyStore(self.db, envelope["parkid"]).insert_notice(notice)
        if not inserted:
            self.events.discard([event])
            self.log.info("notice.duplicate_delivery", notice_id=notice["_id"])
            return
        self.events.publish([event])
        NOTICES.labels(envelope["parkid"], domain.INAPP, "delivered").inc()

    @rpc(expected_exceptions=EXPECTED)
    def inbox(self, park_id, recipient_id, unread_only=False, limit=50):
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise BadInput("limit must be 1 to 200", {"limit": ["must be an integer from 1 to 200"]})
        notices = NotifyStore(self.db, park_id).inbox(recipient_id, bool(unread_only), limit)
        return [_notice_view.dump(n) for n in notices]

    @rpc(expected_exceptions=EXPECTED)
    def mark_read(self, park_id, recipient_id, notice_id):
        if not NotifyStore(self.db, park_id).mark_read(recipient_id, notice_id):
            raise NotFound("no notice {} for {}".format(notice_id, recipient_id))
        return {"id": notice_id, "read": True}
