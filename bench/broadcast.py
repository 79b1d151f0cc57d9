"""One emergency broadcast fanned out to every recipient of a park, beside
the raw broker.

    ./dev bench-broadcast [--recipients 20000] [--raw-messages 20000]

Starts the notify service as its own ``nameko run`` process, imports
``--recipients`` recipients into one park through its RPC (as an operator
imports an HR roster), then measures in the same run:
- the broadcast: seconds from the RPC that accepts a critical park-wide
  broadcast to its broadcast.completed event, by which time every recipient
  has an in-app notice and a line in the delivery log (both counted after);
- the raw broker on the same vhost: persistent messages with pipelined
  confirms into a durable queue, consumed and acked, as messages/s, and the
  seconds the same number of messages takes.
"""
import argparse
import sys
import time
import uuid
from pathlib import Path

import pymongo
from nameko.standalone.rpc import ClusterRpcClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MONGO_URI, Watcher, delete_vhost, fresh_vhost  # noqa: E402
from bench.pipeline import raw_broker  # noqa: E402
from lamplight.devstack import Stack  # noqa: E402

VHOST = "lamplight_bench_broadcast"
PARK = "bench-broadcast"
BUILDINGS = ("dorm-1", "dorm-2", "dorm-3", "plant-a", "plant-b")


def recipients(count):
    for i in range(count):
        yield {"id": "worker-{:06d}".format(i), "locale": "zh-CN" if i % 10 else "en",
               "building": BUILDINGS[i % len(BUILDINGS)], "member_id": "M{:06d}".format(i) if i % 3 == 0 else None}


def import_recipients(rpc, park, count, batch_size=5000):
    """``count`` recipients into ``park`` through notify's RPC, as an operator imports an HR roster."""
    batch = []
    for row in recipients(count):
        batch.append(row)
        if len(batch) == batch_size:
            rpc.notify.import_recipients(park, {"recipients": batch})
            batch = []
    if batch:
        rpc.notify.import_recipients(park, {"recipients": batch})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20000)
    parser.add_argument("--raw-messages", type=int, default=20000)
    args = parser.parse_args(argv)

    prefix = "benchbc{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    db = client[prefix + "notify"]
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-broadcast", port_base=29600, web_port=28600,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING"})
    try:
        stack.down(names=("notify",))
        stack.up(names=("notify",))
        with ClusterRpcClient(uri=uri, timeout=600) as rpc:
            rpc.notify.set_config(PARK, {"version": 1})
            print("importing {} recipients into {} ...".format(args.recipients, PARK), flush=True)
            t0 = time.perf_counter()
            import_recipients(rpc, PARK, args.recipients)
            print("imported in {:.1f} s".format(time.perf_counter() - t0), flush=True)

            done = Watcher(uri, "notify.events", "broadcast.completed")
            done.start()
            done.ready.wait(10)
            started = time.perf_counter()
            accepted = rpc.notify.broadcast(PARK, {
                "title": "紧急通知", "body": "暴雨红色预警：请勿外出，低洼处宿舍人员请到服务中心避险。", "critical": True,
                "actor": "bench"}, idempotency_key="bench-" + uuid.uuid4().hex[:8])
            accept_s = time.perf_counter() - started
            deadline = time.monotonic() + 1200
            while accepted["broadcast_id"] not in done.first and time.monotonic() < deadline:
                time.sleep(0.01)
            if accepted["broadcast_id"] not in done.first:
                raise SystemExit("the broadcast did not complete in 20 minutes")
            fan_out_s = done.first[accepted["broadcast_id"]] - started
            done.stop.set()
            report = rpc.notify.get_broadcast(PARK, accepted["broadcast_id"])
        notices = db["notices." + PARK].count_documents({"source_id": accepted["broadcast_id"]})
        logged = db["deliveries." + PARK].count_documents({"source_id": accepted["broadcast_id"], "status": "sent"})
        rss = stack.rss_mb()
        raw_rate = raw_broker(uri, args.raw_messages)
    finally:
        stack.down(names=("notify",))
        client.drop_database(prefix + "notify")
        client.close()
        delete_vhost(VHOST)

    raw_s = args.recipients / raw_rate
    print()
    print("park-wide critical broadcast to {} recipients (FerretDB/MongoDB at {})".format(args.recipients, MONGO_URI))
    print("accepted in {:.3f} s; fanned out in {:.2f} s ({:.0f} recipients/s)".format(
        accept_s, fan_out_s, args.recipients / fan_out_s))
    print("broadcast reports {} recipients, {} notices; counted: {} in-app notices, {} 'sent' lines in the log".format(
        report["recipients"], report["notices"], notices, logged))
    print("raw broker: {:.0f} msgs/s (persistent, durable queue, pipelined confirms, consume+ack): "
          "{} messages in {:.2f} s".format(raw_rate, args.recipients, raw_s))
    print("rss MB: notify {:.0f}".format(rss.get("notify", 0)))
    print("ratio broadcast-seconds/raw-broker-seconds for {} messages: {:.1f}".format(args.recipients,
                                                                                     fan_out_s / raw_s))


if __name__ == "__main__":
    main()
