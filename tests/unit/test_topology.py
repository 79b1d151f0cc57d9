import importlib
import inspect

from lamplight import topology
from lamplight.consuming import Subscribe
from lamplight_tools.services import SERVICES


def declared_subscriptions():
    """Every @subscribe entrypoint of every service, from the code itself."""
    found = set()
    for name, (path, _) in SERVICES.items():
        module_name, cls_name = path.split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        for _, method in inspect.getmembers(cls, inspect.isfunction):
            for entrypoint in getattr(method, "nameko_entrypoints", ()):
                if isinstance(entrypoint, Subscribe):
                    found.add(topology.Subscription(cls.name, entrypoint.source_service, entrypoint.event_type))
    return found


def test_topology_lists_exactly_the_subscriptions_services_declare():
    # a service subscribing to something the topology does not pre-declare
    # could miss events published before it first starts (nameko#717)
    assert declared_subscriptions() == set(topology.SUBSCRIPTIONS)


def test_subscription_queue_is_bound_to_events_and_to_redelivery():
    sub = topology.Subscription("volunteers", "needs", "need.submitted")
    queue = topology.subscription_queue(sub)
    assert queue.name == "volunteers--need.submitted"
    keys = {(b.exchange.name, b.routing_key) for b in queue.bindings}
    assert keys == {("needs.events", "need.submitted"), ("lamplight.redeliver", "volunteers--need.submitted")}


def test_delay_queue_dead_letters_back_after_its_ttl():
    queue = topology.delay_queue(5000)
    assert queue.queue_arguments == {"x-message-ttl": 5000, "x-dead-letter-exchange": "lamplight.redeliver"}
    (bind,) = queue.bindings
    assert bind.arguments[topology.DELAY_HEADER] == "5000"


def test_quorum_queues_when_asked():
    sub = topology.SUBSCRIPTIONS[0]
    assert topology.subscription_queue(sub, "quorum").queue_arguments == {"x-queue-type": "quorum"}
    assert topology.dead_letter_queue(sub, "quorum").queue_arguments == {"x-queue-type": "quorum"}


def test_events_exchange_matches_nameko_so_stock_subscribers_can_bind():
    from nameko.standalone.events import get_event_exchange

    ours, theirs = topology.events_exchange("needs"), get_event_exchange("needs")
    assert (ours.name, ours.type, ours.durable, ours.arguments) == (
        theirs.name, theirs.type, theirs.durable, theirs.arguments)
