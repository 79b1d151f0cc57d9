"""The notify service: notices to people over several channels.

Events become notices: who an event concerns is resolved from the event
(the responder offered a task, the requester and followers of a need, the
member crossing a points threshold, the park's supervisors), each recipient's
preferences and roster decide the channels and the time, and every step is a
line of the delivery log. The send loop (every NOTIFY_TICK_S) takes what is
due from each park's queue, within the park's per-channel rate limits,
retries with backoff, and falls back to the recipient's next channel when a
provider keeps failing. Broadcasts fan out to a whole park, a team, a
building or a role.

This class decodes a call, hands it to the service layer (handlers/:
people, fanout, sending) with the park's repository, and encodes the answer.
"""
import time

from nameko.extensions import DependencyProvider

from lamplight import settings
from lamplight.alarms import Alarms
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, NotFound, load_or_reject
from lamplight.lanes import BULK, timer
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.passes import ParkPasses
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id, utcnow
from services.notify.channels import adapters
from services.notify.handlers import Work, fanout, people, sending
from services.notify.schemas import (
    BroadcastSchema,
    DeliveryViewSchema,
    NeedFollowedSchema,
    NoticeViewSchema,
    NotifyConfigSchema,
    PreviewSchema,
    RecipientBatchSchema,
    RecipientImportSchema,
    SourceEventSchema,
    TemplateSchema,
    VolunteerEventSchema,
)
from services.notify.store import INDEXES, PARTITIONED, SEND_LOOP, NotifyStore

_config = NotifyConfigSchema()
_import = RecipientImportSchema()
_batch = RecipientBatchSchema()
_template = TemplateSchema()
_preview = PreviewSchema()
_broadcast = BroadcastSchema()
_source = SourceEventSchema()
_volunteer = VolunteerEventSchema()
_followed = NeedFollowedSchema()
_notice_view = NoticeViewSchema()
_delivery_view = DeliveryViewSchema()


class Channels(DependencyProvider):
    """The channel adapters (their HTTP sessions), shared by the workers of one
    process."""

    def setup(self):
        self.registry = adapters(settings.get_int("NOTIFY_SEND_CONCURRENCY"))

    def get_dependency(self, worker_ctx):
        return self.registry


