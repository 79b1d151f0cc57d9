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
