"""What the benchmarks share: the broker's management API, a fresh vhost,
percentiles, dropping a run's databases."""
import base64
import json
import os
import threading
import time
import urllib.request
import uuid

from lamplight_dev.devstack import START_ORDER

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
MGMT = "http://127.0.0.1:15672"
MONGO_URI = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27018/")


def mgmt(method, path, body=None):
    req = urllib.request.Request(MGMT + path, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def fresh_vhost(name, api=None, uri=None):
    """An empty vhost (deleted first if a run left it); returns its AMQP URI.
    ``api`` and ``uri(vhost)`` name another broker (the cluster's); by default
    the node ./dev starts."""
    api = api or mgmt
    try:
        api("DELETE", "/api/vhosts/" + name)
    except Exception:
        pass
    api("PUT", "/api/vhosts/" + name)
    api("PUT", "/api/permissions/{}/guest".format(name), {"configure": ".*", "write": ".*", "read": ".*"})
    return uri(name) if uri else AMQP + name


def delete_vhost(name, api=None):
    (api or mgmt)("DELETE", "/api/vhosts/" + name)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def broadcast_line(park, view):
    """A broadcast's milestones from its view (notify's clock): every in-app
    notice recorded, and every notice (the fan-out done), after the request."""
    from datetime import datetime

    def after(key):
        if not view.get(key):
            return "not yet"
        seconds = (datetime.fromisoformat(view[key]) - datetime.fromisoformat(view["requested_at"])).total_seconds()
        return "{:.2f} s after the request".format(seconds)

    return "park {} broadcast to {} recipients: every in-app notice recorded {}; every notice {}".format(
        park, view.get("recipients"), after("shown_at"), after("finished_at"))


def drop_databases(prefix):
    import pymongo

    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000)
    for name in client.list_database_names():
        if name.startswith(prefix):
            client.drop_database(name)
    client.close()


def subject_of(envelope):
    return envelope["subject"]


class Watcher(threading.Thread):
    """Records when the first event of each key (by default its subject)
    arrives on a queue of our own bound to ``exchange`` with ``keys``."""

    def __init__(self, uri, exchange, keys, key=subject_of):
        super().__init__(daemon=True)
        self.uri, self.exchange, self.keys, self.key = uri, exchange, keys, key
        self.first = {}
        self.count = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self):
        from kombu import Connection, Exchange, Queue

        queue = Queue("bench.watch.{}".format(uuid.uuid4().hex[:6]), exchange=Exchange(self.exchange, "topic",
                                                                                     durable=True),
                      routing_key=self.keys, auto_delete=True)
        with Connection(self.uri) as conn:
            def on_message(body, message):
                envelope = json.loads(body) if isinstance(body, (str, bytes)) else body
                self.first.setdefault(self.key(envelope), time.perf_counter())
                self.count += 1
                message.ack()
            with conn.Consumer(queue, callbacks=[on_message], prefetch_count=500, accept=["json"]):
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        conn.drain_events(timeout=0.5)
                    except Exception:
                        pass


