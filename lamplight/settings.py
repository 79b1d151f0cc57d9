"""Typed access to the nameko config (config.yaml with ``${VAR:default}``).

Every knob the kernel reads is listed here with its default, so operators have
one place to look.
"""
from typing import Any

from nameko import config

DEFAULTS = {
    "AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/",
    "MONGO_URI": "mongodb://127.0.0.1:27018/",
    # at stop, how long the client stays open for a provider still writing (the outbox's cleanup)
    "MONGO_CLOSE_WAIT_S": 10.0,
    # database of service S is <prefix><S>; tests use a prefix per run
    "MONGO_DB_PREFIX": "lamplight_",
    # host:port of the /metrics, /healthz and /readyz server; empty disables it
    "OBSERVABILITY_ADDRESS": "127.0.0.1:0",
    # a message whose handler fails this many times goes to the DLQ
    "EVENT_MAX_ATTEMPTS": 5,
    # delay before attempt 2, 3, …; the last value repeats
    "EVENT_RETRY_DELAYS_MS": [1000, 5000, 30000, 120000],
    # the workers one subscription may hold at once in a process (its consumer's
    # prefetch), and the workers of max_workers only requests and timers take:
    # a slow projection never holds every worker, and intake always has some
    "EVENT_CONCURRENCY": 8,
    "RPC_RESERVED_WORKERS": 16,
    # a process whose workers have all been busy this long says it cannot keep up on /readyz
    "READY_SATURATED_S": 15.0,
    # classic for a single node, quorum for a RabbitMQ cluster
    "QUEUE_TYPE": "classic",
    # the lanes of entrypoints this process serves, "main", "bulk" or both (empty: both);
    # see lamplight/lanes.py
    "LANES": "",
    # how often the relay looks for events a crash left unpublished, and how old
    # an unpublished event must be before the relay takes it over
    "OUTBOX_RELAY_INTERVAL_S": 5.0,
    "OUTBOX_RELAY_GRACE_S": 10.0,
    # group commit: at most this many documents per insert_many, waiting at most
    # this long for a batch to fill
    "STORE_BATCH_MAX": 256,
    "STORE_BATCH_WAIT_MS": 2.0,
    # publisher: at most this many messages in flight before waiting for confirms
    "PUBLISH_BATCH_MAX": 256,
    "RPC_TIMEOUT_S": 10.0,
    # a park's configuration is read once per process and kept; every install
    # is announced to every process of the service, and this bounds an entry's
    # life in case an announcement was lost
    "CONFIG_CACHE_S": 30.0,
    # benchmarks: check each new shape of query a process sends against the
    # collection's indexes, and count those no index serves beyond their park
    # (lamplight_db_scans_total); off in production
    "DB_CHECK_SCANS": 0,
    # needs: how often the time-limit sweep reads its alarms and visits the parks whose alarm rang
    "NEEDS_SWEEP_INTERVAL_S": 30.0,
    # needs: how often the sweep also counts a park's open needs by category (a read of
    # every open need; every park's alarm is rung this often for it; the overdue count is
    # read by each visit through the due-time index)
    "NEEDS_OPEN_GAUGE_S": 300.0,
    # volunteers: the same for its sweep (expiry, escalation, stale claims, take-overs, visits)
    "VOLUNTEERS_SWEEP_INTERVAL_S": 5.0,
    # the sweeps and the send loop visit only the parks whose alarm rang (lamplight.alarms);
    # every SWEEP_ROUND_S each rings every park's, in case a ring was lost with its process
    "SWEEP_ROUND_S": 600.0,
    # notify: how often the send loop reads its alarms and visits the parks whose alarm rang
    # (each with something due), how many parks it visits at once, how many due notices it
    # takes per park and pass, how many it sends at once in each park, and when an attempt
    # with no outcome counts as lost with its process
    "NOTIFY_TICK_S": 1.0,
    "NOTIFY_PARKS_AT_ONCE": 64,
    "NOTIFY_SEND_BATCH": 500,
    "NOTIFY_PENDING_GAUGE_S": 15.0,
    "NOTIFY_SEND_CONCURRENCY": 32,
    # the chunks of a broadcast's fan-out in flight at once (one planned while another is written)
    "NOTIFY_FANOUT_CONCURRENCY": 3,
    "NOTIFY_SEND_TIMEOUT_S": 120.0,
    # gateway: the HS256 secret of signed tokens (at least 32 characters; no
    # default: a gateway without it does not start), the default limit of a
    # key or a person's tokens, the limit of public pages per client address,
    # and how many proxies in front of the gateway append to X-Forwarded-For
    "GATEWAY_TOKEN_SECRET": None,
    "GATEWAY_RATE_LIMIT": "600/minute",
    "GATEWAY_PUBLIC_RATE_LIMIT": "120/minute",
    "GATEWAY_FORWARDED_HOPS": 0,
}


def get(key: str) -> Any:
    value = config.get(key)
    if value is None or value == "":
        return DEFAULTS.get(key)
    return value


def get_int(key: str) -> int:
    return int(get(key))


def get_float(key: str) -> float:
    return float(get(key))


def get_list_of_int(key: str) -> list[int]:
    value = get(key)
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    return [int(v) for v in value]
