"""RPC for Lamplight: nameko's, with lighter replies and a deadline.

Replies. nameko publishes every reply persistent and waits for its confirm,
and the caller acks every reply. A reply goes to the caller's own auto-delete
queue, so the broker's disk adds nothing, and a reply lost with the broker
means the caller times out and the client retries with its idempotency key —
which neither a confirm nor an ack would change. Replies here are transient,
unconfirmed and consumed without acks. Requests are still acked only after
their reply is handed to the broker, as in nameko.

Deadline. :class:`DeadlineRpc` requests carry a TTL equal to the caller's
deadline, so a request the caller gave up on is dropped by the broker rather
than run later, and are transient for the same reason.

Signatures. nameko checks every call's arguments with ``inspect.getcallargs``,
which rebuilds the method's signature each time; here it is built once.
"""
import inspect
import time
import uuid
from functools import partial
from typing import Any

import eventlet
from amqp.exceptions import ConnectionError as AmqpConnectionError
from amqp.exceptions import NotFound as AmqpNotFound
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.message import Message
from nameko import config
from nameko.amqp import get_connection
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT
from nameko.containers import ContainerBeingKilled, WorkerContext
from nameko.exceptions import IncorrectSignature, MalformedRequest, UnknownService, deserialize_to_instance
from nameko.messaging import decode_from_headers
from nameko.rpc import (
    RPC_REPLY_QUEUE_TEMPLATE,
    RPC_REPLY_QUEUE_TTL,
    ReplyListener,
    Responder,
    RpcConsumer,
    ServiceRpc,
    get_rpc_exchange,
)
from nameko.rpc import Rpc as NamekoRpc
from pymongo.errors import ConnectionFailure as DatabaseAway

from lamplight import lanes, logs, settings
from lamplight.consuming import settle
from lamplight.errors import EXPECTED, DomainError, api_error
from lamplight.metrics import REPLY_QUEUES_RENEWED, RPC_EXPIRED, RPC_REPLIES_LOST

_log = logs.get_logger(component="rpc")


class CachedSignatureCheck:
    """Mixin for entrypoints: nameko's check_signature with the signature
    computed once per entrypoint."""

    _signature: inspect.Signature | None = None
    container: Any  # the entrypoint's, which this is mixed into
    method_name: str

    def check_signature(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._signature is None:
            self._signature = inspect.signature(getattr(self.container.service_cls, self.method_name))
        try:
            self._signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc))


class ReplyPublisher(Publisher):
    use_confirms = False
    delivery_mode = NON_PERSISTENT


class LightResponder(Responder):
    publisher_cls = ReplyPublisher


