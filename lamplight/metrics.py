"""The Prometheus metrics of the kernel: entrypoints, the database, events
and the outbox. Each service defines its own business metrics beside it
(``services/<name>/metrics.py``).

Label values are bounded: service, entrypoint, event type, park, category,
channel, outcome, priority. Never an id.
"""
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

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
    buckets=LATENCY_BUCKETS,
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
ACKS_LOST = Counter(
    "lamplight_acks_lost_total",
    "Acks (or requeues) that could not be sent because the broker connection was gone; the broker hands "
    "those messages out again.",
    ["service"],
)
EVENT_WORKERS_BUSY = Gauge(
    "lamplight_event_workers_busy",
    "Workers a subscription holds now (waiting for the shared event workers included); at EVENT_CONCURRENCY "
    "its backlog waits in the broker.",
    ["service", "queue"],
)
PASSES_DEFERRED = Counter(
    "lamplight_loop_passes_deferred_total",
    "Passes of a loop over a park asked for while the park's previous pass still ran (it follows that one): "
    "a park whose passes outlast the loop's period.",
    ["service", "loop", "park"],
)
PASS_SECONDS = Histogram(
    "lamplight_loop_pass_seconds",
    "Time a loop's pass over one park took (a rate-limited park's pass paces its sends through the second).",
    ["service", "loop"],
    buckets=LATENCY_BUCKETS,
)
EVENT_WAIT = Histogram(
    "lamplight_event_wait_seconds",
    "From an event's time to a worker of this service starting on it, first deliveries only: how long a park's "
    "events wait to be published, in the queue and for a free worker, by the lane that takes them.",
    ["service", "park", "lane"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
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
REPLY_QUEUES_RENEWED = Counter(
    "lamplight_rpc_reply_queues_renewed_total",
    "Reply queues of a new name this process consumes from after its connection to the broker was re-established.",
    ["service"],
)
OUTBOX_IN_DOUBT = Gauge(
    "lamplight_outbox_in_doubt",
    "Events whose write failed with its outcome unknown (the connection was lost with the write sent), "
    "until the writer finds whether the write took effect.",
    ["service"],
)
OUTBOX_DOUBTS_SETTLED = Counter(
    "lamplight_outbox_doubts_settled_total",
    "Events of writes whose outcome was unknown, by what the writer found: written (the event is "
    "published) or not_written (dropped).",
    ["service", "outcome"],
)
OUTBOX_RELAY_FOUND = Gauge(
    "lamplight_outbox_relay_found",
    "Events the last relay pass found in the outboxes of dead writers.",
    ["service"],
)
