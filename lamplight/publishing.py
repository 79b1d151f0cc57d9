"""Event publication: the outbox, pipelined publisher confirms, the relay.

A state change and the events it causes are written in one single-document
update: ``_outbox`` inside the document, stamped with ``_outbox_at`` and the
id of the process that wrote it (``_outbox_by``, its *writer* id). After the
write the events are published mandatory with publisher confirms.

Each writer knows which of its events are not confirmed yet: it retries them
itself while it lives, and once a second records in ``_writers`` a
checkpoint (every event it wrote before that time is confirmed) and a
heartbeat. When a writer's heartbeat stops — a crash, SIGKILL, a lost pod —
the relay of any live process of the service claims it and republishes the
outboxes that writer wrote since its checkpoint. Normal operation thus writes
nothing per event beyond the state change itself, and the relay reads
documents only after a crash. Consumers are idempotent, so a republished
duplicate has no second effect.

Publishing is pipelined: one confirm-mode channel per process, all messages
of a batch published back to back, one wait for their confirms. Under load,
concurrent workers share batches (nameko's own publisher waits for each
message's confirm in turn).
"""
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import eventlet
from amqp import Message
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from kombu import Connection
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, IndexModel
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError, WTimeoutError

from lamplight import failpoints, installed, logs, registry, settings, topology
from lamplight.clock import utcnow
from lamplight.envelope import new_event
from lamplight.metrics import (
    EVENTS_PUBLISH_FAILED,
    EVENTS_PUBLISHED,
    EVENTS_RELAYED,
    EVENTS_UNROUTED,
    OUTBOX_BACKLOG,
    OUTBOX_DOUBTS_SETTLED,
    OUTBOX_IN_DOUBT,
    OUTBOX_OLDEST_UNCONFIRMED,
    OUTBOX_RELAY_FOUND,
)
from lamplight.registry import UnregisteredEvent
from lamplight.shapes import Doc, Envelope
from lamplight.storage import Mongo

Outgoing = tuple[str, str, Envelope]  # (exchange, routing key, envelope)

CONFIRM_TIMEOUT_S = 10.0
OUTBOX_KEEP = 20  # events kept in a document's outbox; older ones were confirmed long ago


class PublishFailed(Exception):
    pass


class ConfirmPipeline:
    """Publishes batches of messages on one confirm-mode channel."""

    def __init__(self, amqp_uri: str, service: str, max_batch: int = 256) -> None:
        self.amqp_uri = amqp_uri
        self.service = service
        self.max_batch = max_batch
        self.requests = LightQueue()
        self.log = logs.get_logger(component="publisher")
        self.conn: Any = None
        self.channel: Any = None
        self.next_tag = 1

    # public ------------------------------------------------------------------
    def publish(self, messages: list[Outgoing]) -> None:
        """Publish ``[(exchange, routing_key, envelope)]``; block until every
        one is confirmed (or parked as unrouted). Raises PublishFailed."""
        if not messages:
            return
        done = Event()
        self.requests.put((messages, done))
        done.wait()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:
                pass
        self.conn = self.channel = None

    # the publishing greenthread ---------------------------------------------
    def run(self) -> None:
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

    def _connect(self) -> None:
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
        self._pending: dict[int, str] = {}
        self._returned: set[str] = set()

    def _on_ack(self, tag: int, multiple: bool) -> None:
        for t in ([t for t in self._pending if t <= tag] if multiple else [tag]):
            self._pending.pop(t, None)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        raise PublishFailed("broker nacked delivery tag {}".format(tag))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.add(message.properties.get("message_id"))

    def _send(self, exchange: str, routing_key: str, body: bytes, message_id: str,
              headers: dict[str, Any] | None = None) -> None:
        msg = Message(body, content_type="application/json", content_encoding="utf-8",
                      delivery_mode=2, message_id=message_id, application_headers=headers or {})
        self.channel.basic_publish(msg, exchange=exchange, routing_key=routing_key, mandatory=True)
        self._pending[self.next_tag] = message_id
        self.next_tag += 1

    def _wait_confirms(self) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed("no confirm within {}s".format(CONFIRM_TIMEOUT_S))
            self.conn.drain_events(timeout=remaining)

    def _publish_batch(self, messages: list[Outgoing]) -> None:
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
                self.log.info("event.unrouted", event_id=message_id, event_type=envelope["type"],
                                 exchange=exchange)
            self._returned = set()
            self._wait_confirms()
            if self._returned:
                raise PublishFailed("the unrouted parking queue is missing")
        for exchange, routing_key, body, envelope in bodies.values():
            EVENTS_PUBLISHED.labels(self.service, envelope["type"], envelope["parkid"]).inc()


