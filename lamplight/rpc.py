"""``@rpc`` for Lamplight services: nameko's, with lighter replies.

nameko publishes every RPC reply persistent and waits for its confirm. A
reply goes to the caller's own auto-delete queue, so the broker's disk adds
nothing, and a reply lost with the broker means the caller times out, answers
503 and the client retries with its idempotency key — which a confirm would
not change. Replies here are transient and unconfirmed; requests are acked
only after their reply is handed to the broker, as in nameko.
"""
from nameko import config
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT
from nameko.rpc import Responder, Rpc as NamekoRpc, RpcConsumer, get_rpc_exchange


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
        result, exc_info = responder.send_response(result, exc_info)
        self.consumer.ack_message(message)
        return result, exc_info


class Rpc(NamekoRpc):
    rpc_consumer = LightRpcConsumer()


rpc = Rpc.decorator
