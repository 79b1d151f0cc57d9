"""Event publication: the outbox, pipelined publisher confirms, the relay.

A state change and the events it causes are written in one single-document
update (``_outbox`` inside the document). After the write, the events are
published mandatory with publisher confirms; a confirmed event id is recorded
in ``_published``. The relay looks at documents whose outbox is older than a
grace period and republishes any event without a ``_published`` record — what
a crash between the write and the confirm left behind. Consumers are
idempotent, so a republished duplicate has no second effect.

Publishing is pipelined: one confirm-mode channel per process, all messages
of a batch published back to back, one wait for their confirms. Under load,
concurrent workers share batches (nameko's own publisher waits for each
message's confirm in turn).
"""
import json
import time
from datetime import datetime, timedelta, timezone

import eventlet
from amqp import Message
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from kombu import Connection
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, IndexModel

from lamplight import failpoints, logs, settings, topology
from lamplight.envelope import new_event
from lamplight.metrics import (
    EVENTS_PUBLISH_FAILED, EVENTS_PUBLISHED, EVENTS_RELAYED, EVENTS_UNROUTED,
    OUTBOX_BACKLOG, OUTBOX_RELAY_FOUND,
)
from lamplight.storage import Mongo

CONFIRM_TIMEOUT_S = 10.0
OUTBOX_KEEP = 20  # events kept in a document's outbox; older ones were confirmed long ago


class PublishFailed(Exception):
    pass


class ConfirmPipeline:
    """Publishes batches of messages on one confirm-mode channel."""

    def __init__(self, amqp_uri, service, max_batch=256):
        self.amqp_uri = amqp_uri
        self.service = service
        self.max_batch = max_batch
        self.requests = LightQueue()
        self.log = logs.get_logger(component="publisher")
        self.conn = None
        self.channel = None
        self.next_tag = 1

    # public ------------------------------------------------------------------
    def publish(self, messages):
        """Publish ``[(exchange, routing_key, envelope)]``; block until every
        one is confirmed (or parked as unrouted). Raises PublishFailed."""
        if not messages:
            return
        done = Event()
        self.requests.put((messages, done))
        done.wait()

    def close(self):
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:
                pass
        self.conn = self.channel = None

    # the publishing greenthread ---------------------------------------------
    def run(self):
        while True:
            batch = [self.requests.get()]
            size = len(batch[0][0])
            while size < self.max_batch:
                try:
                    request = self.requests.get_nowait()
                except Empty:
                    break
                batch.append(request)
                size += len(request[0])
            try:
                self._publish_batch([m for messages, _ in batch for m in messages])
            except Exception as exc:
                self.log.warning("publish.failed", error=str(exc), messages=size)
                self.close()
                for _, done in batch:
                    done.send_exception(PublishFailed(str(exc)))
                eventlet.sleep(0.2)  # let the broker come back before the next try
            else:
                for _, done in batch:
                    done.send(None)

    def _connect(self):
        if self.channel is not None:
            return
        conn = Connection(self.amqp_uri, heartbeat=0, connect_timeout=5)
        conn.connect()
        channel = conn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self.conn, self.channel, self.next_tag = conn, channel, 1
        self._pending = {}
        self._returned = set()

    def _on_ack(self, tag, multiple):
        for t in ([t for t in self._pending if t <= tag] if multiple else [tag]):
            self._pending.pop(t, None)

    def _on_nack(self, tag, multiple):
        raise PublishFailed("broker nacked delivery tag {}".format(tag))

    def _on_return(self, exc, exchange, routing_key, message):
        self._returned.add(message.properties.get("message_id"))

    def _send(self, exchange, routing_key, body, message_id, headers=None):
        msg = Message(body, content_type="application/json", content_encoding="utf-8",
                      delivery_mode=2, message_id=message_id, application_headers=headers or {})
        self.channel.basic_publish(msg, exchange=exchange, routing_key=routing_key, mandatory=True)
        self._pending[self.next_tag] = message_id
        self.next_tag += 1

    def _wait_confirms(self):
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed("no confirm within {}s".format(CONFIRM_TIMEOUT_S))
            self.conn.drain_events(timeout=remaining)

    def _publish_batch(self, messages):
        self._connect()
        self._returned = set()
        bodies = {}
        for exchange, routing_key, envelope in messages:
            body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
            bodies[envelope["id"]] = (exchange, routing_key, body, envelope)
            self._send(exchange, routing_key, body, envelope["id"])
        self._wait_confirms()
        if self._returned:
            # RabbitMQ returns an unroutable mandatory message before it acks it.
            for message_id in list(self._returned):
                exchange, routing_key, body, envelope = bodies[message_id]
                self._send("", topology.UNROUTED_QUEUE_NAME, body, message_id, {
                    "x-original-exchange": exchange, "x-original-routing-key": routing_key})
                EVENTS_UNROUTED.labels(self.service, envelope["type"]).inc()
                self.log.warning("event.unrouted", event_id=message_id, event_type=envelope["type"],
                                 exchange=exchange)
            self._returned = set()
            self._wait_confirms()
            if self._returned:
                raise PublishFailed("the unrouted parking queue is missing")
        for exchange, routing_key, body, envelope in bodies.values():
            EVENTS_PUBLISHED.labels(self.service, envelope["type"], envelope["parkid"]).inc()


