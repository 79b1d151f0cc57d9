"""An idle platform holding big parks: what its background work costs.

    ./dev bench-idle [--needs 100000] [--recipients 20000] [--volunteers 5000]
                     [--entries 100000] [--settle 20] [--seconds 60] [--max-ferretdb 5]

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
platform starts, for the ratio. Exits 1 when FerretDB uses more than
``--max-ferretdb`` percent of a core while the platform idles.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--needs", type=int, default=100_000)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--volunteers", type=int, default=5000)
    parser.add_argument("--entries", type=int, default=100_000)
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
        print("idling {:.0f} s, then measuring {:.0f} s with no traffic ...".format(args.settle, args.seconds),
              flush=True)
        time.sleep(args.settle)
        pids = {k: v for k, v in process_table(stack).items() if k != "bench client"}
        requests_before = db_requests(stack)
        shares, wall = cpu_shares(pids, args.seconds)
        requests_after = db_requests(stack)
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
    print("cpu, percent of one core over {:.0f} s with no traffic: ".format(wall) + ", ".join(
        "{} {:.1f}".format(k, v) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])))
    for line in db_request_lines(requests_before, requests_after, wall, unit="second"):
        print(line)
    ferretdb = shares.get("ferretdb", 0.0)
    if baseline is not None:
        print("ferretdb alone before the platform started: {:.1f} % of a core".format(baseline["ferretdb"]))
        print("ratio ferretdb idle-platform/alone: {:.1f}".format(ferretdb / max(baseline["ferretdb"], 0.1)))
    verdict = "within" if ferretdb <= args.max_ferretdb else "OVER"
    print("ferretdb while the platform idles: {:.1f} % of a core, {} the {:g} % bound".format(
        ferretdb, verdict, args.max_ferretdb))
    return 0 if ferretdb <= args.max_ferretdb else 1


if __name__ == "__main__":
    sys.exit(main())
