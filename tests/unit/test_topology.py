from lamplight import installed, topology
from lamplight_tools.services import SERVICES


def test_every_installed_service_is_found_with_its_class_and_subscriptions():
    assert set(installed.service_classes()) == {"gateway", "needs", "volunteers", "points", "notify"}
    assert set(SERVICES) == set(installed.service_classes())
    subs = installed.subscriptions()
    # read off the classes' own @subscribe entrypoints: a few that must be there, and none twice
    assert topology.Subscription("volunteers", "needs", "need.triaged") in subs
    assert topology.Subscription("points", "gateway", "park.configured") in subs
    assert topology.Subscription("notify", "notify", "broadcast.requested") in subs
    assert len(subs) == len(set(subs)) == sum(len(installed.subscriptions_of(c))
                                              for c in installed.service_classes().values())
    # every subscription is to a service that declares what it publishes
    assert {s.source for s in subs} <= set(installed.publishers())


def test_a_new_subscribe_is_in_the_topology_without_a_second_edit():
    from lamplight.consuming import subscribe

    class Extra:
        name = "extra"

        @subscribe("needs", "need.closed")
        def on_closed(self, envelope):
            pass

    (sub,) = installed.subscriptions_of(Extra)
    assert (sub.queue_name, sub.dlq_name) == ("extra--need.closed", "extra--need.closed.dlq")
    names = {getattr(e, "name", None) for e in topology.all_entities([sub], [1000])}
    assert {"needs.events", "extra--need.closed", "extra--need.closed.dlq", "lamplight.delay.1000"} <= names


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


def test_on_a_cluster_retries_wait_in_quorum_queues_of_their_own_dead_lettered_at_least_once():
    queue = topology.delay_queue(5000, "quorum")
    assert queue.name == "lamplight.delay-quorum.5000"
    assert queue.queue_arguments == {"x-message-ttl": 5000, "x-dead-letter-exchange": "lamplight.redeliver",
                                     "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                                     "x-overflow": "reject-publish"}
    (bind,) = queue.bindings
    assert bind.exchange.name == topology.delay_exchange("quorum").name == "lamplight.delay-quorum"
    assert bind.arguments[topology.DELAY_HEADER] == "5000"
    names = {getattr(e, "name", None) for e in topology.all_entities([], [5000], "quorum")}
    assert {"lamplight.delay-quorum", "lamplight.delay-quorum.5000"} <= names
    assert not {"lamplight.delay", "lamplight.delay.5000"} & names


def test_quorum_queues_when_asked():
    sub = installed.subscriptions()[0]
    assert topology.subscription_queue(sub, "quorum").queue_arguments == {"x-queue-type": "quorum"}
    assert topology.dead_letter_queue(sub, "quorum").queue_arguments == {"x-queue-type": "quorum"}


def test_events_exchange_matches_nameko_so_stock_subscribers_can_bind():
    from nameko.standalone.events import get_event_exchange

    ours, theirs = topology.events_exchange("needs"), get_event_exchange("needs")
    assert (ours.name, ours.type, ours.durable, ours.arguments) == (
        theirs.name, theirs.type, theirs.durable, theirs.arguments)
