"""The notify service layer (services/notify/handlers/) driven directly: an
event's notices, the send loop's retries, fallback and rate limit, and a
broadcast, against a repository, the worker's Events and scripted providers,
with no nameko, broker, database or network. The same tests run against the
real repository on the MongoDB-protocol server (tests/integration/
test_notify_handlers_on_the_server.py): the in-memory one is held to it."""
import time
from collections import deque
from datetime import datetime, timezone

import pytest

from lamplight import logs
from lamplight.envelope import new_event
from lamplight.errors import Conflict
from services.notify import domain
from services.notify.channels import SendFailed
from services.notify.handlers import Work, fanout, sending
from services.notify.schemas import PUBLISHED, BroadcastSchema, RecipientSchema, SourceEventSchema
from services.notify.store import CHUNK
from tests.unit.notify_repos import InMemoryNotifyStore, configured
from tests.unit.outbox import RecordingOutbox, events


class Provider:
    """A channel adapter that answers from a script: a provider's id for the
    message, or a SendFailed; "ok" once the script is spent."""

    batch_limit = 1

    def __init__(self, *answers):
        self.answers, self.sent = list(answers), []

    def send(self, notice, address, settings):
        self.sent.append((notice["_id"], address))
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def notify_config():
    """Overrides of the park's notify configuration (a test parametrizes it)."""
    return {}


@pytest.fixture
def repo(notify_config):
    return InMemoryNotifyStore("quanlinan", configured(**notify_config))


@pytest.fixture
def providers():
    return {"webhook": Provider(), "email": Provider()}


@pytest.fixture
def work(repo, providers):
    outbox = RecordingOutbox("notify", PUBLISHED)
    return Work(repo, events(outbox), logs.get_logger(component="notify-handlers"), providers), outbox


def person(work, recipient_id, channels=("webhook",)):
    profile = RecipientSchema().load({"channels": list(channels), "addresses": {
        "webhook": "https://hooks.example.org/" + recipient_id, "email": recipient_id + "@example.org"}})
    work.store.put_recipient(recipient_id, profile, datetime.now(timezone.utc))


def offered(work, responder_id):
    """A task.offered event for ``responder_id``, as the volunteers service publishes it."""
    data = dict(domain.EXAMPLES["task.offered"], responder_id=responder_id)
    return new_event("task.offered", source="volunteers", park_id=work.park_id, subject=data["task_id"], data=data)


def notify(work, envelope):
    return fanout.on_event(work, envelope, SourceEventSchema().load(envelope["data"]))


def steps(work, channel):
    """The delivery log of the recipient's notice on ``channel``: (step, status) in order."""
    lines = [d for d in work.store.log({"channel": channel}, 100)]
    return [(d["_id"].split("#", 1)[1], d["status"]) for d in lines]


def test_an_event_becomes_one_notice_per_recipient_and_channel_and_a_redelivery_adds_none(work):
    w, outbox = work
    person(w, "rsp_1")
    envelope = offered(w, "rsp_1")
    assert notify(w, envelope) == {"recipients": 1, "notices": 2}  # in the app, and on the webhook
    assert [n["channel"] for n in w.store.inbox("rsp_1")] == ["inapp"]
    assert [p["channel"] for p in w.store.due(datetime.now(timezone.utc), 10)] == ["webhook"]
    assert outbox.types() == ["notice.sent"]  # the in-app notice, announced with its write
    assert notify(w, envelope) == {"recipients": 1, "notices": 0}  # the same event delivered again
    assert outbox.types() == ["notice.sent"] and outbox.staged == {}
    assert w.store.pending_count() == 1


