"""The broker topology of the whole platform, declared from one place.

Why one place: RabbitMQ drops an event published to an exchange no queue is
bound to (nameko#717). Every service declares *all* of the platform's
subscription queues when it starts, so whichever service starts first, no
internal subscriber can miss an event. The subscriptions are not listed
here: ``lamplight.installed.subscriptions()`` reads them off the installed
services' ``@subscribe`` entrypoints, and is what callers pass in. Events nobody subscribes to are caught
by mandatory publishing and parked in ``lamplight.unrouted`` (see
``lamplight.publishing``); an alternate exchange would do the same, but as an
exchange argument it makes stock subscribers that redeclare ``<svc>.events``
fail with PRECONDITION_FAILED.

Retries: a failed message is published to the headers exchange
``lamplight.delay`` with header ``lamplight-delay-ms: <ms>``; it waits in
``lamplight.delay.<ms>`` (TTL = ms) and is dead-lettered to the direct
exchange ``lamplight.redeliver`` with its original routing key, the name of
the queue it came from; every subscription queue is bound there by its own
name. A fixed number of delay queues serves every subscriber. With
``QUEUE_TYPE=quorum`` (a cluster) the retries wait in quorum queues of their
own, ``lamplight.delay-quorum.<ms>`` behind the exchange of the same name,
replicated like the event queues and dead-lettered at least once: a retry
waiting on a lost node is neither lost with it nor held until it returns.
They have names of their own because RabbitMQ cannot turn a classic queue
into a quorum one: a deployment that ran with classic delay queues keeps
them until the retries in them have come back, then deletes them.
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue, binding
from nameko.constants import PERSISTENT

DELAY_EXCHANGE = Exchange("lamplight.delay", type="headers", durable=True)
QUORUM_DELAY_EXCHANGE = Exchange("lamplight.delay-quorum", type="headers", durable=True)
REDELIVER_EXCHANGE = Exchange("lamplight.redeliver", type="direct", durable=True)
UNROUTED_QUEUE_NAME = "lamplight.unrouted"
# not "x-…": a headers exchange ignores x- arguments when it matches
DELAY_HEADER = "lamplight-delay-ms"
ATTEMPTS_HEADER = "x-lamplight-attempts"


def events_exchange(service: str) -> Exchange:
    """Identical to nameko's own ``get_event_exchange`` so that stock nameko
    subscribers and ours declare the same exchange."""
    return Exchange(
        "{}.events".format(service), type="topic", durable=True, delivery_mode=PERSISTENT
    )


@dataclass(frozen=True)
class Subscription:
    consumer: str  # the subscribing service
    source: str  # the publishing service
    event_type: str

    @property
    def queue_name(self) -> str:
        return "{}--{}".format(self.consumer, self.event_type)

    @property
    def dlq_name(self) -> str:
        return self.queue_name + ".dlq"


def _queue_arguments(queue_type: str) -> dict[str, Any]:
    if queue_type == "quorum":
        return {"x-queue-type": "quorum"}
    return {}


def subscription_queue(sub: Subscription, queue_type: str = "classic") -> Queue:
    return Queue(
        sub.queue_name,
        durable=True,
        queue_arguments=_queue_arguments(queue_type),
        bindings=[
            binding(events_exchange(sub.source), routing_key=sub.event_type),
            binding(REDELIVER_EXCHANGE, routing_key=sub.queue_name),
        ],
    )


def dead_letter_queue(sub: Subscription, queue_type: str = "classic") -> Queue:
    return Queue(sub.dlq_name, durable=True, queue_arguments=_queue_arguments(queue_type))


# Events published while no queue is bound for them wait here for a subscriber
# that binds late (replay with `lamplight dlq replay lamplight.unrouted`). It is
# a window, not an archive: bounded in age and length, oldest dropped first.
UNROUTED_TTL_MS = 7 * 24 * 3600 * 1000
UNROUTED_MAX_LENGTH = 100000


def unrouted_queue(queue_type: str = "classic") -> Queue:
    arguments = dict(_queue_arguments(queue_type), **{
        "x-message-ttl": UNROUTED_TTL_MS, "x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"})
    return Queue(UNROUTED_QUEUE_NAME, durable=True, queue_arguments=arguments)


def delay_exchange(queue_type: str = "classic") -> Exchange:
    """Where a failed message is published to wait before it comes back."""
    return QUORUM_DELAY_EXCHANGE if queue_type == "quorum" else DELAY_EXCHANGE


def delay_queue(delay_ms: int, queue_type: str = "classic") -> Queue:
    arguments: dict[str, Any] = {"x-message-ttl": int(delay_ms), "x-dead-letter-exchange": REDELIVER_EXCHANGE.name}
    if queue_type == "quorum":
        # at-least-once dead-lettering (RabbitMQ 3.10+) needs reject-publish overflow
        arguments.update({"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                          "x-overflow": "reject-publish"})
    exchange = delay_exchange(queue_type)
    return Queue(
        "{}.{}".format(exchange.name, delay_ms),
        durable=True,
        queue_arguments=arguments,
        bindings=[binding(exchange, arguments={"x-match": "all", DELAY_HEADER: str(int(delay_ms))})],
    )


def all_entities(subscriptions: Sequence[Subscription], delays_ms: Iterable[int], queue_type: str = "classic",
                 publishers: Iterable[str] = ()) -> list[Exchange | Queue]:
    """Everything to declare, exchanges first: the events exchange of every
    service that publishes or is subscribed to, then the queues."""
    entities: list[Exchange | Queue] = [delay_exchange(queue_type), REDELIVER_EXCHANGE]
    sources = set(publishers) | {sub.source for sub in subscriptions}
    entities += [events_exchange(s) for s in sorted(sources)]
    entities.append(unrouted_queue(queue_type))
    entities += [delay_queue(d, queue_type) for d in sorted(set(delays_ms))]
    for sub in subscriptions:
        entities.append(subscription_queue(sub, queue_type))
        entities.append(dead_letter_queue(sub, queue_type))
    return entities


def declare(connection: Connection, subscriptions: Sequence[Subscription], delays_ms: Iterable[int],
            queue_type: str = "classic", publishers: Iterable[str] = ()) -> None:
    """Declare the platform topology on an open kombu connection (idempotent)."""
    channel = connection.channel()
    try:
        declare_on(channel, all_entities(subscriptions, delays_ms, queue_type, publishers))
    finally:
        channel.close()


def declare_on(channel: Any, entities: Iterable[Exchange | Queue]) -> None:
    """Declare exchanges and queues on an open channel, in order (idempotent)."""
    for entity in entities:
        bound: Any = entity(channel)
        bound.declare()


def find_subscription(queue_name: str, subscriptions: Iterable[Subscription]) -> Subscription | None:
    for sub in subscriptions:
        if queue_name in (sub.queue_name, sub.dlq_name):
            return sub
    return None
