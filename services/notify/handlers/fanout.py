"""Events and broadcasts become notices: who they concern, on which channels,
when, with which words; the notices are written with their delivery log and,
for what shows in the app, their notice.sent events."""
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from eventlet.greenpool import GreenPool

from lamplight import settings
from lamplight.clock import utcnow
from lamplight.errors import Conflict, NotFound
from lamplight.ids import fingerprint
from lamplight.shapes import Doc, Envelope
from services.notify import domain
from services.notify.handlers import Work, count, notice_event, render
from services.notify.metrics import NOTIFY_UNRESOLVED
from services.notify.schemas import BroadcastEventSchema
from services.notify.store import ABANDONED_AFTER, chunks

_broadcast_event = BroadcastEventSchema()


def on_event(work: Work, envelope: Envelope, refs: Doc) -> Doc:
    """The notices of one event (``refs``: what its data names), for everyone it concerns."""
    event_type = envelope["type"]
    rule = domain.RULES[event_type]
    profiles = work.store.profiles(resolve(work.store, rule, refs))
    if not profiles:
        # nobody to tell is an answer, not a failure: retrying would not find anyone either
        NOTIFY_UNRESOLVED.labels(work.park_id, event_type).inc()
        work.log.warning("notify.no_recipient", park_id=work.park_id, event_type=event_type, event_id=envelope["id"])
        return {"recipients": 0}
    source = {"id": envelope["id"], "type": event_type, "topic": rule.topic, "priority": rule.priority,
              "subject": envelope["subject"]}
    return deliver(work, source, envelope["data"], profiles, announce=True)


def resolve(store: Any, rule: domain.Rule, refs: Doc) -> list[str]:
    """The recipients' ids an event's rule names."""
    if rule.audience == "responder":
        return [refs["responder_id"]] if refs["responder_id"] else []
    if rule.audience == "member":
        found: list[str] = store.members(refs["member_id"]) if refs["member_id"] else []
        return found
    if rule.audience == "requester_and_followers":
        ids = store.members(refs["requester_member_id"]) if refs["requester_member_id"] else []
        return sorted(set(ids) | set(store.followers_of(refs["need_id"]) if refs["need_id"] else ()))
    if rule.audience == "visit_escalation":
        # a missed visit: the party group's leads first, then the park's supervisors
        if refs["level"] == "lead":
            return list(refs["to"])
        return [p["_id"] for p in store.audience("role", "supervisor")]
    if rule.audience == "supervision":
        # the ladder's rung names the role it reaches; past the supervisors it is the park's admins
        role = "supervisor" if refs["level"] == "supervisor" else "park_admin"
        return [p["_id"] for p in store.audience("role", role)]
    raise ValueError(rule.audience)


# how far ahead of its channels' rate limits a fan-out keeps the send queue while it writes the
# in-app notices first
QUEUE_LEAD_S = 3.0


