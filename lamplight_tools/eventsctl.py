"""``lamplight events …``: the generated catalogue, its checks, and a live tail.

    lamplight events catalog [--check]    write docs/asyncapi.yaml and docs/events.md (or exit 1 if stale)
    lamplight events compat               the code's schemas against docs/events-released.json
    lamplight events release              record the current catalogue as released
    lamplight events tail [--park P] [--type 'need.*'] [--count N]
"""
import fnmatch
import json
import sys
import uuid
from pathlib import Path

import yaml
from kombu import Connection, Exchange, Queue

from lamplight import installed, registry

ROOT = Path(__file__).resolve().parent.parent


def rendered(cat=None):
    """{path: text} of every generated file (of ``cat``, by default the code's catalogue)."""
    cat = cat if cat is not None else registry.catalogue()
    return {
        registry.ASYNCAPI_PATH: yaml.safe_dump(registry.asyncapi(cat), allow_unicode=True, sort_keys=False, width=110),
        registry.MARKDOWN_PATH: registry.markdown(cat),
    }


def catalog(root=ROOT, check=False, out=sys.stdout):
    """Write the catalogue, or with ``check`` say which file is stale; returns the exit code."""
    stale = []
    cat = registry.catalogue()
    for path, text in rendered(cat).items():
        target = Path(root) / path
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if check:
            stale.append(path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print("wrote {}".format(path), file=out)
    if stale:
        print("stale: {} — the services' event schemas changed; run `lamplight events catalog` and commit"
              .format(", ".join(stale)), file=out)
        return 1
    print("{} event types in the catalogue{}".format(len(cat), " (up to date)" if check else ""), file=out)
    return 0


def released(root=ROOT):
    path = Path(root) / registry.RELEASED_PATH
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def compat(root=ROOT, out=sys.stdout):
    problems = registry.check_compatibility(released(root), registry.catalogue())
    for problem in problems:
        print(problem, file=out)
    print("{} incompatible change(s) against {}".format(len(problems), registry.RELEASED_PATH) if problems
          else "compatible with {}".format(registry.RELEASED_PATH), file=out)
    return 1 if problems else 0


def release(root=ROOT, out=sys.stdout):
    path = Path(root) / registry.RELEASED_PATH
    path.write_text(json.dumps(registry.released_view(registry.catalogue()), ensure_ascii=False, indent=1,
                               sort_keys=True) + "\n", encoding="utf-8")
    print("wrote {}".format(registry.RELEASED_PATH), file=out)
    return 0


def binding_keys(type_glob):
    """Routing keys for a type pattern: ``need.*`` also binds ``need.*.*``
    so versioned keys (``need.submitted.v2``) come too."""
    if not type_glob or type_glob in ("*", "#"):
        return ["#"]
    return [type_glob, type_glob + ".*"]


def tail(amqp_uri, park=None, type_glob=None, count=None, out=sys.stdout, ready=None, timeout=None):
    """Print live events as they are published: time, park, type, subject,
    id and the data. Binds a private queue that goes when the tail stops."""
    queue = Queue("lamplight.tail.{}".format(uuid.uuid4().hex[:8]), exclusive=True, auto_delete=True,
                  bindings=[], durable=False)
    seen = [0]
    with Connection(amqp_uri, connect_timeout=5) as conn:
        channel = conn.channel()
        queue = queue(channel)
        queue.declare()
        for service in installed.publishers():
            exchange = Exchange("{}.events".format(service), "topic", durable=True)
            exchange(channel).declare()
            for key in binding_keys(type_glob):
                queue.bind_to(exchange=exchange, routing_key=key)

        def on_message(body, message):
            message.ack()
            envelope = json.loads(body) if isinstance(body, (bytes, str)) else body
            if park and envelope.get("parkid") != park:
                return
            if type_glob and not fnmatch.fnmatchcase(envelope.get("type", ""), type_glob.replace("#", "*")):
                return
            print("{time}  {parkid}  {type}  {subject}  {id}  {data}".format(
                data=json.dumps(envelope.get("data"), ensure_ascii=False, sort_keys=True)[:300],
                **{k: envelope.get(k) for k in ("time", "parkid", "type", "subject", "id")}), file=out, flush=True)
            seen[0] += 1

        with conn.Consumer(queue, callbacks=[on_message], accept=["json", "application/json"], no_ack=False):
            if ready is not None:
                ready.set()
            while count is None or seen[0] < count:
                try:
                    conn.drain_events(timeout=timeout or 1)
                except TimeoutError:
                    if timeout:
                        break
    return seen[0]
