"""The volunteers service's business metrics (the kernel's own are in lamplight.metrics)."""
from prometheus_client import Counter, Histogram

from lamplight.metrics import LATENCY_BUCKETS

TASKS_OFFERED = Counter(
    "lamplight_tasks_offered_total", "Task offers made to responders.", ["park"]
)
NEEDS_UNMATCHED = Counter(
    "lamplight_needs_unmatched_total",
    "Needs dispatch found no responder for.",
    ["park", "category"],
)
TASK_TRANSITIONS = Counter(
    "lamplight_task_events_total", "Task changes by the event they publish (task.claimed, task.released, ...).",
    ["park", "type"],
)
TASK_ESCALATIONS = Counter(
    "lamplight_task_escalations_total",
    "Tasks nobody claimed in time, escalated to the team lead or paged to the night squad.",
    ["park", "level"],
)
DISPATCH_SECONDS = Histogram(
    "lamplight_dispatch_seconds", "From a routed need's arrival to its task written with its offers.",
    ["park", "mode"], buckets=LATENCY_BUCKETS,
)
CALLOUT_RECIPIENTS = Counter(
    "lamplight_emergency_callout_recipients_total", "People reached by emergency call-outs.", ["park"]
)
VISITS_MISSED = Counter(
    "lamplight_visits_missed_total", "Must-visits nobody proved in their month.", ["park", "kind"]
)