def deliver(work: Work, source: Doc, data: Doc, profiles: list[Doc], announce: bool,
            shown: Callable[[], None] | None = None) -> Doc:
    """Plan and write the notices of ``source`` for ``profiles``; with
    ``announce`` each in-app notice carries its notice.sent event.

    In-app notices first, because one written is delivered, while the sends
    queued for other channels go out at those channels' rate limits anyway
    (20,000 SMS at 500/s take 40 s): the first chunk of recipients whole, then
    the in-app notices of the others, with their queued sends taken in between
    whenever the queue would otherwise run out within QUEUE_LEAD_S at the
    park's rate limits (``writes``). ``shown`` is called once every notice
    that needs no sending is written."""
    store = work.store
    config = work.config()
    tz = domain.zone(config["timezone"])
    overrides = store.overrides()
    template_key = source["type"] if source["type"] in domain.TEMPLATE_KEYS else domain.BROADCAST
    rendered: dict[str, tuple[str, str]] = {}
    now = utcnow()
    parts = list(chunks(profiles))
    unshown = [len(parts)]  # chunks whose notices that need no sending are not all written yet

    def write(chunk: list[Doc], legs: str) -> int:
        """Write the ``legs`` of a chunk's plans ("all"; "now": the notices that need no sending
        and their log lines; "queued": the others with their places in the send queue); the
        number of notices inserted."""
        notices, records, pending = [], [], []
        for profile in chunk:
            locale = profile.get("locale", "zh-CN")
            if locale not in rendered:
                title, body = domain.template_for(template_key, locale, overrides)
                rendered[locale] = render(work, title, body, data, tz, template_key, locale)
            n, r, p = domain.plan(source, profile, rendered[locale], config, now, tz)
            notices += n
            records += r
            pending += p
        if legs != "all":
            queued = {p["_id"] for p in pending}
            keep = legs == "queued"
            notices = [n for n in notices if (n["_id"] in queued) == keep]
            records = [r for r in records if (r["notice_id"] in queued) == keep]
            pending = pending if keep else []
        announced = [n for n in notices if announce and n["shown"]]
        events = [notice_event(work, "notice.sent", n) for n in announced]
        # the announced notices are some of those written; their events go with them
        fresh = work.events.insert_many(announced, events, lambda _: store.write_plan(notices, records, pending))
        count(work.park_id, records)
        if legs != "queued":
            unshown[0] -= 1
            if unshown[0] == 0 and shown is not None:
                shown()
        return len(fresh)

    # a few chunks in flight: one is planned while the database writes another; the queued
    # sends still left once the in-app notices are written, after them
    pool = GreenPool(settings.get_int("NOTIFY_FANOUT_CONCURRENCY"))
    later = deque(parts[1:])
    written = sum(pool.imap(lambda job: write(*job), writes(parts, later, pace(config, source), time.monotonic)))
    if not parts and shown is not None:
        shown()
    written += sum(pool.imap(lambda chunk: write(chunk, "queued"), later))
    return {"recipients": len(profiles), "notices": written}


def pace(config: Doc, source: Doc) -> float | None:
    """The sends a second the park's configured channels take for ``source``
    (the fastest one's rate limit), or None when one it may use has none."""
    channels = [c for c, how in config["channels"].items()
                if how and (not source.get("channels") or c in source["channels"])]
    limits = [config["rate_limits"].get(c) for c in channels]
    if not limits or not all(limits):
        return None
    return float(max(limits))


def writes(parts: list[list[Doc]], later: deque[list[Doc]], pace_: float | None,
           clock: Callable[[], float]) -> Iterator[tuple[list[Doc], str]]:
    """The order of a fan-out's writes (chunk, legs) up to its last in-app
    notice: the first chunk whole, then each other chunk's in-app legs, with
    the queued legs of ``later`` (the chunks after the first) taken in turn
    whenever fewer than QUEUE_LEAD_S of sends at ``pace_`` a second (one a
    recipient) would be left in the queue; one after each in-app chunk when
    there is no pace. What is left in ``later`` is written after. Asked for
    lazily: ``clock`` is read as the writes go."""
    if not parts:
        return
    started = clock()
    yield parts[0], "all"
    queued = len(parts[0])
    for chunk in parts[1:]:
        while later and (pace_ is None or queued - pace_ * (clock() - started) < pace_ * QUEUE_LEAD_S):
            taken = later.popleft()
            queued += len(taken)
            yield taken, "queued"
            if pace_ is None:
                break
        yield chunk, "now"


