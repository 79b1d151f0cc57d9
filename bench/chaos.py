"""Faults under a steady load, then what the database says.

    ./dev chaos [--rate 6] [--gap 25] [--faults kill-volunteers,kill-notify,...] [--restart-after 5]
    ./dev chaos --cluster    (on a three-node RabbitMQ cluster, quorum queues, two replicas of each service)

Starts its own copy of the platform (every service a ``nameko run`` process,
``--replicas`` of each, its own vhost and databases, ports 28100/29200-29204
and, for the second replicas, 28101/29210-29214), registers responders
on duty around the clock, and POSTs needs at ``--rate`` per second from
clients that retry every 503, timeout or refused connection with the same
Idempotency-Key (once a second, for up to five minutes, as a careful client
does; with replicas, each attempt to the next gateway, as a load balancer
does, and a refused connection retried on the next at once); beside every
third need, a desk points posting (two to a member, within the rule's daily
cap), retried the same way. Meanwhile it injects
the faults in turn, ``--gap`` seconds apart:

- ``kill-<service>``: SIGKILL, restarted ``--restart-after`` s later as the
  development stack does;
- ``broker-restart``: RabbitMQ's app stopped for 7 s and started again;
- ``db-pause``: the MongoDB-protocol server stopped (SIGSTOP) for 10 s;
- ``db-kill``: the MongoDB-protocol server killed (SIGKILL) and started
  again ``--restart-after`` s later, as ``./dev`` starts it;
- with ``--cluster`` (lamplight_dev/cluster.py: three nodes, one AMQP URI
  naming all three, ``QUEUE_TYPE=quorum``): ``node-kill``, the node the
  connections go to first killed (SIGKILL) and started again
  ``--restart-after`` s later; ``rolling-restart``, every node's app
  stopped for 3 s and started again, one after another, as an upgrade does;
- with ``--replicas 2`` or more: ``kill-replicas``, one replica of every
  service (gateway, needs, volunteers, points, notify) SIGKILLed at once
  and restarted ``--restart-after`` s later, while the others serve: the
  gateway may answer 503 only within ``RPC_TIMEOUT_S`` of the kill (a call
  that was in the hands of a killed replica), and the run fails on a later one.

After each fault it measures when the platform serves again (every
``/readyz`` 200 and a 2xx) and when it has caught up under the load (what
waits in the work queues and the outboxes under one second of load). After
the last fault the load goes on until it has caught up, at most
``--settle`` seconds (60, the bound the README states), then stops, and the
platform is given ``--settle`` seconds more to reach steady state: every
queue of its vhost empty, every outbox backlog 0, every ``/readyz`` 200.
Then, from the databases:
every acknowledged need exactly once, no need written for a key the client
never saw answered, one task per routed need, one task-offer notice per
(responder, task, channel), every acknowledged points posting exactly once
and none for a key never answered, every account's balance the sum of its
entries and its hash chain clean (``lamplight points verify``), the
dead-letter queues' contents. It prints a line per fault (what the gateway
answered while it lasted, what was lost or duplicated among the needs first
sent then, how long the platform took to serve again and to catch up) and
exits 1 if anything was lost or duplicated, if it did not catch up after
the last fault or reach steady state within the bound, or if the gateway
answered any 5xx but 503.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402
from kombu import Connection  # noqa: E402

from bench import common  # noqa: E402
from bench.common import MONGO_URI, drop_databases, seed_demo_park  # noqa: E402
from lamplight import settings  # noqa: E402
from lamplight_dev import cluster, demo  # noqa: E402
from lamplight_dev.devstack import replicas  # noqa: E402

PARK = "chaos"
VHOST = "lamplight_chaos"
UNROUTED = "lamplight.unrouted"
WEB_PORT, PORT_BASE = 28100, 29200
SERVICES = common.SERVICES
CLUSTER_FAULTS = ["kill-replicas", "node-kill", "rolling-restart", "db-kill"]
FAULTS = ["kill-volunteers", "kill-notify", "kill-needs", "kill-points", "kill-gateway", "broker-restart", "db-pause",
          "db-kill"]
RETRY_WINDOW_S = 300
STATS_INTERVAL_S = 5  # RabbitMQ's collect_statistics_interval (its default)
SETTLE_BOUND_S = 60
POSTING_EVERY, POSTING_RULE = 3, "volunteer-event"
# the platform's default: a call in a killed replica's hands ends by then
RPC_TIMEOUT_S = settings.DEFAULTS["RPC_TIMEOUT_S"]


class Load:
    """Needs at a steady rate, each retried with its key until answered 2xx."""

    def __init__(self, rate, headers, run_id, ports=(WEB_PORT,)):
        self.rate, self.headers, self.run_id, self.ports = rate, headers, run_id, list(ports)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.first = {}      # key -> time of its first attempt
        self.acked = {}      # key -> (time answered 2xx, need id)
        self.answers = []    # (time, status or "timeout"/"refused"), needs and postings
        self.postings_first = {}
        self.postings_acked = {}
        self.given_up = []

    def run(self, clients=8):
        threads = [threading.Thread(target=self._client, args=(n, clients), daemon=True) for n in range(clients)]
        for t in threads:
            t.start()
        return threads

    def _client(self, offset, clients):
        start = time.monotonic()
        i = offset
        while not self.stop.is_set():
            delay = start + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._submit(i)
            i += clients

    def _submit(self, i):
        _, need = demo.NEEDS[i % len(demo.NEEDS)]
        requester = {k: v for k, v in need["requester"].items() if k != "phone"}
        body = dict(need, title="{} #{}".format(need["title"], i), requester=dict(requester, name="工友{}".format(i)))
        self._send("chaos-{}-{}".format(self.run_id, i), "needs", body, self.first, self.acked)
        if i % POSTING_EVERY == 0:
            # a desk posting beside every third need: two to a member, within the rule's daily cap
            j = i // POSTING_EVERY
            posting = {"member_id": "CH{}-{}".format(self.run_id, j // 2), "rule_code": POSTING_RULE,
                       "actor": "desk-chaos", "reason": "chaos #{}".format(j)}
            self._send("chaos-pts-{}-{}".format(self.run_id, j), "points/entries", posting, self.postings_first,
                       self.postings_acked)

    def _send(self, key, path, body, first_of, acked):
        """POST with the key until a 2xx, retrying 503s, timeouts, refused
        connections and a 409 ``busy`` (a write of the same key in flight)."""
        payload_out = json.dumps(body)
        first = time.monotonic()
        with self.lock:
            first_of[key] = first
        attempt = hash(key)
        while time.monotonic() - first < RETRY_WINDOW_S:
            status = None
            attempt += 1
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.ports[attempt % len(self.ports)], timeout=15)
                conn.request("POST", "/api/v1/parks/{}/{}".format(PARK, path), payload_out,
                             dict(self.headers, **{"Idempotency-Key": key}))
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                conn.close()
            except TimeoutError:
                status = "timeout"
            except OSError:
                status = "refused"
            now = time.monotonic()
            with self.lock:
                self.answers.append((now, status))
                if status in (200, 201, 202):
                    acked[key] = (now, json.loads(payload)["id"])
                    return
            busy = status == 409 and b'"busy"' in payload
            if isinstance(status, int) and 400 <= status < 500 and not busy:
                with self.lock:
                    self.given_up.append((key, status, payload[:200]))
                return
            # a refused connection is a gateway that is down: the next one at once
            time.sleep(0.1 if status == "refused" and len(self.ports) > 1 else 1)
        with self.lock:
            self.given_up.append((key, "window", b""))


class Broker:
    """The single node ./dev starts, or the three-node cluster (``--cluster``)."""

    def __init__(self, clustered):
        self.clustered = clustered
        self.mgmt = cluster.mgmt if clustered else common.mgmt

    def vhost(self, name):
        """An empty vhost (deleted first if a run left it); returns its AMQP URI."""
        return common.fresh_vhost(name, api=self.mgmt, uri=cluster.amqp_uri if self.clustered else None)


BROKER = Broker(False)


class Platform:
    """``replicas`` copies of every service, as a deployment runs them: one
    development Stack per replica, on ports of its own, sharing the broker,
    the databases and the token secret."""

    def __init__(self, count, env, name="chaos", web_port=WEB_PORT, port_base=PORT_BASE):
        self.stacks = replicas(ROOT / ".stack" / name, port_base, web_port, count, env)

    @property
    def first(self):
        return self.stacks[0]

    @property
    def web_ports(self):
        return [stack.web_port for stack in self.stacks]

    def processes(self):
        return [(stack, name) for stack in self.stacks for name in SERVICES]

    def log_dirs(self):
        return [stack.log_dir for stack in self.stacks]

    def up(self):
        for stack in self.stacks:
            for name in SERVICES:
                (stack.log_dir / "{}.log".format(name)).unlink(missing_ok=True)
            stack.down()
        for stack in self.stacks:
            stack.up()

    def down(self):
        for stack in reversed(self.stacks):
            stack.down()


def rabbitctl(*args):
    subprocess.run([str(ROOT / "dev"), "rabbitctl", *args], check=True, capture_output=True, timeout=120)


def ferretdb_pid():
    path = ROOT / ".stack" / "ferretdb.pid"
    return int(path.read_text()) if path.exists() else None


def inject(fault, platform, restart_after):
    """Inject ``fault`` and undo it (restart, resume); returns when it is undone."""
    if fault == "kill-replicas":
        if len(platform.stacks) < 2:
            raise SystemExit("kill-replicas needs --replicas 2 or more")
        for name in SERVICES:
            platform.first.kill(name)
        time.sleep(restart_after)
        for name in SERVICES:
            platform.first.start(name)
    elif fault.startswith("kill-"):
        name = fault[len("kill-"):]
        platform.first.kill(name)
        time.sleep(restart_after)
        platform.first.start(name)
    elif fault == "broker-restart":
        rabbitctl("stop_app")
        time.sleep(7)
        rabbitctl("start_app")
        rabbitctl("await_startup", "--timeout", "60")
    elif fault == "node-kill":
        # the node the platform's connections go to first (the URI lists it first)
        cluster.kill(1)
        time.sleep(restart_after)
        cluster.start(1)
    elif fault == "rolling-restart":
        # an upgrade: each node's app stopped and started again, one after another
        for n in cluster.NODES:
            cluster.ctl(n, "stop_app")
            time.sleep(3)
            cluster.ctl(n, "start_app")
            cluster.ctl(n, "await_startup", "--timeout", "60")
    elif fault == "db-kill":
        if ferretdb_pid() is None:
            raise SystemExit("db-kill needs the development database (./dev starts it; MONGO_URI is another server)")
        os.kill(ferretdb_pid(), signal.SIGKILL)
        time.sleep(restart_after)
        # ./dev exported MONGO_URI for this run; without it, ./dev starts its own server again
        env = {k: v for k, v in os.environ.items() if k != "MONGO_URI"}
        started = subprocess.run([str(ROOT / "dev"), "mongo"], capture_output=True, text=True, timeout=120, env=env)
        if started.returncode:
            raise SystemExit("the database did not start again: " + started.stdout[-500:] + started.stderr[-500:])
    elif fault == "db-pause":
        pid = ferretdb_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(10)
        finally:
            os.kill(pid, signal.SIGCONT)
    else:
        raise SystemExit("unknown fault {}".format(fault))


def all_ready(platform):
    return all(stack.ready(name) for stack, name in platform.processes())


def not_ready(platform):
    """The processes whose /readyz is not 200 now, each with the checks it failed."""
    found = []
    for i, (stack, name) in enumerate(platform.processes()):
        where = "{} (replica {})".format(name, i // len(SERVICES) + 1)
        try:
            with urllib.request.urlopen(stack.probe_url(name, "/readyz"), timeout=3):
                continue
        except urllib.error.HTTPError as exc:
            checks = json.loads(exc.read() or b"{}").get("checks", {})
            found.append("{}: {}".format(where, {k: v for k, v in checks.items() if v != "ok"}))
        except OSError as exc:
            found.append("{}: {}".format(where, exc))
    return found


def backlog(platform):
    """Events staged in outboxes and not yet confirmed, over every service process."""
    total = 0.0
    for stack, name in platform.processes():
        try:
            with urllib.request.urlopen(stack.probe_url(name, "/metrics"), timeout=3) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("lamplight_outbox_backlog{"):
                        total += float(line.rsplit(" ", 1)[1])
        except OSError:
            return None
    return total


def queued(parked=False):
    """{queue: ready + unacknowledged} of the chaos vhost's work queues that hold
    any; with ``parked``, of its parking queues instead: the dead-letter queues
    and the events no one subscribes to (``lamplight.unrouted``), which stay."""
    queues = json.loads(BROKER.mgmt("GET", "/api/queues/" + VHOST))
    return {q["name"]: q.get("messages", 0) for q in queues if q.get("messages", 0) and
            (q["name"].endswith(".dlq") or q["name"] == UNROUTED) == parked}


def caught_up(platform, uri, rate):
    """The platform keeps up again: every process ready, and what waits in the
    work queues (exact, over AMQP) and in the outboxes is under one second of load."""
    if not all_ready(platform):
        return False
    pending = backlog(platform)
    if pending is None or pending > max(rate, 1):
        return False
    ready = ready_messages(uri)
    return ready is not None and ready <= max(rate, 1)


def ready_messages(uri, vhost=VHOST):
    """Messages ready in the vhost's work queues, counted exactly over AMQP
    (the management API's counts are up to STATS_INTERVAL_S old); None when
    the broker does not answer."""
    try:
        names = [q["name"] for q in json.loads(BROKER.mgmt("GET", "/api/queues/" + vhost))
                 if q.get("durable") and not q.get("exclusive") and not q["name"].endswith(".dlq")
                 and q["name"] != UNROUTED]
        with Connection(uri, connect_timeout=3) as conn:
            channel = conn.channel()
            return sum(channel.queue_declare(name, passive=True).message_count for name in names)
    except Exception:  # the broker itself may be what is wrong
        return None


def wait_served(platform, load, since, timeout=300):
    """Seconds from ``since`` until every service is ready and the gateway answered a 2xx again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with load.lock:
            served = any(t >= since and s in (200, 201) for t, s in load.answers[-200:])
        if served and all_ready(platform):
            return time.monotonic() - since
        time.sleep(0.2)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=6,
                        help="needs/s (a third of what this 2-core machine takes through the slice; "
                             "the bound holds at half of it, 10)")
    parser.add_argument("--gap", type=float, default=25, help="seconds between faults")
    parser.add_argument("--faults", default=None, help="default: {} (with --cluster: {})".format(
        ",".join(FAULTS), ",".join(CLUSTER_FAULTS)))
    parser.add_argument("--cluster", action="store_true",
                        help="on a three-node RabbitMQ cluster with quorum queues (lamplight_dev/cluster.py)")
    parser.add_argument("--replicas", type=int, default=None,
                        help="processes of each service (default 1; with --cluster, 2)")
    parser.add_argument("--restart-after", type=float, default=5)
    parser.add_argument("--settle", type=float, default=SETTLE_BOUND_S,
                        help="seconds allowed to reach steady state (the bound the README states)")
    parser.add_argument("--responders", type=int, default=45)
    args = parser.parse_args(argv)
    faults = [f for f in (args.faults or ",".join(CLUSTER_FAULTS if args.cluster else FAULTS)).split(",") if f]
    global BROKER
    BROKER = Broker(args.cluster)
    env = {}
    if args.cluster:
        print("the cluster: {}".format(", ".join(cluster.up())), flush=True)
        env["QUEUE_TYPE"] = "quorum"

    run_id = uuid.uuid4().hex[:8]
    prefix = "chaos{}_".format(run_id)
    uri = BROKER.vhost(VHOST)
    replicas = args.replicas or (2 if args.cluster else 1)
    platform = Platform(replicas, {**env, "AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix,
                                   "LOG_LEVEL": "WARNING"})
    print("starting the platform, {} of each service (logs in {})".format(
        replicas, ", ".join(str(d) for d in platform.log_dirs())), flush=True)
    platform.up()
    headers = {"Content-Type": "application/json",
               "Authorization": "Bearer " + platform.first.admin_key(rate_limit="10000000/minute")}
    rows, steady, verdict, parked = [], None, {}, {}
    try:
        seed_demo_park(WEB_PORT, PARK, headers, args.responders)
        seed_points(headers)

        load = Load(args.rate, headers, run_id, platform.web_ports)
        clients = load.run()
        print("load: {:g} needs/s; faults every {:g} s: {}".format(args.rate, args.gap, ", ".join(faults)),
              flush=True)
        time.sleep(args.gap)
        for fault in faults:
            started = time.monotonic()
            inject(fault, platform, args.restart_after)
            restored = time.monotonic()
            recovered = wait_served(platform, load, restored)
            end = restored + (recovered or 0)
            with load.lock:
                window = Counter(str(s) for t, s in load.answers if started <= t <= end)
            # caught up: the backlog the fault left drained while the load goes on
            # (until the next fault; after the last one, up to the settle bound)
            window_end = started + args.gap if fault != faults[-1] else max(started + args.gap,
                                                                            restored + args.settle)
            caught = None
            while time.monotonic() < window_end:
                if caught_up(platform, uri, args.rate):
                    caught = time.monotonic() - restored
                    break
                time.sleep(0.5)
            rows.append({"fault": fault, "started": started, "restored": restored, "end": end,
                         "recover_s": recovered, "caught_s": caught, "answers": window})
            print("  {} done: restored after {:.1f} s, serving again {} s later, caught up {}".format(
                fault, restored - started, "{:.1f}".format(recovered) if recovered is not None else "never",
                "{:.1f} s later".format(caught) if caught is not None else "not before the next fault"),
                flush=True)
            if recovered is None:
                print("    not ready: {}".format("; ".join(not_ready(platform)) or "none now"), flush=True)
            time.sleep(max(0.0, args.gap - (time.monotonic() - started)))
        load.stop.set()
        for t in clients:
            t.join(RETRY_WINDOW_S + 30)
        last, quiet_since = time.monotonic(), None
        while time.monotonic() - last < args.settle + STATS_INTERVAL_S:
            left, pending = queued(), backlog(platform)
            if not left and pending == 0 and ready_messages(uri) == 0 and all_ready(platform):
                # the management API's counts are up to its statistics interval old
                # (a retry waiting a second in a delay queue can be missed): steady
                # once it has held for longer than that
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > STATS_INTERVAL_S:
                    steady = quiet_since - last
                    break
            else:
                quiet_since = None
            time.sleep(1)
        verdict = check(prefix, load)
        early = {}
        if verdict["untasked"] or verdict["unnoticed"]:
            # missing at steady state: still missing a while later is a loss;
            # there later means steady state was declared too early
            early = {"untasked": verdict["untasked"], "unnoticed": verdict["unnoticed"],
                     "untasked_needs": verdict["untasked_needs"]}
            time.sleep(20)
            verdict = check(prefix, load)
        parked = queued(parked=True)
    finally:
        platform.down()

    print()
    late_503 = print_faults(rows, load, verdict)
    print()
    print("needs: {} sent, {} acknowledged, {} lost, {} duplicated, {} written for a key never answered, "
          "{} given up by the client".format(len(load.first), len(load.acked), len(verdict["lost"]),
                                             len(verdict["duplicated"]), len(verdict["orphans"]), len(load.given_up)))
    print("tasks: {} routed needs, {} without their task, {} with more than one".format(
        verdict["routed"], verdict["untasked"], verdict["multi_tasked"]))
    if early:
        print("at steady state {} routed needs were without their task ({}) and {} offers without their notice; "
              "20 s later {} and {}".format(
                  early["untasked"], ", ".join(early["untasked_needs"][:5]), early["unnoticed"],
                  verdict["untasked"], verdict["unnoticed"]))
    if verdict["untasked_needs"]:
        print("needs without their task: {}".format(", ".join(verdict["untasked_needs"][:10])))
    print("task-offer notices: {} offers, {} without their notice, {} noticed twice".format(
        verdict["offers"], verdict["unnoticed"], verdict["noticed_twice"]))
    print("points postings: {} sent, {} acknowledged, {} lost, {} duplicated, {} written for a key never answered; "
          "{} entries in {} accounts, {} balances not the sum of their entries, {} heads behind their chain; "
          "lamplight points verify: {}".format(
              len(load.postings_first), len(load.postings_acked), len(verdict["postings_lost"]),
              len(verdict["postings_duplicated"]), len(verdict["postings_orphans"]), verdict["entries"],
              verdict["accounts"], len(verdict["off_balance"]), len(verdict["behind"]),
              "clean" if not verdict["chain_problems"] else verdict["chain_problems"][:5]))
    dead = {name: n for name, n in parked.items() if name != UNROUTED}
    print("dead-letter queues: {}; events parked as unrouted (no subscriber binds them): {}".format(
        dead or "empty", parked.get(UNROUTED, 0)))
    print("steady state after the last fault: {}".format(
        "{:.1f} s (queues empty, outbox backlog 0, every /readyz 200)".format(steady) if steady is not None
        else "not within {:g} s (queues: {}; not ready: {})".format(
            args.settle, queued_safe(), "; ".join(not_ready(platform)) or "none")))
    drop_databases(prefix)
    common.delete_vhost(VHOST, api=BROKER.mgmt)
    with load.lock:
        faults_of_ours = Counter(s for _, s in load.answers if isinstance(s, int) and s >= 500 and s != 503)
    if faults_of_ours:
        print("answers that are the platform's fault (5xx other than 503): {}".format(dict(faults_of_ours)))
    last_caught = rows[-1]["caught_s"] if rows else None
    print("caught up after the last fault, under the load: {}".format(
        "{:.1f} s (bound {:g} s)".format(last_caught, args.settle) if last_caught is not None
        else "not within {:g} s".format(args.settle)))
    failed = faults_of_ours or late_503 or dead or steady is None or (rows and last_caught is None) or any(
        verdict[k] for k in (
        "lost", "duplicated", "orphans", "untasked", "multi_tasked", "unnoticed", "noticed_twice", "postings_lost",
        "postings_duplicated", "postings_orphans", "off_balance", "chain_problems"))
    return keep_logs(platform.log_dirs(), run_id) if failed else 0


