"""The points service's business metrics (the kernel's own are in lamplight.metrics)."""
from prometheus_client import Counter

POINTS_ENTRIES = Counter(
    "lamplight_points_entries_total", "Ledger entries written.", ["park", "account", "kind"]
)
POINTS_SKIPPED = Counter(
    "lamplight_points_skipped_total",
    "Events that matched a rule but posted nothing (no member, cap reached).",
    ["park", "type", "reason"],
)
