"""The notify service against the real broker and database, its channels
against real peers on 127.0.0.1 (tests/peers.py: an SMTP server, and HTTP
servers that check Aliyun's, Tencent's, WeChat's and our webhook's request
formats and signatures): quiet hours, critical notices, redelivered events,
retries and fallback, digests, rate limits, broadcasts, templates."""
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from nameko import config
from nameko.standalone.rpc import ClusterRpcClient
from prometheus_client import REGISTRY

from lamplight.alarms import COLLECTION as ALARMS
from lamplight.alarms import NEVER
from lamplight.clock import utcnow
from lamplight.envelope import new_event
from lamplight.errors import BadInput, Conflict
from services.notify import domain
from services.notify.service import NotifyService
from services.notify.store import INDEXES, PARTITIONED, SEND_LOOP, NotifyStore
from tests.conftest import finds, finds_during, wait_for
from tests.integration.server_repos import server_store


@pytest.fixture
def notify(container_factory, service_config):
    with config.patch({"NOTIFY_TICK_S": 0.2, "max_workers": 20}):
        container = container_factory(NotifyService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            yield client.notify


def new_park(notify, peers, sms="aliyun", prefix="n", **settings):
    park = prefix + uuid.uuid4().hex[:8]
    body = dict({"version": 1, "timezone": "Asia/Shanghai", "channels": peers.channels(sms),
                 "retry": {"attempts": 3, "backoff_s": 0.1},
                 # a night window that is not now, whenever the suite runs (the tests that want one set it)
                 "quiet": {"night": _window_around(datetime.now(timezone.utc) + timedelta(hours=12), 60, 60,
                                                   "Asia/Shanghai")}}, **settings)
    notify.set_config(park, body)
    return park


def _window_around(at, before_s, after_s, tz_name):
    tz = domain.zone(tz_name)
    return {"start": (at - timedelta(seconds=before_s)).astimezone(tz).strftime("%H:%M:%S"),
            "end": (at + timedelta(seconds=after_s)).astimezone(tz).strftime("%H:%M:%S")}


def publish(broker, park, event_type, data, source="volunteers", subject="s1", envelope=None):
    envelope = envelope or new_event(event_type, source=source, park_id=park, subject=subject, data=data)
    broker.publish("{}.events".format(source), event_type, envelope)
    return envelope


def offered(broker, park, responder_id, summary="宿舍楼下篮球场的灯坏了", **kw):
    return publish(broker, park, "task.offered", dict(domain.EXAMPLES["task.offered"], responder_id=responder_id,
                                                      summary=summary), **kw)


def log_of(notify, park, **query):
    return notify.deliveries(park, **query)["deliveries"]


def statuses(lines, channel):
    return [line["status"] for line in lines if line["channel"] == channel]


def wait_status(notify, park, recipient, channel, status, count=1, timeout=15):
    return wait_for(lambda: len([s for s in statuses(log_of(notify, park, recipient_id=recipient), channel)
                                 if s == status]) >= count and log_of(notify, park, recipient_id=recipient),
                    timeout=timeout, what="{} {} {} on {}".format(count, status, recipient, channel))


def person(notify, park, rid, channels, **fields):
    addresses = {"sms": "13812345678", "email": rid + "@mail.example.cn", "wechat": "oAbC" + rid.replace("-", "_"),
                 "webhook": "http://127.0.0.1:{}/webhook/{}".format(fields.pop("port", 1), rid)}
    body = dict({"addresses": {c: addresses[c] for c in channels}, "channels": list(channels)}, **fields)
    return notify.put_recipient(park, rid, body)


# channels against their peers ---------------------------------------------------------------
@pytest.mark.parametrize("sms", ["aliyun", "tencent"])
def test_each_channel_reaches_its_peer_in_the_providers_format(notify, peers, broker, sms):
    park = new_park(notify, peers, sms=sms)
    for rid, channel in (("p-sms", "sms"), ("p-mail", "email"), ("p-wx", "wechat"), ("p-hook", "webhook")):
        person(notify, park, rid + sms, [channel], port=peers.http_port)
        offered(broker, park, rid + sms)
    for rid, channel in (("p-sms", "sms"), ("p-mail", "email"), ("p-wx", "wechat"), ("p-hook", "webhook")):
        lines = wait_status(notify, park, rid + sms, channel, "sent")
        assert statuses(lines, "inapp") == ["sent"]
        assert statuses(lines, channel) == ["queued", "sending", "sent"]
    sms_requests = [r for r in peers.requests("/" + sms) if "13812345678" in str(r["body"])]
    assert sms_requests and all(r["verdict"] == "ok" for r in sms_requests), sms_requests
    assert "宿舍楼下篮球场的灯坏了" in str(sms_requests[-1]["body"])
    sent = [r for r in peers.requests("/wechat/cgi-bin/message/template/send")
            if r["body"]["touser"] == "oAbCp_wx" + sms]
    assert [r["verdict"] for r in sent] == ["ok"]
    assert sent[0]["body"]["data"]["thing1"]["value"] == "新的服务任务"
    assert len(sent[0]["body"]["data"]["thing2"]["value"]) <= 20  # WeChat's limit on a thing keyword
    hooks = [r for r in peers.requests("/webhook/p-hook" + sms)]
    assert [r["verdict"] for r in hooks] == ["ok"]
    assert hooks[0]["body"]["type"] == "task.offered" and hooks[0]["body"]["recipient_id"] == "p-hook" + sms
    mails = [m for m in peers.mails() if m["to"] == ["p-mail{}@mail.example.cn".format(sms)]]
    assert len(mails) == 1 and mails[0]["subject"] == "新的服务任务"
    assert "宿舍楼下篮球场的灯坏了" in mails[0]["body"] and mails[0]["notice_id"].endswith(":email")


def test_a_provider_that_checks_the_signature_refuses_a_wrong_secret_and_the_notice_says_why(notify, peers, broker):
    channels = peers.channels("tencent")
    channels["sms"]["secret_key"] = "not-the-secret-at-all"
    park = new_park(notify, peers, channels=channels)
    person(notify, park, "p-1", ["sms"])
    offered(broker, park, "p-1")
    lines = wait_status(notify, park, "p-1", "sms", "gave_up")
    failed = [line for line in lines if line["status"] == "failed"]
    # a signature failure will not pass on a retry: one attempt, then given up
    assert len(failed) == 1 and "AuthFailure.SignatureFailure" in failed[0]["reason"]
    assert "gave up after 1 attempt" in failed[0]["reason"]


# quiet hours, critical notices ---------------------------------------------------------------
def test_quiet_hours_defer_a_notice_until_the_window_opens_and_a_critical_one_goes_at_once(notify, peers, broker):
    now = datetime.now(timezone.utc)
    park = new_park(notify, peers, quiet={"night": _window_around(now, 60, 6, "Asia/Shanghai")})
    person(notify, park, "sleeper", ["sms"])
    offered(broker, park, "sleeper")
    publish(broker, park, "emergency.called_out", dict(domain.EXAMPLES["emergency.called_out"],
                                                       responder_id="sleeper"))
    lines = wait_status(notify, park, "sleeper", "sms", "sent")
    critical = [line for line in lines if line["type"] == "emergency.called_out" and line["channel"] == "sms"]
    normal = [line for line in lines if line["type"] == "task.offered" and line["channel"] == "sms"]
    assert [line["status"] for line in critical] == ["queued", "sending", "sent"]
    assert [line["status"] for line in normal] == ["deferred"]
    until = datetime.fromisoformat(normal[0]["until"])
    assert until > datetime.now(timezone.utc)  # still quiet while the critical one went out
    lines = wait_status(notify, park, "sleeper", "sms", "sent", count=2, timeout=20)
    sent = [line for line in lines if line["type"] == "task.offered" and line["channel"] == "sms"
            and line["status"] == "sent"]
    assert datetime.fromisoformat(sent[0]["at"]) >= until


def test_a_night_shift_worker_is_not_messaged_while_asleep_by_day(notify, peers, broker):
    # a zone where it is now about 09:00, so a night shift 22:00-07:00 ended two hours ago
    utc_hour = datetime.now(timezone.utc).hour
    offset = (9 - utc_hour) % 24
    offset = offset - 24 if offset > 12 else offset
    tz_name = "Etc/GMT{:+d}".format(-offset)  # the Etc zones count the other way
    park = new_park(notify, peers, timezone=tz_name, quiet={"night": {"start": "02:00", "end": "03:00"}})
    shifts = [{"day": d, "start": "22:00", "end": "07:00", "overnight": True} for d in domain.DAYS]
    person(notify, park, "night-worker", ["wechat"], shifts=shifts)
    person(notify, park, "day-worker", ["wechat"], shifts=[{"day": d, "start": "08:00", "end": "17:00"}
                                                            for d in domain.DAYS])
    offered(broker, park, "night-worker")
    offered(broker, park, "day-worker")
    day = wait_status(notify, park, "day-worker", "wechat", "sent")
    night = wait_status(notify, park, "night-worker", "wechat", "deferred")
    assert statuses(day, "wechat") == ["queued", "sending", "sent"]
    (deferred,) = [line for line in night if line["channel"] == "wechat"]
    local = datetime.fromisoformat(deferred["until"]).astimezone(domain.zone(tz_name))
    assert (local.hour, local.minute) == (15, 30)  # 07:00 + 30 minutes to settle + 8 hours asleep
    assert deferred["reason"] == "quiet hours"


# duplicates, retries, fallback -----------------------------------------------------------------
def test_a_redelivered_event_makes_one_notice_per_recipient_and_channel(notify, peers, broker):
    park = new_park(notify, peers)
    person(notify, park, "dup-1", ["email"])
    envelope = offered(broker, park, "dup-1")
    for _ in range(3):
        publish(broker, park, "task.offered", None, envelope=envelope)
    wait_status(notify, park, "dup-1", "email", "sent")
    wait_for(lambda: broker.depth("notify--task.offered") == 0, what="the redeliveries consumed")
    notify.send_due(park)
    lines = log_of(notify, park, source_id=envelope["id"])
    assert sorted((line["channel"], line["status"]) for line in lines) == [
        ("email", "queued"), ("email", "sending"), ("email", "sent"), ("inapp", "sent")]
    assert len([m for m in peers.mails() if m["to"] == ["dup-1@mail.example.cn"]]) == 1
    assert len(notify.inbox(park, "dup-1")) == 1


def test_a_provider_answering_500_is_retried_with_backoff_then_the_next_channel_takes_over(notify, peers, broker):
    channels = peers.channels()
    channels["sms"]["retry"] = {"attempts": 2, "backoff_s": 0.3}  # the SMS provider's own; the park's is 3 tries
    park = new_park(notify, peers, channels=channels)
    person(notify, park, "fb-1", ["sms", "email"])
    peers.fail("/aliyun", status=500, times=2)
    envelope = offered(broker, park, "fb-1")
    lines = wait_status(notify, park, "fb-1", "email", "sent", timeout=20)
    sms = [line for line in lines if line["channel"] == "sms"]
    assert [line["status"] for line in sms] == ["queued", "sending", "failed", "sending", "failed"]
    assert "HTTP 500" in sms[2]["reason"] and sms[2]["until"]
    assert "gave up after 2 attempts" in sms[4]["reason"]
    retry_gap = datetime.fromisoformat(sms[3]["at"]) - datetime.fromisoformat(sms[2]["at"])
    assert retry_gap >= timedelta(seconds=0.3)
    email = [line for line in lines if line["channel"] == "email"]
    assert [line["status"] for line in email] == ["queued", "sending", "sent"]
    assert email[0]["reason"] == "fallback from sms"
    assert [m["notice_id"] for m in peers.mails() if m["to"] == ["fb-1@mail.example.cn"]] == [
        domain.notice_id(envelope["id"], "fb-1", "email")]


def test_an_answer_the_adapter_cannot_read_fails_that_attempt_alone_and_the_retry_sends(notify, peers, broker):
    # The SMS provider answers 200 with a JSON array (a proxy's error page, an API out of spec):
    # the adapter trips over it. That attempt fails with the error as its reason and is retried
    # after the backoff, like any provider trouble; the pass it was in goes on (the webhook sent
    # beside it), and nothing waits for the claim of a vanished send to time out (120 s).
    park = new_park(notify, peers)
    person(notify, park, "odd-1", ["sms"])
    person(notify, park, "odd-2", ["webhook"], port=peers.http_port)
    peers.fail("/aliyun", status=200, times=1, body=["not", "an", "object"])
    offered(broker, park, "odd-1")
    offered(broker, park, "odd-2")
    lines = wait_status(notify, park, "odd-1", "sms", "sent", timeout=20)
    assert statuses(lines, "sms") == ["queued", "sending", "failed", "sending", "sent"]
    failed = [line for line in lines if line["status"] == "failed"][0]
    assert "AttributeError" in failed["reason"] and failed["until"], failed
    wait_status(notify, park, "odd-2", "webhook", "sent", timeout=5)
    assert [r["verdict"] for r in peers.requests("/aliyun") if r["at"] >= failed_at(failed) - 30][-2:] == [
        "injected 200", "ok"]


def failed_at(line):
    return datetime.fromisoformat(line["at"]).timestamp()


def test_a_channel_the_park_has_not_configured_is_skipped_with_a_reason(notify, peers, broker):
    channels = peers.channels()
    del channels["wechat"]
    park = new_park(notify, peers, channels=channels)
    person(notify, park, "sk-1", ["wechat", "email"])
    offered(broker, park, "sk-1")
    lines = wait_status(notify, park, "sk-1", "email", "sent")
    (skipped,) = [line for line in lines if line["channel"] == "wechat"]
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == "channel wechat is not configured for park {}".format(park)


# digests, rate limits ------------------------------------------------------------------------
def test_low_priority_notices_are_batched_into_one_digest(notify, peers, broker):
    digest_at = (datetime.now(timezone.utc) + timedelta(seconds=4)).replace(microsecond=0)
    park = new_park(notify, peers, digest={"at": digest_at.astimezone(domain.zone("Asia/Shanghai"))
                                           .strftime("%H:%M:%S")})
    person(notify, park, "dg-1", ["email"], member_id="M-dg-1")
    for amount in (2, 3, 5):
        publish(broker, park, "points.credited", dict(domain.EXAMPLES["points.credited"], member_id="M-dg-1",
                                                      amount=amount, balance_after=10 + amount), source="points")
    wait_for(lambda: len(notify.inbox(park, "dg-1")) == 3, what="three notices in the inbox at once")
    lines = wait_status(notify, park, "dg-1", "email", "sent", timeout=20)
    assert datetime.fromisoformat([x for x in lines if x["status"] == "sent" and x["channel"] == "email"][0]["at"]) \
        >= digest_at
    assert len([x for x in lines if x["status"] == "digested"]) == 3
    (mail,) = [m for m in peers.mails() if m["to"] == ["dg-1@mail.example.cn"]]
    assert mail["subject"] == "今日汇总（3 条）"
    assert all("获得 {} 分".format(a) in mail["body"] for a in (2, 3, 5))


def _webhook_arrivals(notify, peers, broker, prefix, limit, count):
    """When the peer received ``count`` webhook sends of a park limited to ``limit`` a second."""
    park = new_park(notify, peers, rate_limits={"webhook": limit})
    for i in range(count):
        person(notify, park, "{}-{}".format(prefix, i), ["webhook"], port=peers.http_port)
        offered(broker, park, "{}-{}".format(prefix, i))
    for i in range(count):
        wait_status(notify, park, "{}-{}".format(prefix, i), "webhook", "sent", timeout=30)
    arrivals = sorted(r["at"] for r in peers.requests("/webhook/{}-".format(prefix)))
    assert len(arrivals) == count
    return arrivals


def test_a_park_rate_limit_spreads_sends_over_seconds(notify, peers, broker):
    arrivals = _webhook_arrivals(notify, peers, broker, "rl", 2, 6)
    # two a second, in whole seconds: six sends take three windows, and any one second of
    # time overlaps at most two windows, so holds at most four sends
    assert arrivals[-1] - arrivals[0] >= 1.0, arrivals
    assert all(arrivals[i + 4] - arrivals[i] >= 1.0 for i in range(2)), arrivals


def test_a_park_rate_limit_paces_sends_within_each_second(notify, peers, broker):
    # five a second, one every 0.2 s: never a burst of the second's five at its start, which
    # a provider counting seconds of its own (not ours) would see as up to ten in one
    arrivals = _webhook_arrivals(notify, peers, broker, "pace", 5, 15)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert statistics.median(gaps) >= 0.15, gaps  # a burst's gaps are a few milliseconds
    # any one second of time holds at most seven (the limit, and one at each of its edges)
    assert all(arrivals[i + 7] - arrivals[i] >= 1.0 for i in range(len(arrivals) - 7)), arrivals


def test_a_park_whose_provider_is_slow_holds_no_other_parks_sends(notify, peers, broker):
    # A park's webhook receiver takes 3 s to answer (inside the channel's 5 s timeout), so that
    # park's pass of the send loop is 3 s long. Another park's notice, offered while it waits,
    # reaches its own receiver within 1.5 s: the loop's next second does not wait for the slow
    # pass (it did when each second's passes were waited for together).
    peers.slow("/webhook/stuck-", 3.0)
    stuck = new_park(notify, peers, prefix="s")
    person(notify, stuck, "stuck-1", ["webhook"], port=peers.http_port)
    other = new_park(notify, peers, prefix="t")
    person(notify, other, "meanwhile-1", ["webhook"], port=peers.http_port)
    offered(broker, stuck, "stuck-1")
    (held,) = wait_for(lambda: peers.requests("/webhook/stuck-"), timeout=30, what="the slow receiver asked")
    offered_at = time.time()
    assert offered_at - held["at"] < 1.0, "the slow receiver was asked too long ago to show anything"
    offered(broker, other, "meanwhile-1")
    (arrival,) = wait_for(lambda: peers.requests("/webhook/meanwhile-"), timeout=30, what="the other park's send")
    assert arrival["at"] - offered_at <= 1.5, arrival["at"] - offered_at
    assert arrival["at"] < held["at"] + 3.0  # while the slow park's pass still waited
    wait_status(notify, stuck, "stuck-1", "webhook", "sent")  # and the slow one's is sent all the same


def test_each_park_sends_at_its_own_limit_and_a_critical_notice_elsewhere_is_not_held(notify, peers, broker):
    # Three parks each with twelve webhook sends at 4 a second. Each pass of the send loop visits
    # every park at once, so each park sends its own 4 a second whatever the others send (visited
    # in turn, a park waited for those before it to pace their second and got what was left of
    # it), and a critical broadcast in a fourth park (named to come last in the parks' order)
    # reaches its provider within 1.5 s of the request while they all send.
    flooding = [new_park(notify, peers, prefix="a", rate_limits={"webhook": 4}) for _ in range(3)]
    for p, park in enumerate(flooding):
        for i in range(12):
            person(notify, park, "flood{}-{}".format(p, i), ["webhook"], port=peers.http_port)
    for p, park in enumerate(flooding):
        for i in range(12):
            offered(broker, park, "flood{}-{}".format(p, i))
    wait_for(lambda: all(peers.requests("/webhook/flood{}-".format(p)) for p in range(3)), timeout=30,
             what="every flooding park sending")
    park = new_park(notify, peers, prefix="z")
    person(notify, park, "on-call", ["webhook"], port=peers.http_port)
    started = time.time()
    notify.broadcast(park, {"title": "紧急通知", "body": "山体滑坡预警，请勿前往后山。", "critical": True,
                            "actor": "desk-1"}, idempotency_key="slide-1")
    (arrival,) = wait_for(lambda: peers.requests("/webhook/on-call"), timeout=30, what="the critical notice sent")
    assert arrival["at"] - started <= 1.5, arrival["at"] - started
    sent = wait_for(lambda: (lambda s: all(len(a) == 12 for a in s) and s)(
        [sorted(r["at"] for r in peers.requests("/webhook/flood{}-".format(p))) for p in range(3)]),
        timeout=60, what="every flooding park's twelve sends")
    # twelve at four a second: three windows of a second, the first and last partly
    for arrivals in sent:
        assert arrivals[-1] - arrivals[0] <= 3.5, [round(at - arrivals[0], 2) for at in arrivals]
    assert any(at > arrival["at"] for arrivals in sent for at in arrivals)  # they were still sending
    # what an SRE sees: each send's lag past its due time, per park and priority
    lag = lambda park, what: REGISTRY.get_sample_value(  # noqa: E731
        "lamplight_notice_send_lag_seconds_" + what, {"park": park, "channel": "webhook", "priority": "critical"})
    assert lag(park, "count") == 1 and lag(park, "sum") <= 1.5
    waited = [REGISTRY.get_sample_value("lamplight_notice_send_lag_seconds_sum", {
        "park": p, "channel": "webhook", "priority": "normal"}) for p in flooding]
    assert all(w is not None and w >= 12 * 1.0 for w in waited), waited  # twelve at 4/s: about 1.4 s each


def test_the_send_loop_reads_no_queue_of_a_park_with_nothing_due(notify, peers, broker, db):
    # Eight parks send a notice each and go quiet. Passes of the loop (five a second here) then
    # read none of their queues: each park's alarm waits for its next send (lamplight.alarms).
    # Asking every park with a queue on every pass read 3 times per park and pass: 240 in 2 s.
    parks = [new_park(notify, peers, prefix="q") for _ in range(8)]
    for park in parks:
        person(notify, park, "w", ["webhook"], port=peers.http_port)
        offered(broker, park, "w")
    for park in parks:
        wait_status(notify, park, "w", "webhook", "sent")
    time.sleep(1.0)  # the passes that send the last of them and settle their alarms
    assert finds_during(2.0, "notify", "pending") == 0
    # rung with nothing due (as every park is in the loop's rounds), each park is visited once and
    # its queue read once: its soonest entry, not one read per priority and the next due time
    alarms = db("notify")[ALARMS]
    before = finds("notify", "pending")
    for park in parks:
        alarms.update_one({"_id": "{}:{}".format(SEND_LOOP, park)}, {"$min": {"at": utcnow()}, "$inc": {"v": 1}})
    wait_for(lambda: alarms.count_documents({"_id": {"$in": ["{}:{}".format(SEND_LOOP, p) for p in parks]},
                                             "at": {"$lt": NEVER}}) == 0, timeout=5, what="the visits settled")
    time.sleep(0.5)
    assert finds("notify", "pending") - before == len(parks)
    # and a park that goes quiet is woken by its next notice
    offered(broker, parks[0], "w", subject="s2")
    wait_status(notify, parks[0], "w", "webhook", "sent", count=2)


@pytest.mark.parametrize("sms", ["aliyun", "tencent"])
def test_a_broadcasts_sms_go_many_numbers_to_a_request_each_once_within_the_limit(notify, peers, broker, sms):
    # 230 recipients, 23 of them reading English: the same text goes to up to 100 (Aliyun) or 200
    # (Tencent) numbers a request, at the park's limit of 120 a second; each number once, each
    # notice's own line in the log. Tencent answers each number apart: one it cannot reach fails
    # alone (for good: its number is wrong) while the rest of its request is sent.
    park = new_park(notify, peers, sms=sms, rate_limits={"sms": 120})
    bad = "13800001234" if sms == "tencent" else None
    numbers = {}
    for i in range(230):
        number = bad if bad and i == 7 else "139{:08d}".format(i)
        numbers["w-{}".format(i)] = number
        notify.put_recipient(park, "w-{}".format(i), {"addresses": {"sms": number}, "channels": ["sms"],
                                                       "locale": "en" if i % 10 == 0 else "zh-CN"})
    started = time.time()
    accepted = notify.broadcast(park, {"title": "紧急通知", "body": "暴雨红色预警，请勿外出。", "critical": True,
                                       "actor": "desk-1"}, idempotency_key="sms-batch")
    wait_for(lambda: notify.get_broadcast(park, accepted["broadcast_id"])["status"] == "done", what="the fan-out")

    def sent_numbers():
        got = []
        for request in peers.requests("/" + sms):
            if request["verdict"] == "ok" and request["at"] >= started:
                body = request["body"]
                got += body["PhoneNumbers"].split(",") if sms == "aliyun" else [
                    n[3:] for n in body["PhoneNumberSet"]]
        return got
    expected = sorted(n for n in numbers.values())
    wait_for(lambda: sorted(sent_numbers()) == expected, timeout=30, what="every number once")
    requests_ = [r for r in peers.requests("/" + sms) if r["verdict"] == "ok" and r["at"] >= started]
    sizes = [len(r["body"]["PhoneNumbers"].split(",")) if sms == "aliyun" else len(r["body"]["PhoneNumberSet"])
             for r in requests_]
    assert max(sizes) <= (100 if sms == "aliyun" else 120) and len(requests_) < 230 / 20, sizes
    # one text a request: the English recipients' requests hold only them
    for r in requests_:
        texts = {r["body"]["TemplateParam"]} if sms == "aliyun" else set(r["body"]["TemplateParamSet"])
        assert len(texts) == 1
    # within the limit: no second of the run holds more than 120 numbers (+ one request)
    by_second = {}
    for r, size in zip(requests_, sizes):
        by_second[int(r["at"])] = by_second.get(int(r["at"]), 0) + size
    assert max(by_second.values()) <= 120 + max(sizes), by_second
    for rid in ("w-1", "w-10", "w-229"):  # the peer has the request before notify has its answer
        wait_for(lambda: statuses(log_of(notify, park, recipient_id=rid), "sms")[-1] == "sent", timeout=10,
                 what="{}'s line sent".format(rid))
    if bad:
        wait_for(lambda: "failed" in statuses(log_of(notify, park, recipient_id="w-7"), "sms"), what="w-7 failed")
        line = [x for x in log_of(notify, park, recipient_id="w-7") if x["status"] == "failed"][-1]
        assert "IncorrectPhoneNumber" in line["reason"]
        wait_for(lambda: statuses(log_of(notify, park, recipient_id="w-8"), "sms")[-1] == "sent", timeout=10,
                 what="w-8 sent, in the request that failed w-7")


# recipients, events without one, broadcasts -----------------------------------------------------
def test_requester_and_followers_of_a_need_hear_of_it_and_an_opt_out_is_kept(notify, peers, broker):
    park = new_park(notify, peers)
    person(notify, park, "req-1", [], member_id="M-req-1")
    person(notify, park, "fol-1", [])
    person(notify, park, "fol-2", [], opted_out=["needs"])
    for follower in ("fol-1", "fol-2"):
        publish(broker, park, "need.followed", {"need_id": "need_x", "follower_id": follower, "following": True},
                source="needs", subject="need_x")
    wait_for(lambda: broker.depth("notify--need.followed") == 0, what="the follows consumed")
    event = publish(broker, park, "need.resolved", dict(domain.EXAMPLES["need.resolved"], need_id="need_x",
                                                        requester_member_id="M-req-1"), source="needs",
                    subject="need_x")
    wait_for(lambda: len(log_of(notify, park, source_id=event["id"])) == 3, what="three lines of the log")
    lines = {line["recipient_id"]: line for line in log_of(notify, park, source_id=event["id"])}
    assert lines["req-1"]["status"] == "sent" and lines["fol-1"]["status"] == "sent"
    assert lines["fol-2"]["status"] == "suppressed" and "opted out of topic needs" in lines["fol-2"]["reason"]
    assert "已办结" in notify.inbox(park, "req-1")[0]["title"]
    assert notify.inbox(park, "fol-2") == []


def test_an_event_with_nobody_to_tell_is_counted_and_not_retried(notify, peers, broker):
    park = new_park(notify, peers)
    publish(broker, park, "points.threshold_crossed", dict(domain.EXAMPLES["points.threshold_crossed"],
                                                          member_id="M-nobody"), source="points")
    wait_for(lambda: broker.depth("notify--points.threshold_crossed") == 0, what="the event consumed")
    assert broker.depth("notify--points.threshold_crossed.dlq") == 0
    assert broker.depth("lamplight.delay.50") == 0
    assert log_of(notify, park, recipient_id="M-nobody") == []


def test_a_critical_broadcast_reaches_a_team_on_every_channel_past_quiet_hours_and_opt_outs(notify, peers, broker):
    now = datetime.now(timezone.utc)
    park = new_park(notify, peers, quiet={"night": _window_around(now, 60, 600, "Asia/Shanghai")})
    person(notify, park, "t-1", ["sms", "email"], teams=["red"], opted_out=["broadcast"])
    person(notify, park, "t-2", [], teams=["red"])
    person(notify, park, "other", ["email"], teams=["blue"])
    publish(broker, park, "volunteer.registered", {"responder_id": "rsp-red", "kind": "volunteer",
                                                   "member_id": None, "teams": ["red"], "zone": None,
                                                   "active": True, "change": "registered"})
    wait_for(lambda: broker.depth("notify--volunteer.registered") == 0, what="the volunteer projected")
    body = {"title": "防汛紧急通知", "body": "北区仓库进水，红队全体到北门集合。", "critical": True,
            "audience": {"kind": "team", "value": "red"}, "actor": "desk-1"}
    accepted = notify.broadcast(park, body, idempotency_key="flood-1")
    assert accepted["created"] is True and accepted["status"] == "fanning_out"
    assert notify.broadcast(park, body, idempotency_key="flood-1")["created"] is False
    with pytest.raises(Conflict):
        notify.broadcast(park, dict(body, body="别的内容"), idempotency_key="flood-1")
    done = wait_for(lambda: (lambda b: b["status"] == "done" and b)(notify.get_broadcast(park,
                                                                                         accepted["broadcast_id"])),
                    what="the fan-out")
    assert done["recipients"] == 3  # t-1, t-2 and the volunteer of the red team; not "other"
    lines = wait_status(notify, park, "t-1", "email", "sent")
    assert statuses(lines, "sms") == ["queued", "sending", "sent"]  # critical: every channel, now
    assert notify.inbox(park, "t-2")[0]["title"] == "防汛紧急通知"
    assert notify.inbox(park, "rsp-red")[0]["body"] == "北区仓库进水，红队全体到北门集合。"
    assert notify.inbox(park, "other") == []


def test_emergency_mode_alerts_the_whole_park(notify, peers, broker):
    park = new_park(notify, peers)
    for rid in ("w-1", "w-2"):
        person(notify, park, rid, [])
    publish(broker, park, "emergency.declared", dict(domain.EXAMPLES["emergency.declared"], reason="暴雨红色预警"))
    wait_for(lambda: all(notify.inbox(park, rid) for rid in ("w-1", "w-2")), what="the alert in every inbox")
    (notice,) = notify.inbox(park, "w-1")
    assert notice["title"] == "紧急通知" and "暴雨红色预警" in notice["body"] and notice["priority"] == "critical"


def test_a_broadcast_whose_fan_out_died_is_finished_by_the_send_loop_when_its_alarm_rings(
        notify, peers, broker, mongo_client, db_prefix):
    # A fan-out that died with its process leaves its broadcast "fanning_out". Storing the
    # broadcast rang the park's send alarm for when it would count as abandoned (5 minutes
    # after it was asked for; here that time is past), so the loop finishes it on its next
    # pass, not at its next round of every park (SWEEP_ROUND_S) or housekeeping minute.
    park = new_park(notify, peers)
    person(notify, park, "w", ["webhook"], port=peers.http_port)
    store = NotifyStore(server_store(mongo_client, db_prefix, "notify", INDEXES, PARTITIONED), park)
    broadcast_id = "bc-died-" + uuid.uuid4().hex[:6]
    store.add_broadcast({
        "_id": broadcast_id, "broadcast_id": broadcast_id, "type": "broadcast.requested",
        "title": "停水通知", "body": "今晚22点起停水两小时。", "audience": {"kind": "park", "value": None},
        "critical": False, "channels": None, "actor": "desk-1", "fingerprint": "f",
        "requested_at": utcnow() - timedelta(minutes=6), "status": "fanning_out"})
    started = time.monotonic()
    wait_for(lambda: notify.get_broadcast(park, broadcast_id)["status"] == "done", timeout=10.0,
             what="the abandoned fan-out finished")
    assert time.monotonic() - started < 10.0
    assert notify.inbox(park, "w")[0]["title"] == "停水通知"


# templates, bad input ----------------------------------------------------------------------------
def test_a_template_that_would_not_render_is_refused_when_saved(notify, peers, broker):
    park = new_park(notify, peers)
    with pytest.raises(BadInput) as unknown:
        notify.put_template(park, "task.offered", "zh-CN", {"title": "任务", "body": "{{ summmary }}"})
    assert "body" in unknown.value.fields and "summmary" in unknown.value.message
    with pytest.raises(BadInput) as syntax:
        notify.put_template(park, "task.offered", "zh-CN", {"title": "{% if %}", "body": "x"})
    assert "title" in syntax.value.fields
    with pytest.raises(BadInput) as escape:
        notify.put_template(park, "task.offered", "zh-CN",
                            {"title": "x", "body": "{{ summary.__class__.__mro__[1].__subclasses__() }}"})
    assert "unsafe" in escape.value.message or "SecurityError" in escape.value.message
    saved = notify.put_template(park, "task.offered", "zh-CN", {
        "title": "【认领】{{ category }}", "body": "{{ summary }}，请于 {{ due_at | when }} 前处理"})
    assert saved["preview"]["title"] == "【认领】daily_life"
    offered(broker, park, "tp-1", summary="三号楼电梯停运")
    notice = wait_for(lambda: notify.inbox(park, "tp-1"), what="the notice")[0]
    assert notice["title"] == "【认领】daily_life" and notice["body"].startswith("三号楼电梯停运，请于 ")
    preview = notify.preview(park, {"key": "task.offered", "locale": "en"})
    assert preview["title"] == "New task offered"


def test_bad_recipients_and_configurations_are_refused_naming_the_field(notify, peers):
    park = new_park(notify, peers)
    with pytest.raises(BadInput) as no_address:
        notify.put_recipient(park, "x-1", {"channels": ["sms"]})
    assert "addresses" in no_address.value.fields
    with pytest.raises(BadInput) as phone:
        notify.put_recipient(park, "x-1", {"channels": ["sms"], "addresses": {"sms": "call me"}})
    assert phone.value.fields["addresses"]["sms"] == ["not a phone number"]
    with pytest.raises(BadInput) as shift:
        notify.put_recipient(park, "x-1", {"shifts": [{"day": "mon", "start": "22:00", "end": "06:00"}]})
    assert "overnight" in str(shift.value.fields)
    with pytest.raises(BadInput) as creds:
        notify.set_config(park, {"version": 2, "channels": {"sms": {"provider": "tencent", "endpoint": peers.base,
                                                                     "sign_name": "x", "template_code": "1"}}})
    assert set(creds.value.fields["channels"]["sms"]) == {"secret_id", "secret_key", "sdk_app_id"}
    with pytest.raises(Conflict):
        notify.set_config(park, {"version": 1})
    shown = notify.config(park)
    assert shown["channels"]["sms"]["access_key_secret"] == "********"
    assert notify.put_recipient(park, "x-2", {"channels": ["sms"], "addresses": {"sms": "13812345678"}})[
        "addresses"]["sms"] == "138****78"
