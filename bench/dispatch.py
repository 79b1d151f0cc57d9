"""Dispatch with thousands of volunteers per park, and an emergency call-out,
beside the raw broker.

    ./dev bench-dispatch [--parks 20] [--volunteers 5000] [--needs 200] [--callout 2000]

Seeds ``--volunteers`` volunteers in each of ``--parks`` parks (documents built
by the service's own roster code: three shifts a day, overnight ones included,
four colour teams, skills, zones; bulk-inserted), starts the volunteers
service as its own ``nameko run`` process, then measures in the same run:
- dispatch: ``--needs`` need.triaged events published one at a time, round
  robin over the parks, and the time until the first task.offered of each
  arrives on a queue of our own (p50/p99): reading candidates from the duty
  index, ranking them, writing the task with its offers and events,
  publishing with confirms;
- an emergency call-out in a park where ``--callout`` volunteers are on duty:
  seconds from the RPC to the last emergency.called_out event received;
- the raw broker on the same vhost: one persistent message's round trip
  (publish with confirm → consume) p50/p99, and a stream's messages/s.
"""
import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pymongo
from kombu import Connection, Exchange, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MONGO_URI, Watcher, delete_vhost, fresh_vhost, percentile  # noqa: E402
from bench.pipeline import raw_broker  # noqa: E402
from lamplight.envelope import new_event  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402
from lamplight_tools import parks as park_files  # noqa: E402
from services.volunteers.handlers.responders import roster_fields  # noqa: E402

VHOST = "lamplight_bench_dispatch"
TEAMS = ("green", "blue", "red", "orange")
SHIFTS = (("08:00", "16:00", False), ("16:00", "00:00", True), ("00:00", "08:00", False))
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZONES = ("dorms", "plants-north", "plants-south", "centre")
CATEGORIES = ("daily_life", "care", "public_services", "party_services", "culture_sports", "government_affairs")


