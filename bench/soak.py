"""A long run at a steady rate: does anything grow?

    ./dev soak [--minutes 60] [--rate 6] [--sample 30] [--warmup 5]

Starts its own copy of the platform (every service a ``nameko run`` process,
its own vhost and databases, ports 28200/29300-29304), registers responders
on duty around the clock and loads the demo points catalogue, then POSTs
needs at ``--rate`` per second, with a desk points posting beside every
third, from the chaos suite's clients (bench/chaos.py: each retried with its
Idempotency-Key until answered). Every ``--sample`` seconds it records each
process's resident memory (VmRSS), the messages ready in the work queues
(counted over AMQP) and the outbox backlog.

It prints a line per sample and then, per process, the resident memory at
the end of the warm-up (``--warmup`` minutes: caches, pools and
interpreters fill) and at the end, with the change; the work queues in the
first and the last third of the run; and, from the databases, every
acknowledged need and posting exactly once. It exits 1 if any process's
memory moved by more than 10 % after the warm-up, if the work queues hold
more at the end than a second of load and more than at the start, or if
anything was lost or duplicated.
"""
import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import chaos, common  # noqa: E402
from bench.common import MONGO_URI, drop_databases, seed_demo_park  # noqa: E402

VHOST = "lamplight_soak"
WEB_PORT, PORT_BASE = 28200, 29300
RSS_TOLERANCE = 0.10


def sample(platform, uri):
    rss = {}
    for stack in platform.stacks:
        rss.update(stack.rss_mb())
    return {"at": time.monotonic(), "rss": rss, "ready": chaos.ready_messages(uri, VHOST),
            "backlog": chaos.backlog(platform)}


def verdict(samples, warmup_s, rate):
    """(problems, lines): RSS after the warm-up against the end, and the queues' trend."""
    start = samples[0]["at"]
    warm = [s for s in samples if s["at"] - start >= warmup_s] or samples[-1:]
    first, last = warm[0], samples[-1]
    lines, problems = [], []
    for name in sorted(first["rss"]):
        before, after = first["rss"][name], last["rss"].get(name)
        if after is None:
            problems.append("{} is not running at the end".format(name))
            continue
        change = (after - before) / before
        lines.append("{:<11} {:>8.1f} MB {:>8.1f} MB {:>+7.1f} %".format(name, before, after, 100 * change))
        if abs(change) > RSS_TOLERANCE:
            problems.append("{}'s memory moved {:+.1f} % after the warm-up".format(name, 100 * change))
    ready = [s["ready"] for s in samples if s["ready"] is not None]
    third = max(1, len(ready) // 3)
    head, tail = statistics.mean(ready[:third]), statistics.mean(ready[-third:])
    lines.append("work queues: {:.1f} messages ready on average in the first third, {:.1f} in the last".format(
        head, tail))
    if tail > max(rate, 1) and tail > head:
        problems.append("the work queues grew: {:.1f} → {:.1f} messages ready".format(head, tail))
    return problems, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=6, help="needs/s (a third of what this 2-core machine takes)")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=5, help="minutes before memory is expected to be flat")
    parser.add_argument("--responders", type=int, default=45)
    args = parser.parse_args(argv)

    run_id = uuid.uuid4().hex[:8]
    prefix = "soak{}_".format(run_id)
    uri = common.fresh_vhost(VHOST)
    platform = chaos.Platform(1, {"AMQP_URI": uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": prefix,
                                  "LOG_LEVEL": "WARNING"}, name="soak", web_port=WEB_PORT, port_base=PORT_BASE)
    print("starting the platform (logs in {})".format(platform.first.log_dir), flush=True)
    platform.up()
    samples, found, problems = [], {}, []
    try:
        headers = {"Content-Type": "application/json",
                   "Authorization": "Bearer " + platform.first.admin_key(rate_limit="10000000/minute")}
        seed_demo_park(WEB_PORT, chaos.PARK, headers, args.responders)
        chaos.seed_points(headers, WEB_PORT)
        load = chaos.Load(args.rate, headers, run_id, platform.web_ports)
        clients = load.run()
        print("load: {:g} needs/s for {:g} min; a sample every {:g} s".format(args.rate, args.minutes, args.sample),
              flush=True)
        print("{:>6} {:>9} {:>7} {:>8}  resident MB per process".format("min", "answered", "ready", "backlog"))
        started = time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            samples.append(sample(platform, uri))
            s = samples[-1]
            with load.lock:
                answered = len(load.acked) + len(load.postings_acked)
            print("{:>6.1f} {:>9} {:>7} {:>8}  {}".format(
                (s["at"] - started) / 60, answered, s["ready"], s["backlog"],
                " ".join("{}={:.0f}".format(n, mb) for n, mb in sorted(s["rss"].items()))), flush=True)
            time.sleep(max(0.0, args.sample - (time.monotonic() - s["at"])))
        samples.append(sample(platform, uri))
        load.stop.set()
        for t in clients:
            t.join(chaos.RETRY_WINDOW_S + 30)
        found = chaos.check(prefix, load)
    finally:
        platform.down()
    problems, lines = verdict(samples, args.warmup * 60, args.rate)
    print()
    print("{:<11} {:>11} {:>11} {:>9}".format("process", "after warm-up", "at the end", "change"))
    for line in lines:
        print(line)
    print("needs: {} sent, {} acknowledged, {} lost, {} duplicated; points postings: {} sent, {} acknowledged, "
          "{} lost, {} duplicated".format(
              len(load.first), len(load.acked), len(found["lost"]), len(found["duplicated"]),
              len(load.postings_first), len(load.postings_acked), len(found["postings_lost"]),
              len(found["postings_duplicated"])))
    problems += ["{} {}".format(len(found[k]), k.replace("_", " ")) for k in (
        "lost", "duplicated", "postings_lost", "postings_duplicated") if found[k]]
    drop_databases(prefix)
    common.delete_vhost(VHOST)
    for problem in problems:
        print("PROBLEM: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
