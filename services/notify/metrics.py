"""The notify service's business metrics (the kernel's own are in lamplight.metrics)."""
from prometheus_client import Counter, Gauge, Histogram

from lamplight.metrics import LATENCY_BUCKETS

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
    buckets=LATENCY_BUCKETS,
)
