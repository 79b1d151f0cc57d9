"""Run every Lamplight service as its own ``nameko run`` process.

Used by ``./dev up`` and by the end-to-end and fault tests, which start the
same processes the same way, on their own ports, vhost and databases.

    python -m lamplight_dev.devstack up|down|status [--run-dir DIR] [--port-base N]
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lamplight_tools.services import PROCESSES

ROOT = Path(__file__).resolve().parent.parent

# Subscribers first, so the platform topology exists before anything publishes
# (every process also declares it at start); a service's bulk process after it.
START_ORDER = tuple(name for service in ("notify", "volunteers", "points", "needs", "gateway")
                    for name in sorted(PROCESSES) if PROCESSES[name].service == service)
DEFAULT_PORT_BASE = 9100  # probes on 9100-9105
DEFAULT_WEB_PORT = 8000


class Stack:
    def __init__(self, run_dir, port_base=DEFAULT_PORT_BASE, web_port=DEFAULT_WEB_PORT, env=None):
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.port_base = port_base
        self.web_port = web_port
        self.env = dict(env or {})
        self.procs = {}
        if not (self.env.get("GATEWAY_TOKEN_SECRET") or os.environ.get("GATEWAY_TOKEN_SECRET")):
            self.env["GATEWAY_TOKEN_SECRET"] = self._local_secret()

    def _local_secret(self):
        """The signing secret of this stack's tokens: made once, kept in the run directory."""
        path = self.run_dir / "token-secret"
        if not path.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def admin_key(self, path=None, rate_limit=None):
        """A platform admin's API key for this stack, kept in ``path`` (made
        once, and again if the database no longer knows it)."""
        path = Path(path or self.run_dir / ("admin.key" if rate_limit is None else "admin-unlimited.key"))
        if path.exists():
            request = urllib.request.Request(self.gateway_url + "/api/v1/whoami",
                                             headers={"Authorization": "Bearer " + path.read_text().strip()})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    if answer.status == 200:
                        return path.read_text().strip()
            except urllib.error.HTTPError:
                pass
        import pymongo

        from gateway.auth import KeyStore
        from lamplight import settings

        env = dict(os.environ, **self.env)
        client = pymongo.MongoClient(env.get("MONGO_URI") or settings.DEFAULTS["MONGO_URI"], tz_aware=True,
                                     serverSelectionTimeoutMS=5000)
        try:
            database = (env.get("MONGO_DB_PREFIX") or settings.DEFAULTS["MONGO_DB_PREFIX"]) + "gateway"
            key, _ = KeyStore(client[database]).create(
                "platform_admin", None, "development stack", rate_limit=rate_limit)
        finally:
            client.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
        path.chmod(0o600)
        return key

    def probe_port(self, name):
        return self.port_base + PROCESSES[name].probe_offset

    def probe_url(self, name, path):
        return "http://127.0.0.1:{}{}".format(self.probe_port(name), path)

    @property
    def gateway_url(self):
        return "http://127.0.0.1:{}".format(self.web_port)

    def _pidfile(self, name):
        return self.run_dir / "{}.pid".format(name)

    def pid(self, name):
        try:
            pid = int(self._pidfile(name).read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, name, extra_env=None):
        """Start one service (no-op if it runs); returns its pid."""
        pid = self.pid(name)
        if pid:
            return pid
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        env.update({
            "OBSERVABILITY_ADDRESS": "127.0.0.1:{}".format(self.probe_port(name)),
            "WEB_SERVER_ADDRESS": "127.0.0.1:{}".format(self.web_port),
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra_env or {})
        process = PROCESSES[name]
        for key, value in process.env.items():  # its lanes, unless the stack says otherwise
            env.setdefault(key, value)
        log = open(self.log_dir / "{}.log".format(name), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "--config", str(ROOT / "config.yaml"), process.path],
            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # a bulk process at a lower CPU weight than the main lane's processes
            preexec_fn=(lambda: os.nice(process.nice)) if process.nice else None,
        )
        self.procs[name] = proc
        self._pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def ready(self, name):
        try:
            with urllib.request.urlopen(self.probe_url(name, "/readyz"), timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready(name):
                return True
            if not self.pid(name):
                raise RuntimeError("{} exited; see {}".format(name, self.log_dir / (name + ".log")))
            time.sleep(0.2)
        raise TimeoutError("{} not ready after {}s; see {}".format(name, timeout, self.log_dir))

    def signal(self, name, sig):
        pid = self.pid(name)
        if pid:
            os.kill(pid, sig)
        return pid

    def stop(self, name, timeout=20):
        """SIGTERM (nameko drains in-flight workers), SIGKILL after timeout."""
        pid = self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid and time.monotonic() < deadline:
            if self._reap(name, pid):
                break
            time.sleep(0.1)
        else:
            if pid:
                self.signal(name, signal.SIGKILL)
                self._wait_gone(name, pid)
        self._pidfile(name).unlink(missing_ok=True)

    def kill(self, name):
        pid = self.signal(name, signal.SIGKILL)
        if pid:
            self._wait_gone(name, pid)
        self._pidfile(name).unlink(missing_ok=True)
        return pid

    def _reap(self, name, pid):
        proc = self.procs.get(name)
        if proc is not None:
            return proc.poll() is not None
        try:
            os.kill(pid, 0)
            return False
        except OSError:
            return True

    def _wait_gone(self, name, pid, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._reap(name, pid):
            time.sleep(0.05)

    def up(self, names=START_ORDER, timeout=60):
        for name in names:
            self.start(name)
            self.wait_ready(name, timeout)

    def down(self, names=START_ORDER):
        for name in reversed(names):
            self.stop(name)

    def status(self):
        return {name: {"pid": self.pid(name), "ready": bool(self.pid(name)) and self.ready(name),
                       "probes": self.probe_url(name, "")} for name in START_ORDER}

    def rss_mb(self):
        out = {}
        for name in START_ORDER:
            pid = self.pid(name)
            if not pid:
                continue
            for line in Path("/proc/{}/status".format(pid)).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[name] = int(line.split()[1]) / 1024.0
        return out


def replicas(run_dir, port_base, web_port, count, env=None):
    """``count`` Stacks, one per replica of every service: the first in
    ``run_dir`` on the given ports, replica k in ``<run_dir>-k`` on ports 10
    (probes) and 1 (HTTP) further on each, sharing the token secret."""
    run_dir, env = Path(run_dir), dict(env or {})
    stacks = [Stack(run_dir, port_base, web_port, env)]
    env["GATEWAY_TOKEN_SECRET"] = stacks[0].env["GATEWAY_TOKEN_SECRET"]
    for k in range(2, count + 1):
        stacks.append(Stack(run_dir.parent / "{}-{}".format(run_dir.name, k), port_base + 10 * (k - 1),
                            web_port + k - 1, env))
    return stacks


def running_replicas(run_dir, port_base, web_port):
    """The Stacks ``up`` started: the first, and every replica whose run directory is there."""
    run_dir = Path(run_dir)
    count = 1
    while (run_dir.parent / "{}-{}".format(run_dir.name, count + 1)).is_dir():
        count += 1
    return replicas(run_dir, port_base, web_port, count)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lamplight_dev.devstack")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--run-dir", default=str(ROOT / ".stack" / "run"))
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE)
    parser.add_argument("--web-port", type=int, default=DEFAULT_WEB_PORT)
    parser.add_argument("--cluster", action="store_true",
                        help="up: on the three-node RabbitMQ cluster (lamplight_dev/cluster.py) with quorum queues, "
                             "two replicas of each service unless --replicas says otherwise")
    parser.add_argument("--replicas", type=int, default=None, help="up: processes of each service")
    args = parser.parse_args(argv)
    if args.command == "up":
        env = {}
        if args.cluster:
            from lamplight_dev import cluster

            cluster.up()
            env = {"AMQP_URI": cluster.amqp_uri(), "QUEUE_TYPE": "quorum"}
        for stack in running_replicas(args.run_dir, args.port_base, args.web_port):
            stack.down()
            if stack.run_dir != Path(args.run_dir):
                shutil.rmtree(stack.run_dir, ignore_errors=True)
        stacks = replicas(args.run_dir, args.port_base, args.web_port, args.replicas or (2 if args.cluster else 1),
                          env)
        for stack in stacks:
            stack.up()
        stacks[0].admin_key()
    else:
        stacks = running_replicas(args.run_dir, args.port_base, args.web_port)
        if args.command == "down":
            for stack in reversed(stacks):
                stack.down()
            for stack in stacks[1:]:
                shutil.rmtree(stack.run_dir, ignore_errors=True)
    status = {}
    for k, stack in enumerate(stacks):
        for name, state in stack.status().items():
            status[name if k == 0 else "{}.{}".format(name, k + 1)] = state
    print(json.dumps(status, indent=2))


if __name__ == "__main__":
    main()
