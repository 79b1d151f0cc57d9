"""One park floods while other parks trickle: does the flood slow them?

    ./dev bench-fairness [--parks 3] [--trickle-rate 1] [--responders 45]
                         [--recipients 5000] [--sms-rate 500] [--flood-rate 5]
                         [--baseline 20] [--flood 30] [--sizes LO-HI]
                         [--min-samples 10] [--together]

The full size of the question (ten trickle parks at 2 needs/s, 20,000
recipients): ``--parks 10 --trickle-rate 2 --recipients 20000``; on a
machine of two cores that is the platform's whole capacity before the flood.

Starts its own copy of the platform (every service a ``nameko run`` process,
its own vhost and databases, ports 28700/29700-29705) and the local channel
peers (tests/peers.py: Aliyun SMS, checking every request's signature). Sets
up ``--parks`` trickle parks and one flood park, each with the demo park's
needs and volunteers configurations and ``--responders`` volunteers on duty
around the clock; the flood park also gets ``--recipients`` recipients with a
mobile number and SMS as their channel, its SMS pointed at the peer with a
rate limit of ``--sms-rate``/s. Then, in the same run:
- baseline: each trickle park POSTs needs at ``--trickle-rate``/s for
  ``--baseline`` seconds, each timed from its POST to the ``notice.sent``
  event of its first task offer;
- flood: the flood park receives a critical park-wide broadcast (in-app and
  SMS to every recipient) and POSTs needs at ``--flood-rate``/s, while the
  trickle parks go on as before for ``--flood`` seconds.
Prints each trickle park's p50/p99 in both phases and their ratio, the flood
park's broadcast (seconds until every in-app notice is recorded, SMS handed
to the peer and how fast, against the limit), and last the worst trickle
park's p99 ratio on a line of its own.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from nameko.standalone.rpc import ClusterRpcClient
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.broadcast import import_recipients, numbers_in, sms_handed  # noqa: E402
from bench.common import (  # noqa: E402
    MONGO_URI,
    Watcher,
    broadcast_line,
    delete_vhost,
    drop_databases,
    fresh_vhost,
    percentile,
    seed_demo_park,
)
from bench.pipeline import cpu_seconds, need_body, need_of_notice, process_table  # noqa: E402
from lamplight_dev.devstack import START_ORDER, Stack  # noqa: E402
from lamplight_tools.services import PROCESSES  # noqa: E402
from tests.peers import running_peers  # noqa: E402

VHOST = "lamplight_bench_fairness"
GATEWAY_PORT = 28700
FLOOD = "flood"


class Client:
    """POSTs needs to one park at a steady rate; records each accepted need's send time.

    ``offset`` (a fraction of the period, 0 to 1) shifts this park's POSTs in time, so that many parks
    at a low rate arrive as a steady stream rather than all in the same instant every period."""

    def __init__(self, park, headers, rate, tag, offset=0.0):
        self.park, self.headers, self.rate, self.tag, self.offset = park, headers, rate, tag, offset
        self.sent = {}  # need id -> (perf_counter at POST, phase)
        self.errors = []
        self.phase = "baseline"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.count = 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)
        start = time.perf_counter()
        while not self.stop.is_set():
            delay = start + (self.count + self.offset) / self.rate - time.perf_counter()
            if delay > 0:
                self.stop.wait(delay)
                if self.stop.is_set():
                    return
            phase, i = self.phase, self.count
            self.count += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/parks/{}/needs".format(self.park),
                             json.dumps(need_body(i, "{}-{}".format(self.tag, phase))), self.headers)
                answer = conn.getresponse()
                payload = answer.read()
                if answer.status != 201:
                    self.errors.append((answer.status, payload[:200]))
                    continue
                self.sent[json.loads(payload)["id"]] = (t0, phase)
            except Exception as exc:
                self.errors.append(("exception", repr(exc)))
                conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)


def settle(watcher, needs, timeout):
    """Wait (at most ``timeout`` s) until the watcher has seen each of ``needs``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and not all(n in watcher.first for n in needs):
        time.sleep(0.5)


