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
"""
import time
from datetime import timedelta
from typing import NamedTuple

import eventlet
from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider
from nameko.timer import timer

from lamplight import settings
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, Conflict, NotFound, load_or_reject
from lamplight.ids import fingerprint
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id, utcnow
from services.notify import domain
from services.notify.channels import SendFailed, adapter_for, adapters
from services.notify.metrics import NOTICE_SEND_LAG, NOTICE_SEND_SECONDS, NOTICES, NOTICES_PENDING, NOTIFY_UNRESOLVED
from services.notify.schemas import (
    SECRET_KEYS,
    BroadcastEventSchema,
    BroadcastSchema,
    DeliveryViewSchema,
    NeedFollowedSchema,
    NoticeSentSchema,
    NoticeViewSchema,
    NotifyConfigSchema,
    PreviewSchema,
    RecipientBatchSchema,
    RecipientImportSchema,
    SourceEventSchema,
    TemplateSchema,
    VolunteerEventSchema,
)
from services.notify.store import INDEXES, PARTITIONED, PROFILE_FIELDS, NotifyStore, chunks

_config = NotifyConfigSchema()
# park -> when this process last counted its pending sends (NOTIFY_PENDING_GAUGE_S)
_PENDING_COUNTED = {}
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
_notice_event = NoticeSentSchema()
_broadcast_event = BroadcastEventSchema()


class Channels(DependencyProvider):
    """The channel adapters (their HTTP sessions), shared by the workers of one
    process."""

    def setup(self):
        self.registry = adapters(settings.get_int("NOTIFY_SEND_CONCURRENCY"))

    def get_dependency(self, worker_ctx):
        return self


class _Ready(NamedTuple):
    """A send claimed and checked, waiting for its request to the provider."""
    pending: dict
    notice: dict
    settings: dict
    address: str
    step: str


def _default_config(park_id):
    return dict(_config.load({"version": 1}), park_id=park_id, version=0)


def _mask(value):
    if not value:
        return value
    if "@" in value:
        name, _, host = value.partition("@")
        return name[:1] + "***@" + host
    return value[:3] + "****" + value[-2:] if len(value) > 6 else "****"


class NotifyService:
    name = "notify"
    _last_tick = 0  # the period of the last pass (see tick)
    _last_housekeeping = 0.0

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    # concurrent workers' inserts share one request
    db = Mongo(indexes=INDEXES, partitioned=PARTITIONED, group_commit=("notices", "deliveries", "pending"))
    events = EventOutbox(collections=("notices", "deliveries", "broadcasts"))
    channels = Channels()

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
        config = plain(NotifyStore(self.db, park_id).config.require())
        for settings_ in config.get("channels", {}).values():  # credentials are written, never read back
            for key in SECRET_KEYS:
                if settings_.get(key):
                    settings_[key] = "********"
        return config

    def _config(self, store):
        config = store.config.cached()
        return dict(config, park_id=store.park_id) if config else _default_config(store.park_id)

    # recipients --------------------------------------------------------------------------
    @rpc
    def put_recipient(self, park_id, recipient_id, payload):
        profile = load_or_reject(_import, dict(payload or {}, id=recipient_id), "the recipient")
        recipient_id = profile.pop("id")
        NotifyStore(self.db, park_id).put_recipient(recipient_id, profile, utcnow())
        return self._recipient_view(recipient_id, profile)

    @rpc
    def get_recipient(self, park_id, recipient_id):
        profile = NotifyStore(self.db, park_id).recipient(recipient_id)
        if profile is None:
            raise NotFound("no recipient {} in park {}".format(recipient_id, park_id))
        return self._recipient_view(recipient_id, profile)

    @staticmethod
    def _recipient_view(recipient_id, profile):
        view = {k: profile.get(k) for k in PROFILE_FIELDS}
        view["addresses"] = {k: _mask(v) for k, v in (profile.get("addresses") or {}).items() if v}
        view["id"] = recipient_id
        return view

    @rpc
    def import_recipients(self, park_id, payload):
        """Many profiles at once (an HR roster, a dormitory list): new ones are
        added, ones already there are left as they are and listed."""
        check_park_id(park_id)
        rows = load_or_reject(_batch, payload, "the recipients")["recipients"]
        docs, problems = [], {}
        at = utcnow()
        for i, row in enumerate(rows):
            try:
                data = _import.load(row)
            except Exception as exc:  # marshmallow ValidationError: collect every row's problems
                problems[str(i)] = getattr(exc, "messages", str(exc))
                continue
            docs.append(dict(data, _id=data.pop("id"), updated_at=at))
        if problems:
            raise BadInput("{} of {} recipients are not valid".format(len(problems), len(rows)),
                           {"recipients": problems})
        if len({d["_id"] for d in docs}) != len(docs):
            raise BadInput("a recipient id is listed twice", {"recipients": ["duplicate ids"]})
        existing = NotifyStore(self.db, park_id).import_recipients(docs)
        return {"park_id": park_id, "added": len(docs) - len(existing), "existing": existing[:100],
                "existing_count": len(existing)}

    # templates ---------------------------------------------------------------------------
    @rpc
    def put_template(self, park_id, key, locale, payload):
        """A park's own template for one kind of notice and locale, refused
        now if it would not render (an unknown variable, a syntax error, an
        attribute the sandbox forbids), rather than when a notice is sent."""
        check_park_id(park_id)
        data = load_or_reject(_template, payload, "the template")
        if locale not in domain.LOCALES:
            raise BadInput("no locale {}".format(locale), {"locale": ["one of " + ", ".join(domain.LOCALES)]})
        title, body = domain.check_template(key, data["title"], data["body"])
        NotifyStore(self.db, park_id).put_template(key, locale, data["title"], data["body"], utcnow())
        return {"key": key, "locale": locale, "preview": {"title": title, "body": body}}

    @rpc
    def delete_template(self, park_id, key, locale):
        if not NotifyStore(self.db, park_id).delete_template(key, locale):
            raise NotFound("park {} has no template of its own for {} ({})".format(park_id, key, locale))
        return {"key": key, "locale": locale, "deleted": True}

    @rpc
    def templates(self, park_id):
        overrides = NotifyStore(self.db, park_id).overrides()
        out = []
        for key in domain.TEMPLATE_KEYS:
            for locale in domain.LOCALES:
                title, body = domain.template_for(key, locale, overrides)
                out.append({"key": key, "locale": locale, "title": title, "body": body,
                            "own": (key, locale) in overrides})
        return {"park_id": park_id, "templates": out}

    @rpc
    def preview(self, park_id, payload):
        """Render a template (the park's, the default, or the one given) with
        the kind's example data or the data given."""
        store = NotifyStore(self.db, park_id)
        data = load_or_reject(_preview, payload, "the preview")
        title, body = domain.template_for(data["key"], data["locale"], store.overrides())
        tz = domain.zone(self._config(store)["timezone"])
        title, body = domain.render(data["title"] or title, data["body"] or body,
                                    data["data"] if data["data"] is not None else domain.EXAMPLES[data["key"]], tz)
        return {"title": title, "body": body}

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
        park_id, event_type = envelope["parkid"], envelope["type"]
        rule = domain.RULES[event_type]
        refs = load_or_reject(_source, envelope["data"], "{} data".format(event_type))
        store = NotifyStore(self.db, park_id)
        ids = self._resolve(store, rule, refs)
        profiles = store.profiles(ids)
        if not profiles:
            # nobody to tell is an answer, not a failure: retrying would not find anyone either
            NOTIFY_UNRESOLVED.labels(park_id, event_type).inc()
            self.log.warning("notify.no_recipient", park_id=park_id, event_type=event_type, event_id=envelope["id"])
            return {"recipients": 0}
        source = {"id": envelope["id"], "type": event_type, "topic": rule.topic, "priority": rule.priority,
                  "subject": envelope["subject"]}
        return self._deliver(store, source, envelope["data"], profiles, announce=True)

    def _resolve(self, store, rule, refs):
        if rule.audience == "responder":
            return [refs["responder_id"]] if refs["responder_id"] else []
        if rule.audience == "member":
            return store.members(refs["member_id"]) if refs["member_id"] else []
        if rule.audience == "requester_and_followers":
            ids = store.members(refs["requester_member_id"]) if refs["requester_member_id"] else []
            return sorted(set(ids) | set(store.followers_of(refs["need_id"]) if refs["need_id"] else ()))
        if rule.audience == "visit_escalation":
            # a missed visit: the party group's leads first, then the park's supervisors
            if refs["level"] == "lead":
                return list(refs["to"])
            return [p["_id"] for p in store.audience("role", "supervisor")]
        if rule.audience == "supervision":
            # the ladder's rung names the role it reaches; past the supervisors it is the park's admins
            role = "supervisor" if refs["level"] == "supervisor" else "park_admin"
            return [p["_id"] for p in store.audience("role", role)]
        raise ValueError(rule.audience)

    def _deliver(self, store, source, data, profiles, announce):
        """Plan and write the notices of ``source`` for ``profiles``; with
        ``announce`` each in-app notice carries its notice.sent event."""
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        overrides = store.overrides()
        template_key = source["type"] if source["type"] in domain.TEMPLATE_KEYS else domain.BROADCAST
        rendered = {}
        now = utcnow()
        written = 0
        for chunk in chunks(profiles):
            notices, records, pending, announced, events = [], [], [], [], []
            for profile in chunk:
                locale = profile.get("locale", "zh-CN")
                if locale not in rendered:
                    title, body = domain.template_for(template_key, locale, overrides)
                    rendered[locale] = self._render(title, body, data, tz, template_key, locale)
                n, r, p = domain.plan(source, profile, rendered[locale], config, now, tz)
                notices += n
                records += r
                pending += p
            if announce:
                for notice in notices:
                    if notice["shown"]:
                        announced.append(notice)
                        events.append(self._notice_event("notice.sent", store.park_id, notice))
            # the announced notices are some of those written; their events go with them
            fresh = self.events.insert_many(announced, events, lambda _: store.write_plan(notices, records, pending))
            written += len(fresh)
            _count(store.park_id, records)
        return {"recipients": len(profiles), "notices": written}

    def _render(self, title, body, data, tz, key, locale):
        try:
            return domain.render(title, body, data, tz)
        except domain.NotifyRuleError:
            # a saved template rendered its example; this event lacks something it
            # uses: the default still tells the person what happened
            self.log.error("notify.template_failed", key=key, locale=locale)
            title, body = domain.DEFAULT_TEMPLATES[(key, locale if (key, locale) in domain.DEFAULT_TEMPLATES
                                                    else "zh-CN")]
            return domain.render(title, body, data, tz)

    def _notice_event(self, event_type, park_id, notice, reason=None):
        return self.events.new(event_type, park_id=park_id, subject=notice["_id"], data=_notice_event.dump(dict(
            notice, notice_id=notice["_id"], source_event_id=notice["source_id"], reason=reason)))

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
        store = NotifyStore(self.db, park_id)
        broadcast_id = domain.broadcast_id(park_id, idempotency_key)
        doc = dict(data, _id=broadcast_id, broadcast_id=broadcast_id, fingerprint=fingerprint(data),
                   type=domain.BROADCAST, requested_at=utcnow(), status="fanning_out")
        event = self.events.new("broadcast.requested", park_id=park_id, subject=broadcast_id,
                                data=_broadcast_event.dump(dict(doc, at=doc["requested_at"])))
        with self.events.staging([event]) as staged:
            doc.update(staged.fields())
            saved, created = store.add_broadcast(doc)
            staged.written = created
        if not created:
            if saved["fingerprint"] != doc["fingerprint"]:
                raise Conflict("Idempotency-Key {} was used for another broadcast".format(idempotency_key),
                               {"Idempotency-Key": ["reused with a different body"]})
            return dict(self._broadcast_view(saved), created=False)
        return dict(self._broadcast_view(saved), created=True)

    @rpc
    def get_broadcast(self, park_id, broadcast_id):
        doc = NotifyStore(self.db, park_id).broadcast(broadcast_id)
        if doc is None:
            raise NotFound("no broadcast {} in park {}".format(broadcast_id, park_id))
        return self._broadcast_view(doc)

    @staticmethod
    def _broadcast_view(doc):
        keys = ("broadcast_id", "type", "title", "audience", "critical", "channels", "actor", "status",
                "recipients", "notices")
        view = {k: doc.get(k) for k in keys}
        for k in ("requested_at", "finished_at"):
            view[k] = doc[k].isoformat() if doc.get(k) else None
        return view

    @subscribe("notify", "broadcast.requested")
    def on_broadcast_requested(self, envelope):
        store = NotifyStore(self.db, envelope["parkid"])
        doc = store.broadcast(envelope["subject"])
        if doc is None:
            raise NotFound("broadcast {} is not stored".format(envelope["subject"]))
        return self._fan_out(store, doc)

    @subscribe("volunteers", "emergency.declared")
    def on_emergency(self, envelope):
        """A park that goes into emergency mode tells everyone in it at once."""
        store = NotifyStore(self.db, envelope["parkid"])
        broadcast_id = domain.broadcast_id(store.park_id, envelope["id"])
        doc, _ = store.add_broadcast({
            "_id": broadcast_id, "broadcast_id": broadcast_id, "type": envelope["type"], "data": envelope["data"],
            "title": "emergency", "body": envelope["data"].get("reason", ""),
            "audience": {"kind": "park", "value": None},
            "critical": True, "channels": None, "actor": envelope["data"].get("actor", "volunteers"),
            "requested_at": utcnow(), "status": "fanning_out"})
        return self._fan_out(store, doc)

    def _fan_out(self, store, doc):
        if doc["status"] == "done":
            return {"recipients": doc.get("recipients"), "notices": doc.get("notices")}
        profiles = store.audience(doc["audience"]["kind"], doc["audience"].get("value"))
        topic = "emergency" if doc["type"] == "emergency.declared" else "broadcast"
        source = {"id": doc["_id"], "type": doc["type"], "topic": topic,
                  "priority": "critical" if doc["critical"] else "normal", "subject": doc["_id"],
                  "channels": doc.get("channels")}
        data = doc.get("data") or {"title": doc["title"], "body": doc["body"]}
        result = self._deliver(store, source, data, profiles, announce=False)
        finished = utcnow()
        event = self.events.new("broadcast.completed", park_id=store.park_id, subject=doc["_id"],
                                data=_broadcast_event.dump(dict(doc, recipients=len(profiles), at=finished)))
        with self.events.staging([event]) as staged:
            update = staged.update()
            update["$set"].update(status="done", recipients=len(profiles), notices=result["notices"],
                                  finished_at=finished)
            staged.written = store.finish_broadcast(doc["_id"], update)
        self.log.info("notify.broadcast_done", park_id=store.park_id, broadcast_id=doc["_id"], recipients=len(profiles),
                      seconds=round((finished - doc["requested_at"]).total_seconds(), 3))
        return result

    # the send loop ---------------------------------------------------------------------------
    @timer(interval=0.1)
    def tick(self):
        # once a period of NOTIFY_TICK_S, at its start by the clock: a park's rate limit is per
        # second of the clock, and a pass that starts as a second starts has that second to send in
        period = int(time.time() / settings.get_float("NOTIFY_TICK_S"))
        if period == NotifyService._last_tick:
            return
        NotifyService._last_tick = period
        housekeeping = time.monotonic() - NotifyService._last_housekeeping > 60
        if housekeeping:
            NotifyService._last_housekeeping = time.monotonic()
        parks = [park_id for park_id, _ in self.db.partitions(
            "pending", "the send loop visits every park with notices to send") if park_id]
        # every park in a green thread of its own: a park pacing its sends through the second, or
        # waiting on a slow provider, holds its own thread, not the other parks' turn
        for _ in GreenPool(settings.get_int("NOTIFY_PARKS_AT_ONCE")).imap(
                lambda park_id: self._tick_park(park_id, housekeeping), parks):
            pass

    def _tick_park(self, park_id, housekeeping):
        try:
            store = NotifyStore(self.db, park_id)
            self._send_due(store)
            if housekeeping:
                self._housekeeping(store)
        except Exception as exc:  # one park's trouble must not stop the others' notices
            self.log.error("notify.send_loop_failed", park_id=park_id, error="{}: {}".format(
                type(exc).__name__, exc))

    @rpc
    def send_due(self, park_id):
        """Send what is due in one park now (the loop does it every NOTIFY_TICK_S)."""
        return self._send_due(NotifyStore(self.db, park_id))

    def _housekeeping(self, store):
        store.drop_leases(utcnow() - timedelta(minutes=10))
        # a broadcast whose fan-out died with its process, and whose event is settled: finish it
        for doc in store.unfinished_broadcasts(utcnow() - timedelta(minutes=5)):
            self._fan_out(store, doc)

    def _send_due(self, store):
        now = utcnow()
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        due = store.due(now, settings.get_int("NOTIFY_SEND_BATCH"))
        if time.monotonic() - _PENDING_COUNTED.get(store.park_id, -1e9) >= settings.get_float(
                "NOTIFY_PENDING_GAUGE_S"):
            # a count reads the park's whole queue (20,000 after a broadcast): not every tick
            _PENDING_COUNTED[store.park_id] = time.monotonic()
            NOTICES_PENDING.labels(store.park_id).set(store.pending_count())
        if not due:
            return {"due": 0, "finished": 0}
        digest = [p for p in due if p["kind"] == "digest"]
        by_channel = {}
        for p in due:
            if p["kind"] == "send":
                by_channel.setdefault(p["channel"], []).append(p)
        for channel, items in by_channel.items():
            by_channel[channel] = items[:config["rate_limits"].get(channel) or len(items)]
        finished = []
        if digest and store.take_lease("digest", int(now.timestamp()), now):
            finished += self._digest(store, config, tz, digest, now)
        # the sends' notices in one read, their recipients through the cache of profiles, before
        # a rate-limited channel's second starts: that second is for sending
        ids = [p["_id"] for items in by_channel.values() for p in items]
        notices = {n["_id"]: n for chunk in chunks(ids) for n in store.notices_of(chunk)}
        profiles = {p["_id"]: p for p in store.profiles([n["recipient_id"] for n in notices.values()])}
        start = time.time()
        window = int(start)
        jobs = []  # (pending sends, the time before which they are not sent, the time from which they are not)
        for channel, items in sorted(by_channel.items()):
            limit = config["rate_limits"].get(channel)
            batches = self._batches(config, channel, items, notices)
            if limit:
                # one process a second sends for this park and channel, at most `limit`, one every
                # 1/limit s from now to the second's end (a batch of n counts n): a provider counting
                # any second of its own sees at most `limit` (+ a batch); what the second does not
                # reach is left for the next
                if not store.take_lease("rate:" + channel, window, utcnow()):
                    continue
                offset = 0
                for batch in batches:
                    jobs.append((batch, start + offset / limit, window + 1))
                    offset += len(batch)
            else:
                jobs += [(batch, None, None) for batch in batches]
        # the park's own pool of threads: its sends waiting for their time in the second hold
        # none of another park's
        pool = GreenPool(settings.get_int("NOTIFY_SEND_CONCURRENCY"))
        finished += [nid for ids in pool.imap(
            lambda job: self._attempt(store, config, tz, *job, notices, profiles), jobs) for nid in ids]
        store.done(finished)
        return {"due": len(due), "finished": len(finished)}

    def _batches(self, config, channel, items, notices):
        """The pending sends of a channel in the requests they go in: one each, or, where the
        park's provider takes many numbers with the same text in one request (SMS), up to its
        limit of those that share their text (a broadcast's, by locale)."""
        channel_settings = config["channels"].get(channel)
        adapter = adapter_for(self.channels.registry, channel, channel_settings) if channel_settings else None
        size = getattr(adapter, "batch_limit", 1)
        if size <= 1:
            return [[p] for p in items]
        groups = {}
        for p in items:
            notice = notices.get(p["_id"])
            groups.setdefault(adapter.batch_key(notice) if notice else p["_id"], []).append(p)
        return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]

    def _attempt(self, store, config, tz, pendings, not_before, not_after, notices, profiles):
        """One attempt at each of ``pendings`` (one request to the provider), in its time
        (epoch seconds, None: now); returns the ids of the notices that need no more sending."""
        if not_before is not None:
            if not_before >= not_after:
                return []  # past its second: the next one sends it
            eventlet.sleep(max(0.0, not_before - time.time()))
            if time.time() >= not_after:
                return []
        # each notice's claim and checks, at once (their log lines share a write)
        ready, finished = [], []
        for outcome in GreenPool(len(pendings)).imap(
                lambda pending: self._guarded(store, pending, self._prepare, store, config, tz, pending,
                                              notices.get(pending["_id"]), profiles), pendings):
            if isinstance(outcome, _Ready):
                ready.append(outcome)
            elif outcome:
                finished.append(outcome)
        if not ready:
            return finished
        channel, channel_settings = ready[0].notice["channel"], ready[0].settings
        adapter = adapter_for(self.channels.registry, channel, channel_settings)
        try:
            with NOTICE_SEND_SECONDS.labels(channel).time():
                if len(ready) == 1:
                    results = [adapter.send(dict(ready[0].notice, park_id=store.park_id), ready[0].address,
                                            channel_settings)]
                else:
                    results = adapter.send_many([(dict(r.notice, park_id=store.park_id), r.address) for r in ready],
                                                channel_settings)
        except SendFailed as exc:
            results = [exc] * len(ready)
        except Exception as exc:  # an answer the adapter trips over: this attempt failed, retried like any other
            self.log.error("notify.adapter_failed", park_id=store.park_id, channel=channel,
                           notices=[r.notice["_id"] for r in ready], error="{}: {}".format(type(exc).__name__, exc))
            results = [SendFailed("{} failed: {}: {}".format(channel, type(exc).__name__, str(exc)[:200]))] * len(ready)
        for nid in GreenPool(len(ready)).imap(
                lambda pair: self._guarded(store, pair[0].pending, self._finish, store, config, *pair),
                zip(ready, results)):
            if nid:
                finished.append(nid)
        return finished

    def _guarded(self, store, pending, step, *args):
        try:
            return step(*args)
        except Exception as exc:  # a bug or the database: the notice stays queued for the next pass
            self.log.error("notify.attempt_failed", park_id=store.park_id, notice_id=pending["_id"],
                           error="{}: {}".format(type(exc).__name__, exc))
            return None

    def _prepare(self, store, config, tz, pending, notice, profiles):
        """Claim an attempt at ``pending`` (its notice as read for the pass, None: gone) and check
        that it is to be sent now: a _Ready to send, else the notice's id when it needs no more
        sending (or None)."""
        nid, attempt = pending["_id"], pending["attempt"]
        if notice is None:
            return nid
        now = utcnow()
        step = "try{}".format(attempt)
        if not store.add_record(domain.record(nid, step, "sending", now, notice, attempt=attempt)):
            return self._claimed_elsewhere(store, notice, pending, step, now)
        channel = notice["channel"]
        settings_ = config["channels"].get(channel)
        profile = profiles.get(notice["recipient_id"]) or domain.default_profile(notice["recipient_id"])
        address = (profile.get("addresses") or {}).get(channel)
        if not settings_ or not address:
            reason = ("channel {} is not configured for park {}".format(channel, store.park_id) if not settings_
                      else "recipient has no {} address".format(channel))
            store.add_record(domain.record(nid, step + ".skipped", "skipped", utcnow(), notice, reason=reason))
            NOTICES.labels(store.park_id, channel, "skipped").inc()
            return self._fall_back(store, notice, pending, reason)
        if channel in domain.WAKES and notice["priority"] != "critical":
            until = domain.quiet_until(now, profile.get("shifts", []), config["quiet"], tz)
            if until is not None:  # the roster changed since the notice was queued
                store.add_record(domain.record(nid, step + ".deferred", "deferred", now, notice, until=until,
                                               reason="quiet hours"))
                store.reschedule(nid, until, attempt + 1)
                NOTICES.labels(store.park_id, channel, "deferred").inc()
                return None
        # how late the provider is asked: per park and priority, so that a park whose sends starve is seen
        NOTICE_SEND_LAG.labels(store.park_id, channel, notice["priority"]).observe(
            max(0.0, (now - pending["due_at"]).total_seconds()))
        return _Ready(pending, notice, settings_, address, step)

    def _finish(self, store, config, ready, result):
        """The provider's answer for one prepared send: its id, or the SendFailed for it."""
        if isinstance(result, SendFailed):
            return self._failed(store, config, ready.notice, ready.pending, ready.step, result)
        notice = ready.notice
        if self._log_with_event(store, domain.record(
                notice["_id"], ready.step + ".sent", "sent", utcnow(), notice, attempt=ready.pending["attempt"],
                provider_id=str(result) if result else None),
                self._notice_event("notice.sent", store.park_id, notice)):
            NOTICES.labels(store.park_id, notice["channel"], "sent").inc()
        return notice["_id"]

    def _log_with_event(self, store, line, event):
        """Write a line of the delivery log carrying its event, and publish the
        event; False (and nothing published) when the line was there already."""
        with self.events.staging([event]) as staged:
            line.update(staged.fields())
            staged.written = store.add_record(line)
        return staged.written

    def _claimed_elsewhere(self, store, notice, pending, step, now):
        """Another process holds this attempt. Done if it finished; if it
        vanished mid-send (no outcome long after), count the attempt as failed
        with its outcome unknown and go on (the receiver can drop a repeat by
        the notice id it is sent with)."""
        nid = notice["_id"]
        if store.has_record(domain.delivery_id(nid, step + ".sent")):
            return nid
        claim = store.record(domain.delivery_id(nid, step))
        stale = claim and (now - claim["at"]).total_seconds() > settings.get_float("NOTIFY_SEND_TIMEOUT_S")
        if stale and not store.has_record(domain.delivery_id(nid, step + ".failed")):
            store.add_record(domain.record(nid, step + ".lost", "failed", now, notice, attempt=pending["attempt"],
                                           reason="the sending process vanished; outcome unknown"))
            store.reschedule(nid, now, pending["attempt"] + 1)
        return None

    def _failed(self, store, config, notice, pending, step, exc):
        nid, attempt = notice["_id"], pending["attempt"]
        failures = pending.get("failures", 0) + 1
        now = utcnow()
        retry = config["channels"][notice["channel"]].get("retry") or config["retry"]
        if exc.retryable and failures < retry["attempts"]:
            retry_at = now + timedelta(seconds=domain.backoff_seconds(failures, retry["backoff_s"]))
            store.add_record(domain.record(nid, step + ".failed", "failed", now, notice, attempt=attempt,
                                           reason=exc.reason, until=retry_at))
            store.reschedule(nid, retry_at, attempt + 1, failures)
            NOTICES.labels(store.park_id, notice["channel"], "retried").inc()
            return None
        reason = "{} (gave up after {} attempt{})".format(exc.reason, failures, "" if failures == 1 else "s")
        store.add_record(domain.record(nid, step + ".failed", "failed", now, notice, attempt=attempt, reason=reason,
                                       final=True))
        NOTICES.labels(store.park_id, notice["channel"], "failed").inc()
        return self._fall_back(store, notice, pending, reason)

    def _fall_back(self, store, notice, pending, reason):
        """The next of the recipient's channels takes the notice; with none
        left the notice has failed for good (notice.failed)."""
        if pending.get("remaining"):
            nxt, nxt_pending, line = domain.fallback(notice, pending["remaining"], utcnow())
            store.write_plan([nxt], [line], [nxt_pending])
            NOTICES.labels(store.park_id, nxt["channel"], "fallback").inc()
            return notice["_id"]
        self._log_with_event(store, domain.record(notice["_id"], "gave_up", "gave_up", utcnow(), notice, reason=reason),
                             self._notice_event("notice.failed", store.park_id, notice, reason=reason))
        return notice["_id"]

    def _digest(self, store, config, tz, items, now):
        """Each recipient's due low-priority notices become one digest notice
        per channel, queued to send now."""
        groups = {}
        for p in items:
            groups.setdefault((p["recipient_id"], p["channel"]), []).append(p)
        overrides = store.overrides()
        finished = []
        for (recipient_id, channel), group in sorted(groups.items()):
            notices = store.notices_of([p["_id"] for p in group])
            profile = store.recipient(recipient_id) or domain.default_profile(recipient_id)
            locale = profile.get("locale", "zh-CN")
            title, body = domain.template_for(domain.DIGEST, locale, overrides)
            rendered = self._render(title, body, {"items": [{"title": n["title"], "body": n["body"]}
                                                            for n in notices]}, tz, domain.DIGEST, locale)
            source = domain.digest_source(recipient_id, channel, max(p["due_at"] for p in group))
            digest = domain.new_notice(source, recipient_id, channel, rendered[0], rendered[1], locale, now)
            digest["shown"] = False
            records = [domain.record(digest["_id"], "queued", "queued", now, digest,
                                     reason="digest of {} notices".format(len(notices)))]
            records += [domain.record(n["_id"], "digested", "digested", now, n, reason="in digest " + digest["_id"])
                        for n in notices]
            store.write_plan([digest], records, [domain.pending_for(digest, now, 1, [])])
            NOTICES.labels(store.park_id, channel, "digested").inc(len(notices))
            finished += [p["_id"] for p in group]
        return finished

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


def _count(park_id, records):
    counts = {}
    for line in records:
        counts[(line["channel"], line["status"])] = counts.get((line["channel"], line["status"]), 0) + 1
    for (channel, status), n in counts.items():
        NOTICES.labels(park_id, channel, status).inc(n)