def print_faults(rows, load, verdict):
    """The table of faults; returns how late (s after the kill) any 503
    came that a replica left serving should have prevented."""
    print("{:<16} {:>9} {:>26} {:>5} {:>5} {:>10} {:>12} {:>11}".format(
        "fault", "window s", "gateway answers", "lost", "dup", "recover s", "caught up s", "last 503 s"))
    late_503 = []
    with load.lock:
        answers_503 = [t for t, s in load.answers if s == 503]
    for i, row in enumerate(rows):
        keys = [k for k, t in load.first.items() if row["started"] <= t <= row["end"]]
        answers = ", ".join("{} {}".format(k, n) for k, n in sorted(row["answers"].items()))
        # the last 503 from the fault until the next one, in seconds after the fault
        until = rows[i + 1]["started"] if i + 1 < len(rows) else float("inf")
        last_503 = max((t - row["started"] for t in answers_503 if row["started"] <= t < until), default=None)
        if row["fault"] == "kill-replicas" and last_503 is not None and last_503 > RPC_TIMEOUT_S + 2:
            late_503.append(last_503)
        print("{:<16} {:>9.1f} {:>26} {:>5} {:>5} {:>10} {:>12} {:>11}".format(
            row["fault"], row["end"] - row["started"], answers,
            sum(1 for k in keys if k in verdict["lost"]), sum(1 for k in keys if k in verdict["duplicated"]),
            "{:.1f}".format(row["recover_s"]) if row["recover_s"] is not None else "never",
            "{:.1f}".format(row["caught_s"]) if row["caught_s"] is not None else "-",
            "{:.1f}".format(last_503) if last_503 is not None else "-"))
    if late_503:
        print("with a replica of every service left serving, a 503 came {:.1f} s after the kill: later than "
              "RPC_TIMEOUT_S ({} s) allows".format(max(late_503), RPC_TIMEOUT_S))
    return late_503