# An event staged this long ago and still neither confirmed nor failed was
# never written (its write raised): it no longer holds the checkpoint back.
# pymongo's socket timeout (Mongo provider) bounds a real write well below it.
STAGED_MAX_AGE = timedelta(minutes=5)
# A write whose outcome is unknown may still be applied by a server that had
# it when the connection went: twice pymongo's socket timeout, which bounds
# how long a server can hold one, is how long the writer keeps looking for it.
IN_DOUBT_FOR = timedelta(minutes=2)


def outcome_unknown(exc: BaseException | None) -> bool:
    """Whether a write that raised ``exc`` may have taken effect: the
    connection was lost, or timed out, after the write was sent. A server
    that was never selected never received it."""
    if isinstance(exc, ServerSelectionTimeoutError):
        return False
    return isinstance(exc, (ConnectionFailure, WTimeoutError))


class Events:
    """What a worker gets: build envelopes (``new``), and write a document
    with them — ``staging`` for one write, ``change`` for a read–decide–write
    with retries, ``insert_many`` for documents each with its event. These
    hold the outbox's bookkeeping: the events are staged before the write,
    published after it, and discarded when it did not happen."""

    def __init__(self, provider: "EventOutbox", worker_ctx: WorkerContext) -> None:
        self._provider = provider
        self._ctx = worker_ctx

    def new(self, event_type: str, *, park_id: str, subject: str | None, data: dict[str, Any],
            version: int | None = None) -> Envelope:
        """An envelope of a type this service declares (lamplight.registry), in
        its current version unless ``version`` says otherwise."""
        registered = self._provider.registered
        if registered is not None:
            if event_type not in registered:
                raise UnregisteredEvent("{} publishes {} but does not declare it in its PUBLISHED (lamplight.registry)"
                                        .format(self._provider.service, event_type))
            version = version or registered[event_type].version
        return new_event(event_type, source=self._provider.service, park_id=park_id,
                         subject=subject, data=data, version=version or 1,
                         traceparent=self._ctx.context_data.get("traceparent"),
                         request_id=self._ctx.context_data.get("request_id"))

    # the one way to write a document with its events -----------------------------------------
    def staging(self, envelopes: Iterable[Envelope]) -> "Staged":
        """``with events.staging([e]) as staged:`` — the events go into the
        write made inside the block (``staged.fields()`` for an insert,
        ``staged.appended(outbox)`` for a versioned write, ``staged.update()``
        for update operators); the block sets ``staged.written`` to whether
        the write took effect. On leaving, they are published if it did and
        discarded if it did not or the block raised — unless what it raised
        leaves the write's outcome unknown (``outcome_unknown``): then the
        writer finds out from its documents, and publishes them if the write
        is there."""
        return Staged(self, envelopes)

    def change(self, read: Callable[[], Doc], decide: Callable[[Doc], Any], write: Callable[[Doc, Doc], Any], *,
               conflict: Exception, attempts: int = 8) -> Any:
        """Optimistic concurrency: ``read()`` the document, ``decide(doc)``,
        write conditionally on what was read; on a lost race read again and
        decide on what the winner left.

        ``decide`` returns a :class:`Change` to write — ``fields`` with the
        document's outbox appended to them, then ``write(doc, fields)`` says
        whether the write won — or anything else, returned as it is with
        nothing written. Returns the winning change's ``result``; after
        ``attempts`` lost races raises ``conflict``."""
        for _ in range(attempts):
            doc = read()
            decision = decide(doc)
            if not isinstance(decision, Change):
                return decision
            with self.staging(decision.envelopes) as staged:
                fields = dict(decision.fields, **staged.appended(doc.get("_outbox")))
                staged.written = bool(write(doc, fields))
            if staged.written:
                return decision.result
        raise conflict

    def insert_many(self, docs: list[Doc], envelopes: list[Envelope],
                    insert: Callable[[list[Doc]], list[Doc]]) -> list[Doc]:
        """Each of ``docs`` carries its own event in ``envelopes``;
        ``insert(docs)`` writes them idempotently (and maybe other documents
        with them) and returns the documents it inserted. The events of those
        are published, the others' discarded. Returns what ``insert`` returned."""
        if len(docs) != len(envelopes):
            raise ValueError("one event per document")
        try:
            for doc, envelope in zip(docs, envelopes):
                doc.update(self._fields([envelope]))
            inserted = insert(docs)
        except BaseException as exc:
            self._settle_failed(envelopes, exc)
            raise
        ids = {d["_id"] for d in inserted}
        self._discard([e for d, e in zip(docs, envelopes) if d["_id"] not in ids])
        self._publish([e for d, e in zip(docs, envelopes) if d["_id"] in ids])
        return inserted

    # its parts ---------------------------------------------------
    def _fields(self, envelopes: list[Envelope]) -> Doc:
        """Fields for a document being inserted together with its events."""
        envelopes = self._provider.expand(envelopes)
        at = self._provider.stage(envelopes)
        return {"_outbox": list(envelopes), "_outbox_at": at, "_outbox_by": self._provider.writer_id}

    def _appended(self, existing: list[Envelope] | None, envelopes: list[Envelope]) -> Doc:
        """Absolute outbox fields of a document whose outbox was ``existing``,
        with ``envelopes`` appended: for writes that must give the same result
        when applied twice (storage.VersionedDocument)."""
        envelopes = self._provider.expand(envelopes)
        at = self._provider.stage(envelopes)
        keep = max(OUTBOX_KEEP, len(envelopes))  # never fewer than this write's own events
        return {"_outbox": (list(existing or []) + list(envelopes))[-keep:], "_outbox_at": at,
                "_outbox_by": self._provider.writer_id}

    def _update_ops(self, envelopes: list[Envelope]) -> Doc:
        """Update operators that append events to a document's outbox in the
        same single-document update as the state change."""
        envelopes = self._provider.expand(envelopes)
        at = self._provider.stage(envelopes)
        return {
            "$push": {"_outbox": {"$each": list(envelopes), "$slice": -max(OUTBOX_KEEP, len(envelopes))}},
            "$set": {"_outbox_at": at, "_outbox_by": self._provider.writer_id},
        }

    def _publish(self, envelopes: list[Envelope]) -> bool:
        """Publish events whose write has committed. Never raises: an event
        the broker does not confirm now is retried by this process, and by
        the relay of another if this one dies."""
        failpoints.hit("outbox.after_write")
        return self._provider.publish(self._provider.expand(envelopes))

    def _discard(self, envelopes: list[Envelope]) -> None:
        """The write carrying these events did not happen (say, a duplicate)."""
        self._provider.unstage(self._provider.expand(envelopes))

    def _settle_failed(self, envelopes: list[Envelope], exc: BaseException | None) -> None:
        """The write carrying these events raised ``exc``. When it may still
        have taken effect (the connection went with the write sent), the
        events are in doubt, not discarded: the writer looks for them in its
        documents and publishes them if they are there — else the retry that
        finds the write already made would leave its events unpublished."""
        if outcome_unknown(exc):
            self._provider.doubt(self._provider.expand(envelopes))
        else:
            self._discard(envelopes)