class NotifyService:
    name = "notify"
    _last_tick = 0  # the period of the last pass (see tick)
    _last_round = -1e9  # when the send loop last rang every park's alarm (SWEEP_ROUND_S)

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    # concurrent workers' inserts share one request
    db = Mongo(indexes=INDEXES, partitioned=PARTITIONED, group_commit=("notices", "deliveries", "pending"))
    events = EventOutbox(collections=("notices", "deliveries", "broadcasts"))
    channels = Channels()
    passes = ParkPasses(SEND_LOOP, lambda: settings.get_int("NOTIFY_PARKS_AT_ONCE"))

    def _work(self, park_id):
        return Work(NotifyStore(self.db, park_id), self.events, self.log, self.channels)

    # configuration -----------------------------------------------------------------------
    @subscribe("gateway", "park.configured")
    def on_park_configured(self, envelope):
        """The notify section of a park's configuration, installed as the next
        version; an older park version arriving late changes nothing."""
        data = envelope["data"]
        section = data["sections"].get("notify")
        if section is not None:
            NotifyStore(self.db, envelope["parkid"]).config.project(
                section, data["version"], self._load_config)

    @rpc
    def set_config(self, park_id, payload):
        """The park's channels (provider endpoints and credentials), quiet
        hours, digest time, retries and rate limits, as the next version."""
        check_park_id(park_id)
        config = self._load_config(payload)
        version, unchanged = NotifyStore(self.db, park_id).config.install(config)
        return {"park_id": park_id, "version": version, "unchanged": unchanged,
                "channels": sorted(config["channels"])}

    @staticmethod
    def _load_config(payload):
        config = load_or_reject(_config, editable(payload), "the notify configuration")
        config["channels"] = {k: v for k, v in config["channels"].items() if v}
        return config

    @rpc
    def config(self, park_id):
        return people.config_view(plain(NotifyStore(self.db, park_id).config.require()))

    # recipients --------------------------------------------------------------------------
    @rpc
    def put_recipient(self, park_id, recipient_id, payload):
        profile = load_or_reject(_import, dict(payload or {}, id=recipient_id), "the recipient")
        recipient_id = profile.pop("id")
        NotifyStore(self.db, park_id).put_recipient(recipient_id, profile, utcnow())
        return people.recipient_view(recipient_id, profile)

    @rpc
    def get_recipient(self, park_id, recipient_id):
        return people.recipient(self._work(park_id), recipient_id)

    @rpc
    def import_recipients(self, park_id, payload):
        """Many profiles at once (an HR roster, a dormitory list): new ones are
        added, ones already there are left as they are and listed."""
        check_park_id(park_id)
        rows = load_or_reject(_batch, payload, "the recipients")["recipients"]
        return people.import_recipients(self._work(park_id), rows, utcnow())

    # templates ---------------------------------------------------------------------------
    @rpc
    def put_template(self, park_id, key, locale, payload):
        """A park's own template for one kind of notice and locale, refused
        now if it would not render."""
        check_park_id(park_id)
        template = load_or_reject(_template, payload, "the template")
        return people.put_template(self._work(park_id), key, locale, template, utcnow())

    @rpc
    def delete_template(self, park_id, key, locale):
        return people.delete_template(self._work(park_id), key, locale)

    @rpc
    def templates(self, park_id):
        return people.templates(self._work(park_id))

    @rpc
    def preview(self, park_id, payload):
        """Render a template (the park's, the default, or the one given) with
        the kind's example data or the data given."""
        work = self._work(park_id)
        return people.preview(work, load_or_reject(_preview, payload, "the preview"))

    # events in -----------------------------------------------------------------------------
    @subscribe("volunteers", "task.offered")
    @subscribe("volunteers", "emergency.called_out")
    @subscribe("volunteers", "visit.scheduled")
    @subscribe("volunteers", "visit.missed")
    @subscribe("volunteers", "visit.escalated")
    @subscribe("needs", "need.triaged")
    @subscribe("needs", "need.assigned")
    @subscribe("needs", "need.resolved")
    @subscribe("needs", "need.rejected")
    @subscribe("needs", "need.closed")
    @subscribe("needs", "need.supervision_raised")
    @subscribe("points", "points.threshold_crossed")
    @subscribe("points", "points.credited")
    def on_event(self, envelope):
        refs = load_or_reject(_source, envelope["data"], "{} data".format(envelope["type"]))
        return fanout.on_event(self._work(envelope["parkid"]), envelope, refs)

    @subscribe("volunteers", "volunteer.registered")
    @subscribe("volunteers", "volunteer.changed")
    def on_volunteer(self, envelope):
        data = load_or_reject(_volunteer, envelope["data"], "{} data".format(envelope["type"]))
        NotifyStore(self.db, envelope["parkid"]).project_responder(data, utcnow())

    @subscribe("needs", "need.followed")
    def on_followed(self, envelope):
        data = load_or_reject(_followed, envelope["data"], "need.followed data")
        NotifyStore(self.db, envelope["parkid"]).set_following(data["need_id"], data["follower_id"],
                                                               data["following"], utcnow())

    # broadcasts --------------------------------------------------------------------------------
    @rpc
    def broadcast(self, park_id, payload, idempotency_key=None):
        """Accept a broadcast (written, with its broadcast.requested event in
        the same document); the fan-out follows from that event."""
        check_park_id(park_id)
        data = load_or_reject(_broadcast, payload, "the broadcast")
        if not idempotency_key:
            raise BadInput("a broadcast needs an Idempotency-Key header", {"Idempotency-Key": ["required"]})
        doc, created = fanout.accept_broadcast(self._work(park_id), data, idempotency_key)
        return dict(fanout.broadcast_view(doc), created=created)

    @rpc
    def get_broadcast(self, park_id, broadcast_id):
        return fanout.broadcast_view(fanout.broadcast_of(self._work(park_id), broadcast_id))

    @subscribe("notify", "broadcast.requested", lane=BULK)
    def on_broadcast_requested(self, envelope):
        work = self._work(envelope["parkid"])
        doc = work.store.broadcast(envelope["subject"])
        if doc is None:
            raise NotFound("broadcast {} is not stored".format(envelope["subject"]))
        return fanout.fan_out(work, doc)

    @subscribe("volunteers", "emergency.declared", lane=BULK)
    def on_emergency(self, envelope):
        """A park that goes into emergency mode tells everyone in it at once."""
        return fanout.emergency(self._work(envelope["parkid"]), envelope)

    # the send loop ---------------------------------------------------------------------------
    @timer(interval=0.1, lane=BULK)
    def tick(self):
        # once a period of NOTIFY_TICK_S, at its start by the clock: a park's rate limit is per
        # second of the clock, and a pass that starts as a second starts has that second to send in
        period = int(time.time() / settings.get_float("NOTIFY_TICK_S"))
        if period == NotifyService._last_tick:
            return
        NotifyService._last_tick = period
        round_ = time.monotonic() - NotifyService._last_round >= settings.get_float("SWEEP_ROUND_S")
        now = utcnow()
        alarms = Alarms(self.db, SEND_LOOP)
        if round_:
            # a process's first pass, then every SWEEP_ROUND_S: every park's alarm rung now, for
            # what no alarm was rung for (queues from before alarms, a ring lost with its process),
            # and every park's housekeeping done
            NotifyService._last_round = time.monotonic()
            for park_id, _ in self.db.partitions("pending", "the send loop's round visits every park "
                                                            "with a send queue"):
                if park_id:
                    alarms.ring(park_id, now)
        # only the parks whose alarm rang: a park with nothing due costs no read (lamplight.alarms)
        rung = alarms.rung(now)
        # every park's pass in a thread of its own, not waited for: a park pacing its sends
        # through the second, or waiting on a slow provider, is late for its own next pass and
        # holds no other park's (lamplight.passes)
        for park_id in sorted(rung):
            self.passes.start_pass(park_id, self._tick_park, alarms, park_id, rung[park_id], round_)

    def _tick_park(self, alarms, park_id, version, round_):
        try:
            sending.visit(self._work(park_id), alarms, version, every_park=round_)
        except Exception as exc:  # one park's trouble must not stop the others' notices
            self.log.error("notify.send_loop_failed", park_id=park_id, error="{}: {}".format(
                type(exc).__name__, exc))

    @rpc
    def send_due(self, park_id):
        """Send what is due in one park now (the loop does it every NOTIFY_TICK_S)."""
        return sending.send_due(self._work(park_id))

    # reading -------------------------------------------------------------------------------
    @rpc
    def inbox(self, park_id, recipient_id, unread_only=False, limit=50):
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise BadInput("limit must be 1 to 200", {"limit": ["must be an integer from 1 to 200"]})
        notices = NotifyStore(self.db, park_id).inbox(recipient_id, bool(unread_only), limit)
        return [_notice_view.dump(n) for n in notices]

    @rpc
    def mark_read(self, park_id, recipient_id, notice_id):
        if not NotifyStore(self.db, park_id).mark_read(recipient_id, notice_id):
            raise NotFound("no notice {} for {}".format(notice_id, recipient_id))
        return {"id": notice_id, "read": True}

    @rpc
    def deliveries(self, park_id, recipient_id=None, source_id=None, notice_id=None, limit=200):
        """The delivery log of a recipient, of an event (or broadcast), or of one notice."""
        query = {k: v for k, v in (("recipient_id", recipient_id), ("source_id", source_id),
                                   ("notice_id", notice_id)) if v}
        if not query:
            raise BadInput("say whose log: recipient, event or notice",
                           {"recipient": ["one of recipient, event, notice is required"]})
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise BadInput("limit must be 1 to 1000", {"limit": ["must be an integer from 1 to 1000"]})
        lines = NotifyStore(self.db, park_id).log(query, limit)
        return {"park_id": park_id, "count": len(lines), "deliveries": [_delivery_view.dump(d) for d in lines]}

