"""Every Prometheus metric the kernel exports, defined once.

Label values are bounded: service, entrypoint, event type, park, channel and
outcome. Never an id.
"""
from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# RED per entrypoint
ENTRYPOINT_CALLS = Counter(
    "lamplight_entrypoint_calls_total",
    "Entrypoint calls by outcome (ok, rejected for bad input or conflict, error).",
    ["service", "entrypoint", "outcome"],
)
ENTRYPOINT_DURATION = Histogram(
    "lamplight_entrypoint_duration_seconds",
    "Time spent in an entrypoint's worker.",
    ["service", "entrypoint"],
    buckets=_LATENCY_BUCKETS,
)

DB_SCANS = Counter(
    "lamplight_db_scans_total",
    "Shapes of query no index serves beyond their park: the park's documents read whole (DB_CHECK_SCANS=1 only).",
    ["service", "collection"],
)
DB_REQUESTS = Counter(
    "lamplight_db_requests_total",
    "Commands sent to the database, by command and collection (a partition counts as its collection).",
    ["service", "command", "collection"],
)
SERVER_ERRORS = Counter(
    "lamplight_http_server_errors_total",
    "HTTP answers of status 5xx (500: a fault of ours, logged with its request id; 503: a dependency away).",
    ["service", "status"],
)
RPC_EXPIRED = Counter(
    "lamplight_rpc_expired_total",
    "RPC requests dropped unrun: their caller's deadline had passed when a worker was free to take them.",
    ["service", "entrypoint"],
)
RPC_REPLIES_LOST = Counter(
    "lamplight_rpc_replies_lost_total",
    "RPC replies that could not be published (the broker was away); the caller times out and retries.",
    ["service", "entrypoint"],
)

# events
EVENTS_PUBLISHED = Counter(
    "lamplight_events_published_total",
    "Events confirmed by the broker.",
    ["service", "type", "park"],
)
EVENTS_UNROUTED = Counter(
    "lamplight_events_unrouted_total",
    "Events no queue was bound for, parked in lamplight.unrouted.",
    ["service", "type"],
)
EVENTS_PUBLISH_FAILED = Counter(
    "lamplight_events_publish_failed_total",
    "Publish attempts that failed (left in the outbox for the relay).",
    ["service", "type"],
)
EVENTS_RELAYED = Counter(
    "lamplight_events_relayed_total",
    "Events the relay found unpublished and published.",
    ["service", "type"],
)
EVENTS_CONSUMED = Counter(
    "lamplight_events_consumed_total",
    "Events handled successfully.",
    ["service", "type", "park"],
)
EVENTS_FAILED = Counter(
    "lamplight_events_failed_total",
    "Handler attempts that raised (each is retried or dead-lettered).",
    ["service", "type"],
)
EVENTS_DEAD_LETTERED = Counter(
    "lamplight_events_dead_lettered_total",
    "Events parked in a dead-letter queue after their last attempt.",
    ["service", "type"],
)
OUTBOX_BACKLOG = Gauge(
    "lamplight_outbox_backlog",
    "Events staged in an outbox by this process and not yet confirmed by the broker.",
    ["service"],
)
OUTBOX_OLDEST_UNCONFIRMED = Gauge(
    "lamplight_outbox_oldest_unconfirmed_seconds",
    "Age of this process's oldest event not yet confirmed by the broker (0 when none).",
    ["service"],
)
OUTBOX_RELAY_FOUND = Gauge(
    "lamplight_outbox_relay_found",
    "Events the last relay pass found in the outboxes of dead writers.",
    ["service"],
)

# business
NEEDS_SUBMITTED = Counter(
    "lamplight_needs_submitted_total", "Needs accepted.", ["park", "category", "channel"]
)
TASKS_OFFERED = Counter(
    "lamplight_tasks_offered_total", "Task offers made to responders.", ["park"]
)
NEEDS_UNMATCHED = Counter(
    "lamplight_needs_unmatched_total",
    "Needs dispatch found no responder for.",
    ["park", "category"],
)
NOTICES = Counter(
    "lamplight_notices_total", "Notices by channel and outcome.", ["park", "channel", "outcome"]
)
NOTIFY_UNRESOLVED = Counter(
    "lamplight_notify_unresolved_total", "Events notify found nobody to tell about.", ["park", "type"]
)
NOTICES_PENDING = Gauge(
    "lamplight_notices_pending", "Notices queued, deferred or waiting for a digest (set by the send loop).", ["park"]
)
NOTICE_SEND_LAG = Histogram(
    "lamplight_notice_send_lag_seconds",
    "Time from a send being due to the provider being asked: the send loop's queue wait, the park's rate limit"
    " included.", ["park", "channel", "priority"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
NOTICE_SEND_SECONDS = Histogram(
    "lamplight_notice_send_seconds", "Time a provider took to take (or refuse) one notice.", ["channel"],
    buckets=_LATENCY_BUCKETS,
)
POINTS_ENTRIES = Counter(
    "lamplight_points_entries_total", "Ledger entries written.", ["park", "account", "kind"]
)
POINTS_SKIPPED = Counter(
    "lamplight_points_skipped_total",
    "Events that matched a rule but posted nothing (no member, cap reached).",
    ["park", "type", "reason"],
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
    ["park", "mode"], buckets=_LATENCY_BUCKETS,
)
CALLOUT_RECIPIENTS = Counter(
    "lamplight_emergency_callout_recipients_total", "People reached by emergency call-outs.", ["park"]
)
VISITS_MISSED = Counter(
    "lamplight_visits_missed_total", "Must-visits nobody proved in their month.", ["park", "kind"]
)
