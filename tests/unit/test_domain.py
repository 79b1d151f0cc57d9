from datetime import datetime, timezone

import pytest

from services.needs import domain as needs
from services.notify import domain as notify
from services.points import domain as points

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
def test_a_need_accepted_before_a_field_was_added_matches_its_retry():
    body = {"kind": "micro_wish", "title": "路灯坏了", "grade": None}
    assert needs.submission_fingerprint(dict(body, zone=None)) == needs.fingerprint(body)
    assert needs.submission_fingerprint(dict(body, zone="dorms")) != needs.fingerprint(body)


def test_fingerprint_tells_bodies_apart_and_ignores_key_order():
    a = needs.fingerprint({"x": 1, "y": [1, 2]})
    assert a == needs.fingerprint({"y": [1, 2], "x": 1})
    assert a != needs.fingerprint({"x": 2, "y": [1, 2]})


def test_notice_is_keyed_by_event_recipient_and_channel():
    source = {"id": "evt_1", "type": "task.offered", "topic": "tasks", "priority": "normal", "subject": "t"}
    title, body = notify.render(*notify.DEFAULT_TEMPLATES[("task.offered", "zh-CN")],
                                {"summary": "路灯", "category": "daily_life", "due_at": "2026-11-28T08:00:00+00:00"})
    notice = notify.new_notice(source, "rsp_1", notify.INAPP, title, body, "zh-CN", NOW)
    assert notice["_id"] == "evt_1:rsp_1:inapp"
    assert "路灯" in notice["body"] and notice["title"] == "新的服务任务"


@pytest.mark.parametrize("balance,level", [(12, None), (10, None), (9, "reminder"), (7, "reminder"),
                                           (6, "red_warning"), (3, "yellow_alert"), (0, "handling"),
                                           (-2, "handling")])
def test_warning_ladder(balance, level):
    assert points.warning_level(balance) == level