def volunteer(park, i, all_week=False):
    start, end, overnight = SHIFTS[i % 3]
    shifts = [{"day": d, "start": "00:00", "end": "00:00", "overnight": True} for d in DAYS] if all_week else \
        [{"day": d, "start": start, "end": end, "overnight": overnight} for d in DAYS if (i + DAYS.index(d)) % 7 != 0]
    rid = "rsp_{}_{:06d}".format(park.replace("-", ""), i)
    now = datetime.now(timezone.utc)
    return dict({"_id": rid, "responder_id": rid, "ref": "V{:06d}".format(i), "park_id": park, "kind": "volunteer",
                 "unit_kind": None, "name": "志愿者{}".format(i), "phone": None, "party_member": i % 3 == 0,
                 "member_id": "M{:06d}".format(i) if i % 3 == 0 else None,
                 "teams": [TEAMS[i % 4]] + (["squad"] if i % 50 == 0 else []),
                 "skills": ["electrician"] if (i // 4) % 2 == 0 else ["first_aid"], "zone": ZONES[i % 4],
                 "max_open_tasks": None, "active": i % 20 != 0, "registered_at": now, "last_work_at": None,
                 "categories": []}, **roster_fields({"shifts": shifts, "leave": [], "extra": []}))


def raw_round_trips(uri, count):
    """One persistent message at a time: publish with a confirm, consume it; ms each."""
    name = "bench.rtt.{}".format(uuid.uuid4().hex[:8])
    latencies = []
    with Connection(uri, transport_options={"confirm_publish": True}) as conn:
        queue = Queue(name, durable=True, auto_delete=True)
        producer = conn.Producer()
        got = []
        with conn.Consumer(queue, callbacks=[lambda body, message: (message.ack(), got.append(1))], accept=None):
            for _ in range(count):
                before = len(got)
                t = time.perf_counter()
                producer.publish({"x": "y" * 300}, routing_key=name, delivery_mode=2, declare=[queue])
                while len(got) == before:
                    conn.drain_events(timeout=10)
                latencies.append((time.perf_counter() - t) * 1000)
    return latencies


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parks", type=int, default=20)
    parser.add_argument("--volunteers", type=int, default=5000)
    parser.add_argument("--needs", type=int, default=200)
    parser.add_argument("--callout", type=int, default=2000)
    parser.add_argument("--raw-messages", type=int, default=20000)
    args = parser.parse_args(argv)

    from nameko.standalone.rpc import ClusterRpcClient

    prefix = "benchdisp{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    db = client[prefix + "volunteers"]
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-dispatch", port_base=29500, web_port=28500,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING",
                       "VOLUNTEERS_SWEEP_INTERVAL_S": "3600"})
    config = park_files.volunteers_config(park_files.load()["quanlinan"], 1)
    parks = ["bench-p{:02d}".format(p) for p in range(args.parks)]
    emergency_park = "bench-emergency"
    try:
        stack.down(names=("volunteers",))
        stack.up(names=("volunteers",))
        with ClusterRpcClient(uri=uri) as rpc:
            for park in parks + [emergency_park]:
                rpc.volunteers.set_config(park, config)
        print("seeding {} volunteers in each of {} parks, {} on duty in {} ...".format(
            args.volunteers, args.parks, args.callout, emergency_park), flush=True)
        t0 = time.perf_counter()
        for park in parks:
            db["responders." + park].insert_many([volunteer(park, i) for i in range(args.volunteers)])
        db["responders." + emergency_park].insert_many(
            [dict(volunteer(emergency_park, i, all_week=True), active=True) for i in range(args.callout)])
        print("seeded in {:.0f} s".format(time.perf_counter() - t0), flush=True)

        # dispatch: need.triaged -> first task.offered
        offers = Watcher(uri, "volunteers.events", "task.offered")
        offers.start()
        offers.ready.wait(10)
        sent = {}
        with Connection(uri, transport_options={"confirm_publish": True}) as conn:
            producer = conn.Producer()
            exchange = Exchange("needs.events", "topic", durable=True)
            for n in range(args.needs):
                park = parks[n % len(parks)]
                need_id = "need_bench{:05d}".format(n)
                now = datetime.now(timezone.utc)
                event = new_event("need.triaged", source="needs", park_id=park, subject=need_id, data={
                    "need_id": need_id, "version": 2, "action": "triage", "from_status": "submitted",
                    "status": "triaged", "kind": "complaint", "category": CATEGORIES[n % len(CATEGORIES)],
                    "item": "facilities_repair" if n % 5 == 0 else None, "grade": "priority", "team": None,
                    "unit": None, "routing": 1, "summary": "宿舍热水器坏了", "zone": ZONES[n % 4],
                    "due_at": (now + timedelta(days=3)).isoformat(), "at": now.isoformat(), "task_id": None})
                task_id = need_id + ":task:1"
                sent[task_id] = time.perf_counter()
                producer.publish(json.dumps(event), exchange=exchange, routing_key="need.triaged",
                                 content_type="application/json", delivery_mode=2)
                deadline = time.monotonic() + 60
                while task_id not in offers.first and time.monotonic() < deadline:
                    time.sleep(0.0005)
        offers.stop.set()
        dispatch = [(offers.first[t] - s) * 1000 for t, s in sent.items() if t in offers.first]

        # the emergency call-out
        callouts = Watcher(uri, "volunteers.events", "emergency.called_out")
        callouts.start()
        callouts.ready.wait(10)
        with ClusterRpcClient(uri=uri, timeout=600) as rpc:
            rpc.volunteers.switch_mode(emergency_park, {"mode": "emergency", "reason": "bench", "actor": "bench"})
            t = time.perf_counter()
            answer = rpc.volunteers.call_out(emergency_park, {"message": "暴雨红色预警，请到服务中心集合",
                                                              "actor": "bench"})
            rpc_s = time.perf_counter() - t
        deadline = time.monotonic() + 600
        while callouts.count < answer["recipients"] and time.monotonic() < deadline:
            time.sleep(0.01)
        callout_s = time.perf_counter() - t
        received = callouts.count
        callouts.stop.set()
        logged = db["callout_recipients." + emergency_park].count_documents({"callout_id": answer["callout_id"]})
        rss = stack.rss_mb()

        rtt = raw_round_trips(uri, 200)
        raw_rate = raw_broker(uri, args.raw_messages)
    finally:
        stack.down(names=("volunteers",))
        client.drop_database(prefix + "volunteers")
        client.close()
        delete_vhost(VHOST)

    print()
    print("parks: {} with {} volunteers each (FerretDB/MongoDB at {})".format(args.parks, args.volunteers, MONGO_URI))
    print("dispatch, need.triaged -> first task.offered: {} of {} offered; p50 {:.1f} ms, p99 {:.1f} ms".format(
        len(dispatch), args.needs, percentile(dispatch, 50), percentile(dispatch, 99)))
    print("raw broker round trip of one persistent message (confirm + consume): p50 {:.2f} ms, p99 {:.2f} ms".format(
        percentile(rtt, 50), percentile(rtt, 99)))
    print("emergency call-out to {} volunteers: RPC answered in {:.2f} s, {} events received in {:.2f} s "
          "({:.0f}/s), {} reply records".format(answer["recipients"], rpc_s, received, callout_s,
                                               received / callout_s, logged))
    print("raw broker: {:.0f} msgs/s (persistent, durable queue, pipelined confirms, consume+ack)".format(raw_rate))
    print("rss MB: volunteers {:.0f}".format(rss.get("volunteers", 0)))
    print("ratio dispatch-p50/raw-round-trip-p50: {:.1f}".format(percentile(dispatch, 50) / percentile(rtt, 50)))
    print("ratio callout-rate/raw-rate: {:.3f}".format(received / callout_s / raw_rate))
    return 0 if len(dispatch) == args.needs and received == answer["recipients"] else 1


if __name__ == "__main__":
    sys.exit(main())
