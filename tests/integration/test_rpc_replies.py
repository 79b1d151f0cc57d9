"""Replies to a caller whose connection to the broker was lost and
re-established: they reach it through a reply queue of a new name.

On a cluster a caller reconnects to another node before the cluster has
dropped the transient queues of the node it lost; declaring its reply queue
under the old name found the dying queue, and once the cluster dropped it
every reply to the caller was routed nowhere (every call a 503) until its
connection happened to be reset again. Here the broker drops every
connection of the test's vhost, as a lost node or a restart does."""
from urllib.parse import unquote, urlparse

from nameko import config
from nameko.testing.services import entrypoint_hook

from lamplight.rpc import DeadlineRpc, NoAckReplyListener, rpc
from tests.conftest import wait_for


class Echo:
    name = "echo"

    @rpc
    def echo(self, value):
        return value


class Caller:
    name = "caller"
    echo = DeadlineRpc("echo")

    @rpc
    def relay(self, value):
        return self.echo.call("echo", value)


def drop_connections(rabbit_manager):
    """Close every connection of the test's vhost; returns how many."""
    vhost = unquote(urlparse(config["AMQP_URI"]).path[1:]) or "/"
    dropped = 0
    for conn in rabbit_manager.get_connections():
        if conn["vhost"] == vhost:
            rabbit_manager._delete("connections", conn["name"])
            dropped += 1
    return dropped


def test_a_caller_that_reconnects_gets_its_replies_on_a_reply_queue_of_a_new_name(container_factory, rabbit_config,
                                                                                     rabbit_manager):
    echo, caller = container_factory(Echo), container_factory(Caller)
    echo.start()
    caller.start()
    listener = next(e for e in caller.subextensions if isinstance(e, NoAckReplyListener))
    with entrypoint_hook(caller, "relay") as relay:
        assert relay("一") == "一"
    first = listener.queue.name

    # the management API lists a connection a moment after it opens: drop
    # what it lists until the caller has reconnected
    wait_for(lambda: drop_connections(rabbit_manager) >= 0 and listener.queue.name != first, interval=0.5,
             what="a reply queue of a new name after the reconnect")
    assert listener.queue.routing_key in listener.queue.name and not listener.queue.durable

    # the old queue is gone: replies no one waits for do not pile up in it
    wait_for(lambda: not queue_exists(rabbit_manager, first), what="the old reply queue deleted")

    # requests name the new queue, and the replies reach the caller there
    answers = []
    wait_for(lambda: answers.append(call(caller, "二")) or answers[-1] == "二", timeout=30,
             what="a call answered after the reconnect")
    assert listener.queue.name != first


def queue_exists(rabbit_manager, name):
    vhost = unquote(urlparse(config["AMQP_URI"]).path[1:]) or "/"
    return any(q["name"] == name for q in rabbit_manager.get_queues(vhost))


def call(container, value):
    try:
        with entrypoint_hook(container, "relay") as relay:
            return relay(value)
    except Exception as exc:  # the echo service may still be reconnecting: ServiceUnavailable
        return exc