def latencies(client, watcher, phase):
    return [(watcher.first[n] - t0) * 1000 for n, (t0, p) in client.sent.items() if p == phase and n in watcher.first]


def seed(args, uri, headers, parks, peers):
    """Every park configured as the demo park with its volunteers on duty; the flood park's
    recipients (SMS through the peer at its limit), and the trickle parks' with ``--sizes``."""
    for park in parks + [FLOOD]:
        seed_demo_park(GATEWAY_PORT, park, headers, args.responders)
    with ClusterRpcClient(uri=uri, timeout=600) as rpc:
        rpc.notify.set_config(FLOOD, {"version": 1, "channels": {"sms": peers.channels("aliyun")["sms"]},
                                      "rate_limits": {"sms": args.sms_rate}})
        print("importing {} recipients into {} ...".format(args.recipients, FLOOD), flush=True)
        import_recipients(rpc, FLOOD, args.recipients, sms=True)
        sizes = park_sizes(args.sizes, len(parks))
        if sizes:
            print("seeding {} trickle parks with {:,} workers in all ({:,} to {:,}) ...".format(
                len(parks), sum(sizes), min(sizes), max(sizes)), flush=True)
            for park, size in zip(parks, sizes):
                import_recipients(rpc, park, size)


def windows(clients, offers, flood_started, flood_seconds, parts=4):
    """The trickle parks' submit->notice p50 in ``parts`` windows of the flood (by POST time): is the
    delay the broadcast's first seconds, or the whole flood?"""
    width = flood_seconds / parts
    cells = []
    for k in range(parts):
        lo = flood_started + k * width
        spans = [(offers.first[n] - t0) * 1000 for c in clients for n, (t0, p) in c.sent.items()
                 if p == "flood" and lo <= t0 < lo + width and n in offers.first]
        cells.append("{:.0f}-{:.0f} s p50 {} ({})".format(k * width, (k + 1) * width, "{:.0f} ms".format(
            percentile(spans, 50)) if spans else "-", len(spans)))
    return "trickle parks in the flood, by when POSTed: " + "; ".join(cells)


def handler_times(stack):
    """Each process's handlers, from its metrics: {(process, what): (seconds, count)}, what being an
    entrypoint's name or "event wait" (from an event's time to its handler's start, every queue)."""
    totals: dict[tuple[str, str], list[float]] = {}
    for name in PROCESSES:
        try:
            text = urllib.request.urlopen(stack.probe_url(name, "/metrics"), timeout=5).read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            if family.name not in ("lamplight_entrypoint_duration_seconds", "lamplight_event_wait_seconds"):
                continue
            for sample in family.samples:
                if not sample.name.endswith(("_sum", "_count")):
                    continue
                what = sample.labels.get("entrypoint") or "event wait"
                cell = totals.setdefault((name, what), [0.0, 0.0])
                cell[0 if sample.name.endswith("_sum") else 1] += sample.value
    return {k: (v[0], v[1]) for k, v in totals.items()}


def handler_lines(phases):
    """A line per phase: each process's handlers' mean time in the phase, from ``handler_times``
    read at the phases' ends (those that ran at least ten times in it)."""
    lines = []
    for (label, before, after) in phases:
        cells = []
        for key in sorted(after):
            seconds = after[key][0] - before.get(key, (0.0, 0.0))[0]
            count = after[key][1] - before.get(key, (0.0, 0.0))[1]
            if count >= 10:
                cells.append("{}.{} {:.0f} ms ({:.0f})".format(key[0], key[1], seconds * 1000 / count, count))
        lines.append("handlers' mean time, {}: {}".format(label, ", ".join(cells) or "-"))
    return lines


