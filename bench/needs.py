"""Needs intake and the echo wall with a big park among others, beside plain pymongo.

    ./dev bench-needs [--needs 100000] [--other-parks 10] [--other-needs 1000]
                      [--submissions 2000] [--head-reads 1000] [--page-reads 30] [--threads 8]

Seeds ``--needs`` needs in one park and ``--other-needs`` in each of
``--other-parks`` parks (documents, wall lines and wall heads built by the
service's own domain code, bulk-inserted; a share of them taken through
assign/resolve/evaluate), starts the needs service as its own ``nameko run``
process, then measures in the same run:
- intake: needs/s and p50/p99 of RPC ``submit`` into the big park from
  ``--threads`` clients (validation, duplicate check, auto-triage, the need
  with its three events in one insert, confirmed publish);
- the echo wall: RPC ``wall`` of the big park, first page (the park's head
  document and the lines it lists) and a filtered page (status=assigned: a query on the
  wall collection);
- plain pymongo on the same server, same threads: ``insert_one`` of a
  need-sized document, the head by ``_id`` and the lines it lists, and the filtered
  page's own query (filter, sort, limit 20).
"""
import argparse
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MONGO_URI, delete_vhost, fresh_vhost, percentile, run_threads, thread_rpc  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402
from lamplight_tools import parks as park_files  # noqa: E402
from services.needs import domain  # noqa: E402
from services.needs.schemas import NeedsConfigSchema  # noqa: E402
from services.needs.store import END_OF_TIME, WALL_HEAD_SIZE, head_line, utcnow  # noqa: E402

VHOST = "lamplight_bench_needs"
BIG = "bench-big"
ITEMS = [("daily_life", "facilities_repair", {"location": "宿舍区"}), ("care", "hardship_relief", {}),
         ("culture_sports", "sports_events", {}), ("public_services", "commuting", {}),
         ("party_services", "party_lessons", {})]
TITLES = ["宿舍区路灯不亮", "希望增加夜班通勤车", "组织篮球联谊赛", "困难职工帮扶申请", "党课时间调整到晚上"]


def submission(i, rng):
    category, item, details = ITEMS[i % len(ITEMS)]
    return {"kind": "micro_wish", "category": category, "item": item, "grade": None, "channel": "wish_wall",
            "title": "{}（{}）".format(TITLES[i % len(TITLES)], i), "description": "", "details": details,
            "entered_by": None, "requester": {"kind": "worker", "name": "职工{}".format(i),
                                              "phone": "139{:08d}".format(i), "enterprise": None,
                                              "member_id": None}}


def seeded_need(taxonomy, park, i, rng, now):
    """A need as the service writes it, some taken further along its life."""
    at = now - timedelta(days=rng.uniform(0, 365))
    sub = submission(i, rng)
    need_id = "need_seed{:09d}".format(i)
    need, _ = domain.new_need(taxonomy, park, need_id, sub, at, None, [], None, "seed{}".format(i))
    steps = rng.random()
    plan = [] if steps < 0.2 else [("assign", {"unit": "物业公司"})] if steps < 0.3 else [
        ("assign", {"unit": "物业公司"}), ("resolve", {"evaluation_days": 7}),
        ("evaluate", {"rating": rng.randint(3, 5), "outcome": "fixed"})]
    for n, (action, args) in enumerate(plan):
        when = at + timedelta(hours=n + 1)
        changes = domain.apply(need, action, args, when, at)
        need.update(changes)
        need["timeline"].append(domain.timeline_entry(when, action, args, None, need["status"], "seed", None))
        need["version"] += 1
        need["updated_at"] = when
    return need


