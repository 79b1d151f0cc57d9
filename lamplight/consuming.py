"""``@subscribe``: nameko's event handler with validation, retries and a DLQ.

nameko acks a message whose handler raised, and the message is lost. Here a
failed attempt is republished (with confirms) to a delay queue and comes back
after a backoff; after ``EVENT_MAX_ATTEMPTS`` it goes to ``<queue>.dlq``. The
original is acked only once its copy is confirmed, so nothing is lost, and a
poison message never blocks the queue. Input that can never succeed (an
invalid envelope, a body that is not JSON, a handler raising BadInput) goes to
the DLQ at once. A failure because the database is away spends no attempt: an
outage is not the message's fault, and it is retried soon (the first delay,
then the second, again and again) until the database is back.

Each subscription holds at most ``EVENT_CONCURRENCY`` of its process's
workers (its consumer's prefetch: a message is acked only when handled), and
the subscriptions together at most ``max_workers - RPC_RESERVED_WORKERS``:
a slow projection waits on its own backlog in the broker, and requests
always find a worker.

Handlers must be idempotent: a message can be delivered again after a crash or
a relay. The kernel's way is a deterministic ``_id`` (or unique key) on the
effect, so a second insert fails with DuplicateKeyError and is skipped.
"""
from collections.abc import Callable
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any

from eventlet.semaphore import Semaphore
from kombu import Connection, Exchange, Queue
from kombu.message import Message
from nameko.amqp.publish import get_producer
from nameko.containers import ContainerBeingKilled, ServiceContainer, WorkerContext
from nameko.events import EventHandler
from nameko.messaging import Consumer, decode_from_headers
from pymongo.errors import ConnectionFailure as DatabaseAway

from lamplight import lanes, logs, settings, topology
from lamplight.clock import now_iso, utcnow
from lamplight.envelope import validate_envelope
from lamplight.errors import DomainError, LamplightError
from lamplight.metrics import (
    ACKS_LOST,
    EVENT_WAIT,
    EVENT_WORKERS_BUSY,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
)
from lamplight.shapes import Envelope

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
_log = logs.get_logger(component="subscriber")

ERROR_HEADER = "x-lamplight-error"
QUEUE_HEADER = "x-lamplight-queue"
FAILED_AT_HEADER = "x-lamplight-failed-at"
OUTAGES_HEADER = "x-lamplight-outages"  # deliveries that failed because the database was away


