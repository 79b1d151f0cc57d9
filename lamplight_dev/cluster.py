"""A three-node RabbitMQ cluster on loopback, from Debian's rabbitmq-server.

    python -m lamplight_dev.cluster up|down|status|kill N|start N|stop-app N|start-app N

Nodes ``lamplight-c1@localhost`` … ``-c3`` listen on 127.0.0.1:5701-5703
(management 15701-15703, distribution 25701-25703) with their data under
``.stack/cluster/``; they share one Erlang cookie (one HOME) and join c1.
The platform reaches them through one AMQP URI listing all three
(:func:`amqp_uri`; kombu fails over to the next when one goes away) and
declares its queues as quorum queues (``QUEUE_TYPE=quorum``), replicated on
every node, so one node down loses no message and stops no queue.

This is the development stack's cluster, beside the single node ``./dev``
starts on 5672; ``./dev chaos --cluster`` runs the chaos suite on it.
"""
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / ".stack" / "cluster"
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
NODES = (1, 2, 3)
AMQP_PORT, MGMT_PORT, DIST_PORT = 5700, 15700, 25700


def node_name(n):
    return "lamplight-c{}@localhost".format(n)


def amqp_uri(vhost=""):
    """One URI naming every node: kombu connects to the first that answers
    and, on a lost connection, moves on to the next."""
    return ";".join("amqp://guest:guest@127.0.0.1:{}/{}".format(AMQP_PORT + n, vhost) for n in NODES)


def mgmt_urls():
    return ["http://127.0.0.1:{}".format(MGMT_PORT + n) for n in NODES]


def _env(n):
    home = BASE / "home"
    node_dir = BASE / "c{}".format(n)
    return dict(os.environ, HOME=str(home), RABBITMQ_NODENAME=node_name(n),
                RABBITMQ_MNESIA_BASE=str(node_dir / "mnesia"), RABBITMQ_LOG_BASE=str(node_dir / "log"),
                RABBITMQ_CONFIG_FILE=str(node_dir / "rabbitmq.conf"),
                RABBITMQ_ENABLED_PLUGINS_FILE=str(BASE / "enabled_plugins"),
                RABBITMQ_PID_FILE=str(node_dir / "pid"),
                ERL_EPMD_ADDRESS="127.0.0.1", RABBITMQ_DIST_PORT=str(DIST_PORT + n),
                ERL_CRASH_DUMP=str(node_dir / "log" / "erl_crash.dump"),
                RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")


def ctl(n, *args, timeout=120, check=True):
    """rabbitmqctl against node ``n``."""
    done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", node_name(n), *args], env=_env(n),
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError("rabbitmqctl -n {} {}: {}".format(node_name(n), " ".join(args),
                                                            (done.stdout + done.stderr)[-800:]))
    return done


def _write_config(n):
    node_dir = BASE / "c{}".format(n)
    for sub in ("mnesia", "log"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    (node_dir / "rabbitmq.conf").write_text(
        "listeners.tcp.default = 127.0.0.1:{}\n"
        "management.tcp.ip = 127.0.0.1\n"
        "management.tcp.port = {}\n"
        "loopback_users = none\n"
        # a node that comes back waits for the others rather than starting alone
        "cluster_partition_handling = pause_minority\n".format(AMQP_PORT + n, MGMT_PORT + n))


def running(n):
    return ctl(n, "await_startup", "--timeout", "1", timeout=30, check=False).returncode == 0


def pid(n):
    path = BASE / "c{}".format(n) / "pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start(n, timeout=120):
    """Start node ``n`` (its data kept) and wait until it runs."""
    _write_config(n)
    subprocess.run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=_env(n), check=True,
                   capture_output=True, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctl(n, "await_startup", "--timeout", "10", timeout=30, check=False).returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError("node {} did not start; see {}".format(node_name(n), BASE / "c{}".format(n) / "log"))


def kill(n):
    """SIGKILL node ``n``'s Erlang VM, as a lost machine does."""
    node_pid = pid(n)
    if node_pid is None:
        raise RuntimeError("no pid for {}".format(node_name(n)))
    os.kill(node_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(node_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def mgmt(method, path, body=None):
    """The management API of the first node that answers."""
    error = None
    for base in mgmt_urls():
        req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.read()
        except urllib.error.HTTPError:
            raise
        except OSError as exc:
            error = exc
    raise OSError("no node of the cluster answers its management API: {}".format(error))


def up():
    """Start the three nodes (if they do not run) and join them into one cluster."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        raise SystemExit("rabbitmq-server is not installed (./dev servers installs it)")
    BASE.mkdir(parents=True, exist_ok=True)
    (BASE / "home").mkdir(exist_ok=True)
    (BASE / "enabled_plugins").write_text("[rabbitmq_management].\n")
    for n in NODES:
        if not running(n):
            start(n)
    members = json.loads(ctl(1, "cluster_status", "--formatter", "json").stdout)["running_nodes"]
    for n in NODES[1:]:
        if node_name(n) not in members:
            ctl(n, "stop_app")
            ctl(n, "reset")
            ctl(n, "join_cluster", node_name(1))
            ctl(n, "start_app")
            ctl(n, "await_startup", "--timeout", "60")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            json.loads(mgmt("GET", "/api/overview"))
            break
        except OSError:
            time.sleep(1)
    return status()


def status():
    members = json.loads(ctl(1, "cluster_status", "--formatter", "json").stdout)
    return sorted(members.get("running_nodes", []))


def down():
    """Stop every node and forget the cluster (its data goes)."""
    for n in NODES:
        if running(n):
            ctl(n, "stop", timeout=120, check=False)
        node_pid = pid(n)
        if node_pid is not None:
            try:
                os.kill(node_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    subprocess.run(["rm", "-rf", str(BASE)], check=True)


def main(argv):
    command = argv[0] if argv else "status"
    if command == "up":
        print("cluster running: {}".format(", ".join(up())))
        print("AMQP_URI={}".format(amqp_uri()))
    elif command == "down":
        down()
        print("cluster stopped")
    elif command == "status":
        print(", ".join(status()))
    elif command in ("kill", "start", "stop-app", "start-app"):
        n = int(argv[1])
        {"kill": kill, "start": start, "stop-app": lambda n: ctl(n, "stop_app"),
         "start-app": lambda n: ctl(n, "start_app")}[command](n)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