def _utcnow():
    return datetime.now(timezone.utc)


class Events:
    """What a worker gets: build envelopes, write them with the state change,
    publish after the write."""

    def __init__(self, provider, worker_ctx):
        self._provider = provider
        self._ctx = worker_ctx

    def new(self, event_type, *, park_id, subject, data, version=1):
        return new_event(event_type, source=self._provider.service, park_id=park_id,
                         subject=subject, data=data, version=version,
                         traceparent=self._ctx.context_data.get("traceparent"))

    @staticmethod
    def outbox_fields(envelopes):
        """Fields for a document being inserted together with its events."""
        return {"_outbox": list(envelopes), "_outbox_at": _utcnow()}

    @staticmethod
    def outbox_update(envelopes):
        """Update operators that append events to a document's outbox in the
        same single-document update as the state change."""
        return {
            "$push": {"_outbox": {"$each": list(envelopes), "$slice": -OUTBOX_KEEP}},
            "$set": {"_outbox_at": _utcnow()},
        }

    def publish(self, envelopes):
        """Publish events already committed in an outbox. Never raises: an
        event that cannot be published now stays in the outbox for the relay."""
        failpoints.hit("outbox.after_write")
        return self._provider.publish(envelopes)


class EventOutbox(DependencyProvider):
    """Outbox, publisher and relay of one service.

    ``collections`` are the collections whose documents carry an outbox.
    """

    def __init__(self, collections=()):
        self.collections = tuple(collections)

    def setup(self):
        self.service = self.container.service_name
        self.log = logs.get_logger(component="outbox")
        self.exchange = topology.events_exchange(self.service).name
        self.mongo = next(d for d in self.container.dependencies if isinstance(d, Mongo))
        for name in self.collections:
            self.mongo.add_kernel_indexes(name, [IndexModel([("_outbox_at", ASCENDING)], name="outbox_relay")])
        self.pipeline = ConfirmPipeline(settings.get("AMQP_URI"), self.service,
                                        settings.get_int("PUBLISH_BATCH_MAX"))
        self.relay_interval = settings.get_float("OUTBOX_RELAY_INTERVAL_S")
        self.relay_grace = settings.get_float("OUTBOX_RELAY_GRACE_S")
        self._threads = []
        self._in_flight = 0
        self._marks = LightQueue()
        self.relay_passes = 0

    def start(self):
        with Connection(settings.get("AMQP_URI"), connect_timeout=5) as conn:
            topology.declare(conn, settings.get_list_of_int("EVENT_RETRY_DELAYS_MS"),
                             settings.get("QUEUE_TYPE"))
        spawn = self.container.spawn_managed_thread
        self._threads = [
            spawn(self.pipeline.run, identifier="event-publisher"),
            spawn(self._published_writer, identifier="published-marks"),
            spawn(self._relay_loop, identifier="outbox-relay"),
        ]

    def stop(self):
        for thread in self._threads:
            thread.kill()
        self.pipeline.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return Events(self, worker_ctx)

    def readiness(self):
        try:
            with eventlet.Timeout(2):
                with Connection(settings.get("AMQP_URI"), connect_timeout=2) as conn:
                    conn.connect()
            return [("rabbitmq", True, "ok")]
        except (Exception, eventlet.Timeout) as exc:
            return [("rabbitmq", False, "{}: {}".format(type(exc).__name__, exc))]

    # publishing ---------------------------------------------------------------
    def publish(self, envelopes):
        envelopes = list(envelopes)
        self._in_flight += len(envelopes)
        OUTBOX_BACKLOG.labels(self.service).set(self._in_flight)
        try:
            self.pipeline.publish([(self.exchange, e["type"], e) for e in envelopes])
        except PublishFailed as exc:
            for e in envelopes:
                EVENTS_PUBLISH_FAILED.labels(self.service, e["type"]).inc()
            self.log.warning("outbox.left_for_relay", events=[e["id"] for e in envelopes],
                             error=str(exc))
            return False
        finally:
            self._in_flight -= len(envelopes)
            OUTBOX_BACKLOG.labels(self.service).set(self._in_flight)
        now = _utcnow()
        for e in envelopes:
            self._marks.put({"_id": e["id"], "at": now})
        return True

    def _published_writer(self):
        """Record confirmed ids in batches, off the request path. Losing a
        mark (a crash) only makes the relay publish a duplicate."""
        marks = self.mongo.db["_published"]
        while True:
            batch = [self._marks.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._marks.get_nowait())
                except Empty:
                    break
            try:
                marks.insert_many(batch, ordered=False)
            except Exception as exc:  # duplicates from relayed events are expected
                if "E11000" not in str(exc) and "duplicate" not in str(exc).lower():
                    self.log.warning("outbox.mark_failed", error=str(exc))

    # the relay ----------------------------------------------------------------
    def _relay_loop(self):
        while True:
            try:
                self.relay_once()
            except Exception as exc:
                self.log.warning("outbox.relay_failed", error=str(exc))
            self.relay_passes += 1
            eventlet.sleep(self.relay_interval)

    def relay_once(self, grace_s=None):
        """One pass over every outbox collection; returns how many events it
        published."""
        store = self.mongo.store()
        relay_state = store.unscoped("_relay", reason="outbox relay watermark")
        marks = store.unscoped("_published", reason="outbox relay")
        cutoff = _utcnow() - timedelta(seconds=self.relay_grace if grace_s is None else grace_s)
        relayed = found = 0
        for name in self.collections:
            state = relay_state.find_one({"_id": name}) or {}
            watermark = state.get("watermark", datetime(1970, 1, 1, tzinfo=timezone.utc))
            docs = store.unscoped(name, reason="outbox relay").find(
                {"_outbox_at": {"$gte": watermark, "$lt": cutoff}}, {"_outbox": 1})
            envelopes = [e for d in docs for e in d.get("_outbox", [])]
            missing = []
            for i in range(0, len(envelopes), 500):
                chunk = envelopes[i:i + 500]
                seen = {m["_id"] for m in marks.find({"_id": {"$in": [e["id"] for e in chunk]}}, {"_id": 1})}
                missing += [e for e in chunk if e["id"] not in seen]
            found += len(missing)
            if missing:
                self.log.info("outbox.relaying", collection=name, events=len(missing))
                if not self.publish(missing):
                    continue  # keep the watermark: the next pass tries again
                for e in missing:
                    EVENTS_RELAYED.labels(self.service, e["type"]).inc()
                relayed += len(missing)
            relay_state.update_one({"_id": name}, {"$set": {"watermark": cutoff}}, upsert=True)
        OUTBOX_RELAY_FOUND.labels(self.service).set(found)
        return relayed
