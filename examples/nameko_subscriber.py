"""A subscriber written as a stock nameko service, with nameko's own
``@event_handler`` — no Lamplight code. Lamplight publishes to the exchange
nameko itself declares for a service (``needs.events``), with the event type
as routing key, so nameko binds to it like to any nameko service's events.

A district supervision dashboard: it counts the needs that pass their due
time, per park. nameko's ``SERVICE_POOL`` handler type gives the service one
durable queue (``evt-needs-need.overdue--supervision_dashboard.handle_overdue``);
an event delivered twice (nameko acks after the handler returns) is counted
once, by its CloudEvents id.

    nameko run examples.nameko_subscriber:SupervisionDashboard --broker amqp://guest:guest@127.0.0.1:5672/
"""
import json

from nameko.events import SERVICE_POOL, event_handler


class SupervisionDashboard:
    name = "supervision_dashboard"
    # event id -> (park, type, category); a real dashboard keeps this in its own database
    seen = {}

    @event_handler("needs", "need.overdue", handler_type=SERVICE_POOL, reliable_delivery=True)
    def handle_overdue(self, envelope):
        if isinstance(envelope, (bytes, str)):
            envelope = json.loads(envelope)
        if envelope["id"] in self.seen:
            return  # a delivery again
        self.seen[envelope["id"]] = (envelope["parkid"], envelope["type"], envelope["data"].get("category"))

    @classmethod
    def overdue_by_park(cls):
        counts = {}
        for park, _, _ in cls.seen.values():
            counts[park] = counts.get(park, 0) + 1
        return counts