def keep_logs(log_dirs, run_id, tail=12):
    """A failed run's service logs, kept beside the next run's (which start
    empty) and their last lines printed, so a report read elsewhere (CI)
    says what the services saw. Returns 1, the failed run's exit code."""
    print()
    for k, log_dir in enumerate(log_dirs):
        kept = ROOT / ".stack" / "chaos" / "failed" / run_id / "replica-{}".format(k + 1)
        shutil.copytree(log_dir, kept, dirs_exist_ok=True)
        print("replica {}: the services' logs of this run are kept in {}; their last {} lines:".format(
            k + 1, kept, tail))
        for name in SERVICES:
            path = kept / "{}.log".format(name)
            lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
            print("-- {} ({} lines shown)".format(name, len(lines)))
            for line in lines:
                print("   " + line[:400])
    return 1


def seed_points(headers, port=WEB_PORT):
    """The demo park's points catalogue, so desk postings can be made."""
    from lamplight_tools import parks as park_files

    rules = park_files.load()["quanlinan"]["points"]["rules"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", "/api/v1/parks/{}/points/rules".format(PARK), json.dumps({"version": 1, "rules": rules}),
                 headers)
    answer = conn.getresponse()
    if answer.status != 200:
        raise SystemExit("PUT points/rules: {} {}".format(answer.status, answer.read()[:300]))
    conn.close()


