"""``lamplight``: the operator's command line.

    lamplight dlq list [--queue Q] [--limit N] [--json]
    lamplight dlq replay QUEUE [--id MESSAGE_ID ...] [--limit N]
    lamplight topology declare
    lamplight points verify [--park P] [--mongo-uri URI] [--database lamplight_points]
    lamplight events catalog [--check] | compat | release
    lamplight events tail [--park P] [--type 'need.*'] [--count N]
    lamplight parks apply -f parks.yaml [--dry-run] [--yes] [--wait S]
    lamplight parks get PARK
    lamplight keys create --role ROLE [--park P] --name NAME   (straight into the database: the first key)
    lamplight keys list [--park P] | revoke KEY_ID
    lamplight serve SERVICE [--config PATH]   (exec nameko run: what a container runs; notify-bulk: notify's bulk lane)

The broker is AMQP_URI (environment) or --amqp-uri. Dead-letter queues are
``<subscription queue>.dlq``; ``lamplight.unrouted`` holds events that were
published while no queue was bound for them, and replays to their original
exchange.
"""
import argparse
import json
import os
import sys

from kombu import Connection

from lamplight import installed, settings, topology
from lamplight.consuming import ERROR_HEADER, FAILED_AT_HEADER, QUEUE_HEADER
from lamplight_tools.services import PROCESSES

DEFAULT_LIMIT = 1000


def dead_letter_queues():
    return [sub.dlq_name for sub in installed.subscriptions()] + [topology.UNROUTED_QUEUE_NAME]


def _peek(channel, queue, limit):
    """Up to ``limit`` messages of a queue, left in place (they are taken
    unacked and go back when the channel closes)."""
    messages = []
    while len(messages) < limit:
        msg = channel.basic_get(queue, no_ack=False)
        if msg is None:
            break
        messages.append(msg)
    return messages


def _envelope(msg):
    body = msg.body.decode("utf-8", "replace") if isinstance(msg.body, bytes) else msg.body
    try:
        envelope = json.loads(body)
    except ValueError:
        return {}
    return envelope if isinstance(envelope, dict) else {}


def _message_id(msg, envelope):
    """The AMQP message id, or the event id for publishers that set none."""
    return msg.properties.get("message_id") or envelope.get("id")


def _describe(queue, msg):
    headers = msg.headers or {}
    envelope = _envelope(msg)
    return {
        "queue": queue,
        "message_id": _message_id(msg, envelope),
        "type": envelope.get("type"),
        "park": envelope.get("parkid"),
        "attempts": headers.get(topology.ATTEMPTS_HEADER),
        "error": headers.get(ERROR_HEADER),
        "failed_at": headers.get(FAILED_AT_HEADER),
        "origin": headers.get(QUEUE_HEADER) or headers.get("x-original-exchange"),
    }


def dlq_list(amqp_uri, queues=None, limit=DEFAULT_LIMIT):
    out = []
    with Connection(amqp_uri, connect_timeout=5) as conn:
        for queue in queues or dead_letter_queues():
            channel = conn.channel()
            try:
                channel.queue_declare(queue, passive=True)
            except Exception:  # a queue that does not exist has nothing parked
                continue
            out += [_describe(queue, m) for m in _peek(channel, queue, limit)]
            channel.close()
    return out


def _replay_target(queue, msg):
    headers = msg.headers or {}
    if queue == topology.UNROUTED_QUEUE_NAME:
        return headers.get("x-original-exchange", ""), headers.get("x-original-routing-key", "")
    return "", headers.get(QUEUE_HEADER) or queue[: -len(".dlq")]


def dlq_replay(amqp_uri, queue, ids=None, limit=DEFAULT_LIMIT):
    """Move parked messages back where they came from, with a fresh attempt
    count. Each is acked off the DLQ only after its copy is confirmed.
    Returns the ids replayed."""
    if queue not in dead_letter_queues() and not queue.endswith(".dlq"):
        raise SystemExit("{} is not a dead-letter queue (see `lamplight dlq list`)".format(queue))
    wanted = set(ids or ())
    replayed = []
    with Connection(amqp_uri, connect_timeout=5, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel=conn.channel())
        for msg in _peek(channel, queue, limit):
            message_id = _message_id(msg, _envelope(msg))
            if wanted and message_id not in wanted:
                continue
            exchange, routing_key = _replay_target(queue, msg)
            headers = {k: v for k, v in (msg.headers or {}).items()
                       if k not in (ERROR_HEADER, FAILED_AT_HEADER, topology.DELAY_HEADER, "x-death")}
            headers[topology.ATTEMPTS_HEADER] = 0
            headers["x-lamplight-replays"] = int((msg.headers or {}).get("x-lamplight-replays", 0)) + 1
            producer.publish(msg.body, exchange=exchange, routing_key=routing_key, headers=headers,
                             content_type=msg.content_type, content_encoding=msg.content_encoding,
                             message_id=message_id, delivery_mode=2, mandatory=True)
            channel.basic_ack(msg.delivery_tag)
            replayed.append(message_id)
        channel.close()
    return replayed


