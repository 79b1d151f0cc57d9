"""N needs through the whole slice, side by side with the raw broker.

    ./dev bench [--needs 2000] [--rate 0] [--concurrency 64] [--responders 45]

Starts its own copy of the platform (every service a ``nameko run`` process,
its own vhost and databases, ports 28000/29100-29105), registers responders,
then POSTs needs to the gateway — as fast as the platform takes them
(``--rate 0``) or paced at ``--rate`` needs/s — and times each need from its
POST to the ``notice.sent`` event for it, read from a queue the bench binds to
``notify.events``. In the same run it measures the raw broker: persistent
messages through one durable queue with pipelined publisher confirms and a
consumer that acks. The ``ratio`` line divides the two rates.
"""
import argparse
import http.client
import json
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path

from amqp import Message
from kombu import Connection, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    MONGO_URI,
    SERVICES,
    Watcher,
    db_request_lines,
    db_requests,
    db_scans,
    delete_vhost,
    drop_databases,
    fresh_vhost,
    percentile,
    seed_demo_park,
)
from lamplight_dev import demo  # noqa: E402
from lamplight_dev.devstack import Stack  # noqa: E402

PARK = "bench"


def need_body(i, tag):
    """The demo's kinds of needs in turn, each from a requester of its own
    (one requester asking twice would be held as a possible duplicate)."""
    _, need = demo.NEEDS[i % len(demo.NEEDS)]
    requester = {k: v for k, v in need["requester"].items() if k != "phone"}
    return dict(need, title="{} {}#{}".format(need["title"], tag, i),
                requester=dict(requester, name="工友{}{}".format(tag, i)))






def cpu_seconds(pid):
    fields = Path("/proc/{}/stat".format(pid)).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_table(stack):
    """pid of every process that does the pipeline's work."""
    pids = {name: stack.pid(name) for name in SERVICES}
    ferret = ROOT / ".stack" / "ferretdb.pid"
    if ferret.exists():
        pids["ferretdb"] = int(ferret.read_text())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids["rabbitmq"] = int(entry.name)
            except OSError:
                pass
    pids["bench client"] = os.getpid()
    return {k: v for k, v in pids.items() if v}






# --- the raw broker ---------------------------------------------------------------
def raw_broker(uri, count, batch=256):
    """Publish ``count`` persistent messages with pipelined confirms into a
    durable queue while a consumer acks them; returns messages/s end to end."""
    name = "bench.raw.{}".format(uuid.uuid4().hex[:8])
    body = json.dumps({"specversion": "1.0", "type": "need.submitted", "data": {"x": "y" * 300}}).encode()
    done = threading.Event()

    def consume():
        with Connection(uri) as conn:
            received = [0]

            def on_message(message):
                message.ack()
                received[0] += 1
                if received[0] >= count:
                    done.set()

            with conn.Consumer(Queue(name, durable=True), callbacks=[on_message], prefetch_count=batch, accept=None,
                               on_message=on_message):
                while not done.is_set():
                    try:
                        conn.drain_events(timeout=1)
                    except Exception:
                        pass

    with Connection(uri) as conn:
        Queue(name, durable=True)(conn.channel()).declare()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.5)
    with Connection(uri) as conn:
        conn.connect()
        ch = conn.channel()
        ch.confirm_select()
        acked = [0]

        def on_ack(tag, multiple):
            acked[0] = max(acked[0], tag)

        ch.events["basic_ack"].add(on_ack)
        started = time.perf_counter()
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            for _ in range(n):
                ch.basic_publish(Message(body, delivery_mode=2, content_type="application/json"),
                                 exchange="", routing_key=name)
            sent += n
            while acked[0] < sent:
                conn.drain_events(timeout=10)
        done.wait(120)
        elapsed = time.perf_counter() - started
        ch.queue_delete(name)
    return count / elapsed


# --- the pipeline -----------------------------------------------------------------
def need_of_notice(envelope):
    """notice.sent for a task offer: its subject is the task <need>:task:<routing>."""
    return envelope["data"]["subject"].split(":task:")[0]


HEADERS = {"Content-Type": "application/json"}