class LightRpcConsumer(RpcConsumer):
    def setup(self) -> None:
        super().setup()
        self.consuming = False
        if settings.get("QUEUE_TYPE") == "quorum":
            # on a cluster the request queue is replicated like the event
            # queues: a classic one lives on one node, and the service takes
            # no request while that node is down
            self.queue.queue_arguments = dict(self.queue.queue_arguments or {}, **{"x-queue-type": "quorum"})

    def start(self) -> None:
        # a process that serves no request (LANES without main: lamplight.lanes) takes none
        if self._providers:
            self.consuming = True
            super().start()

    def stop(self) -> None:
        if self.consuming:
            super().stop()

    def handle_result(self, message: Message, result: Any, exc_info: Any) -> tuple[Any, Any]:
        if exc_info is not None and isinstance(exc_info[1], DomainError):
            # a domain's refusal leaves the service as the API error of its kind, here and only here
            error = api_error(exc_info[1])
            exc_info = (type(error), error, exc_info[2])
        elif exc_info is not None and isinstance(exc_info[1], DatabaseAway):
            # the database is away (refused, reset, no server to select): the caller is told so,
            # as a call whose outcome is unknown, not as a fault of the service
            away = DependencyDown("the {} service cannot reach its database: {}".format(
                self.container.service_name, type(exc_info[1]).__name__))
            exc_info = (DependencyDown, away, exc_info[2])
        responder = LightResponder(self.amqp_uri, get_rpc_exchange(), message,
                                   ssl=config.get(AMQP_SSL_CONFIG_KEY),
                                   login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except Exception as exc:
            # The broker is away. nameko lets this escape the worker, and an
            # exception there kills the whole container: one broker restart
            # took a service down. The request stays unacked, so the broker
            # takes it back with the lost connection (and drops it once its
            # TTL, the caller's deadline, has passed); the caller times out and
            # retries with its idempotency key.
            routing_key = (message.delivery_info or {}).get("routing_key", "")
            entrypoint = routing_key.rsplit(".", 1)[-1]
            RPC_REPLIES_LOST.labels(self.container.service_name, entrypoint).inc()
            _log.warning("rpc.reply_lost", entrypoint=entrypoint, error="{}: {}".format(type(exc).__name__, exc),
                         correlation_id=(message.properties or {}).get("correlation_id"))
            return result, exc_info
        settle(self.consumer.ack_message, message, self.container.service_name)
        return result, exc_info


DEADLINE_KEY = "lamplight_deadline"  # context key (header nameko.lamplight_deadline): epoch seconds


def deadline_passed(context_data: dict[str, Any], now: float | None = None) -> bool:
    """True when the caller stamped a deadline on the request and it has passed."""
    raw = (context_data or {}).get(DEADLINE_KEY)
    if raw is None:
        return False
    try:
        return float(raw) < (time.time() if now is None else now)
    except (TypeError, ValueError):
        return False


class Rpc(CachedSignatureCheck, NamekoRpc):
    """nameko's RPC entrypoint that never runs a request its caller gave up on.

    A request's TTL drops it only while it waits in the queue; once it is
    prefetched it waits in this process for a free worker, and nameko would
    run it however late. Here the deadline the caller stamped on it
    (:class:`DeadlineRpc`) is checked when a worker is free, right before
    the work starts: a request past it is acked and dropped (counted in
    lamplight_rpc_expired_total), so a client that got 503 and retries with
    its key does not race a late copy of its own first attempt."""

    rpc_consumer = LightRpcConsumer()

    def __init__(self, expected_exceptions: tuple[type[BaseException], ...] = EXPECTED, **kwargs: Any) -> None:
        super().__init__(expected_exceptions=expected_exceptions, **kwargs)

    def setup(self) -> None:
        # requests are the main lane (lamplight.lanes): a bulk process leaves them to the others
        if lanes.serves(lanes.MAIN):
            super().setup()

    def handle_message(self, body: Any, message: Message) -> None:
        try:
            args = body["args"]
            kwargs = body["kwargs"]
        except KeyError:
            raise MalformedRequest("Message missing `args` or `kwargs`")
        self.check_signature(args, kwargs)
        context_data = decode_from_headers(message.headers)
        handle_result = partial(self.handle_result, message)

        def spawn_worker() -> None:
            # wait for a free worker first (nameko's pool; private, but the
            # only place that knows), then decide with the time the work starts
            pool = self.container._worker_pool
            pool.sem.acquire()
            pool.sem.release()
            if deadline_passed(context_data):
                RPC_EXPIRED.labels(self.container.service_name, self.method_name).inc()
                _log.info("rpc.expired_dropped", entrypoint=self.method_name,
                          correlation_id=(message.properties or {}).get("correlation_id"))
                settle(self.rpc_consumer.consumer.ack_message, message, self.container.service_name)
                return
            try:
                self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                            handle_result=handle_result)
            except ContainerBeingKilled:
                settle(self.rpc_consumer.consumer.requeue_message, message, self.container.service_name)

        self.container.spawn_managed_thread(
            spawn_worker, identifier="Rpc.wait_for_worker_pool[{}.{}]".format(
                self.container.service_name, self.method_name))


rpc = Rpc.decorator


class NoAckReplyListener(ReplyListener):
    queue: Queue  # the reply queue consumed now (nameko's setup() makes the first)

    def setup(self) -> None:
        super().setup()
        self.consumer.consumer_options["no_ack"] = True
        # transient: nameko's is durable, and on a cluster a durable classic
        # queue whose node is lost cannot be declared again anywhere until
        # that node returns (404 "home node … is down"): every call of the
        # process failed. A transient one goes with its node and is declared
        # again on the node the process reconnects to (replies are transient
        # anyway; a lost one ends on the call's deadline).
        self.queue.durable = False

    def check_for_lost_replies(self) -> None:
        """Called as the reply consumer (re)connects, before it consumes.

        A reconnect consumes from a reply queue of a new name. On a cluster,
        the process reconnects to another node within milliseconds of losing
        its own, before the cluster has dropped the transient queues of the
        lost node: declaring the old name then finds the dying queue, and
        once the cluster drops it every reply to this process is routed
        nowhere — every call it made timed out (503) until its connection
        happened to be reset again, minutes later. A new name is declared
        afresh on the node the process is connected to. The old queue is
        deleted: a reply that reaches it is no one's now (a call waiting on it
        when the connection went ends on its own deadline, 503, and the client
        retries with its idempotency key).

        nameko kills the whole container when its reply consumer (re)connects
        with calls pending and the reply queue gone — which also happens when
        the check falls between a call registering for its reply and its
        request declaring the queue (seen once in the suite: the gateway died
        on its first request). Here the queue is declared instead."""
        if self.consumer.ready.is_set():  # a reconnect: the first connect keeps the name setup() chose
            old, self.queue = self.queue, self._new_queue()
            self.routing_key = self.queue.routing_key
            self.consumer.queues[:] = [self.queue]
            REPLY_QUEUES_RENEWED.labels(self.container.service_name).inc()
            _log.info("rpc.reply_queue_renewed", queue=self.queue.name, pending=len(self.pending))
            try:
                with get_connection(self.amqp_uri, config.get(AMQP_SSL_CONFIG_KEY)) as conn:
                    old.bind(conn).delete()
            except Exception as exc:  # gone with its node, or the broker went again: it expires unused
                _log.info("rpc.old_reply_queue_left", queue=old.name, error=str(exc))
        if self.pending:
            with get_connection(self.amqp_uri, config.get(AMQP_SSL_CONFIG_KEY)) as conn:
                self.queue.bind(conn).declare()

    def _new_queue(self) -> Queue:
        """A reply queue as nameko's setup() makes it, transient, of a new name."""
        reply_queue_uuid = str(uuid.uuid4())
        return Queue(RPC_REPLY_QUEUE_TEMPLATE.format(self.container.service_name, reply_queue_uuid),
                     exchange=get_rpc_exchange(), routing_key=reply_queue_uuid,
                     queue_arguments={"x-expires": RPC_REPLY_QUEUE_TTL}, durable=False)


