"""The needs service's business metrics (the kernel's own are in lamplight.metrics)."""
from prometheus_client import Counter, Gauge

NEEDS_SUBMITTED = Counter(
    "lamplight_needs_submitted_total", "Needs accepted.", ["park", "category", "channel"]
)
NEEDS_TRANSITIONS = Counter(
    "lamplight_needs_transitions_total", "Lifecycle changes of needs by action.", ["park", "action"]
)
NEEDS_OPEN = Gauge(
    "lamplight_needs_open", "Needs not yet closed, rejected or cancelled (set by the sweep).", ["park", "category"]
)
NEEDS_OVERDUE = Gauge(
    "lamplight_needs_overdue",
    "Open needs past their due time with the clock running (set by the sweep).",
    ["park", "category"],
)
NEEDS_SKIPPED_EVENTS = Counter(
    "lamplight_needs_dispatch_events_skipped_total",
    "Dispatch events that changed nothing (a redelivery, or a need already past that step).",
    ["park", "type"],
)