class Change(NamedTuple):
    """What :meth:`Events.change` writes: the fields, their events, and what
    it returns once they are written."""

    fields: Doc
    envelopes: list[Envelope]
    result: Any = None


class Staged:
    """Events staged for one write (:meth:`Events.staging`)."""

    def __init__(self, events: Events, envelopes: Iterable[Envelope]) -> None:
        self.envelopes = list(envelopes)
        self.written = False
        self._events = events
        self._staged = False

    def _stage(self, outbox: Callable[[list[Envelope]], Doc]) -> Doc:
        if self._staged:
            raise RuntimeError("these events are staged already")
        self._staged = True
        return outbox(self.envelopes)

    def fields(self) -> Doc:
        """Outbox fields for a document inserted with the events."""
        return self._stage(self._events._fields)

    def appended(self, existing: list[Envelope] | None) -> Doc:
        """Absolute outbox fields: ``existing`` (the document's outbox as read) and the events."""
        return self._stage(lambda envelopes: self._events._appended(existing, envelopes))

    def update(self) -> Doc:
        """Update operators (``$push``/``$set``) that append the events to the document's outbox."""
        return self._stage(self._events._update_ops)

    def close(self, exc: BaseException | None = None) -> None:
        if self._staged:
            if exc is not None:
                self._events._settle_failed(self.envelopes, exc)
            elif self.written:
                self._events._publish(self.envelopes)
            else:
                self._events._discard(self.envelopes)
            self._staged = False

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self.written = False
        self.close(exc)