class RequestPublisher(Publisher):
    """Requests that name the caller's reply queue as it is when each is sent
    (it is renewed on every reconnect, :class:`NoAckReplyListener`), where
    nameko fixes it when the proxy is set up."""

    listener: NoAckReplyListener

    def publish(self, payload: Any, **kwargs: Any) -> Any:
        queue = self.listener.queue
        return super().publish(payload, declare=[queue], reply_to=queue.routing_key, **kwargs)


@deserialize_to_instance
class DependencyDown(Exception):
    """What a service answers when a call failed because its database was away:
    the call may or may not have written; retrying with the same idempotency
    key is safe (the caller's proxy raises :class:`ServiceUnavailable`)."""


class ServiceUnavailable(Exception):
    """The called service did not answer within the deadline, or could not
    reach what it depends on: the outcome is unknown."""

    def __init__(self, service: str) -> None:
        super().__init__("the {} service is not answering; try again shortly".format(service))
        self.service = service


class DeadlineRpc(ServiceRpc):
    """An RPC proxy whose calls give up after ``RPC_TIMEOUT_S``."""

    reply_listener = NoAckReplyListener()
    publisher_cls = RequestPublisher

    def setup(self) -> None:
        self.timeout = settings.get_float("RPC_TIMEOUT_S")
        self.publisher_options["expiration"] = self.timeout
        self.publisher_options["delivery_mode"] = NON_PERSISTENT
        super().setup()
        # nameko declares the reply queue with every request; that is kept
        # (RequestPublisher, with the queue of the moment): without it a
        # request sent while the reply consumer (re)connects finds no queue
        # and nameko kills the container (lost replies)
        self.publisher.declare = []
        self.publisher.listener = self.reply_listener

    def get_dependency(self, worker_ctx: WorkerContext) -> "DeadlineClient":
        client = super().get_dependency(worker_ctx)
        return DeadlineClient(client, self.target_service, self.timeout)


class DeadlineClient:
    def __init__(self, client: Any, service: str, timeout: float) -> None:
        self._client = client
        self._context = client.context_data  # the worker's: filled in after injection (request id, trace)
        self._service = service
        self._timeout = timeout

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method``; ServiceUnavailable when nobody answers in time or
        the broker cannot take the request.

        What ServiceUnavailable means: the outcome is unknown. The request
        was dropped unrun if it was still waiting (its TTL, or the deadline
        checked when a worker takes it), but a request already running when
        the deadline passed completes. Retrying with the same idempotency
        key is always safe: it answers the first outcome or makes it now."""
        deadline = time.time() + self._timeout
        self._client.context_data = dict(self._context, **{DEADLINE_KEY: "{:.3f}".format(deadline)})
        try:
            with eventlet.Timeout(self._timeout):
                return getattr(self._client, method).call_async(*args, **kwargs).result()
        except (eventlet.Timeout, UnknownService):
            raise ServiceUnavailable(self._service)
        except DependencyDown as exc:
            raise ServiceUnavailable(self._service) from exc
        except AmqpNotFound as exc:
            # a queue the call needs is on a cluster node that is down
            raise ServiceUnavailable(self._service) from exc
        except (OSError, KombuOperationalError, AmqpConnectionError) as exc:
            # the broker is away (ECONNREFUSED while it restarts)
            raise ServiceUnavailable(self._service) from exc
