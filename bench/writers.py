"""Writers to one database: do they take turns, or poll SQLite's lock?

    ./dev bench-writers [--writers 32] [--seconds 8] [--rounds 2]

Starts two copies of the development server (.stack/bin/ferretdb, built with
ferretdb/patches) on 127.0.0.1, each on its own data directory: one as it
runs (patch 0012: a database's writers queue in the server and take turns),
one with LAMPLIGHT_FERRETDB_WRITE_TURNS=off (each writer left to SQLite's
busy handler, which polls the lock with sleeps of up to 100 ms: as before
0012). Each round, ``--writers`` threads write to one database of each server
for ``--seconds`` (half of them insert documents of 500 bytes, half update
one counter document), the two servers one after the other, alternating which
goes first. Prints each server's writes/s and latency (p50, p99, the longest)
and the ratio off/on of each, last the ratio of the p99s on a line of its own.
"""
import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from tests.server.ferretdb import Server  # noqa: E402

BINARY = ROOT / ".stack" / "bin" / "ferretdb"


def load(server, writers, seconds):
    """``writers`` threads writing to one database for ``seconds``: (latencies in ms, failures)."""
    db = server.client.bench
    db.docs.insert_one({"warm": True})
    db.counter.update_one({"_id": "c"}, {"$inc": {"n": 0}}, upsert=True)
    latencies, failures = [], []
    stop = time.perf_counter() + seconds

    def run(i):
        n = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                if i % 2:
                    db.docs.insert_one({"writer": i, "n": n, "pad": "p" * 500})
                else:
                    db.counter.update_one({"_id": "c"}, {"$inc": {"n": 1}})
            except Exception as exc:  # "database is locked" after the busy handler's 10 s
                failures.append(str(exc)[-120:])
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            n += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=32, help="concurrent writers to one database")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of writing to each server a round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating which server goes first")
    args = parser.parse_args(argv)
    servers = {turns: Server(BINARY, pool_size=max(64, 2 * args.writers), GOGC="400",
                             LAMPLIGHT_FERRETDB_WRITE_TURNS=turns) for turns in ("on", "off")}
    results = {"on": ([], []), "off": ([], [])}
    try:
        for r in range(args.rounds):
            for turns in (("on", "off") if r % 2 == 0 else ("off", "on")):
                lat, failed = load(servers[turns], args.writers, args.seconds)
                results[turns][0].extend(lat)
                results[turns][1].extend(failed)
    finally:
        for server in servers.values():
            server.close()
    seconds = args.seconds * args.rounds
    figures = {}
    print("{} writers to one database, {:g} s a server a round, {} rounds".format(args.writers, args.seconds,
                                                                                 args.rounds))
    for turns, label in (("on", "writers take turns (0012)"), ("off", "busy handler (WRITE_TURNS=off)")):
        lat, failed = results[turns]
        figures[turns] = (len(lat) / seconds, percentile(lat, 50), percentile(lat, 99), max(lat))
        print("{}: {:.0f} writes/s, p50 {:.1f} ms, p99 {:.1f} ms, longest {:.0f} ms; failed {}{}".format(
            label, *figures[turns], len(failed), " ({})".format(failed[0]) if failed else ""))
    on, off = figures["on"], figures["off"]
    print("off/on: writes/s {:.2f}, p50 {:.2f}, p99 {:.2f}, longest {:.2f}".format(
        off[0] / on[0], off[1] / on[1], off[2] / on[2], off[3] / on[3]))
    print("p99 busy handler / turns: {:.2f}".format(off[2] / on[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
