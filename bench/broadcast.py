"""One emergency broadcast fanned out to every recipient of a park, beside
the raw broker.

    ./dev bench-broadcast [--recipients 20000] [--raw-messages 20000]
                          [--sms-rate 200] [--sms-watch 30]

Starts the notify service as its own ``nameko run`` process and the local
channel peers (tests/peers.py: an HTTP server that plays Aliyun SMS and
checks every request's parameters and signature), imports ``--recipients``
recipients into one park through its RPC (as an operator imports an HR
roster; each with a mobile number and SMS as their channel), sets the park's
SMS rate limit to ``--sms-rate`` sends/s, then measures in the same run:
- the broadcast: seconds from the RPC that accepts a critical park-wide
  broadcast to its broadcast.completed event, by which time every recipient
  has an in-app notice, an SMS notice queued and their lines in the delivery
  log (counted after); and, from the broadcast's view, when its last in-app
  notice was recorded (``shown_at``) and its last notice (``finished_at``);
- SMS handed to the provider: what the peer accepted while the broadcast
  fanned out and in as long again after it (``--sms-watch`` seconds from
  the acceptance at least), per second and in the busiest second, against
  the park's limit (``--sms-rate 0``: no SMS leg, in-app only);
- the raw broker on the same vhost: persistent messages with pipelined
  confirms into a durable queue, consumed and acked, as messages/s, and the
  seconds the same number of messages takes.
"""
import argparse
import sys
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import pymongo
from nameko.standalone.rpc import ClusterRpcClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MONGO_URI, Watcher, broadcast_line, delete_vhost, fresh_vhost  # noqa: E402
from bench.pipeline import raw_broker  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402
from lamplight_tools.services import PROCESSES  # noqa: E402
from tests.peers import running_peers  # noqa: E402

VHOST = "lamplight_bench_broadcast"
PARK = "bench-broadcast"
BUILDINGS = ("dorm-1", "dorm-2", "dorm-3", "plant-a", "plant-b")


def recipients(count, sms=False):
    for i in range(count):
        row = {"id": "worker-{:06d}".format(i), "locale": "zh-CN" if i % 10 else "en",
               "building": BUILDINGS[i % len(BUILDINGS)], "member_id": "M{:06d}".format(i) if i % 3 == 0 else None}
        if sms:
            row.update(addresses={"sms": "138{:08d}".format(i)}, channels=["sms"])
        yield row


def import_recipients(rpc, park, count, batch_size=5000, sms=False):
    """``count`` recipients into ``park`` through notify's RPC, as an operator
    imports an HR roster (``sms``: each with a mobile number, SMS their channel)."""
    batch = []
    for row in recipients(count, sms):
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
    parser.add_argument("--sms-rate", type=int, default=200, help="the park's SMS rate limit, sends/s (0: no SMS)")
    parser.add_argument("--sms-watch", type=float, default=30,
                        help="seconds of SMS sending watched from the broadcast's acceptance (at least the "
                             "fan-out and as long again)")
    args = parser.parse_args(argv)
    with running_peers() if args.sms_rate else nullcontext() as peers:
        return run(args, peers)


def numbers_in(request):
    """The numbers one SMS request to the peer carried (Aliyun: comma-separated, Tencent: a set)."""
    body = request.get("body") or {}
    if "PhoneNumbers" in body:
        return len(body["PhoneNumbers"].split(","))
    return len(body.get("PhoneNumberSet") or [None])


def sms_handed(arrived, start, end):
    """What the SMS peer accepted (of ``arrived``, its requests) between ``start``
    and ``end`` (epoch seconds): (numbers, per second over that time, busiest whole
    second, requests)."""
    ok = [r for r in arrived if r["verdict"] == "ok" and start <= r["at"] < end]
    per_second = Counter()
    for r in ok:
        per_second[int(r["at"])] += numbers_in(r)
    handed = sum(per_second.values())
    return handed, handed / (end - start), max(per_second.values(), default=0), len(ok)


# notify's processes: its main lane and its bulk lane, where the fan-out and the send loop run
NOTIFY = tuple(name for name, process in PROCESSES.items() if process.service == "notify")