def points_verify(mongo_uri, database, park=None):
    """Check every account's hash chain; returns [(entry or account id, problem)]."""
    import pymongo

    from services.points.chain import verify_chain

    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        db = client[database]
        query = {"park_id": park} if park else {}
        problems, accounts = [], {a["_id"]: a for a in db.accounts.find(query)}
        by_account = {}
        for entry in db.entries.find(query, {"_outbox": 0}):
            by_account.setdefault(entry["account_id"], []).append(entry)
        for account_id in sorted(set(accounts) | set(by_account)):
            problems += verify_chain(by_account.get(account_id, []), accounts.get(account_id))
        return problems, len(accounts), sum(len(v) for v in by_account.values())
    finally:
        client.close()


def keys_command(args):
    import pymongo

    from gateway.auth import KeySchema, KeyStore
    from lamplight.errors import BadInput, load_or_reject

    client = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        store = KeyStore(client[args.database])
        if args.command == "create":
            try:
                body = load_or_reject(KeySchema(), {k: v for k, v in (
                    ("role", args.role), ("park", args.park), ("name", args.name), ("subject", args.subject),
                    ("rate_limit", args.rate_limit)) if v is not None}, "the key")
            except BadInput as exc:
                raise SystemExit("{}: {}".format(exc.message, json.dumps(exc.fields, ensure_ascii=False)))
            key, record = store.create(body["role"], body["park"], body["name"], body["subject"], body["rate_limit"])
            print(key)
            print("key {} ({} of {}) made; it is shown only this once".format(
                record["id"], record["role"], record["park"] or "every park"), file=sys.stderr)
        elif args.command == "list":
            for record in store.list(park=args.park):
                print("{id}\t{role}\t{park}\t{name}\t{created_at}".format(**record))
        else:
            store.revoke(args.key_id)
            print("revoked {}".format(args.key_id))
    finally:
        client.close()
    return 0


def _amqp_uri(args):
    return args.amqp_uri or os.environ.get("AMQP_URI") or settings.DEFAULTS["AMQP_URI"]


def _parser():
    """The command line: a group, then its command."""
    parser = argparse.ArgumentParser(prog="lamplight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-uri", help="broker (default: $AMQP_URI or the local stack)")
    sub = parser.add_subparsers(dest="group", required=True)

    dlq = sub.add_parser("dlq", help="dead-lettered and unrouted events").add_subparsers(
        dest="command", required=True)
    ls = dlq.add_parser("list", help="list parked messages (they stay parked)")
    ls.add_argument("--queue", action="append", help="one queue (repeatable); default all")
    ls.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    ls.add_argument("--json", action="store_true")
    rp = dlq.add_parser("replay", help="send parked messages back to their queue")
    rp.add_argument("queue")
    rp.add_argument("--id", action="append", dest="ids", help="only this message id (repeatable)")
    rp.add_argument("--limit", type=int, default=DEFAULT_LIMIT)

    topo = sub.add_parser("topology", help="broker topology").add_subparsers(dest="command", required=True)
    topo.add_parser("declare", help="declare every exchange and queue of the platform")

    points = sub.add_parser("points", help="the points ledger").add_subparsers(dest="command", required=True)
    verify = points.add_parser("verify", help="check every account's hash chain; exit 1 naming what is wrong")
    verify.add_argument("--park", help="one park; default all")
    verify.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI") or settings.DEFAULTS["MONGO_URI"])
    verify.add_argument("--database", default=settings.DEFAULTS["MONGO_DB_PREFIX"] + "points")

    events = sub.add_parser("events", help="the event catalogue, and live events").add_subparsers(
        dest="command", required=True)
    cat = events.add_parser("catalog", help="write docs/asyncapi.yaml and docs/events.md from the services' schemas")
    cat.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    events.add_parser("compat", help="exit 1 naming each incompatible change against the released catalogue")
    events.add_parser("release", help="record the current catalogue as released (docs/events-released.json)")
    tail = events.add_parser("tail", help="print events as they are published")
    tail.add_argument("--park", help="one park")
    tail.add_argument("--type", dest="type_glob", help="a type or pattern, e.g. 'need.*'")
    tail.add_argument("--count", type=int, help="stop after N events")

    parks = sub.add_parser("parks", help="parks' configurations, declared in a file").add_subparsers(
        dest="command", required=True)
    for p in (parks.add_parser("apply", help="show the diff against the gateway, then send each changed park"),
              parks.add_parser("get", help="print a park's configuration as a parks file")):
        p.add_argument("--gateway", help="default $LAMPLIGHT_GATEWAY or http://127.0.0.1:8000")
        p.add_argument("--api-key", help="default $LAMPLIGHT_API_KEY")
    apply_ = parks.choices["apply"]
    apply_.add_argument("-f", "--file", required=True, help="a parks file (parks/demo.yaml)")
    apply_.add_argument("--dry-run", action="store_true", help="print the diff, send nothing; exit 1 if it differs")
    apply_.add_argument("--yes", "-y", action="store_true", help="do not ask")
    apply_.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for every service to install its section")
    parks.choices["get"].add_argument("park")

    keys = sub.add_parser("keys", help="API keys, straight in the gateway's database").add_subparsers(
        dest="command", required=True)
    for p in (keys.add_parser("create", help="make a key and print it (once)"),
              keys.add_parser("list", help="the keys (never their secrets)"),
              keys.add_parser("revoke", help="delete a key")):
        p.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI") or settings.DEFAULTS["MONGO_URI"])
        p.add_argument("--database", default=(os.environ.get("MONGO_DB_PREFIX") or settings.DEFAULTS["MONGO_DB_PREFIX"])
                       + "gateway")
    keys.choices["create"].add_argument("--role", required=True)
    keys.choices["create"].add_argument("--park")
    keys.choices["create"].add_argument("--name", required=True)
    keys.choices["create"].add_argument("--subject")
    keys.choices["create"].add_argument("--rate-limit")
    keys.choices["list"].add_argument("--park")
    keys.choices["revoke"].add_argument("key_id")

    serve = sub.add_parser("serve", help="become the service's nameko process (exec; SIGTERM reaches nameko)")
    serve.add_argument("service", choices=sorted(PROCESSES),
                       help="a service, or the bulk process of one (notify-bulk: broadcasts and the send loop)")
    serve.add_argument("--config", default=os.environ.get("LAMPLIGHT_CONFIG", "config.yaml"))

    return parser


