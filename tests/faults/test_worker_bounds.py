"""A slow subscription cannot hold every worker of its service.

Each subscription holds at most EVENT_CONCURRENCY workers (its consumer's
prefetch), the subscriptions together at most max_workers minus
RPC_RESERVED_WORKERS; what waits beyond that waits in the broker, and a
request is answered while every event handler is stuck. (Before, one
subscription prefetched 128 messages and took all 64 workers: the echo
wall's merges held 56 of the needs service's 64 while 58 submits waited.)
A process whose workers are all busy for READY_SATURATED_S says so on /readyz."""

import eventlet
import pytest
from eventlet.event import Event
from nameko import config
from nameko.standalone.rpc import ServiceRpcClient

from lamplight.consuming import subscribe
from lamplight.envelope import new_event
from lamplight.observability import Observability
from lamplight.rpc import rpc
from tests.conftest import readyz, wait_for

EVENTS_EACH = 30


class Stuck:
    name = "stuck"
    log = Observability()
    release = Event()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    handled: list[str] = []

    def _hold(self, queue, envelope):
        Stuck.running[queue] = Stuck.running.get(queue, 0) + 1
        Stuck.peak[queue] = max(Stuck.peak.get(queue, 0), Stuck.running[queue])
        Stuck.peak["all"] = max(Stuck.peak.get("all", 0), sum(v for k, v in Stuck.running.items()))
        try:
            Stuck.release.wait()
        finally:
            Stuck.running[queue] -= 1
        Stuck.handled.append(envelope["id"])

    @subscribe("needs", "need.submitted")
    def on_submitted(self, envelope):
        self._hold("submitted", envelope)

    @subscribe("needs", "need.triaged")
    def on_triaged(self, envelope):
        self._hold("triaged", envelope)

    @rpc
    def ping(self):
        return "pong"

    @rpc
    def hold(self):
        Stuck.release.wait()
        return "held"


@pytest.fixture
def stuck(container_factory, service_config):
    Stuck.release, Stuck.running, Stuck.peak, Stuck.handled = Event(), {}, {}, []
    with config.patch({"max_workers": 10, "EVENT_CONCURRENCY": 4, "RPC_RESERVED_WORKERS": 4,
                       "READY_SATURATED_S": 1}):
        container = container_factory(Stuck)
        container.start()
        yield container
        if not Stuck.release.ready():
            Stuck.release.send(True)


def _event(event_type, i):
    return new_event(event_type, source="needs", park_id="xuwei", subject="n{}".format(i), data={"i": i})



def test_stuck_subscriptions_hold_their_share_and_a_request_is_still_answered(stuck, broker):
    for i in range(EVENTS_EACH):
        broker.publish("needs.events", "need.submitted", _event("need.submitted", i))
        broker.publish("needs.events", "need.triaged", _event("need.triaged", i))
    # 10 workers, 4 for requests: the two subscriptions share 6, neither above 4
    wait_for(lambda: sum(Stuck.running.values()) == 6, what="the event workers all taken")
    eventlet.sleep(1)  # and no more are taken however long they wait
    assert sum(Stuck.running.values()) == 6
    assert Stuck.peak["submitted"] <= 4 and Stuck.peak["triaged"] <= 4, Stuck.peak
    # the rest waits in the broker, not in the process
    waiting = broker.depth("stuck--need.submitted") + broker.depth("stuck--need.triaged")
    assert waiting == 2 * EVENTS_EACH - 8, waiting
    with ServiceRpcClient("stuck", timeout=5) as client:
        assert client.ping() == "pong"
    status, body = readyz(stuck)
    assert status == 200, body

    Stuck.release.send(True)
    wait_for(lambda: len(Stuck.handled) == 2 * EVENTS_EACH, timeout=30, what="every event handled")
    assert sorted(Stuck.handled) == sorted(set(Stuck.handled))
    assert Stuck.peak["all"] <= 6, Stuck.peak
    wait_for(lambda: broker.depth("stuck--need.submitted") + broker.depth("stuck--need.triaged") == 0,
             what="both queues drained")


def test_a_process_whose_workers_are_all_busy_says_it_cannot_keep_up(stuck):
    client = ServiceRpcClient("stuck", timeout=30)
    proxy = client.start()
    try:
        replies = [proxy.hold.call_async() for _ in range(10)]
        wait_for(lambda: readyz(stuck)[0] == 503, timeout=10, what="/readyz not ready")
        status, body = readyz(stuck)
        assert "cannot keep up" in body["checks"]["workers"], body
        Stuck.release.send(True)
        assert [r.result() for r in replies] == ["held"] * 10
        wait_for(lambda: readyz(stuck)[0] == 200, timeout=10, what="/readyz ready again")
    finally:
        client.stop()