def event_workers(container: ServiceContainer) -> Semaphore:
    """The workers a container's subscriptions share: all of its pool but
    ``RPC_RESERVED_WORKERS`` (at most half of it), which only requests and
    timers can take."""
    slots: Semaphore | None = getattr(container, "_lamplight_event_workers", None)
    if slots is None:
        total = int(container.max_workers)
        reserved = min(settings.get_int("RPC_RESERVED_WORKERS"), total // 2)
        slots = Semaphore(max(1, total - reserved))
        container._lamplight_event_workers = slots
    return slots


def settle(action: Callable[[Message], None], message: Message, service: str) -> None:
    """Ack or requeue ``message``, surviving a connection that is gone.

    An exception out of a worker's result handler kills the whole nameko
    container: one broker restart while a handler finished took the service
    down. A message whose ack cannot be sent is still unacked on the broker,
    which hands it out again with the lost connection; handlers are
    idempotent, so the second delivery has no second effect."""
    try:
        action(message)
    except Exception as exc:
        ACKS_LOST.labels(service).inc()
        _log.warning("message.settle_lost", action=getattr(action, "__name__", "settle"),
                     error="{}: {}".format(type(exc).__name__, exc),
                     message_id=(message.properties or {}).get("message_id"))


def waited(envelope: Envelope) -> float:
    """Seconds since the event's time (0 for a time ahead of this clock)."""
    try:
        at = datetime.fromisoformat(envelope["time"].replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return 0.0
    return max(0.0, (utcnow() - at).total_seconds())


def attempts_of(message: Message) -> int:
    return _int_header(message, topology.ATTEMPTS_HEADER)


def _int_header(message: Message, name: str) -> int:
    try:
        return int((message.headers or {}).get(name, 0))
    except (TypeError, ValueError):
        return 0


class Subscribe(EventHandler):
    """Handle ``event_type`` events published by ``source_service``.

    The queue is ``<this service>--<event type>``, declared with the rest of
    the platform topology (``lamplight.topology``). ``lane`` (``lamplight.lanes``):
    a process that does not serve it leaves the queue to the processes that do.
    """

    def __init__(self, source_service: str, event_type: str, lane: str = lanes.MAIN, **kwargs: Any) -> None:
        self.lane = lanes.check(lane)
        self.active = False
        super().__init__(source_service, event_type, **kwargs)

    def setup(self) -> None:
        self.active = lanes.serves(self.lane)
        if not self.active:
            return
        self.subscription = topology.Subscription(
            self.container.service_name, self.source_service, self.event_type)
        queue_type = settings.get("QUEUE_TYPE")
        self.delay_exchange = topology.delay_exchange(queue_type)
        self.queue = topology.subscription_queue(self.subscription, queue_type)
        self.dlq = topology.dead_letter_queue(self.subscription, queue_type)
        self.max_attempts = settings.get_int("EVENT_MAX_ATTEMPTS")
        self.delays = settings.get_list_of_int("EVENT_RETRY_DELAYS_MS")
        self.consumer_options["on_decode_error"] = self._on_decode_error
        # unacked messages = workers this subscription holds, waiting ones included
        self.consumer_options["prefetch_count"] = settings.get_int("EVENT_CONCURRENCY")
        self.busy = EVENT_WORKERS_BUSY.labels(self.container.service_name, self.queue.name)
        self.log = logs.get_logger(component="subscriber", queue=self.queue.name)
        # the queues a failed message goes to must exist before it fails, or
        # its mandatory republish has no route and it would loop
        with Connection(self.amqp_uri, connect_timeout=5) as conn:
            channel = conn.channel()
            entities: list[Exchange | Queue] = [self.delay_exchange, topology.REDELIVER_EXCHANGE, self.dlq]
            topology.declare_on(channel, entities + [topology.delay_queue(d, queue_type) for d in self.delays])
            channel.close()
        # skip EventHandler.setup: it would build nameko's own queue name
        Consumer.setup(self)

    def start(self) -> None:
        if self.active:
            super().start()

    def stop(self) -> None:
        if self.active:
            super().stop()

    def kill(self) -> None:
        if self.active:
            super().kill()

    # delivery -----------------------------------------------------------------
    def handle_message(self, body: Any, message: Message) -> None:
        try:
            envelope = validate_envelope(body)
        except LamplightError as exc:
            self._park(message, "invalid envelope: {}".format(exc.fields), "unknown")
            return
        context_data = decode_from_headers(message.headers or {})
        context_data["traceparent"] = envelope["traceparent"]
        handle_result = partial(self.handle_result, message, envelope)

        def spawn_worker() -> None:
            slots = event_workers(self.container)
            slots.acquire()
            self.busy.inc()
            if not attempts_of(message):  # a retry's wait is its backoff's, not the park's
                EVENT_WAIT.labels(self.container.service_name, envelope["parkid"], self.lane).observe(
                    waited(envelope))
            try:
                self.container.spawn_worker(self, (envelope,), {}, context_data=context_data,
                                            handle_result=handle_result)
            except ContainerBeingKilled:
                self._free()
                self._requeue(message)
            except BaseException:
                self._free()
                raise

        self.container.spawn_managed_thread(
            spawn_worker, identifier="subscribe.wait_for_worker[{}]".format(self.queue.name))

    def handle_result(self, message: Message, envelope: Envelope, worker_ctx: WorkerContext, result: Any = None,
                      exc_info: ExcInfo | None = None) -> tuple[Any, ExcInfo | None]:
        try:
            return self._conclude(message, envelope, result, exc_info)
        finally:
            self._free()

    def _free(self) -> None:
        self.busy.dec()
        event_workers(self.container).release()

    def _ack(self, message: Message) -> None:
        settle(self.consumer.ack_message, message, self.container.service_name)

    def _requeue(self, message: Message) -> None:
        settle(self.consumer.requeue_message, message, self.container.service_name)

    def _conclude(self, message: Message, envelope: Envelope, result: Any,
                  exc_info: ExcInfo | None) -> tuple[Any, ExcInfo | None]:
        service = self.container.service_name
        if exc_info is None:
            EVENTS_CONSUMED.labels(service, envelope["type"], envelope["parkid"]).inc()
            self._ack(message)
            return result, exc_info
        EVENTS_FAILED.labels(service, envelope["type"]).inc()
        exc = exc_info[1]
        attempts = attempts_of(message) + 1
        reason = "{}: {}".format(type(exc).__name__, exc)[:1000]
        if isinstance(exc, DatabaseAway):
            # the database is away: an outage, not a fault of this message; it
            # is retried soon (the first delay, then the second) and spends no
            # attempt, so an outage longer than the retry ladder dead-letters nothing
            outages = _int_header(message, OUTAGES_HEADER) + 1
            self._retry(message, reason, envelope, attempts - 1,
                        delay=self.delays[min(outages, 2, len(self.delays)) - 1], extra={OUTAGES_HEADER: outages})
        elif isinstance(exc, (LamplightError, DomainError)) or attempts >= self.max_attempts:
            self._park(message, reason, envelope["type"], attempts)
        else:
            self._retry(message, reason, envelope, attempts)
        return result, exc_info

    def _on_decode_error(self, message: Message, exc: Exception) -> None:
        self._park(message, "undecodable body: {}".format(exc), "unknown")

    # retry and dead-letter ----------------------------------------------------
    def _republish(self, message: Message, exchange: str, routing_key: str, headers: dict[str, Any]) -> None:
        props = message.properties or {}
        with get_producer(self.amqp_uri, True, None, None, {"confirm_publish": True}) as producer:
            producer.publish(
                message.body, exchange=exchange, routing_key=routing_key, headers=headers,
                content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary",
                message_id=props.get("message_id"), delivery_mode=2, mandatory=True,
                retry=True, retry_policy={"max_retries": 3},
            )

    def _retry(self, message: Message, reason: str, envelope: Envelope, attempts: int, delay: int | None = None,
               extra: dict[str, Any] | None = None) -> None:
        if delay is None:
            delay = self.delays[min(attempts - 1, len(self.delays) - 1)]
        headers = dict(message.headers or {})
        headers.update({topology.ATTEMPTS_HEADER: attempts, topology.DELAY_HEADER: str(delay),
                        ERROR_HEADER: reason}, **(extra or {}))
        try:
            self._republish(message, self.delay_exchange.name, self.queue.name, headers)
        except Exception as exc:
            self.log.error("event.retry_publish_failed", error=str(exc), event_id=envelope["id"])
            # nothing is lost: try again from the queue
            self._requeue(message)
            return
        self.log.warning("event.retrying", event_id=envelope["id"], attempt=attempts,
                         delay_ms=delay, error=reason)
        self._ack(message)

    def _park(self, message: Message, reason: str, event_type: str, attempts: int | None = None) -> None:
        headers = dict(message.headers or {})
        headers.update({
            topology.ATTEMPTS_HEADER: attempts if attempts is not None else attempts_of(message),
            ERROR_HEADER: reason,
            QUEUE_HEADER: self.queue.name,
            FAILED_AT_HEADER: now_iso(),
        })
        headers.pop(topology.DELAY_HEADER, None)
        try:
            self._republish(message, "", self.dlq.name, headers)
        except Exception as exc:
            self.log.error("event.dead_letter_failed", error=str(exc))
            self._requeue(message)
            return
        EVENTS_DEAD_LETTERED.labels(self.container.service_name, event_type).inc()
        self.log.error("event.dead_lettered", dlq=self.dlq.name, error=reason,
                       event_id=(message.properties or {}).get("message_id"))
        self._ack(message)


subscribe = Subscribe.decorator
