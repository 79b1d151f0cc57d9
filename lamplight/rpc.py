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

import eventlet
from nameko import config
from nameko.amqp import get_connection
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT
from nameko.exceptions import IncorrectSignature, UnknownService
from nameko.rpc import ReplyListener, Responder, Rpc as NamekoRpc, RpcConsumer, ServiceRpc, get_rpc_exchange

from lamplight import logs, settings
from lamplight.metrics import RPC_REPLIES_LOST

_log = logs.get_logger(component="rpc")


class CachedSignatureCheck:
    """Mixin for entrypoints: nameko's check_signature with the signature
    computed once per entrypoint."""

    _signature = None

    def check_signature(self, args, kwargs):
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
    def handle_result(self, message, result, exc_info):
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
        self.consumer.ack_message(message)
        return result, exc_info


class Rpc(CachedSignatureCheck, NamekoRpc):
    rpc_consumer = LightRpcConsumer()


rpc = Rpc.decorator


class NoAckReplyListener(ReplyListener):
    def setup(self):
        super().setup()
        self.consumer.consumer_options["no_ack"] = True

    def check_for_lost_replies(self):
        """nameko kills the whole container when its reply consumer
        (re)connects with calls pending and the reply queue gone — which also
        happens when the check falls between a call registering for its reply
        and its request declaring the queue (seen once in the suite: the
        gateway died on its first request). Here the queue is declared again
        and a call whose reply was lost ends on its own deadline (503, and the
        client retries with its idempotency key)."""
        if self.pending:
            with get_connection(self.amqp_uri, config.get(AMQP_SSL_CONFIG_KEY)) as conn:
                self.queue.bind(conn).declare()


class ServiceUnavailable(Exception):
    """The called service did not answer within the deadline."""

    def __init__(self, service):
        super().__init__("the {} service is not answering; try again shortly".format(service))
        self.service = service


class DeadlineRpc(ServiceRpc):
    """An RPC proxy whose calls give up after ``RPC_TIMEOUT_S``."""

    reply_listener = NoAckReplyListener()

    def setup(self):
        self.timeout = settings.get_float("RPC_TIMEOUT_S")
        self.publisher_options["expiration"] = self.timeout
        self.publisher_options["delivery_mode"] = NON_PERSISTENT
        super().setup()
        # nameko declares the reply queue with every request; that is kept:
        # without it a request sent while the reply consumer (re)connects
        # finds no queue and nameko kills the container (lost replies)

    def get_dependency(self, worker_ctx):
        client = super().get_dependency(worker_ctx)
        return DeadlineClient(client, self.target_service, self.timeout)


class DeadlineClient:
    def __init__(self, client, service, timeout):
        self._client = client
        self._service = service
        self._timeout = timeout

    def call(self, method, *args, **kwargs):
        """Call ``method``; ServiceUnavailable when nobody answers in time."""
        try:
            with eventlet.Timeout(self._timeout):
                return getattr(self._client, method).call_async(*args, **kwargs).result()
        except (eventlet.Timeout, UnknownService):
            raise ServiceUnavailable(self._service)
