"""The send loop of one park: what is due, within the park's per-channel
rate limits, in the requests the providers take, with a claim per attempt
written to the delivery log first; retried with backoff, falling back to the
recipient's next channel, and low-priority notices gathered in a digest."""
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any, NamedTuple

import eventlet
from eventlet.greenpool import GreenPool

from lamplight import settings
from lamplight.alarms import Alarms
from lamplight.clock import utcnow
from lamplight.shapes import Config, Doc, Envelope
from services.notify import domain
from services.notify.channels import SendFailed, adapter_for
from services.notify.handlers import Work, fanout, notice_event, render
from services.notify.metrics import NOTICE_SEND_LAG, NOTICE_SEND_SECONDS, NOTICES, NOTICES_PENDING
from services.notify.store import ABANDONED_AFTER, chunks

# park -> when this process last counted its pending sends (NOTIFY_PENDING_GAUGE_S)
_PENDING_COUNTED: dict[str, float] = {}
# park -> when this process last did its housekeeping (``housekeep``)
_HOUSEKEPT: dict[str, float] = {}
HOUSEKEEPING_S = 60.0
LEASES_KEPT = timedelta(minutes=10)  # a rate window's or digest's lease, long past its window


class Ready(NamedTuple):
    """A send claimed and checked, waiting for its request to the provider."""
    pending: Doc
    notice: Doc
    settings: Doc
    address: str
    step: str


# (pending sends, the time before which they are not sent, the time from which they are not)
Job = tuple[list[Doc], float | None, float | None]


# settle's ``soonest`` when the pass did not read it
UNREAD = object()


def visit(work: Work, alarms: Alarms, version: int, every_park: bool) -> None:
    """The loop's pass over a park whose alarm rang at ``version``: what is
    due sent, the housekeeping, the alarm settled."""
    _, soonest = _send_due(work)
    housekeep(work, utcnow(), every_park)
    settle(work, alarms, version, soonest)


def send_due(work: Work) -> Doc:
    """Send what is due in the park now: how many were due, and how many need no more sending."""
    return _send_due(work)[0]


def _send_due(work: Work) -> tuple[Doc, Any]:
    """send_due, and the park's next due send when nothing was (UNREAD otherwise)."""
    store = work.store
    now = utcnow()
    config = work.config()
    tz = domain.zone(config["timezone"])
    # the soonest entry of the queue first: a visit with nothing due (a quiet park's in the
    # rounds, a pass rung for later work) is this one read, not a read per priority, and the
    # settle that follows needs no other (a send queued meanwhile rang the alarm: it stays rung)
    soonest = store.next_due()
    due = store.due(now, settings.get_int("NOTIFY_SEND_BATCH")) if soonest is not None and soonest <= now else []
    if time.monotonic() - _PENDING_COUNTED.get(work.park_id, -1e9) >= settings.get_float("NOTIFY_PENDING_GAUGE_S"):
        # a count reads the park's whole queue (20,000 after a broadcast): not every tick
        _PENDING_COUNTED[work.park_id] = time.monotonic()
        NOTICES_PENDING.labels(work.park_id).set(store.pending_count())
    if not due:
        return {"due": 0, "finished": 0}, soonest
    digest = [p for p in due if p["kind"] == "digest"]
    by_channel: dict[str, list[Doc]] = {}
    for p in due:
        if p["kind"] == "send":
            by_channel.setdefault(p["channel"], []).append(p)
    for channel, items in by_channel.items():
        by_channel[channel] = items[:config["rate_limits"].get(channel) or len(items)]
    finished = []
    if digest and store.take_lease("digest", int(now.timestamp()), now):
        finished += _digest(work, config, tz, digest, now)
    # the sends' notices in one read, their recipients through the cache of profiles, before
    # a rate-limited channel's second starts: that second is for sending
    ids = [p["_id"] for items in by_channel.values() for p in items]
    notices = {n["_id"]: n for chunk in chunks(ids) for n in store.notices_of(chunk)}
    profiles = {p["_id"]: p for p in store.profiles([n["recipient_id"] for n in notices.values()])}
    start = time.time()
    window = int(start)
    jobs: list[Job] = []
    for channel, items in sorted(by_channel.items()):
        limit = config["rate_limits"].get(channel)
        batches = _batches(work, config, channel, items, notices)
        if limit:
            # one process a second sends for this park and channel, at most `limit`, one every
            # 1/limit s from now to the second's end (a batch of n counts n): a provider counting
            # any second of its own sees at most `limit` (+ a batch); what the second does not
            # reach is left for the next
            if not store.take_lease("rate:" + channel, window, utcnow()):
                continue
            offset = 0
            for batch in batches:
                jobs.append((batch, start + offset / limit, window + 1))
                offset += len(batch)
        else:
            jobs += [(batch, None, None) for batch in batches]
    # the park's own pool of threads: its sends waiting for their time in the second hold
    # none of another park's
    pool = GreenPool(settings.get_int("NOTIFY_SEND_CONCURRENCY"))
    finished += [nid for ids in pool.imap(lambda job: _attempt(work, config, tz, job, notices, profiles), jobs)
                 for nid in ids]
    store.done(finished)
    return {"due": len(due), "finished": len(finished)}, UNREAD