# broadcasts ----------------------------------------------------------------------------------
def accept_broadcast(work: Work, data: Doc, idempotency_key: str) -> tuple[Doc, bool]:
    """Write a broadcast with its broadcast.requested event (the fan-out
    follows from that event): (the broadcast, True), or the one already
    accepted under the key (False); the key reused for another body is a Conflict."""
    broadcast_id = domain.broadcast_id(work.park_id, idempotency_key)
    doc = dict(data, _id=broadcast_id, broadcast_id=broadcast_id, fingerprint=fingerprint(data),
               type=domain.BROADCAST, requested_at=utcnow(), status="fanning_out")
    event = work.events.new("broadcast.requested", park_id=work.park_id, subject=broadcast_id,
                            data=_broadcast_event.dump(dict(doc, at=doc["requested_at"])))
    with work.events.staging([event]) as staged:
        doc.update(staged.fields())
        saved, created = work.store.add_broadcast(doc)
        staged.written = created
    if not created and saved["fingerprint"] != doc["fingerprint"]:
        raise Conflict("Idempotency-Key {} was used for another broadcast".format(idempotency_key),
                       {"Idempotency-Key": ["reused with a different body"]})
    return saved, created


def broadcast_of(work: Work, broadcast_id: str) -> Doc:
    doc: Doc | None = work.store.broadcast(broadcast_id)
    if doc is None:
        raise NotFound("no broadcast {} in park {}".format(broadcast_id, work.park_id))
    return doc


def broadcast_view(doc: Doc) -> Doc:
    keys = ("broadcast_id", "type", "title", "audience", "critical", "channels", "actor", "status",
            "recipients", "notices")
    view = {k: doc.get(k) for k in keys}
    for k in ("requested_at", "shown_at", "finished_at"):
        view[k] = doc[k].isoformat() if doc.get(k) else None
    return view


def emergency(work: Work, envelope: Envelope) -> Doc:
    """A park that goes into emergency mode tells everyone in it at once."""
    broadcast_id = domain.broadcast_id(work.park_id, envelope["id"])
    doc, _ = work.store.add_broadcast({
        "_id": broadcast_id, "broadcast_id": broadcast_id, "type": envelope["type"], "data": envelope["data"],
        "title": "emergency", "body": envelope["data"].get("reason", ""), "audience": {"kind": "park", "value": None},
        "critical": True, "channels": None, "actor": envelope["data"].get("actor", "volunteers"),
        "requested_at": utcnow(), "status": "fanning_out"})
    return fan_out(work, doc)


def fan_out(work: Work, doc: Doc) -> Doc:
    """The notices of a broadcast for its whole audience, then the broadcast finished with its event."""
    store = work.store
    if doc["status"] == "done":
        return {"recipients": doc.get("recipients"), "notices": doc.get("notices")}
    profiles = store.audience(doc["audience"]["kind"], doc["audience"].get("value"))
    topic = "emergency" if doc["type"] == "emergency.declared" else "broadcast"
    source = {"id": doc["_id"], "type": doc["type"], "topic": topic,
              "priority": "critical" if doc["critical"] else "normal", "subject": doc["_id"],
              "channels": doc.get("channels")}
    data = doc.get("data") or {"title": doc["title"], "body": doc["body"]}
    result = deliver(work, source, data, profiles, announce=False,
                     shown=lambda: store.broadcast_shown(doc["_id"], utcnow()))
    finished = utcnow()
    event = work.events.new("broadcast.completed", park_id=work.park_id, subject=doc["_id"],
                            data=_broadcast_event.dump(dict(doc, recipients=len(profiles), at=finished)))
    with work.events.staging([event]) as staged:
        update = staged.update()
        update["$set"].update(status="done", recipients=len(profiles), notices=result["notices"],
                              finished_at=finished)
        staged.written = store.finish_broadcast(doc["_id"], update)
    work.log.info("notify.broadcast_done", park_id=work.park_id, broadcast_id=doc["_id"], recipients=len(profiles),
                  seconds=round((finished - doc["requested_at"]).total_seconds(), 3))
    return result


def finish_abandoned(work: Work, now: datetime) -> None:
    """A broadcast whose fan-out died with its process, and whose event is settled: finish it."""
    for doc in work.store.unfinished_broadcasts(now - ABANDONED_AFTER):
        fan_out(work, doc)