def run_threads(threads, count, work):
    """Run work(i) for i in range(count) on ``threads`` threads; latencies in ms."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(count))

    def worker():
        state = {}
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t = time.perf_counter()
            try:
                work(i, state)
            except Exception as exc:  # counted, not hidden
                errors.append(repr(exc))
                continue
            with lock:
                latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, errors, time.perf_counter() - started


def thread_rpc(state, uri):
    """The RPC client of one run_threads worker (``state`` is per thread): a
    standalone nameko client is not safe to share between threads. Its
    requests are transient and unconfirmed, as the gateway's are
    (lamplight.rpc.DeadlineRpc): what is measured is the service, not a
    persistent publish with its confirm for every call
    (BENCH_RPC_PERSISTENT=1 measures the standalone client's default)."""
    if "rpc" not in state:
        from nameko.constants import NON_PERSISTENT
        from nameko.standalone.rpc import ClusterRpcClient

        options = {} if os.environ.get("BENCH_RPC_PERSISTENT") == "1" else {
            "delivery_mode": NON_PERSISTENT, "use_confirms": False}
        client = ClusterRpcClient(uri=uri, **options)
        client.reply_listener.__class__ = _reply_listener_class()
        state["rpc"] = client.start()
    return state["rpc"]


def _reply_listener_class():
    """nameko's standalone reply listener opens an AMQP connection for every
    reply it waits for (a new ``consume()`` each time: about 5 ms a call on
    this machine); this one keeps one consuming connection for all of them,
    as a service's RPC proxy does."""
    import socket

    from nameko.exceptions import RpcTimeout
    from nameko.standalone.rpc import ReplyListener

    class KeptReplyListener(ReplyListener):
        _replies = None

        def consume_reply(self, correlation_id):
            if self.consumer.should_stop:
                raise RuntimeError("Stopped and can no longer be used")
            while not self.pending.get(correlation_id):
                if self._replies is None:
                    self._replies = self.consumer.consume(timeout=self.timeout)
                try:
                    next(self._replies)
                except (socket.timeout, StopIteration):
                    self._replies = None
                    raise RpcTimeout()
            return self.pending.pop(correlation_id)

    return KeptReplyListener


# every process of the platform (notify's bulk lane is a process of its own)
SERVICES = START_ORDER


def _samples(stack, metric, services):
    """(labels, value) of every sample of ``metric`` on the /metrics of each service."""
    import re

    pattern = re.compile(r'^' + metric + r'\{(.*)\} ([0-9.e+]+)$')
    for name in services:
        try:
            with urllib.request.urlopen(stack.probe_url(name, "/metrics"), timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            match = pattern.match(line)
            if match:
                labels = dict(part.split("=", 1) for part in match.group(1).split(","))
                yield {k: v.strip('"') for k, v in labels.items()}, float(match.group(2))


def db_requests(stack, services=SERVICES):
    """{(service, command, collection): count} of lamplight_db_requests_total, read from each process."""
    found = {}
    for labels, value in _samples(stack, "lamplight_db_requests_total", services):
        key = (labels["service"], labels["command"], labels["collection"])
        found[key] = found.get(key, 0) + value
    return found


def db_scans(stack, services=SERVICES):
    """{(service, collection): count} of lamplight_db_scans_total (DB_CHECK_SCANS=1)."""
    return {(labels["service"], labels["collection"]): value
            for labels, value in _samples(stack, "lamplight_db_scans_total", services) if value > 0}


def db_request_lines(before, after, units, unit="need", top=None):
    """The lines a bench prints: requests per unit, per service, and the busiest commands
    (``BENCH_DB_TOP`` of them, 8 unless set; 0 lists them all)."""
    if top is None:
        top = int(os.environ.get("BENCH_DB_TOP", "8")) or None
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    delta = {k: v for k, v in delta.items() if v > 0}
    total = sum(delta.values())
    per_service = {}
    for (service, _, _), n in delta.items():
        per_service[service] = per_service.get(service, 0) + n
    lines = ["{:.1f} database requests per {} ({:.0f} in all; {})".format(
        total / units if units else 0, unit, total,
        ", ".join("{} {:.1f}".format(s, n / units) for s, n in sorted(per_service.items(), key=lambda kv: -kv[1])))]
    busiest = sorted(delta.items(), key=lambda kv: -kv[1])[:top]
    lines.append("  busiest: " + ", ".join("{}.{} {} {:.2f}".format(s, c, cmd, n / units)
                                           for (s, cmd, c), n in busiest))
    return lines


AROUND_THE_CLOCK = {"shifts": [{"day": d, "start": "00:00", "end": "00:00", "overnight": True}
                               for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]}


def seed_demo_park(port, park_id, headers, responders):
    """``park_id`` configured as the demo park (needs and volunteers), with
    ``responders`` of the demo's volunteers on duty around the clock, so that
    every need is offered at once; through the gateway on ``port``."""
    import http.client

    from lamplight_dev import demo
    from lamplight_tools import parks as park_files

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    park = park_files.load()["quanlinan"]
    for path, body in (("needs/config", park_files.needs_config(park, 1)),
                       ("volunteers/config", park_files.volunteers_config(park, 1))):
        conn.request("PUT", "/api/v1/parks/{}/{}".format(park_id, path), json.dumps(body), headers)
        answer = conn.getresponse()
        if answer.status != 200:
            raise SystemExit("PUT {}: {} {}".format(path, answer.status, answer.read()[:300]))
        answer.read()
    for i, volunteer in enumerate(demo.volunteers()):
        if i == responders:
            break
        conn.request("POST", "/api/v1/parks/{}/responders".format(park_id),
                     json.dumps(dict(volunteer, roster=AROUND_THE_CLOCK)), headers)
        conn.getresponse().read()
    conn.close()
