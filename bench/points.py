"""The points ledger with a million entries, beside plain pymongo.

    ./dev bench-points [--entries 1000000] [--parks 20] [--postings 2000] [--queries 2000] [--threads 8]

Seeds ``--entries`` ledger entries across ``--parks`` parks (chained and
sealed exactly as the service writes them, bulk-inserted), starts the points
service as its own ``nameko run`` process, then measures in the same run:
- postings/s through the service (RPC ``post``: roll forward, chain, caps,
  outbox, confirmed events) from ``--threads`` clients;
- balance-query p50/p99 (RPC ``account``) on random members;
- plain pymongo on the same server: ``insert_one`` of an entry-sized document
  and ``find_one`` by _id, from the same number of threads.
"""
import argparse
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MONGO_URI, delete_vhost, fresh_vhost, percentile, run_threads, thread_rpc  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402
from services.points import domain  # noqa: E402

VHOST = "lamplight_bench_points"
RULES = [{"code": "volunteer-event", "name": "参加志愿活动", "account": "service", "points": 3},
         {"code": "good-deed", "name": "好人好事", "account": "discipline", "points": 1}]






def seed(db, entries, parks, members_per_park):
    """Chained service-account entries, as the service writes them."""
    per_account = max(1, entries // (parks * members_per_park))
    start = datetime.now(timezone.utc) - timedelta(days=180)
    batch, accounts, written = [], [], 0
    t0 = time.perf_counter()
    for p in range(parks):
        park = "park-{:02d}".format(p)
        for m in range(members_per_park):
            member = "m{:05d}".format(m)
            account = domain.new_account(park, member, domain.SERVICE, None, start)
            for i in range(per_account):
                if written >= entries:
                    break
                entry = domain.next_entry(account, kind=domain.POSTING, amount=3, at=start + timedelta(minutes=i),
                                          idempotency_key="seed-{}-{}-{}".format(p, m, i), actor="seed",
                                          reason="seed")
                batch.append(entry)
                account = domain.apply(account, entry)
                written += 1
            accounts.append(account)
            if len(batch) >= 5000:
                db.entries.insert_many(batch, ordered=False)
                batch = []
            if len(accounts) >= 1000:
                db.accounts.insert_many(accounts, ordered=False)
                accounts = []
    if batch:
        db.entries.insert_many(batch, ordered=False)
    if accounts:
        db.accounts.insert_many(accounts, ordered=False)
    return written, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--parks", type=int, default=20)
    parser.add_argument("--members", type=int, default=1000, help="members per park")
    parser.add_argument("--postings", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    from nameko.standalone.rpc import ClusterRpcClient

    prefix = "benchpts{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    db = client[prefix + "points"]
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-points", port_base=29300, web_port=28300,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING"})
    try:
        stack.down(names=("points",))  # anything a killed run left behind
        stack.up(names=("points",))  # creates the indexes
        with ClusterRpcClient(uri=uri) as rpc:
            for p in range(args.parks):
                rpc.points.set_catalogue("park-{:02d}".format(p), {"version": 1, "rules": RULES})
        print("seeding {} entries across {} parks ...".format(args.entries, args.parks), flush=True)
        written, seconds = seed(db, args.entries, args.parks, args.members)
        print("seeded {} entries in {:.0f} s ({:.0f}/s bulk)".format(written, seconds, written / seconds), flush=True)

        parks = ["park-{:02d}".format(p) for p in range(args.parks)]
        rng = random.Random(7)

        def post(i, state):
            rpc = thread_rpc(state, uri)
            rpc.points.post(rng.choice(parks), {"member_id": "m{:05d}".format(rng.randrange(args.members)),
                                                "rule_code": "volunteer-event", "actor": "bench", "reason": "bench"},
                            idempotency_key="bench-{}".format(i))

        def query(i, state):
            rpc = thread_rpc(state, uri)
            rpc.points.account(rng.choice(parks), "m{:05d}".format(rng.randrange(args.members)), kind="service")

        post_lat, post_err, post_s = run_threads(args.threads, args.postings, post)
        query_lat, query_err, query_s = run_threads(args.threads, args.queries, query)

        # plain pymongo on the same collection: an entry-sized insert, and a
        # lookup by _id of a random seeded entry
        plain = db.entries
        sample = dict(plain.find_one({}, {"_id": 0}), park_id="plain")

        def plain_insert(i, state):
            plain.insert_one(dict(sample, _id="plain/{}".format(i), idempotency_key="plain-{}".format(i)))

        per_account = max(1, args.entries // (args.parks * args.members))

        def plain_find(i, state):
            account = domain.account_id("park-{:02d}".format(rng.randrange(args.parks)),
                                        "m{:05d}".format(rng.randrange(args.members)), domain.SERVICE)
            plain.find_one({"_id": domain.entry_id(account, rng.randrange(per_account) + 1)})

        ins_lat, ins_err, ins_s = run_threads(args.threads, args.postings, plain_insert)
        find_lat, find_err, find_s = run_threads(args.threads, args.queries, plain_find)
        total_entries = db.entries.count_documents({"park_id": {"$ne": "plain"}})
        rss = stack.rss_mb()
    finally:
        stack.down(names=("points",))
        client.drop_database(prefix + "points")
        client.close()
        delete_vhost(VHOST)

    print()
    if post_err or query_err or ins_err or find_err or not post_lat or not query_lat:
        print("errors: postings {}, queries {}, plain {}; first: {}".format(
            len(post_err), len(query_err), len(ins_err) + len(find_err), (post_err + query_err + ins_err)[:2]))
        return 1
    print("ledger: {} entries in {} parks ({} accounts)".format(total_entries, args.parks, args.parks * args.members))
    print("postings: {:.0f} entries/s through the service ({} postings, {} threads, {} errors); "
          "p50 {:.1f} ms, p99 {:.1f} ms".format(len(post_lat) / post_s, args.postings, args.threads, len(post_err),
                                                percentile(post_lat, 50), percentile(post_lat, 99)))
    print("balance query: p50 {:.1f} ms, p99 {:.1f} ms ({} queries, {:.0f}/s, {} errors)".format(
        percentile(query_lat, 50), percentile(query_lat, 99), args.queries, len(query_lat) / query_s, len(query_err)))
    print("plain pymongo: insert_one {:.0f}/s (p50 {:.1f} ms, p99 {:.1f} ms); find_one by _id p50 {:.1f} ms, "
          "p99 {:.1f} ms".format(len(ins_lat) / ins_s, percentile(ins_lat, 50), percentile(ins_lat, 99),
                                 percentile(find_lat, 50), percentile(find_lat, 99)))
    print("rss MB: points {:.0f}".format(rss.get("points", 0)))
    print("ratio postings/plain-insert: {:.3f}".format((len(post_lat) / post_s) / (len(ins_lat) / ins_s)))
    print("ratio balance-p50/plain-find-p50: {:.2f}".format(percentile(query_lat, 50) / percentile(find_lat, 50)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
