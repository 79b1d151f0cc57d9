"""Notify's pure rules: quiet hours that follow a roster, which channels a
notice takes and when, templates in their sandbox."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify import domain

SHANGHAI = domain.zone("Asia/Shanghai")
QUIET = {"night": {"start": "22:00", "end": "07:00"}, "sleep_hours": 8, "settle_minutes": 30}
NIGHT_SHIFT = [{"day": d, "start": "22:00", "end": "06:00", "overnight": True} for d in domain.DAYS]
DAY_SHIFT = [{"day": d, "start": "08:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
CONFIG = {"park_id": "p", "channels": {"sms": {"x": 1}, "email": {"x": 1}, "wechat": {"x": 1}},
          "quiet": QUIET, "digest": {"at": "20:00"}}


def local(y, m, d, hh, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


# quiet hours ---------------------------------------------------------------------------
def test_a_night_shift_worker_sleeps_by_day_and_is_reachable_in_the_evening():
    # Saturday 2026-11-21: the shift Friday 22:00 -> Saturday 06:00 ended; asleep 06:30-14:30
    assert domain.quiet_until(local(2026, 11, 21, 10), NIGHT_SHIFT, QUIET, SHANGHAI) == local(2026, 11, 21, 14, 30)
    assert domain.quiet_until(local(2026, 11, 21, 6, 15), NIGHT_SHIFT, QUIET, SHANGHAI) is None  # on the way home
    assert domain.quiet_until(local(2026, 11, 21, 17), NIGHT_SHIFT, QUIET, SHANGHAI) is None
    # the park's night window does not apply on a night at work
    assert domain.quiet_until(local(2026, 11, 21, 23), NIGHT_SHIFT, QUIET, SHANGHAI) is None
    assert domain.quiet_until(local(2026, 11, 21, 21, 45), NIGHT_SHIFT, QUIET, SHANGHAI) is None


def test_a_day_worker_and_someone_without_a_roster_keep_the_parks_night_window():
    for shifts in (DAY_SHIFT, []):
        assert domain.quiet_until(local(2026, 11, 20, 23), shifts, QUIET, SHANGHAI) == local(2026, 11, 21, 7)
        assert domain.quiet_until(local(2026, 11, 21, 3), shifts, QUIET, SHANGHAI) == local(2026, 11, 21, 7)
        assert domain.quiet_until(local(2026, 11, 21, 7, 30), shifts, QUIET, SHANGHAI) is None
        assert domain.quiet_until(local(2026, 11, 21, 13), shifts, QUIET, SHANGHAI) is None


def test_the_sleep_after_a_sunday_night_shift_follows_into_monday():
    sunday_night = [{"day": "sun", "start": "23:00", "end": "07:00", "overnight": True}]
    # Sunday 2026-11-22 23:00 -> Monday 07:00, then asleep 07:30-15:30 on Monday
    assert domain.quiet_until(local(2026, 11, 23, 9), sunday_night, QUIET, SHANGHAI) == local(2026, 11, 23, 15, 30)
    # on Sunday evening before the shift: the night window would begin at 22:00 but that night is worked
    assert domain.quiet_until(local(2026, 11, 22, 22, 30), sunday_night, QUIET, SHANGHAI) is None


def test_a_window_ends_early_when_the_next_shift_begins():
    early = [{"day": "sat", "start": "05:00", "end": "13:00"}]
    # Friday night's window would last to 07:00, but Saturday's shift starts at 05:00
    assert domain.quiet_until(local(2026, 11, 21, 3), early, QUIET, SHANGHAI) == local(2026, 11, 21, 5)


shift_strategy = st.builds(
    lambda day, start, length: {"day": day, "start": "{:02d}:{:02d}".format(start // 60, start % 60),
                                "end": "{:02d}:{:02d}".format(((start + length) % 1440) // 60, (start + length) % 60),
                                "overnight": start + length >= 1440},
    st.sampled_from(domain.DAYS), st.integers(0, 1439 // 15).map(lambda q: q * 15), st.integers(2, 14).map(
        lambda h: h * 60))


@settings(max_examples=300, deadline=None)
@given(shifts=st.lists(shift_strategy, max_size=6), minutes=st.integers(0, 14 * 24 * 60),
       sleep_hours=st.floats(1, 10), settle=st.floats(0, 90))
def test_quiet_hours_never_hold_a_notice_while_on_shift_and_end_for_good(shifts, minutes, sleep_hours, settle):
    shifts = [s for s in shifts if s["start"] != s["end"]]
    quiet = dict(QUIET, sleep_hours=sleep_hours, settle_minutes=settle)
    at = local(2026, 11, 16, 0) + timedelta(minutes=minutes)
    until = domain.quiet_until(at, shifts, quiet, SHANGHAI)
    windows, occurrences = domain.quiet_windows(at, shifts, quiet, SHANGHAI)
    on_shift = any(s <= at < e for s, e in occurrences)
    if on_shift:
        assert until is None
    if until is not None:
        assert until > at
        # at the end of the window the person can be reached: not a window that goes on
        assert domain.quiet_until(until, shifts, quiet, SHANGHAI) is None


def test_the_digest_goes_at_the_parks_hour_or_when_the_recipient_wakes():
    at = local(2026, 11, 21, 9)
    assert domain.next_digest_at(at, "20:00", [], QUIET, SHANGHAI) == local(2026, 11, 21, 20)
    assert domain.next_digest_at(local(2026, 11, 21, 21), "20:00", [], QUIET, SHANGHAI) == local(2026, 11, 22, 20)
    assert domain.next_digest_at(at, "23:00", [], QUIET, SHANGHAI) == local(2026, 11, 22, 7)  # not at night


def test_retries_back_off_doubling_up_to_a_cap():
    assert [domain.backoff_seconds(n, 2) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert domain.backoff_seconds(20, 2) == 300


# planning --------------------------------------------------------------------------------
def source(priority="normal", topic="tasks"):
    return {"id": "evt_1", "type": "task.offered", "topic": topic, "priority": priority, "subject": "t1"}


def profile(channels=("wechat", "sms", "email"), **fields):
    addresses = {"wechat": "oOPENID123", "sms": "13812345678", "email": "a@b.cn", "webhook": "http://x/y"}
    return dict({"_id": "r1", "locale": "zh-CN", "channels": list(channels),
                 "addresses": {c: addresses[c] for c in channels}, "opted_out": [], "shifts": []}, **fields)


def by_channel(records):
    return {r["channel"]: (r["status"], r.get("reason")) for r in records}


def test_a_normal_notice_takes_the_inbox_and_the_first_push_channel_keeping_the_rest_for_fallback():
    notices, records, pending = domain.plan(source(), profile(), ("t", "b"), CONFIG, local(2026, 11, 21, 10),
                                            SHANGHAI)
    assert [n["channel"] for n in notices] == ["inapp", "wechat"]
    assert by_channel(records) == {"inapp": ("sent", None), "wechat": ("queued", None)}
    assert [(p["channel"], p["remaining"]) for p in pending] == [("wechat", ["sms", "email"])]


def test_at_night_a_buzzing_channel_waits_a_mail_does_not_and_a_critical_notice_takes_every_channel_now():
    night = local(2026, 11, 21, 2)
    _, records, pending = domain.plan(source(), profile(), ("t", "b"), CONFIG, night, SHANGHAI)
    assert by_channel(records)["wechat"] == ("deferred", "quiet hours")
    assert pending[0]["due_at"] == local(2026, 11, 21, 7)
    _, records, pending = domain.plan(source(), profile(["email", "sms"]), ("t", "b"), CONFIG, night, SHANGHAI)
    assert by_channel(records)["email"] == ("queued", None)
    _, records, pending = domain.plan(source("critical", "emergency"), profile(opted_out=["emergency"]), ("t", "b"),
                                      CONFIG, night, SHANGHAI)
    assert sorted(p["channel"] for p in pending) == ["email", "sms", "wechat"]
    assert all(p["due_at"] == night and p["remaining"] == [] for p in pending)


def test_an_opted_out_topic_is_suppressed_with_its_reason_and_low_priority_waits_for_the_digest():
    notices, records, pending = domain.plan(source(topic="points"), profile(opted_out=["points"]), ("t", "b"),
                                            CONFIG, local(2026, 11, 21, 10), SHANGHAI)
    assert pending == [] and [n["shown"] for n in notices] == [False]
    assert records[0]["status"] == "suppressed" and "opted out of topic points" in records[0]["reason"]
    _, records, pending = domain.plan(source("low", "points"), profile(), ("t", "b"), CONFIG,
                                      local(2026, 11, 21, 10), SHANGHAI)
    assert pending[0]["kind"] == "digest" and pending[0]["due_at"] == local(2026, 11, 21, 20)


def test_a_channel_without_park_settings_is_skipped_with_a_reason():
    config = dict(CONFIG, channels={"email": {"x": 1}})
    notices, records, pending = domain.plan(source(), profile(["wechat", "email"]), ("t", "b"), config,
                                            local(2026, 11, 21, 10), SHANGHAI)
    assert by_channel(records)["wechat"] == ("skipped", "channel wechat is not configured for park p")
    assert [p["channel"] for p in pending] == ["email"]


def test_fallback_moves_the_notice_to_the_next_channel():
    notices, _, pending = domain.plan(source(), profile(), ("t", "b"), CONFIG, local(2026, 11, 21, 10), SHANGHAI)
    nxt, nxt_pending, line = domain.fallback(notices[1], pending[0]["remaining"], local(2026, 11, 21, 10, 5))
    assert nxt["_id"] == "evt_1:r1:sms" and nxt["fallback_of"] == "evt_1:r1:wechat"
    assert nxt_pending["remaining"] == ["email"] and line["reason"] == "fallback from wechat"


# templates ---------------------------------------------------------------------------------
def test_every_default_template_renders_its_example_in_both_locales():
    for key in domain.TEMPLATE_KEYS:
        for locale in domain.LOCALES:
            title, body = domain.check_template(key, *domain.DEFAULT_TEMPLATES[(key, locale)])
            assert title and body


@pytest.mark.parametrize("body,problem", [
    ("{{ nonsense }}", "nonsense"),
    ("{{ summary.__class__.__mro__ }}", "unsafe"),
    ("{% for x in %}", "does not parse"),
    ("{{ due_at | nofilter }}", "nofilter"),
])
def test_a_template_that_cannot_render_is_refused_naming_the_problem(body, problem):
    with pytest.raises(domain.NotifyRuleError) as refused:
        domain.check_template("task.offered", "标题", body)
    assert problem in refused.value.message and "body" in refused.value.fields


def test_times_render_in_the_parks_zone():
    _, body = domain.render("t", "{{ due_at | when }}", {"due_at": "2026-11-21T10:00:00+00:00"}, SHANGHAI)
    assert body == "11-21 18:00"


def test_a_template_is_compiled_once_per_process_and_each_render_gets_its_own_data():
    title, body = "{{ summary }}", "{{ due_at | when }} {{ summary }}"
    first = domain.compile_template(title, body)
    assert domain.compile_template(title, body)["body"] is first["body"]
    assert domain.render(title, body, {"summary": "a", "due_at": "2026-11-21T10:00:00+00:00"}, SHANGHAI) == \
        ("a", "11-21 18:00 a")
    assert domain.render(title, body, {"summary": "b", "due_at": "2026-11-21T10:00:00+00:00"}) == \
        ("b", "11-21 10:00 b")
    with pytest.raises(domain.NotifyRuleError):  # a failing parse is not kept as a success
        domain.compile_template("{% for x in %}", body)
    with pytest.raises(domain.NotifyRuleError):
        domain.compile_template("{% for x in %}", body)


def test_a_park_template_overrides_the_default_and_an_unknown_locale_falls_back_to_chinese():
    overrides = {("task.offered", "en"): ("Task!", "{{ summary }}")}
    assert domain.template_for("task.offered", "en", overrides) == ("Task!", "{{ summary }}")
    assert domain.template_for("task.offered", "fr", {}) == domain.DEFAULT_TEMPLATES[("task.offered", "zh-CN")]


def test_quiet_windows_use_the_recipients_timezone_not_utc():
    # 02:00 in Shanghai is 18:00 UTC the day before: quiet, until 07:00 Shanghai = 23:00 UTC
    at = datetime(2026, 11, 20, 18, 0, tzinfo=timezone.utc)
    assert domain.quiet_until(at, [], QUIET, SHANGHAI) == datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)