def housekeep(work: Work, now: datetime, every_park: bool) -> None:
    """A visited park's leases of past windows dropped, and a broadcast whose
    fan-out died with its process finished: at most once a minute per park in
    a process, and for every park in the loop's rounds (SWEEP_ROUND_S). A park
    the loop does not visit takes no leases and starts no fan-out, so it has
    nothing to tidy between rounds."""
    last = _HOUSEKEPT.get(work.park_id)
    if not every_park and last is not None and time.monotonic() - last < HOUSEKEEPING_S:
        return
    _HOUSEKEPT[work.park_id] = time.monotonic()
    work.store.drop_leases(now - LEASES_KEPT)
    fanout.finish_abandoned(work, now)


def settle(work: Work, alarms: Alarms, version: int, soonest: Any = UNREAD) -> None:
    """After a pass of the loop over a park whose alarm was at ``version``:
    the alarm waits for the park's next due send (``soonest``, when the pass
    read it after the alarm and wrote nothing), or for nothing when the
    queue is empty; left rung while something is due (a rate limit's rest).
    A broadcast still fanning out brings the alarm back when it would count
    as abandoned (and the park's housekeeping is due), for ``housekeep``."""
    nxt = work.store.next_due() if soonest is UNREAD else soonest
    now = utcnow()
    if nxt is not None and nxt <= now:
        return
    unfinished = work.store.first_unfinished_broadcast()
    if unfinished is not None:
        last = _HOUSEKEPT.get(work.park_id, float("-inf"))
        tidy_in = max(0.0, last + HOUSEKEEPING_S - time.monotonic())
        check = max(unfinished + ABANDONED_AFTER, now + timedelta(seconds=tidy_in))
        nxt = check if nxt is None else min(nxt, check)
    if alarms.settle(work.park_id, version, nxt):
        # the park is not visited until then: its gauge is counted as it goes quiet
        _PENDING_COUNTED[work.park_id] = time.monotonic()
        NOTICES_PENDING.labels(work.park_id).set(0 if nxt is None else work.store.pending_count())


def _batches(work: Work, config: Config, channel: str, items: list[Doc], notices: dict[str, Doc]) -> list[list[Doc]]:
    """The pending sends of a channel in the requests they go in: one each, or, where the
    park's provider takes many numbers with the same text in one request (SMS), up to its
    limit of those that share their text (a broadcast's, by locale)."""
    channel_settings = config["channels"].get(channel)
    adapter = adapter_for(work.channels, channel, channel_settings) if channel_settings else None
    size = getattr(adapter, "batch_limit", 1)
    if adapter is None or size <= 1:
        return [[p] for p in items]
    groups: dict[Any, list[Doc]] = {}
    for p in items:
        notice = notices.get(p["_id"])
        groups.setdefault(adapter.batch_key(notice) if notice else p["_id"], []).append(p)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def _attempt(work: Work, config: Config, tz: tzinfo, job: Job, notices: dict[str, Doc],
             profiles: dict[str, Doc]) -> list[str]:
    """One attempt at each of a job's pending sends (one request to the provider), in its time
    (epoch seconds, None: now); returns the ids of the notices that need no more sending."""
    pendings, not_before, not_after = job
    if not_before is not None and not_after is not None:
        if not_before >= not_after:
            return []  # past its second: the next one sends it
        eventlet.sleep(max(0.0, not_before - time.time()))
        if time.time() >= not_after:
            return []
    # each notice's claim and checks, at once (their log lines share a write)
    ready, finished = [], []
    for outcome in GreenPool(len(pendings)).imap(
            lambda pending: _guarded(work, pending, lambda: _prepare(
                work, config, tz, pending, notices.get(pending["_id"]), profiles)), pendings):
        if isinstance(outcome, Ready):
            ready.append(outcome)
        elif outcome:
            finished.append(outcome)
    if not ready:
        return finished
    channel, channel_settings = ready[0].notice["channel"], ready[0].settings
    adapter = adapter_for(work.channels, channel, channel_settings)
    results: list[Any]
    try:
        with NOTICE_SEND_SECONDS.labels(channel).time():
            if len(ready) == 1:
                results = [adapter.send(dict(ready[0].notice, park_id=work.park_id), ready[0].address,
                                        channel_settings)]
            else:
                results = adapter.send_many([(dict(r.notice, park_id=work.park_id), r.address) for r in ready],
                                            channel_settings)
    except SendFailed as exc:
        results = [exc] * len(ready)
    except Exception as exc:  # an answer the adapter trips over: this attempt failed, retried like any other
        work.log.error("notify.adapter_failed", park_id=work.park_id, channel=channel,
                       notices=[r.notice["_id"] for r in ready], error="{}: {}".format(type(exc).__name__, exc))
        results = [SendFailed("{} failed: {}: {}".format(channel, type(exc).__name__, str(exc)[:200]))] * len(ready)
    for nid in GreenPool(len(ready)).imap(
            lambda pair: _guarded(work, pair[0].pending, lambda: _finish(work, config, *pair)), zip(ready, results)):
        if nid:
            finished.append(nid)
    return finished