def test_a_provider_that_fails_is_retried_after_its_backoff_and_the_notice_is_sent_once(work, providers):
    w, outbox = work
    providers["webhook"].answers = [SendFailed("hooks.example.org answered HTTP 503")]
    person(w, "rsp_1")
    notify(w, offered(w, "rsp_1"))
    assert sending.send_due(w) == {"due": 1, "finished": 0}
    assert steps(w, "webhook") == [("queued", "queued"), ("try1", "sending"), ("try1.failed", "failed")]
    time.sleep(0.1)  # the first retry waits 0.05 s
    assert sending.send_due(w) == {"due": 1, "finished": 1}
    assert steps(w, "webhook")[-2:] == [("try2", "sending"), ("try2.sent", "sent")]
    assert len(providers["webhook"].sent) == 2 and w.store.pending_count() == 0
    assert outbox.types() == ["notice.sent", "notice.sent"] and outbox.staged == {}
    assert sending.send_due(w) == {"due": 0, "finished": 0}


def test_a_provider_that_refuses_falls_back_to_the_next_channel_and_the_last_refusal_fails_the_notice(
        work, providers):
    w, outbox = work
    providers["webhook"].answers = [SendFailed("HTTP 400: bad payload", retryable=False)]
    providers["email"].answers = [SendFailed("550 mailbox unavailable", retryable=False)]
    person(w, "rsp_1", channels=("webhook", "email"))
    notify(w, offered(w, "rsp_1"))
    assert sending.send_due(w) == {"due": 1, "finished": 1}
    assert steps(w, "webhook")[-1] == ("try1.failed", "failed")
    assert steps(w, "email") == [("queued", "queued")]  # the next channel took it
    assert sending.send_due(w) == {"due": 1, "finished": 1}
    assert set(steps(w, "email")) == {("queued", "queued"), ("try1", "sending"), ("try1.failed", "failed"),
                                      ("gave_up", "gave_up")}
    failed = [e for e in outbox.published if e["type"] == "notice.failed"]
    assert len(failed) == 1 and "550 mailbox unavailable" in failed[0]["data"]["reason"]
    assert w.store.pending_count() == 0


@pytest.mark.parametrize("notify_config", [{"rate_limits": {"webhook": 2}}])
def test_a_parks_rate_limit_caps_its_sends_in_a_second(work, providers):
    w, outbox = work
    for n in range(5):
        person(w, "rsp_{}".format(n))
        notify(w, offered(w, "rsp_{}".format(n)))
    time.sleep(1.02 - time.time() % 1)  # the park's second starts: 2 sends, 0.5 s apart, fit in it
    second = int(time.time())
    assert sending.send_due(w)["finished"] == 2
    assert len(providers["webhook"].sent) == 2 and w.store.pending_count() == 3
    if int(time.time()) == second:  # the same second, asked again: its sends were taken
        assert sending.send_due(w)["finished"] == 0 and len(providers["webhook"].sent) == 2


@pytest.mark.parametrize("notify_config", [{"rate_limits": {"webhook": 100, "email": 100}}])
def test_a_broadcast_writes_every_in_app_notice_before_the_sends_past_its_first_chunk(work, monkeypatch):
    """The sends of the first chunk are queued at once; then everyone's in-app notice; then the
    other sends, which their channel's rate limit paces anyway (the first chunk's 1,000 are 10 s
    of sends at 100/s)."""
    w, _ = work
    people = ["w{:04d}".format(n) for n in range(CHUNK + 200)]
    for rid in people:
        person(w, rid)
    writes = []
    write_plan, shown = w.store.write_plan, w.store.broadcast_shown
    monkeypatch.setattr(w.store, "write_plan", lambda notices, records, pending: (
        writes.append(({n["channel"] for n in notices}, len(pending))), write_plan(notices, records, pending))[1])
    monkeypatch.setattr(w.store, "broadcast_shown", lambda *a: (writes.append("shown"), shown(*a))[1])
    body = BroadcastSchema().load({"title": "撤离通知", "body": "请立即前往广场集合", "actor": "desk-01",
                                   "audience": {"kind": "park"}, "critical": True})
    doc, _ = fanout.accept_broadcast(w, body, "key-evacuate")
    assert fanout.fan_out(w, w.store.broadcast(doc["broadcast_id"])) == {"recipients": len(people),
                                                                        "notices": 2 * len(people)}
    assert writes == [({"inapp", "webhook"}, CHUNK), ({"inapp"}, 0), "shown", ({"webhook"}, 200)]
    stored = fanout.broadcast_view(w.store.broadcast(doc["broadcast_id"]))
    assert stored["status"] == "done" and stored["shown_at"] <= stored["finished_at"]
    assert w.store.pending_count() == len(people)
    inbox = [domain.notice_id(doc["broadcast_id"], rid, domain.INAPP) for rid in people]
    assert len(w.store.notices_of(inbox)) == len(people)


