"""The broker goes away while an RPC is being served: the reply cannot be
published, and the service must live on — report the lost reply, let the
broker hand the request back, and serve again once the broker returns.
(Before, the failed reply publish raised out of the worker and nameko killed
the whole container: one broker restart took the needs service down.)"""
import eventlet
from eventlet.event import Event
from nameko.standalone.rpc import ServiceRpcClient

from lamplight.rpc import rpc
from tests.faults.test_broker_outage import broker_outage, rabbitctl  # noqa: F401 (fixture)

entered = Event()
release = Event()


class SlowService:
    name = "slow"

    @rpc
    def hold(self, value):
        if not entered.ready():
            entered.send(True)
            release.wait()
        return value

    @rpc
    def echo(self, value):
        return value


def test_a_reply_that_cannot_be_published_does_not_kill_the_service(container_factory, rabbit_config,
                                                                     broker_outage):
    container = container_factory(SlowService)
    container.start()
    client = ServiceRpcClient("slow")
    proxy = client.start()
    proxy.hold.call_async(1)  # its reply will have no broker to go to
    with eventlet.Timeout(10):
        entered.wait()
    broker_outage()
    try:
        client.stop()
    except Exception:
        pass  # the client's own connection went with the broker
    release.send(True)
    # the worker finishes and tries to reply (the publisher retries for ~15 s)
    with eventlet.Timeout(60):
        while container._worker_threads and not container._died.ready():
            eventlet.sleep(0.2)
    assert not container._died.ready(), "the service container died when its reply could not be sent"

    rabbitctl("start_app")
    rabbitctl("await_startup", "--timeout", "60")
    with eventlet.Timeout(60):
        while True:
            try:
                with ServiceRpcClient("slow", timeout=5) as again:
                    assert again.echo("back") == "back"
                break
            except Exception:
                eventlet.sleep(0.5)
    assert not container._died.ready()
