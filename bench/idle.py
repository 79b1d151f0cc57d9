"""An idle platform holding big parks: what its background work costs.

    ./dev bench-idle [--needs 100000] [--recipients 20000] [--volunteers 5000]
                     [--entries 100000] [--parks 100] [--settle 20] [--seconds 60]
                     [--max-ferretdb 5]

Starts the whole platform (every service its own ``nameko run`` process, its
own vhost and databases, ports 28700/29700-29705) and seeds one big park the
way its services write it: ``--needs`` needs with their wall lines and head
(the needs bench's seeding, dated so that none is due yet), ``--recipients`` recipients imported through
notify's RPC and one park-wide broadcast to them (a notice and a log line
each), ``--volunteers`` volunteers on shifts (the dispatch bench's), and a
points ledger of ``--entries`` entries (the points bench's). Then, with no
traffic at all, it lets ``--settle`` seconds pass (the first sweeps, the
relays' first rounds) and measures for ``--seconds``: each process's CPU as
a share of one core, and the database requests per second by service and
command (``lamplight_db_requests_total``: the sweeps, ticks, relays and
gauges). In the same run it measures FerretDB's own idle CPU before the
platform starts, for the ratio.

Then it adds ``--parks`` - 1 small parks (each configured as the demo park,
with 10 volunteers and 50 recipients who have had one in-app broadcast) and
measures again, in the same run: background work must grow with the work,
not with the number of parks, so it prints the ratio of database requests
and of FerretDB's CPU with all the parks to those with the one. Exits 1
when FerretDB uses more than ``--max-ferretdb`` percent of a core while the
platform idles, with one park or with all of them.
"""
import argparse
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pymongo
from nameko.standalone.rpc import ClusterRpcClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dispatch as dispatch_bench  # noqa: E402
from bench import needs as needs_bench
from bench import points as points_bench
from bench.broadcast import import_recipients  # noqa: E402
from bench.common import MONGO_URI, db_request_lines, db_requests, delete_vhost, drop_databases, fresh_vhost  # noqa: E402
from bench.pipeline import cpu_seconds, process_table  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402
from lamplight_tools import parks as park_files  # noqa: E402
from services.needs import domain as needs_domain  # noqa: E402
from services.needs.schemas import NeedsConfigSchema  # noqa: E402
from services.needs.store import utcnow  # noqa: E402

VHOST = "lamplight_bench_idle"
PARK = "bench-idle"


def cpu_shares(pids, seconds):
    """{process: percent of one core} over ``seconds``."""
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    return {k: (cpu_seconds(p) - before[k]) * 100 / wall for k, p in pids.items()}, wall


def seed(stack, uri, client, prefix, args):
    park = park_files.load()["quanlinan"]
    needs_config = park_files.needs_config(park, 1)
    with ClusterRpcClient(uri=uri) as rpc:
        rpc.needs.set_config(PARK, needs_config)
        rpc.volunteers.set_config(PARK, park_files.volunteers_config(park, 1))
        t0 = time.perf_counter()
        taxonomy = needs_domain.Taxonomy(dict(NeedsConfigSchema().load(needs_config)))
        # dated so that none is due yet: this measures a park at rest, not a sweep catching up with
        # a year of needs that would all have passed their time limits at once
        needs_bench.seed(client[prefix + "needs"], taxonomy, PARK, args.needs, random.Random(11),
                         utcnow() + timedelta(days=366), 0)
        print("  {} needs with their wall lines in {:.0f} s".format(args.needs, time.perf_counter() - t0), flush=True)

        t0 = time.perf_counter()
        import_recipients(rpc, PARK, args.recipients)
        accepted = rpc.notify.broadcast(PARK, {"title": "通知", "body": "本周六上午九点，服务中心举办消防演练。",
                                               "critical": False, "actor": "bench"},
                                        idempotency_key="bench-idle-" + uuid.uuid4().hex[:8])
        deadline = time.monotonic() + 1200
        while rpc.notify.get_broadcast(PARK, accepted["broadcast_id"])["status"] != "done":
            if time.monotonic() > deadline:
                raise SystemExit("the broadcast did not finish in 20 minutes")
            time.sleep(1)
        print("  {} recipients and a broadcast's notices in {:.0f} s".format(
            args.recipients, time.perf_counter() - t0), flush=True)

    t0 = time.perf_counter()
    client[prefix + "volunteers"]["responders." + PARK].insert_many(
        [dispatch_bench.volunteer(PARK, i) for i in range(args.volunteers)])
    written, _ = points_bench.seed(client[prefix + "points"], args.entries, 1, 1000)
    print("  {} volunteers and {} points entries in {:.0f} s".format(
        args.volunteers, written, time.perf_counter() - t0), flush=True)