def test_a_fan_out_keeps_its_send_queue_ahead_of_the_rate_limit_while_it_writes_the_in_app_notices():
    """Chunks of 1,000 at 500 sends/s: the first whole, then in-app chunks, a chunk of sends
    taken whenever fewer than 3 s of them are left in the queue; with no rate limit, one
    chunk of sends after each in-app chunk."""
    parts = [[n] * 1000 for n in range(8)]
    now = [0.0]

    def taken(pace, step):
        order, later = [], deque(parts[1:])
        for chunk, legs in fanout.writes(parts, later, pace, lambda: now[0]):
            order.append((chunk[0], legs))
            now[0] += step
        now[0] = 0.0
        return order + [(chunk[0], "queued") for chunk in later]

    # each write 0.5 s, in which 250 are sent: a chunk of sends is taken whenever fewer than 1,500
    # (3 s of them) would be left queued; the in-app notices are all written by the 11th write
    assert taken(500.0, 0.5) == [(0, "all"), (1, "queued"), (1, "now"), (2, "queued"), (2, "now"), (3, "now"),
                                 (4, "now"), (3, "queued"), (5, "now"), (6, "now"), (7, "now"), (4, "queued"),
                                 (5, "queued"), (6, "queued"), (7, "queued")]
    # writes that take no time: 3 s of sends queued, then every in-app notice before the other sends
    assert taken(500.0, 0.0)[:9] == [(0, "all"), (1, "queued")] + [(n, "now") for n in range(1, 8)]
    assert taken(None, 0.0)[:5] == [(0, "all"), (1, "queued"), (1, "now"), (2, "queued"), (2, "now")]
    assert sorted(taken(None, 0.0)) == sorted(taken(500.0, 0.5))  # every leg of every chunk, once
    assert list(fanout.writes([], deque(), 500.0, lambda: 0.0)) == []


def test_a_broadcast_is_accepted_once_per_key_and_fans_out_once(work):
    w, outbox = work
    for n in range(3):
        person(w, "w{}".format(n))
    body = BroadcastSchema().load({"title": "停水通知", "body": "明天 8:00-12:00 宿舍区停水", "actor": "desk-01",
                                   "audience": {"kind": "park"}})
    doc, created = fanout.accept_broadcast(w, body, "key-1")
    again, created_again = fanout.accept_broadcast(w, body, "key-1")
    assert created and not created_again and again["broadcast_id"] == doc["broadcast_id"]
    with pytest.raises(Conflict):
        fanout.accept_broadcast(w, dict(body, title="另一个通知"), "key-1")
    # each person in the app and on their webhook; a broadcast's notices are not announced one by one
    assert fanout.fan_out(w, w.store.broadcast(doc["broadcast_id"])) == {"recipients": 3, "notices": 6}
    stored = w.store.broadcast(doc["broadcast_id"])
    assert stored["status"] == "done" and stored["recipients"] == 3
    assert outbox.types() == ["broadcast.requested", "broadcast.completed"]
    assert sorted(p["recipient_id"] for p in w.store.due(datetime.now(timezone.utc), 10)) == ["w0", "w1", "w2"]
    assert fanout.fan_out(w, stored) == {"recipients": 3, "notices": 6}  # done: answered, not fanned out again
    assert outbox.types() == ["broadcast.requested", "broadcast.completed"] and w.store.pending_count() == 3
