"""A subscriber outside Lamplight: plain kombu, no nameko, no Lamplight code.

A district's dashboard or a data warehouse would run something like this. It
binds its own durable queue to ``needs.events`` (``need.*``) and
``points.events`` (``points.#``), checks every envelope and its data against
the schemas of the published catalogue (``docs/asyncapi.yaml``), writes each
event once into its own SQLite database — with an effect derived from it, a
running points balance per member — and acknowledges a message only after
that write has committed. A message delivered again (after a broker restart,
say) finds its event id already written and changes nothing. When the broker
goes away it reconnects (kombu's ConsumerMixin); the queue is durable and the
events persistent, so nothing published meanwhile is lost.

    python examples/kombu_subscriber.py --amqp-uri amqp://guest:guest@127.0.0.1:5672/ \\
        --db warehouse.sqlite [--queue warehouse.lamplight] [--catalogue docs/asyncapi.yaml]

Requires kombu, PyYAML and jsonschema.
"""
import argparse
import json
import signal
import sqlite3
import sys
from pathlib import Path

import jsonschema
import yaml
from kombu import Connection, Exchange, Queue
from kombu.mixins import ConsumerMixin

BINDINGS = (("needs.events", "need.*"), ("points.events", "points.#"))
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, type TEXT NOT NULL, park TEXT NOT NULL,
                                   subject TEXT, time TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS balances (park TEXT NOT NULL, member TEXT NOT NULL, account TEXT NOT NULL,
                                     balance INTEGER NOT NULL, PRIMARY KEY (park, member, account));
CREATE TABLE IF NOT EXISTS deliveries (id TEXT NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (id TEXT, reason TEXT NOT NULL, body TEXT NOT NULL);
"""


class Catalogue:
    """The schemas a subscriber checks against, read from the AsyncAPI document."""

    def __init__(self, path):
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        schemas = doc["components"]["schemas"]
        self.envelope = jsonschema.Draft202012Validator(schemas["Envelope"])
        self.data = {name: jsonschema.Draft202012Validator(schema) for name, schema in schemas.items()
                     if name != "Envelope"}

    def problem(self, envelope):
        """Why an envelope is not one the catalogue describes, or None."""
        errors = sorted(self.envelope.iter_errors(envelope), key=str)
        if errors:
            return "envelope: {}".format(errors[0].message)
        version = envelope["dataschema"].rsplit(":v", 1)[-1]
        key = "{}_v{}".format(envelope["type"].replace(".", "_"), version)
        if key not in self.data:
            return "type {} v{} is not in the catalogue".format(envelope["type"], version)
        errors = sorted(self.data[key].iter_errors(envelope["data"]), key=str)
        if errors:
            return "data: {} at {}".format(errors[0].message, "/".join(str(p) for p in errors[0].path) or "/")
        return None


class Warehouse:
    def __init__(self, path):
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)
        self.db.commit()

    def apply(self, envelope):
        """Write the event and its effect in one transaction; False when it
        was written before (a delivery again)."""
        with self.db:  # commits, or rolls back on an exception
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO events (id, type, park, subject, time, data) VALUES (?, ?, ?, ?, ?, ?)",
                (envelope["id"], envelope["type"], envelope["parkid"], envelope["subject"], envelope["time"],
                 json.dumps(envelope["data"], ensure_ascii=False)))
            fresh = cursor.rowcount == 1
            self.db.execute("INSERT INTO deliveries (id, outcome) VALUES (?, ?)",
                            (envelope["id"], "applied" if fresh else "duplicate"))
            if fresh and envelope["type"] in ("points.credited", "points.debited", "points.reversed"):
                data = envelope["data"]
                self.db.execute(
                    "INSERT INTO balances (park, member, account, balance) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (park, member, account) DO UPDATE SET balance = balance + excluded.balance",
                    (envelope["parkid"], data["member_id"], data["account_id"], data["amount"]))
        return fresh

    def reject(self, envelope_id, reason, body):
        with self.db:
            self.db.execute("INSERT INTO rejected (id, reason, body) VALUES (?, ?, ?)",
                            (envelope_id, reason, body[:2000]))


class Subscriber(ConsumerMixin):
    def __init__(self, connection, queue_name, catalogue, warehouse):
        self.connection = connection
        self.catalogue = catalogue
        self.warehouse = warehouse
        self.queue = Queue(queue_name, durable=True, auto_delete=False, bindings=[])
        self.bindings = [(Exchange(name, "topic", durable=True), key) for name, key in BINDINGS]

    def get_consumers(self, Consumer, channel):
        queue = self.queue(channel)
        queue.declare()
        for exchange, key in self.bindings:
            exchange(channel).declare()  # the same declaration Lamplight makes
            queue.bind_to(exchange=exchange, routing_key=key)
        return [Consumer(queues=[queue], callbacks=[self.on_message], accept=["json", "application/json"],
                         prefetch_count=50)]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        print("subscribed: {} bound to {}".format(self.queue.name, ", ".join(
            "{} {}".format(e.name, k) for e, k in self.bindings)), flush=True)

    def on_connection_error(self, exc, interval):
        print("broker unreachable ({}); again in {} s".format(exc, interval), flush=True)

    def on_message(self, body, message):
        try:
            envelope = json.loads(body) if isinstance(body, (bytes, str)) else body
        except ValueError as exc:
            self.warehouse.reject(None, "not JSON: {}".format(exc), str(body))
            message.ack()  # kept in `rejected`; redelivering would not make it JSON
            return
        problem = self.catalogue.problem(envelope)
        if problem:
            self.warehouse.reject(envelope.get("id"), problem, json.dumps(envelope, ensure_ascii=False))
            print("rejected {}: {}".format(envelope.get("id"), problem), flush=True)
            message.ack()
            return
        self.warehouse.apply(envelope)
        message.ack()  # only after the write committed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--queue", default="warehouse.lamplight")
    parser.add_argument("--catalogue", default=str(Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"))
    args = parser.parse_args(argv)
    subscriber = Subscriber(Connection(args.amqp_uri, heartbeat=10), args.queue, Catalogue(args.catalogue),
                            Warehouse(args.db))

    def stop(signum, frame):
        subscriber.should_stop = True

    signal.signal(signal.SIGTERM, stop)
    subscriber.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