def _serve(args):
    process = PROCESSES[args.service]
    # the lanes it serves (lamplight.lanes), unless the environment says otherwise (LANES=main,bulk: both)
    env = dict(process.env, **os.environ)
    # exec, not a child: the container's PID 1 is nameko, which drains in-flight workers on SIGTERM
    os.execvpe(sys.executable, [sys.executable, "-m", "nameko", "run", "--config", args.config, process.path], env)


def _parks(args):
    from lamplight_tools import parksctl

    return parksctl.main(args)


def _events(args):
    from lamplight_tools import eventsctl

    if args.command == "catalog":
        return eventsctl.catalog(check=args.check)
    if args.command == "compat":
        return eventsctl.compat()
    if args.command == "release":
        return eventsctl.release()
    try:
        eventsctl.tail(_amqp_uri(args), park=args.park, type_glob=args.type_glob, count=args.count)
    except KeyboardInterrupt:
        pass
    return 0


def _dlq(args):
    uri = _amqp_uri(args)
    if args.command == "list":
        rows = dlq_list(uri, args.queue, args.limit)
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            for r in rows:
                print("{queue}\t{message_id}\t{type}\t{park}\tattempts={attempts}\t{error}".format(**r))
            print("{} parked message(s)".format(len(rows)), file=sys.stderr)
    else:
        ids = dlq_replay(uri, args.queue, args.ids, args.limit)
        print("replayed {} message(s) from {}".format(len(ids), args.queue))
    return 0


def _points(args):
    problems, accounts, entries = points_verify(args.mongo_uri, args.database, args.park)
    for where, problem in problems:
        print("{}\t{}".format(where, problem))
    print("{} accounts, {} entries checked: {}".format(
        accounts, entries, "{} problem(s)".format(len(problems)) if problems else "chains intact"))
    return 1 if problems else 0


def _topology(args):
    subscriptions, publishers = installed.subscriptions(), installed.publishers()
    delays = settings.get_list_of_int("EVENT_RETRY_DELAYS_MS")
    with Connection(_amqp_uri(args), connect_timeout=5) as conn:
        topology.declare(conn, subscriptions, delays, settings.get("QUEUE_TYPE"), publishers)
    print("declared {} entities".format(len(topology.all_entities(subscriptions, delays, publishers=publishers))))
    return 0


GROUPS = {"serve": _serve, "parks": _parks, "keys": keys_command, "events": _events,
          "dlq": _dlq, "points": _points, "topology": _topology}


def main(argv=None):
    args = _parser().parse_args(argv)
    return GROUPS[args.group](args)


if __name__ == "__main__":
    sys.exit(main())