def park_sizes(spec, count):
    """``LO-HI`` spread evenly over ``count`` parks (empty: none)."""
    if not spec:
        return []
    lo, hi = (int(part) for part in spec.split("-", 1))
    return [lo + (hi - lo) * i // max(count - 1, 1) for i in range(count)]


def steps(clients, triaged, offered, offers):
    """The trickle parks' path in its steps, baseline and flood: POST -> need.triaged (gateway and
    needs), -> task.offered (volunteers), -> notice.sent (notify), each step's p50/p99 in ms."""
    lines = []
    for phase in ("baseline", "flood"):
        spans: dict[str, list[float]] = {"POST->triaged": [], "triaged->offered": [], "offered->notice": []}
        for c in clients:
            for need, (t0, p) in c.sent.items():
                marks = [t0] + [w.first.get(need) for w in (triaged, offered, offers)]
                if p != phase or None in marks:
                    continue
                for name, a, b in zip(spans, marks, marks[1:]):
                    spans[name].append((b - a) * 1000)
        lines.append("trickle path, {}: ".format(phase) + "; ".join(
            "{} p50 {:.0f} ms, p99 {:.0f} ms".format(name, percentile(v, 50), percentile(v, 99))
            for name, v in spans.items() if v))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parks", type=int, default=3, help="trickle parks")
    parser.add_argument("--trickle-rate", type=float, default=1.0, help="needs/s in each trickle park")
    parser.add_argument("--responders", type=int, default=45, help="volunteers on duty in each park")
    parser.add_argument("--recipients", type=int, default=5000, help="the flood park's broadcast audience")
    parser.add_argument("--sms-rate", type=int, default=500, help="the flood park's SMS rate limit, sends/s")
    parser.add_argument("--flood-rate", type=float, default=5.0, help="needs/s POSTed in the flood park")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of trickle before the flood")
    parser.add_argument("--flood", type=float, default=30.0, help="seconds of trickle during the flood")
    parser.add_argument("--sizes", default="",
                        help="LO-HI: each trickle park seeded in bulk with workers from LO to HI, spread evenly "
                             "(the 100-park question: --parks 99 --sizes 200-6000 --recipients 20000)")
    parser.add_argument("--min-samples", type=int, default=10,
                        help="a park's p99 ratio counts toward the worst with at least this many needs a phase")
    parser.add_argument("--together", action="store_true",
                        help="notify's bulk lane in the notify process, as before the lanes (no notify-bulk)")
    args = parser.parse_args(argv)
    with running_peers() as peers:
        return run(args, peers)


def run(args, peers):
    run_id = uuid.uuid4().hex[:8]
    prefix = "benchfair{}_".format(run_id)
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-fairness", port_base=29700, web_port=GATEWAY_PORT, env={
        "AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING"})
    parks = ["fair-{:02d}".format(p) for p in range(1, args.parks + 1)]
    print("starting the platform (logs in {})".format(stack.log_dir), flush=True)
    stack.down()
    if args.together:
        stack.env["LANES"] = ""  # every lane in the notify process
        stack.up([name for name in START_ORDER if name != "notify-bulk"])
    else:
        stack.up()
    headers = {"Content-Type": "application/json",
               "Authorization": "Bearer " + stack.admin_key(rate_limit="10000000/minute")}
    clients = []
    try:
        seed(args, uri, headers, parks, peers)
        offers = Watcher(uri, "notify.events", "notice.sent", key=need_of_notice)
        offers.start()
        # the path's steps, to say where a flood's delay is added
        triaged = Watcher(uri, "needs.events", "need.triaged")
        offered = Watcher(uri, "volunteers.events", "task.offered", key=lambda e: e["subject"].split(":task:")[0])
        for watcher in (triaged, offered):
            watcher.start()
        completed = Watcher(uri, "notify.events", "broadcast.completed")
        completed.start()
        for watcher in (offers, completed, triaged, offered):
            watcher.ready.wait(10)
        # warm-up: connections, caches and lazy imports in every process, for every park; two needs a
        # park, spread over a few seconds, and the baseline starts once they have all had their notice
        warm = [Client(park, headers, 0.5, "warm", offset=i / (len(parks) + 1))
                for i, park in enumerate(parks + [FLOOD])]
        for c in warm:
            c.thread.start()
        time.sleep(4)
        for c in warm:
            c.stop.set()
        for c in warm:
            c.thread.join(60)
        settle(offers, [n for c in warm for n in c.sent], 120)

        print("baseline: {} parks at {:g} needs/s for {:g} s".format(len(parks), args.trickle_rate, args.baseline),
              flush=True)
        clients = [Client(park, headers, args.trickle_rate, "trickle", offset=i / len(parks))
                   for i, park in enumerate(parks)]
        pids = dict(process_table(stack), **{"provider peer": peers.proc.pid})
        def sample():
            return time.perf_counter(), {k: cpu_seconds(p) for k, p in pids.items()}
        handlers = [handler_times(stack)]
        cpu = [sample()]
        for c in clients:
            c.thread.start()
        time.sleep(args.baseline)
        cpu.append(sample())
        handlers.append(handler_times(stack))

        print("flood: a critical broadcast to {} recipients (SMS at {}/s) and {:g} needs/s in {}, for {:g} s".format(
            args.recipients, args.sms_rate, args.flood_rate, FLOOD, args.flood), flush=True)
        for c in clients:
            c.phase = "flood"
        flood_started, flood_epoch = time.perf_counter(), time.time()
        intake = Client(FLOOD, headers, args.flood_rate, "flood")
        intake.phase = "flood"
        intake.thread.start()
        with ClusterRpcClient(uri=uri, timeout=600) as rpc:
            accepted = rpc.notify.broadcast(FLOOD, {
                "title": "紧急通知", "body": "山体滑坡预警：请勿前往后山，低洼处宿舍人员请到服务中心避险。",
                "critical": True, "actor": "bench"}, idempotency_key="bench-" + run_id)
        time.sleep(max(0.0, flood_started + args.flood - time.perf_counter()))
        cpu.append(sample())
        handlers.append(handler_times(stack))
        for c in clients + [intake]:
            c.stop.set()
        for c in clients + [intake]:
            c.thread.join(60)
        # every accepted need's notice, and the broadcast's end and its SMS (60 s at most after the flood)
        deadline = time.perf_counter() + 60
        needs = [n for c in clients + [intake] for n in c.sent]
        while time.perf_counter() < deadline and (
                not all(n in offers.first for n in needs) or accepted["broadcast_id"] not in completed.first):
            time.sleep(0.5)
        while time.perf_counter() < deadline and sms_handed(
                peers.requests("/aliyun"), flood_epoch, time.time() + 1)[0] < args.recipients:
            time.sleep(2)  # the peer's whole log each time: not too often
        arrived = peers.requests("/aliyun")
        with ClusterRpcClient(uri=uri, timeout=60) as rpc:
            broadcast = rpc.notify.get_broadcast(FLOOD, accepted["broadcast_id"])
        for watcher in (offers, completed, triaged, offered):
            watcher.stop.set()
        rss = stack.rss_mb()
    finally:
        stack.down()
        drop_databases(prefix)
        delete_vhost(VHOST)
    return report(args, clients, intake, (offers, completed, triaged, offered), broadcast, flood_started,
                  flood_epoch, arrived, rss, cpu, handlers)


