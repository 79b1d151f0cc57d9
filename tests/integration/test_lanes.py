"""Lanes on the real broker: a process consumes only the queues of the lanes it
serves, and fires only their timers (lamplight.lanes)."""
import pytest
from amqp.exceptions import NotFound
from kombu import Connection
from nameko import config
from nameko.testing.utils import get_extension

from lamplight.lanes import Timer
from services.notify.service import NotifyService
from tests.conftest import wait_for

MAIN_QUEUES = ("rpc-notify", "notify--task.offered", "notify--need.triaged")
BULK_QUEUES = ("notify--broadcast.requested", "notify--emergency.declared")


def consumers(queue):
    with Connection(config["AMQP_URI"]) as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).consumer_count
        except NotFound:  # never declared: no process ever took requests here
            return 0


@pytest.mark.parametrize("served", ["main", "bulk", "main,bulk"])
def test_a_process_consumes_the_queues_and_fires_the_timers_of_its_lanes_only(container_factory, service_config,
                                                                              served):
    with config.patch({"LANES": served}):
        container = container_factory(NotifyService)
        container.start()
        main, bulk = "main" in served, "bulk" in served
        wait_for(lambda: all(consumers(q) == int(main) for q in MAIN_QUEUES)
                 and all(consumers(q) == int(bulk) for q in BULK_QUEUES), what="the lanes' consumers")
        tick = get_extension(container, Timer, method_name="tick")
        assert (tick.gt is not None) == bulk
        container.stop()  # a process stops cleanly whatever it served
    assert all(consumers(q) == 0 for q in MAIN_QUEUES + BULK_QUEUES)


def waits(park, lane):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("lamplight_event_wait_seconds_count",
                                     {"service": "notify", "park": park, "lane": lane}) or 0.0


def test_each_park_s_events_are_timed_from_their_time_to_their_worker_by_lane(container_factory, service_config,
                                                                             broker):
    """lamplight_event_wait_seconds{service, park, lane}: what an SRE reads to see one park's events wait."""
    from datetime import timedelta

    from lamplight.clock import iso, utcnow
    from lamplight.envelope import new_event
    from services.notify import domain

    container = container_factory(NotifyService)
    container.start()
    park = "lanes-wait"
    before = waits(park, "main"), waits(park, "bulk"), waits("another-park", "main")
    envelope = new_event("task.offered", source="volunteers", park_id=park, subject="t1",
                         data=dict(domain.EXAMPLES["task.offered"], responder_id="r1"))
    envelope["time"] = iso(utcnow() - timedelta(seconds=40))  # published 40 s ago: it waited
    broker.publish("volunteers.events", "task.offered", envelope)
    broker.publish("notify.events", "broadcast.requested", new_event(
        "broadcast.requested", source="notify", park_id=park, subject="b-missing", data={}))
    wait_for(lambda: waits(park, "main") == before[0] + 1 and waits(park, "bulk") == before[1] + 1,
             what="both events timed")
    from prometheus_client import REGISTRY

    over_30 = REGISTRY.get_sample_value("lamplight_event_wait_seconds_bucket",
                                        {"service": "notify", "park": park, "lane": "main", "le": "30.0"})
    assert over_30 is not None and over_30 < waits(park, "main")  # the 40 s wait is above the 30 s bucket
    assert waits("another-park", "main") == before[2]