def submit_all(port, count, rate, concurrency, tag="run"):
    """POST ``count`` needs; returns {need_id: send time} and the wall time."""
    sent = {}
    errors = []
    jobs = queue.Queue()
    for i in range(count):
        jobs.put(i)
    start = time.perf_counter() + 0.2

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                i = jobs.get_nowait()
            except queue.Empty:
                return
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            body = json.dumps(need_body(i, tag))
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/parks/{}/needs".format(PARK), body,
                             HEADERS)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status != 201:
                    errors.append((resp.status, payload[:200]))
                    continue
                sent[json.loads(payload)["id"]] = t0
            except Exception as exc:
                errors.append(("exception", repr(exc)))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent, errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--needs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0, help="needs/s; 0 = saturate")
    parser.add_argument("--concurrency", type=int, default=64, help="client connections")
    parser.add_argument("--responders", type=int, default=45)
    parser.add_argument("--raw-messages", type=int, default=20000)
    parser.add_argument("--keep", action="store_true", help="leave the bench platform running")
    parser.add_argument("--fail-on-scan", action="store_true",
                        help="check every new shape of query against the indexes; fail if one reads its park whole")
    args = parser.parse_args(argv)

    run_id = uuid.uuid4().hex[:8]
    uri = fresh_vhost("lamplight_bench")
    run_dir = ROOT / ".stack" / "bench"
    stack = Stack(run_dir, port_base=29100, web_port=28000, env={
        "AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": "bench{}_".format(run_id),
        "LOG_LEVEL": "WARNING", "DB_CHECK_SCANS": "1" if args.fail_on_scan else "0"})
    for name in ("gateway", "needs", "volunteers", "points", "notify"):
        log = stack.log_dir / "{}.log".format(name)
        if log.exists():
            log.unlink()
    print("starting the platform (logs in {})".format(stack.log_dir), flush=True)
    stack.down()  # anything a killed run left behind
    stack.up()
    # a platform admin's key without a practical rate limit: the bench measures the platform, not the limiter
    HEADERS["Authorization"] = "Bearer " + stack.admin_key(rate_limit="10000000/minute")
    try:
        watcher = Watcher(uri, "notify.events", "notice.sent", key=need_of_notice)
        watcher.start()
        watcher.ready.wait(10)
        seed_demo_park(28000, PARK, HEADERS, args.responders)
        submit_all(28000, 50, 0, 8, tag="warm-up")  # warm-up: connections, caches, JIT-free but lazy imports
        time.sleep(1)

        mode = "paced at {:g}/s".format(args.rate) if args.rate else "saturated"
        print("submitting {} needs, {}, {} client connections".format(args.needs, mode, args.concurrency), flush=True)
        pids = process_table(stack)
        cpu_before = {k: cpu_seconds(p) for k, p in pids.items()}
        requests_before = db_requests(stack)
        t0 = time.perf_counter()
        sent, errors = submit_all(28000, args.needs, args.rate, args.concurrency)
        accepted_s = time.perf_counter() - t0
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and not all(n in watcher.first for n in sent):
            time.sleep(0.05)
        done = [n for n in sent if n in watcher.first]
        last = max(watcher.first[n] for n in done) if done else t0
        latencies = [(watcher.first[n] - sent[n]) * 1000 for n in done]
        cpu = {k: cpu_seconds(p) - cpu_before[k] for k, p in pids.items()}
        time.sleep(1.5)  # the relay and the send loop finish their round
        requests_after = db_requests(stack)
        scans = db_scans(stack) if args.fail_on_scan else {}
        rss = stack.rss_mb()
        watcher.stop.set()
    finally:
        if not args.keep:
            stack.down()
            drop_databases("bench{}_".format(run_id))

    print("measuring the raw broker ({} messages)".format(args.raw_messages), flush=True)
    raw = raw_broker(uri, args.raw_messages)
    if not args.keep:
        delete_vhost("lamplight_bench")

    through = len(done) / (last - t0) if done else 0.0
    print()
    print("pipeline: {} needs submitted ({}), {} accepted, {} errors, {} notices".format(
        args.needs, mode, len(sent), len(errors), len(done)))
    if errors:
        print("  first errors: {}".format(errors[:3]))
    print("pipeline: {:.0f} needs/s through the slice (POST to notice), {:.0f} needs/s accepted by the gateway".format(
        through, len(sent) / accepted_s))
    if latencies:
        print("latency submit->notice: p50 {:.1f} ms, p90 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms".format(
            percentile(latencies, 50), percentile(latencies, 90), percentile(latencies, 99), max(latencies)))
    print("raw broker: {:.0f} msgs/s (persistent, durable queue, pipelined confirms, consume+ack)".format(raw))
    print("cpu s during the run ({:.1f} s wall, 2 cores): ".format(last - t0) + ", ".join(
        "{} {:.1f}".format(k, v) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    if done:
        print("cpu ms per need: " + ", ".join("{} {:.1f}".format(k, v * 1000 / len(done))
                                              for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
        for line in db_request_lines(requests_before, requests_after, len(done)):
            print(line)
    print("rss MB: " + ", ".join("{} {:.0f}".format(k, v) for k, v in sorted(rss.items())))
    print("ratio pipeline/raw-broker: {:.3f}".format(through / raw if raw else 0))
    if args.fail_on_scan:
        print("shapes of query no index serves beyond their park (their park read whole): {}".format(
            ", ".join("{}.{} {:.0f}".format(s, c, n) for (s, c), n in sorted(scans.items())) or "none"))
    return 0 if len(done) == args.needs and not errors and not scans else 1


if __name__ == "__main__":
    sys.exit(main())