def seed_small_parks(uri, client, prefix, count):
    """``count`` small parks, as a park starting on the platform: the demo park's
    configurations, 10 volunteers, 50 recipients and one broadcast to them."""
    park = park_files.load()["quanlinan"]
    t0 = time.perf_counter()
    ids = ["bench-idle-{:03d}".format(i) for i in range(1, count + 1)]
    with ClusterRpcClient(uri=uri) as rpc:
        broadcasts = {}
        for park_id in ids:
            rpc.needs.set_config(park_id, park_files.needs_config(park, 1))
            rpc.volunteers.set_config(park_id, park_files.volunteers_config(park, 1))
            client[prefix + "volunteers"]["responders." + park_id].insert_many(
                [dispatch_bench.volunteer(park_id, i) for i in range(10)])
            import_recipients(rpc, park_id, 50)
            broadcasts[park_id] = rpc.notify.broadcast(
                park_id, {"title": "通知", "body": "本周六上午九点，服务中心举办消防演练。", "critical": False,
                          "actor": "bench"}, idempotency_key="bench-idle-" + uuid.uuid4().hex[:8])["broadcast_id"]
        deadline = time.monotonic() + 600
        for park_id, broadcast_id in broadcasts.items():
            while rpc.notify.get_broadcast(park_id, broadcast_id)["status"] != "done":
                if time.monotonic() > deadline:
                    raise SystemExit("the small parks' broadcasts did not finish in 10 minutes")
                time.sleep(0.5)
    print("  {} small parks in {:.0f} s".format(count, time.perf_counter() - t0), flush=True)


def measure(stack, args):
    """Idle ``--settle`` s, then (cpu shares, wall, db requests before, after) over ``--seconds``."""
    print("idling {:.0f} s, then measuring {:.0f} s with no traffic ...".format(args.settle, args.seconds),
          flush=True)
    time.sleep(args.settle)
    pids = {k: v for k, v in process_table(stack).items() if k != "bench client"}
    requests_before = db_requests(stack)
    shares, wall = cpu_shares(pids, args.seconds)
    return shares, wall, requests_before, db_requests(stack)


def report(title, measured):
    shares, wall, before, after = measured
    print(title)
    print("cpu, percent of one core over {:.0f} s with no traffic: ".format(wall) + ", ".join(
        "{} {:.1f}".format(k, v) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])))
    for line in db_request_lines(before, after, wall, unit="second"):
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--needs", type=int, default=100_000)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--volunteers", type=int, default=5000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--parks", type=int, default=100,
                        help="parks in the second measurement: the big one and --parks - 1 small ones")
    parser.add_argument("--settle", type=float, default=20, help="seconds of idling before the measurement")
    parser.add_argument("--seconds", type=float, default=60, help="seconds measured")
    parser.add_argument("--max-ferretdb", type=float, default=5.0, help="percent of a core")
    args = parser.parse_args(argv)

    prefix = "benchidle{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-idle", port_base=29700, web_port=28700,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING"})
    ferret = ROOT / ".stack" / "ferretdb.pid"
    baseline = None
    try:
        stack.down()
        if ferret.exists():  # the server alone, before the platform starts
            baseline, _ = cpu_shares({"ferretdb": int(ferret.read_text())}, min(args.seconds, 10))
        print("starting the platform (logs in {})".format(stack.log_dir), flush=True)
        stack.up()
        print("seeding {} ...".format(PARK), flush=True)
        seed(stack, uri, client, prefix, args)
        measured = {1: measure(stack, args)}
        if args.parks > 1:
            print("seeding {} small parks ...".format(args.parks - 1), flush=True)
            seed_small_parks(uri, client, prefix, args.parks - 1)
            measured[args.parks] = measure(stack, args)
        counts = {"needs": client[prefix + "needs"].needs.estimated_document_count(),
                  "notices": client[prefix + "notify"]["notices." + PARK].estimated_document_count(),
                  "log lines": client[prefix + "notify"]["deliveries." + PARK].estimated_document_count(),
                  "entries": client[prefix + "points"].entries.estimated_document_count()}
    finally:
        stack.down()
        drop_databases(prefix)
        client.close()
        delete_vhost(VHOST)

    print()
    print("idle platform holding " + ", ".join("{} {}".format(v, k) for k, v in counts.items()))
    for parks, m in measured.items():
        report("with {} park{}:".format(parks, "" if parks == 1 else "s"), m)
    ferretdb = {parks: m[0].get("ferretdb", 0.0) for parks, m in measured.items()}
    rate = {parks: db_total(m) / m[1] for parks, m in measured.items()}
    if baseline is not None:
        print("ferretdb alone before the platform started: {:.1f} % of a core".format(baseline["ferretdb"]))
        print("ratio ferretdb idle-platform/alone: {:.1f}".format(ferretdb[1] / max(baseline["ferretdb"], 0.1)))
    if len(measured) > 1:
        many = max(measured)
        print("database requests per second, {} parks/1 park: {:.1f}/{:.1f} = {:.2f}".format(
            many, rate[many], rate[1], rate[many] / max(rate[1], 0.01)))
        print("ferretdb cpu, {} parks/1 park: {:.1f}/{:.1f} % of a core = {:.2f}".format(
            many, ferretdb[many], ferretdb[1], ferretdb[many] / max(ferretdb[1], 0.1)))
    worst = max(ferretdb.values())
    verdict = "within" if worst <= args.max_ferretdb else "OVER"
    print("ferretdb while the platform idles: {} % of a core, {} the {:g} % bound".format(
        ", ".join("{:.1f} ({} park{})".format(v, k, "" if k == 1 else "s") for k, v in ferretdb.items()),
        verdict, args.max_ferretdb))
    return 0 if worst <= args.max_ferretdb else 1


def db_total(measured):
    _, _, before, after = measured
    return sum(after.values()) - sum(before.values())


if __name__ == "__main__":
    sys.exit(main())