def _guarded(work: Work, pending: Doc, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except Exception as exc:  # a bug or the database: the notice stays queued for the next pass
        work.log.error("notify.attempt_failed", park_id=work.park_id, notice_id=pending["_id"],
                       error="{}: {}".format(type(exc).__name__, exc))
        return None


def _prepare(work: Work, config: Config, tz: tzinfo, pending: Doc, notice: Doc | None,
             profiles: dict[str, Doc]) -> Ready | str | None:
    """Claim an attempt at ``pending`` (its notice as read for the pass, None: gone) and check
    that it is to be sent now: a Ready to send, else the notice's id when it needs no more
    sending (or None)."""
    store = work.store
    nid, attempt = pending["_id"], pending["attempt"]
    if notice is None:
        return str(nid)
    now = utcnow()
    step = "try{}".format(attempt)
    if not store.add_record(domain.record(nid, step, "sending", now, notice, attempt=attempt)):
        return _claimed_elsewhere(work, notice, pending, step, now)
    channel = notice["channel"]
    settings_ = config["channels"].get(channel)
    profile = profiles.get(notice["recipient_id"]) or domain.default_profile(notice["recipient_id"])
    address = (profile.get("addresses") or {}).get(channel)
    if not settings_ or not address:
        reason = ("channel {} is not configured for park {}".format(channel, work.park_id) if not settings_
                  else "recipient has no {} address".format(channel))
        store.add_record(domain.record(nid, step + ".skipped", "skipped", utcnow(), notice, reason=reason))
        NOTICES.labels(work.park_id, channel, "skipped").inc()
        return _fall_back(work, notice, pending, reason)
    if channel in domain.WAKES and notice["priority"] != "critical":
        until = domain.quiet_until(now, profile.get("shifts", []), config["quiet"], tz)
        if until is not None:  # the roster changed since the notice was queued
            store.add_record(domain.record(nid, step + ".deferred", "deferred", now, notice, until=until,
                                           reason="quiet hours"))
            store.reschedule(nid, until, attempt + 1)
            NOTICES.labels(work.park_id, channel, "deferred").inc()
            return None
    # how late the provider is asked: per park and priority, so that a park whose sends starve is seen
    NOTICE_SEND_LAG.labels(work.park_id, channel, notice["priority"]).observe(
        max(0.0, (now - pending["due_at"]).total_seconds()))
    return Ready(pending, notice, settings_, address, step)


def _finish(work: Work, config: Config, ready: Ready, result: Any) -> str | None:
    """The provider's answer for one prepared send: its id, or the SendFailed for it."""
    if isinstance(result, SendFailed):
        return _failed(work, config, ready.notice, ready.pending, ready.step, result)
    notice = ready.notice
    if _log_with_event(work, domain.record(
            notice["_id"], ready.step + ".sent", "sent", utcnow(), notice, attempt=ready.pending["attempt"],
            provider_id=str(result) if result else None), notice_event(work, "notice.sent", notice)):
        NOTICES.labels(work.park_id, notice["channel"], "sent").inc()
    return str(notice["_id"])


def _log_with_event(work: Work, line: Doc, event: Envelope) -> bool:
    """Write a line of the delivery log carrying its event, and publish the
    event; False (and nothing published) when the line was there already."""
    with work.events.staging([event]) as staged:
        line.update(staged.fields())
        staged.written = work.store.add_record(line)
    written: bool = staged.written
    return written


def _claimed_elsewhere(work: Work, notice: Doc, pending: Doc, step: str, now: datetime) -> str | None:
    """Another process holds this attempt. Done if it finished; if it
    vanished mid-send (no outcome long after), count the attempt as failed
    with its outcome unknown and go on (the receiver can drop a repeat by
    the notice id it is sent with)."""
    store = work.store
    nid = notice["_id"]
    if store.has_record(domain.delivery_id(nid, step + ".sent")):
        return str(nid)
    claim = store.record(domain.delivery_id(nid, step))
    stale = claim and (now - claim["at"]).total_seconds() > settings.get_float("NOTIFY_SEND_TIMEOUT_S")
    if stale and not store.has_record(domain.delivery_id(nid, step + ".failed")):
        store.add_record(domain.record(nid, step + ".lost", "failed", now, notice, attempt=pending["attempt"],
                                       reason="the sending process vanished; outcome unknown"))
        store.reschedule(nid, now, pending["attempt"] + 1)
    return None


def _failed(work: Work, config: Config, notice: Doc, pending: Doc, step: str, exc: SendFailed) -> str | None:
    store = work.store
    nid, attempt = notice["_id"], pending["attempt"]
    failures = pending.get("failures", 0) + 1
    now = utcnow()
    retry = config["channels"][notice["channel"]].get("retry") or config["retry"]
    if exc.retryable and failures < retry["attempts"]:
        retry_at = now + timedelta(seconds=domain.backoff_seconds(failures, retry["backoff_s"]))
        store.add_record(domain.record(nid, step + ".failed", "failed", now, notice, attempt=attempt,
                                       reason=exc.reason, until=retry_at))
        store.reschedule(nid, retry_at, attempt + 1, failures)
        NOTICES.labels(work.park_id, notice["channel"], "retried").inc()
        return None
    reason = "{} (gave up after {} attempt{})".format(exc.reason, failures, "" if failures == 1 else "s")
    store.add_record(domain.record(nid, step + ".failed", "failed", now, notice, attempt=attempt, reason=reason,
                                   final=True))
    NOTICES.labels(work.park_id, notice["channel"], "failed").inc()
    return _fall_back(work, notice, pending, reason)


def _fall_back(work: Work, notice: Doc, pending: Doc, reason: str) -> str:
    """The next of the recipient's channels takes the notice; with none
    left the notice has failed for good (notice.failed)."""
    if pending.get("remaining"):
        nxt, nxt_pending, line = domain.fallback(notice, pending["remaining"], utcnow())
        work.store.write_plan([nxt], [line], [nxt_pending])
        NOTICES.labels(work.park_id, nxt["channel"], "fallback").inc()
        return str(notice["_id"])
    _log_with_event(work, domain.record(notice["_id"], "gave_up", "gave_up", utcnow(), notice, reason=reason),
                    notice_event(work, "notice.failed", notice, reason=reason))
    return str(notice["_id"])


def _digest(work: Work, config: Config, tz: tzinfo, items: list[Doc], now: datetime) -> list[str]:
    """Each recipient's due low-priority notices become one digest notice
    per channel, queued to send now."""
    store = work.store
    groups: dict[tuple[str, str], list[Doc]] = {}
    for p in items:
        groups.setdefault((p["recipient_id"], p["channel"]), []).append(p)
    overrides = store.overrides()
    finished = []
    for (recipient_id, channel), group in sorted(groups.items()):
        notices = store.notices_of([p["_id"] for p in group])
        profile = store.recipient(recipient_id) or domain.default_profile(recipient_id)
        locale = profile.get("locale", "zh-CN")
        title, body = domain.template_for(domain.DIGEST, locale, overrides)
        rendered = render(work, title, body, {"items": [{"title": n["title"], "body": n["body"]} for n in notices]},
                          tz, domain.DIGEST, locale)
        source = domain.digest_source(recipient_id, channel, max(p["due_at"] for p in group))
        digest = domain.new_notice(source, recipient_id, channel, rendered[0], rendered[1], locale, now)
        digest["shown"] = False
        records = [domain.record(digest["_id"], "queued", "queued", now, digest,
                                 reason="digest of {} notices".format(len(notices)))]
        records += [domain.record(n["_id"], "digested", "digested", now, n, reason="in digest " + digest["_id"])
                    for n in notices]
        store.write_plan([digest], records, [domain.pending_for(digest, now, 1, [])])
        NOTICES.labels(work.park_id, channel, "digested").inc(len(notices))
        finished += [p["_id"] for p in group]
    return finished