def report(args, clients, intake, watchers, broadcast, flood_started, flood_epoch, arrived, rss, cpu, handlers):
    """Print the run's figures, the worst trickle park's p99 ratio last; the exit status."""
    offers, _, triaged, offered = watchers  # the broadcast's milestones come from its view
    print()
    print("{} trickle parks at {:g} needs/s each; {} volunteers on duty in each (FerretDB/MongoDB at {}); notify's "
          "bulk lane {}".format(len(clients), args.trickle_rate, args.responders, MONGO_URI,
                                "in the notify process (--together)" if args.together else "in notify-bulk"))
    worst, lost, ratios = None, 0, []
    for c in clients:
        base, flood = latencies(c, offers, "baseline"), latencies(c, offers, "flood")
        lost += sum(1 for n in c.sent if n not in offers.first)
        if not base or not flood:
            print("park {}: baseline {} needs, flood {} needs with a notice; errors {}".format(
                c.park, len(base), len(flood), c.errors[:2]))
            continue
        ratio50, ratio99 = percentile(flood, 50) / percentile(base, 50), percentile(flood, 99) / percentile(base, 99)
        if min(len(base), len(flood)) >= args.min_samples:
            worst = max(worst or 0, ratio99)
            ratios.append(ratio99)
        if len(clients) <= 12:
            print("park {}: baseline p50 {:.0f} ms, p99 {:.0f} ms ({} needs); flood p50 {:.0f} ms, p99 {:.0f} ms ({} "
                  "needs); flood/baseline p50 {:.2f}, p99 {:.2f}; errors {}".format(
                      c.park, percentile(base, 50), percentile(base, 99), len(base), percentile(flood, 50),
                      percentile(flood, 99), len(flood), ratio50, ratio99, len(c.errors)))
    base = [x for c in clients for x in latencies(c, offers, "baseline")]
    flood = [x for c in clients for x in latencies(c, offers, "flood")]
    if base and flood:
        print("all {} trickle parks pooled: baseline p50 {:.0f} ms, p99 {:.0f} ms ({} needs); flood p50 {:.0f} ms, "
              "p99 {:.0f} ms ({} needs); flood/baseline p50 {:.2f}, p99 {:.2f}".format(
                  len(clients), percentile(base, 50), percentile(base, 99), len(base), percentile(flood, 50),
                  percentile(flood, 99), len(flood), percentile(flood, 50) / percentile(base, 50),
                  percentile(flood, 99) / percentile(base, 99)))
    if ratios:
        ratios.sort()
        print("per-park p99 flood/baseline over the {} parks with {}+ needs a phase: median {:.2f}, within 1.20: {}, "
              "worst {:.2f}".format(len(ratios), args.min_samples, ratios[len(ratios) // 2],
                                    sum(1 for r in ratios if r <= 1.2), ratios[-1]))
    for line in steps(clients, triaged, offered, offers):
        print(line)
    print(windows(clients, offers, flood_started, args.flood))
    flood_needs = latencies(intake, offers, "flood")
    lost += sum(1 for n in intake.sent if n not in offers.first)
    if flood_needs:
        print("park {} intake: {} needs at {:g}/s, submit->notice p50 {:.0f} ms, p99 {:.0f} ms; errors {}".format(
            FLOOD, len(flood_needs), args.flood_rate, percentile(flood_needs, 50), percentile(flood_needs, 99),
            len(intake.errors)))
    print(broadcast_line(FLOOD, broadcast))
    ok = sorted((r for r in arrived if r["verdict"] == "ok" and r["at"] >= flood_epoch), key=lambda r: r["at"])
    if ok:
        handed, _, busiest, requests = sms_handed(arrived, flood_epoch, ok[-1]["at"] + 1)
        print("park {} SMS: {} of {} handed to the provider peer in {} requests, the last {:.1f} s after the "
              "request; {:.0f}/s from the first to the last, busiest second {}; the park's limit {}/s; "
              "refused {}".format(FLOOD, handed, args.recipients, requests, ok[-1]["at"] - flood_epoch,
                                  (handed - numbers_in(ok[0])) / max(ok[-1]["at"] - ok[0]["at"], 1e-9), busiest,
                                  args.sms_rate, sum(1 for r in arrived if r["verdict"] != "ok")))
    print("needs accepted without their notice: {}".format(lost))
    for (t0, before), (t1, after), phase in zip(cpu, cpu[1:], ("baseline", "flood")):
        print("CPU, % of a core, {}: ".format(phase) + ", ".join(
            "{} {:.0f}".format(k, (after[k] - before[k]) * 100 / (t1 - t0)) for k in sorted(after)))
    for line in handler_lines([("baseline", handlers[0], handlers[1]), ("flood", handlers[1], handlers[2])]):
        print(line)
    print("rss MB: " + ", ".join("{} {:.0f}".format(k, v) for k, v in sorted(rss.items())))
    print("worst p99 flood/baseline: {}".format("{:.2f}".format(worst) if worst is not None else "n/a"))
    return 0 if worst is not None and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