class EventOutbox(DependencyProvider):
    """Outbox, publisher, writer checkpoint and relay of one service.

    ``collections`` are the collections whose documents carry an outbox.
    """

    def __init__(self, collections: Iterable[str] = ()) -> None:
        self.collections = tuple(collections)

    def setup(self) -> None:
        self.service = self.container.service_name
        self.writer_id = "{}-{}-{}-{}".format(self.service, socket.gethostname(), os.getpid(),
                                              uuid.uuid4().hex[:8])
        self.log = logs.get_logger(component="outbox", writer=self.writer_id)
        self.exchange = topology.events_exchange(self.service).name
        # what this service may publish, and in which versions (None: not a registered publisher)
        self.registered = registry.published_by(self.service)
        self.mongo = next(d for d in self.container.dependencies if isinstance(d, Mongo))
        self._stopped = Event()
        self.mongo.keep_open_for(self._stopped)  # the writer's record is removed as this stops
        for name in self.collections:
            self.mongo.add_kernel_indexes(name, [IndexModel(
                [("_outbox_by", ASCENDING), ("_outbox_at", ASCENDING)], name="outbox_writer")])
        # the relay's question: this service's writers whose heartbeat stopped
        self.mongo.add_kernel_indexes("_writers", [IndexModel(
            [("service", ASCENDING), ("heartbeat", ASCENDING)], name="service_heartbeat")])
        self.pipeline = ConfirmPipeline(settings.get("AMQP_URI"), self.service,
                                        settings.get_int("PUBLISH_BATCH_MAX"))
        self.relay_interval = settings.get_float("OUTBOX_RELAY_INTERVAL_S")
        self.relay_grace = settings.get_float("OUTBOX_RELAY_GRACE_S")
        self._threads: list[Any] = []
        self._staged: dict[str, datetime] = {}  # event id -> time its write was prepared
        self._failed: dict[str, Envelope] = {}  # event id -> envelope the broker did not confirm
        self._doubtful: dict[str, Envelope] = {}  # event id -> envelope of a write whose outcome is unknown
        self.in_doubt_for = IN_DOUBT_FOR
        self.writers: Any = None
        self._writer_recorded = False
        self.relay_passes = 0

    def start(self) -> None:
        with Connection(settings.get("AMQP_URI"), connect_timeout=5) as conn:
            topology.declare(conn, installed.subscriptions(), settings.get_list_of_int("EVENT_RETRY_DELAYS_MS"),
                             settings.get("QUEUE_TYPE"), installed.publishers())
        self._report_backlog()  # the gauges exist from the start, for alerts on absence
        self.checkpoint()
        spawn = self.container.spawn_managed_thread
        self._threads = [
            spawn(self.pipeline.run, identifier="event-publisher"),
            spawn(self._checkpoint_loop, identifier="outbox-checkpoint"),
            spawn(self._relay_loop, identifier="outbox-relay"),
        ]

    def stop(self) -> None:
        try:
            for thread in self._threads:
                thread.kill()
            self.pipeline.close()
            if not self._staged and not self._failed and not self._doubtful and self.writers is not None:
                # a clean exit with nothing unconfirmed leaves nothing to relay
                try:
                    self.writers.delete_one({"_id": self.writer_id})
                except Exception as exc:
                    self.log.warning("outbox.writer_cleanup_failed", error=str(exc))
        finally:
            if not self._stopped.ready():
                self._stopped.send()

    def kill(self) -> None:
        for thread in self._threads:
            thread.kill()
        self.pipeline.close()

    def get_dependency(self, worker_ctx: WorkerContext) -> Events:
        return Events(self, worker_ctx)

    def readiness(self) -> list[tuple[str, bool, str]]:
        try:
            with eventlet.Timeout(2):
                with Connection(settings.get("AMQP_URI"), connect_timeout=2) as conn:
                    conn.connect()
            return [("rabbitmq", True, "ok")]
        except (Exception, eventlet.Timeout) as exc:
            return [("rabbitmq", False, "{}: {}".format(type(exc).__name__, exc))]

    # staging and publishing -----------------------------------------------------
    def expand(self, envelopes: Iterable[Envelope]) -> list[Envelope]:
        """The envelopes with their previous versions, for types inside a
        deprecation window (lamplight.registry)."""
        return registry.expand(envelopes, self.registered)

    def stage(self, envelopes: Iterable[Envelope]) -> datetime:
        at = utcnow()
        for e in envelopes:
            self._staged[e["id"]] = at
        if not self._writer_recorded:
            # nameko starts entrypoints alongside this provider, so a request can be
            # handled before start() has run: the writer must be on record before
            # any document names it, or a crash now would leave nothing to relay
            self.checkpoint()
        self._report_backlog()
        return at

    def unstage(self, envelopes: Iterable[Envelope]) -> None:
        for e in envelopes:
            self._staged.pop(e["id"], None)
        self._report_backlog()

    def doubt(self, envelopes: Iterable[Envelope]) -> None:
        """Events of a write whose outcome is unknown. They stay staged, so the
        checkpoint waits for them (if this process dies, the relay of another
        finds them in the documents), until :meth:`settle_doubts` finds the
        write or gives up on it."""
        envelopes = list(envelopes)
        for e in envelopes:
            self._doubtful[e["id"]] = e
        self.log.warning("outbox.write_in_doubt", events=[e["id"] for e in envelopes])
        self._report_backlog()

    def settle_doubts(self, now: datetime | None = None) -> tuple[int, int]:
        """Look for the writes in doubt in this writer's documents: the events
        of those found are published; those not found once they are older
        than ``in_doubt_for`` were never written and are dropped. Returns
        (published, dropped); raises when the database cannot be read (they
        stay in doubt)."""
        now = now or utcnow()
        doubtful = dict(self._doubtful)
        if not doubtful:
            return 0, 0
        since = min(self._staged.get(i, now) for i in doubtful)
        found: dict[str, Envelope] = {}
        store = self.mongo.store()
        for name in self.collections:
            for _, collection in store.partitions(name, reason="outbox writes in doubt"):
                for doc in collection.find({"_outbox_by": self.writer_id, "_outbox_at": {"$gte": since},
                                            "_outbox.id": {"$in": list(doubtful)}}, {"_outbox": 1}):
                    found.update((e["id"], e) for e in doc.get("_outbox", []) if e["id"] in doubtful)
        expired = [i for i in doubtful if i not in found and now - self._staged.get(i, now) >= self.in_doubt_for]
        for i in list(found) + expired:
            self._doubtful.pop(i, None)
        if found:
            self.publish(list(found.values()))  # what the broker does not confirm now is retried as _failed
            OUTBOX_DOUBTS_SETTLED.labels(self.service, "written").inc(len(found))
        if expired:
            self.unstage([doubtful[i] for i in expired])
            OUTBOX_DOUBTS_SETTLED.labels(self.service, "not_written").inc(len(expired))
        if found or expired:
            # a warning: rare (after a database fault), and what an operator
            # looks for when asking whether a fault lost an event
            self.log.warning("outbox.doubts_settled", written=list(found), not_written=expired)
        self._report_backlog()
        return len(found), len(expired)

    def publish(self, envelopes: Iterable[Envelope]) -> bool:
        envelopes = list(envelopes)
        try:
            self.pipeline.publish([(self.exchange, registry.envelope_routing_key(e), e) for e in envelopes])
        except PublishFailed as exc:
            for e in envelopes:
                EVENTS_PUBLISH_FAILED.labels(self.service, e["type"]).inc()
                self._failed[e["id"]] = e
            self.log.warning("outbox.publish_deferred", events=[e["id"] for e in envelopes], error=str(exc))
            self._report_backlog()
            return False
        for e in envelopes:
            self._staged.pop(e["id"], None)
            self._failed.pop(e["id"], None)
        self._report_backlog()
        return True

    def _report_backlog(self) -> None:
        # a write in doubt that did not happen is not work waiting for the broker
        OUTBOX_BACKLOG.labels(self.service).set(len(self._staged) - len(self._doubtful.keys() & self._staged.keys()))
        OUTBOX_IN_DOUBT.labels(self.service).set(len(self._doubtful))

    # the checkpoint ---------------------------------------------------------------
    def oldest_unconfirmed(self, now: datetime | None = None) -> datetime | None:
        now = now or utcnow()
        live = [at for at in self._staged.values() if now - at < STAGED_MAX_AGE]
        return min(live) if live else None

    def checkpoint(self) -> None:
        """Record that every event this writer staged before the checkpoint is
        confirmed, and that the writer is alive."""
        now = utcnow()
        oldest = self.oldest_unconfirmed(now)
        OUTBOX_OLDEST_UNCONFIRMED.labels(self.service).set((now - oldest).total_seconds() if oldest else 0)
        if self.writers is None:
            self.writers = self.mongo.store().unscoped("_writers", reason="outbox writer checkpoints")
        self.writers.update_one({"_id": self.writer_id}, {
            "$set": {"service": self.service, "checkpoint": oldest or now, "heartbeat": now},
            "$setOnInsert": {"started": now}}, upsert=True)
        self._writer_recorded = True

    def _checkpoint_loop(self) -> None:
        while True:
            eventlet.sleep(min(1.0, self.relay_grace / 3.0 or 1.0))
            if self._failed:
                self.publish(list(self._failed.values()))
            if self._doubtful:
                try:
                    self.settle_doubts()
                except Exception as exc:
                    self.log.warning("outbox.doubts_unsettled", error=str(exc), events=len(self._doubtful))
            try:
                self.checkpoint()
            except Exception as exc:
                self.log.warning("outbox.checkpoint_failed", error=str(exc))

    # the relay ----------------------------------------------------------------------
    def _relay_loop(self) -> None:
        while True:
            try:
                self.relay_once()
            except Exception as exc:
                self.log.warning("outbox.relay_failed", error=str(exc))
            self.relay_passes += 1
            eventlet.sleep(self.relay_interval)

    def relay_once(self) -> int:
        """Take over every writer of this service whose heartbeat stopped more
        than the grace period ago; returns how many events it republished."""
        now = utcnow()
        dead_before = now - timedelta(seconds=self.relay_grace)
        relayed = found = 0
        while True:
            writer = self.writers.find_one_and_update(
                {"service": self.service, "heartbeat": {"$lt": dead_before},
                 "$or": [{"claimed_at": None}, {"claimed_at": {"$lt": dead_before}}]},
                {"$set": {"claimed_by": self.writer_id, "claimed_at": now}})
            if writer is None or writer["_id"] == self.writer_id:
                break
            envelopes, taken = [], {}
            store = self.mongo.store()
            for name in self.collections:
                docs = []
                for _, collection in store.partitions(name, reason="outbox relay of a dead writer"):
                    docs += list(collection.find(
                        {"_outbox_by": writer["_id"], "_outbox_at": {"$gte": writer["checkpoint"]}},
                        {"_outbox": 1, "park_id": 1}))
                taken[name] = docs
                envelopes += [e for d in docs for e in d.get("_outbox", [])]
            found += len(envelopes)
            if envelopes:
                self.log.info("outbox.relaying", dead_writer=writer["_id"], events=len(envelopes))
                if not self.publish(envelopes):
                    break  # the claim expires; this or another relay tries again
                for e in envelopes:
                    EVENTS_RELAYED.labels(self.service, e["type"]).inc()
                relayed += len(envelopes)
            self.took_over(writer, taken)
            self.writers.delete_one({"_id": writer["_id"], "claimed_by": self.writer_id})
        OUTBOX_RELAY_FOUND.labels(self.service).set(found)
        return relayed

    def took_over(self, writer: Doc, docs_by_collection: dict[str, list[Doc]]) -> None:
        """Called after a dead writer's events are republished, with the
        documents it wrote since its checkpoint ({collection: [{_id, park_id}]}),
        for a service to finish what the writer left half done."""