def queued_safe():
    try:
        return queued()
    except Exception as exc:  # the broker itself may be what is wrong
        return repr(exc)


def check(prefix, load):
    """What the databases hold against what the clients were told."""
    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=10000)
    needs = list(client[prefix + "needs"]["needs"].find({"park_id": PARK}, {"idempotency_key": 1, "need_id": 1,
                                                                             "routing": 1, "status": 1}))
    by_key = Counter(n["idempotency_key"] for n in needs)
    acked = set(load.acked)
    lost = {k for k in acked if by_key.get(k, 0) == 0}
    duplicated = {k for k, n in by_key.items() if n > 1}
    orphans = {k for k in by_key if k not in acked}
    volunteers = client[prefix + "volunteers"]
    tasks = [t for name in volunteers.list_collection_names() if name.startswith("tasks.")
             for t in volunteers[name].find({}, {"need_id": 1, "routing": 1, "offered_to": 1})]
    per_need = Counter((t["need_id"], t.get("routing")) for t in tasks)
    routed = [n for n in needs if n.get("routing")]
    untasked_needs = ["{} ({}, routing {})".format(n["need_id"], n.get("status"), n["routing"]) for n in routed
                      if per_need.get((n["need_id"], n["routing"]), 0) == 0]
    untasked = len(untasked_needs)
    multi_tasked = sum(1 for v in per_need.values() if v > 1)
    notify = client[prefix + "notify"]
    notices = Counter()
    for name in notify.list_collection_names():
        if name.startswith("notices."):
            for n in notify[name].find({"type": "task.offered"}, {"recipient_id": 1, "subject": 1, "channel": 1}):
                notices[(n["recipient_id"], n["subject"], n["channel"])] += 1
    offers = [(rid, t["_id"]) for t in tasks for rid in t.get("offered_to") or ()]
    unnoticed = sum(1 for rid, task_id in offers if notices.get((rid, task_id, "inapp"), 0) == 0)
    noticed_twice = sum(1 for v in notices.values() if v > 1)
    points = client[prefix + "points"]
    entries = list(points.entries.find({"park_id": PARK}, {"_outbox": 0}))
    by_posting = Counter(e.get("idempotency_key") for e in entries)
    posted = set(load.postings_acked)
    accounts = {a["_id"]: a for a in points.accounts.find({"park_id": PARK})}
    sums = Counter()
    for e in entries:
        sums[e["account_id"]] += e["amount"]
    # an account's head may lag its last entry (a crash between the two
    # writes; its next read rolls it forward): compare only heads at their chain's end
    ends = Counter(e["account_id"] for e in entries)
    off_balance = [a for a, doc in accounts.items() if doc["seq"] == ends[a] and doc["balance"] != sums[a]]
    behind = [a for a, doc in accounts.items() if doc["seq"] < ends[a]]
    client.close()
    from lamplight_tools.cli import points_verify  # the kernel's imports are slow and warn; only here

    problems, _, _ = points_verify(MONGO_URI, prefix + "points", PARK)
    return {"lost": lost, "duplicated": duplicated, "orphans": orphans, "routed": len(routed),
            "untasked": untasked, "untasked_needs": untasked_needs, "multi_tasked": multi_tasked,
            "offers": len(offers), "unnoticed": unnoticed,
            "noticed_twice": noticed_twice,
            "postings_lost": {k for k in posted if by_posting.get(k, 0) == 0},
            "postings_duplicated": {k for k, n in by_posting.items() if n > 1},
            "postings_orphans": {k for k in by_posting if k not in posted},
            "entries": len(entries), "accounts": len(accounts), "off_balance": off_balance, "behind": behind,
            "chain_problems": problems}


if __name__ == "__main__":
    sys.exit(main())