def seed(db, taxonomy, park, count, rng, now, start):
    needs, lines, head = [], [], []
    for i in range(start, start + count):
        need = seeded_need(taxonomy, park, i, rng, now)
        line = domain.wall_entry(need)
        needs.append(need)
        lines.append(dict(line, _id=need["_id"], park_id=park))
        head.append(line)
        if len(needs) >= 2000:
            db.needs.insert_many(needs, ordered=False)
            db.wall.insert_many(lines, ordered=False)
            needs, lines = [], []
            head = sorted(head, key=lambda line: (line["updated_at"], line["need_id"]), reverse=True)[:WALL_HEAD_SIZE]
    if needs:
        db.needs.insert_many(needs, ordered=False)
        db.wall.insert_many(lines, ordered=False)
    head = sorted(head, key=lambda line: (line["updated_at"], line["need_id"]), reverse=True)[:WALL_HEAD_SIZE]
    db.wall_heads.insert_one({"_id": "{}/wall-head".format(park), "park_id": park, "version": 1,
                              "lines": [head_line(line) for line in head],
                              "complete": count <= WALL_HEAD_SIZE})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--needs", type=int, default=100_000)
    parser.add_argument("--other-parks", type=int, default=10)
    parser.add_argument("--other-needs", type=int, default=1000)
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--head-reads", type=int, default=1000)
    parser.add_argument("--page-reads", type=int, default=30)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    from nameko.standalone.rpc import ClusterRpcClient

    prefix = "benchneeds{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    db = client[prefix + "needs"]
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-needs", port_base=29400, web_port=28400,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING",
                       "NEEDS_SWEEP_INTERVAL_S": "3600"})
    config = park_files.needs_config(park_files.load()["quanlinan"], 1)
    taxonomy = domain.Taxonomy(dict(NeedsConfigSchema().load(config)))
    parks = [BIG] + ["bench-p{:02d}".format(p) for p in range(args.other_parks)]
    rng = random.Random(11)
    try:
        stack.down(names=("needs",))
        stack.up(names=("needs",))  # creates the indexes
        with ClusterRpcClient(uri=uri) as rpc:
            for park in parks:
                rpc.needs.set_config(park, config)
        now = utcnow()
        print("seeding {} needs in {} and {} in each of {} other parks ...".format(
            args.needs, BIG, args.other_needs, args.other_parks), flush=True)
        t0 = time.perf_counter()
        seed(db, taxonomy, BIG, args.needs, rng, now, 0)
        for n, park in enumerate(parks[1:]):
            seed(db, taxonomy, park, args.other_needs, rng, now, args.needs + n * args.other_needs)
        seeded = db.needs.estimated_document_count()
        print("seeded {} needs in {:.0f} s".format(seeded, time.perf_counter() - t0), flush=True)

        def submit(i, state):
            rpc = thread_rpc(state, uri)
            body = submission(10_000_000 + i, rng)
            rpc.needs.submit(BIG, {k: v for k, v in body.items() if v is not None and k != "description"})

        def head_page(i, state):
            rpc = thread_rpc(state, uri)
            assert len(rpc.needs.wall(BIG)["entries"]) == 20

        def filtered_page(i, state):
            rpc = thread_rpc(state, uri)
            rpc.needs.wall(BIG, status="assigned")

        intake_lat, intake_err, intake_s = run_threads(args.threads, args.submissions, submit)
        head_lat, head_err, head_s = run_threads(args.threads, args.head_reads, head_page)
        page_lat, page_err, page_s = run_threads(args.threads, args.page_reads, filtered_page)

        sample = db.needs.find_one({"park_id": BIG}, {"_id": 0})

        def plain_insert(i, state):
            db.plain_needs.insert_one(dict(sample, _id="plain/{}".format(i), need_id="plain{}".format(i),
                                           idempotency_key="plain-{}".format(i)))

        def plain_head(i, state):  # what the first page reads: the head, then the 20 lines it lists
            head = db.wall_heads.find_one({"_id": BIG + "/wall-head"})
            ids = ["{}/{}".format(BIG, line["need_id"]) for line in head["lines"][:20]]
            list(db.wall.find({"_id": {"$in": ids}, "park_id": BIG}))

        def plain_page(i, state):
            list(db.wall.find({"park_id": BIG, "public": True, "status": "assigned",
                               "updated_at": {"$lt": END_OF_TIME}}).sort(
                [("updated_at", pymongo.DESCENDING), ("need_id", pymongo.DESCENDING)]).limit(20))

        ins_lat, ins_err, ins_s = run_threads(args.threads, args.submissions, plain_insert)
        phead_lat, phead_err, phead_s = run_threads(args.threads, args.head_reads, plain_head)
        ppage_lat, ppage_err, ppage_s = run_threads(args.threads, args.page_reads, plain_page)
        in_big = db.needs.count_documents({"park_id": BIG})
        rss = stack.rss_mb()
    finally:
        stack.down(names=("needs",))
        client.drop_database(prefix + "needs")
        client.close()
        delete_vhost(VHOST)

    print()
    errors = intake_err + head_err + page_err + ins_err + phead_err + ppage_err
    if errors:
        print("errors: {}; first: {}".format(len(errors), errors[:2]))
        return 1
    rate = len(intake_lat) / intake_s
    plain_rate = len(ins_lat) / ins_s
    print("parks: {} with {} needs, {} others with {} each".format(BIG, in_big, args.other_parks, args.other_needs))
    print("intake: {:.0f} needs/s through the service ({} submissions, {} threads); "
          "p50 {:.1f} ms, p99 {:.1f} ms".format(
              rate, args.submissions, args.threads, percentile(intake_lat, 50), percentile(intake_lat, 99)))
    print("plain pymongo insert_one of a need-sized document: {:.0f}/s; p50 {:.1f} ms, p99 {:.1f} ms".format(
        plain_rate, percentile(ins_lat, 50), percentile(ins_lat, 99)))
    print("echo wall, first page (head): p50 {:.1f} ms, p99 {:.1f} ms, {:.0f} reads/s".format(
        percentile(head_lat, 50), percentile(head_lat, 99), len(head_lat) / head_s))
    print("plain pymongo, the head and the 20 lines it lists: p50 {:.1f} ms, p99 {:.1f} ms".format(
        percentile(phead_lat, 50), percentile(phead_lat, 99)))
    print("echo wall, filtered page (status=assigned): p50 {:.0f} ms, p99 {:.0f} ms".format(
        percentile(page_lat, 50), percentile(page_lat, 99)))
    print("plain pymongo, the same filtered query: p50 {:.0f} ms, p99 {:.0f} ms".format(
        percentile(ppage_lat, 50), percentile(ppage_lat, 99)))
    print("rss MB: needs {:.0f}".format(rss.get("needs", 0)))
    print("ratio intake/plain-insert: {:.3f}".format(rate / plain_rate))
    print("ratio head-page-p50/plain-head-p50: {:.2f}".format(percentile(head_lat, 50) / percentile(phead_lat, 50)))
    print("ratio filtered-page-p50/plain-filtered-p50: {:.2f}".format(
        percentile(page_lat, 50) / percentile(ppage_lat, 50)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