def run(args, peers):
    prefix = "benchbc{}_".format(uuid.uuid4().hex[:6])
    client = pymongo.MongoClient(MONGO_URI, tz_aware=True)
    db = client[prefix + "notify"]
    uri = fresh_vhost(VHOST)
    stack = Stack(ROOT / ".stack" / "bench-broadcast", port_base=29600, web_port=28600,
                  env={"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix, "LOG_LEVEL": "WARNING"})
    try:
        stack.down(names=NOTIFY)
        stack.up(names=NOTIFY)
        with ClusterRpcClient(uri=uri, timeout=600) as rpc:
            config = {"version": 1}
            if peers:
                config.update(channels={"sms": peers.channels("aliyun")["sms"]}, rate_limits={"sms": args.sms_rate})
            rpc.notify.set_config(PARK, config)
            print("importing {} recipients into {} ...".format(args.recipients, PARK), flush=True)
            t0 = time.perf_counter()
            import_recipients(rpc, PARK, args.recipients, sms=bool(peers))
            print("imported in {:.1f} s".format(time.perf_counter() - t0), flush=True)

            done = Watcher(uri, "notify.events", "broadcast.completed")
            done.start()
            done.ready.wait(10)
            started, started_epoch = time.perf_counter(), time.time()
            accepted = rpc.notify.broadcast(PARK, {
                "title": "紧急通知", "body": "暴雨红色预警：请勿外出，低洼处宿舍人员请到服务中心避险。",
                "critical": True,
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
        notices = db["notices." + PARK].count_documents({"source_id": accepted["broadcast_id"], "channel": "inapp"})
        sms_notices = db["notices." + PARK].count_documents({"source_id": accepted["broadcast_id"], "channel": "sms"})
        logged = db["deliveries." + PARK].count_documents({"source_id": accepted["broadcast_id"], "status": "sent"})
        if peers:
            # while the broadcast fans out, then as long again after it (--sms-watch at least)
            done_epoch = started_epoch + fan_out_s
            end_epoch = done_epoch + max(fan_out_s, args.sms_watch - fan_out_s)
            time.sleep(max(0.0, end_epoch + 0.5 - time.time()))
            arrived = peers.requests("/aliyun")
            during = sms_handed(arrived, started_epoch, done_epoch)
            after = sms_handed(arrived, done_epoch, end_epoch)
            refused = [r for r in arrived if r["verdict"] != "ok"]
            handed_at = sorted(r["at"] for r in arrived if r["verdict"] == "ok" and r["at"] >= started_epoch)
        rss = stack.rss_mb()
        stack.down(names=NOTIFY)  # the SMS still queued would share the machine with the raw broker
        raw_rate = raw_broker(uri, args.raw_messages)
    finally:
        stack.down(names=NOTIFY)
        client.drop_database(prefix + "notify")
        client.close()
        delete_vhost(VHOST)

    raw_s = args.recipients / raw_rate
    print()
    print("park-wide critical broadcast to {} recipients (FerretDB/MongoDB at {})".format(args.recipients, MONGO_URI))
    print("accepted in {:.3f} s; fanned out in {:.2f} s ({:.0f} recipients/s)".format(
        accept_s, fan_out_s, args.recipients / fan_out_s))
    print(broadcast_line(PARK, report))
    print("broadcast reports {} recipients, {} notices; counted: {} in-app notices, {} SMS notices, "
          "{} 'sent' lines in the log".format(report["recipients"], report["notices"], notices, sms_notices, logged))
    if peers:
        for name, (handed, rate, busiest, requests), seconds in (("during the fan-out", during, fan_out_s),
                                                                  ("after it", after, end_epoch - done_epoch)):
            print("SMS handed to the provider peer {} ({:.1f} s): {} in {} requests, {:.0f}/s, busiest second {}; "
                  "the park's limit {}/s".format(name, seconds, handed, requests, rate, busiest, args.sms_rate))
        total = sms_handed(arrived, started_epoch, end_epoch)[0]
        print("SMS handed in all: {} of {}, the last {:.1f} s after the request ({:.0f}/s from the request)".format(
            total, args.recipients, handed_at[-1] - started_epoch if handed_at else float("nan"),
            total / (handed_at[-1] - started_epoch) if handed_at else 0))
        print("SMS refused by the peer (parameters, signature): {}{}".format(
            len(refused), " (first: {})".format(refused[0]["verdict"]) if refused else ""))
        print("ratio sms-rate-after/limit: {:.2f}; busiest-second/limit: {:.2f}".format(
            after[1] / args.sms_rate, max(during[2], after[2]) / args.sms_rate))
    print("raw broker: {:.0f} msgs/s (persistent, durable queue, pipelined confirms, consume+ack): "
          "{} messages in {:.2f} s".format(raw_rate, args.recipients, raw_s))
    print("rss MB: notify {:.0f}".format(rss.get("notify", 0)))
    print("ratio broadcast-seconds/raw-broker-seconds for {} messages: {:.1f}".format(args.recipients,
                                                                                     fan_out_s / raw_s))


if __name__ == "__main__":
    main()
