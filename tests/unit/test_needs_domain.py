"""The needs lifecycle, clock, supervision ladder and echo-wall line as pure
rules (no servers)."""
from datetime import datetime, timedelta, timezone

import pytest

from services.needs import domain

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
LADDER = [{"level": "supervisor", "after_minutes": 0}, {"level": "park_admin", "after_minutes": 60}]
SUBMIT = {"category": "daily_life", "item": "wage_arrears", "grade": "urgent", "due_minutes": 24 * 60,
          "public_title": "欠薪"}


class Need:
    """A need driven through domain.apply, keeping its timeline like the store does."""

    def __init__(self):
        self.state = domain.initial_state(SUBMIT, T0)
        self.timeline = [{"action": "submit", "args": SUBMIT, "at": T0}]

    def do(self, action, at, **args):
        changes = domain.apply(self.state, action, args, at, T0)
        self.state.update(changes)
        self.timeline.append({"action": action, "args": args, "at": at})
        return changes

    def __getitem__(self, key):
        return self.state[key]


def hours(n):
    return T0 + timedelta(hours=n)


def test_the_happy_path_ends_closed_and_replays_to_the_same_state():
    need = Need()
    need.do("triage", hours(1), category="daily_life", item="wage_arrears", grade="urgent", due_minutes=1440,
            team="orange")
    need.do("assign", hours(2), responder_id="rsp_1", member_id="M1", task_id="t1")
    need.do("start", hours(3))
    need.do("resolve", hours(4), evaluation_days=7)
    need.do("evaluate", hours(5), rating=5, outcome="fixed")
    assert need["status"] == domain.CLOSED and need["closed_at"] == hours(5)
    assert need["evaluation"]["rating"] == 5 and need["member_id"] == "M1"
    assert domain.replay(need.timeline) == need.state


def test_an_illegal_change_is_refused_naming_the_allowed_ones():
    need = Need()
    with pytest.raises(domain.IllegalTransition) as refused:
        need.do("resolve", hours(1), evaluation_days=7)
    assert refused.value.status == domain.SUBMITTED
    assert set(refused.value.allowed) == {"triage", "escalate", "reject", "cancel", "link_duplicate"}
    assert "allowed now: triage" in str(refused.value)
    need.do("cancel", hours(1), reason="asked twice")
    with pytest.raises(domain.IllegalTransition, match="nothing"):
        need.do("triage", hours(2), category="x", grade="urgent", due_minutes=1)


def test_waiting_on_the_requester_pauses_the_clock():
    need = Need()
    need.do("triage", hours(1), category="daily_life", item=None, grade="urgent", due_minutes=1440, team="orange")
    need.do("wait", hours(2), reason="ask for the contract")
    assert not domain.is_overdue(need.state, hours(30))  # the clock is stopped while waiting
    assert domain.supervision_due(need.state, LADDER, hours(30)) == []
    need.do("resume", hours(12))
    assert need["status"] == domain.TRIAGED
    assert need["due_at"] == hours(24 + 10) and need["paused_seconds"] == 10 * 3600
    assert not domain.is_overdue(need.state, hours(33))
    assert domain.is_overdue(need.state, hours(34))


def test_sweep_at_is_the_due_time_while_the_clock_runs_the_evaluation_deadline_once_resolved_else_never():
    # the sweep reads a park's due needs and the next time one is due as ranges of sweep_at alone
    need = Need()
    assert need["sweep_at"] == hours(24)
    need.do("triage", hours(1), category="daily_life", item=None, grade="routine", due_minutes=120, team="orange")
    assert need["sweep_at"] == hours(2)  # re-graded: the new time limit
    need.do("wait", hours(1.5), reason="ask for the contract")
    assert need["sweep_at"] == domain.NO_SWEEP  # the clock is stopped
    need.do("resume", hours(2.5))
    assert need["sweep_at"] == need["due_at"] == hours(3)
    need.do("overdue", hours(4), level="supervisor")
    assert need["sweep_at"] == hours(3)  # late: due from then on
    need.do("assign", hours(5), responder_id="rsp_1", member_id="M1", task_id="t1")
    need.do("resolve", hours(6), evaluation_days=7)
    assert need["sweep_at"] == need["evaluation_due"] == hours(6 + 7 * 24)
    need.do("evaluate", hours(7), rating=2, outcome="not_fixed", due_minutes=60)
    assert need["status"] == domain.REOPENED and need["sweep_at"] == hours(8)
    need.do("cancel", hours(7.5), reason="moved away")
    assert need["sweep_at"] == domain.NO_SWEEP
    assert domain.replay(need.timeline) == need.state


def test_overdue_is_marked_once_per_crossing_and_the_ladder_climbs():
    need = Need()
    assert domain.supervision_due(need.state, LADDER, hours(23)) == []
    assert domain.supervision_due(need.state, LADDER, hours(24)) == [("overdue", "supervisor")]
    need.do("overdue", hours(24), level="supervisor")
    assert domain.supervision_due(need.state, LADDER, hours(24.5)) == []  # once per crossing
    assert domain.supervision_due(need.state, LADDER, hours(25)) == [("supervise", "park_admin")]
    need.do("supervise", hours(25), level="park_admin")
    assert domain.supervision_due(need.state, LADDER, hours(90)) == []  # top of the ladder
    with pytest.raises(ValueError):
        need.do("overdue", hours(26), level="supervisor")
    # a sweep that comes late climbs every rung it missed at once
    late = Need()
    assert domain.supervision_due(late.state, LADDER, hours(30)) == [("overdue", "supervisor"),
                                                                    ("supervise", "park_admin")]


def test_the_sweep_is_rung_for_a_sooner_time_limit_rung_or_evaluation_deadline_and_when_overdue_ends():
    need = Need()
    assert domain.sweep_wanted(None, need.state, T0) == hours(24)  # submitted: at its time limit
    before = dict(need.state)
    need.do("overdue", hours(24), level="supervisor")
    assert domain.next_rung_at(need.state, LADDER, hours(24)) == hours(25)
    assert domain.next_rung_at(need.state, LADDER, hours(25)) is None  # the top of the ladder
    # the sweep's own write of a late need wants one more look, which finds its next rung
    assert domain.sweep_wanted(before, need.state, hours(24)) == hours(24)
    need.do("triage", hours(24.5), category="daily_life", item="wage_arrears", grade="urgent", due_minutes=1440,
            team="orange")  # the same time limit: still overdue
    need.do("assign", hours(26), responder_id="rsp_1", member_id="M1", task_id="t1")
    before = dict(need.state)
    need.do("resolve", hours(27), evaluation_days=7)
    assert need["status"] == domain.RESOLVED
    # resolved: no longer overdue, so at once (the park's overdue count), and at its evaluation deadline
    assert domain.sweep_wanted(before, need.state, hours(27)) == hours(27)
    # a write that wants the sweep no sooner than the need did rings nothing (it rang for that)
    assert domain.sweep_wanted(dict(need.state), need.state, hours(27)) is None
    assert domain.sweep_wanted(dict(need.state, evaluation_due=hours(400)), need.state, hours(27)) == \
        need["evaluation_due"] > hours(27)
    paused = Need()
    paused.do("triage", hours(1), category="daily_life", item=None, grade="urgent", due_minutes=1440, team="orange")
    paused.do("wait", hours(1), reason="问清情况")
    assert domain.sweep_wanted(None, paused.state, hours(1)) is None  # the clock stopped


def test_a_new_due_time_is_a_new_crossing():
    need = Need()
    need.do("overdue", hours(24), level="supervisor")
    need.do("triage", hours(25), category="daily_life", item=None, grade="routine", due_minutes=7 * 1440,
            team="orange")  # re-graded: due 7 days after submission
    assert need["due_at"] == T0 + timedelta(days=7)
    assert domain.supervision_due(need.state, LADDER, hours(100)) == []
    assert domain.supervision_due(need.state, LADDER, T0 + timedelta(days=7)) == [("overdue", "supervisor")]
    assert need["overdue_count"] == 1


def test_not_fixed_reopens_to_the_same_team_with_a_fresh_time_limit():
    need = Need()
    need.do("triage", hours(1), category="daily_life", item="wage_arrears", grade="urgent", due_minutes=1440,
            team="orange")
    need.do("assign", hours(2), responder_id="rsp_1", task_id="t1")
    need.do("resolve", hours(3), evaluation_days=7)
    changes = need.do("evaluate", hours(4), rating=1, outcome="not_fixed", due_minutes=1440)
    assert domain.events_for("evaluate", changes) == ["need.evaluated", "need.reopened"]
    assert need["status"] == domain.REOPENED and need["team"] == "orange"
    assert need["due_at"] == hours(28) and need["reopen_count"] == 1 and need["routing"] == 2
    assert need["evaluation"] == {"rating": 1, "outcome": "not_fixed", "at": hours(4)}
    assert "assign" in domain.allowed_actions(need["status"])
    assert domain.replay(need.timeline) == need.state


def test_no_answer_within_the_window_closes_by_default():
    need = Need()
    need.do("triage", hours(1), category="daily_life", item=None, grade="urgent", due_minutes=1440, team="orange")
    need.do("assign", hours(2), unit="劳动监察大队")
    need.do("resolve", hours(3), evaluation_days=7)
    assert need["evaluation_due"] == hours(3 + 7 * 24)
    assert not domain.evaluation_lapsed(need.state, hours(3 + 7 * 24 - 1))
    assert domain.evaluation_lapsed(need.state, hours(3 + 7 * 24))
    changes = need.do("close_unevaluated", hours(3 + 7 * 24))
    assert need["status"] == domain.CLOSED and need["evaluation"]["outcome"] == "no_answer"
    assert domain.events_for("close_unevaluated", changes) == ["need.closed"]
    assert not domain.is_overdue(need.state, hours(1000))  # a closed need is never overdue


def test_a_rejection_names_where_the_requester_should_go():
    need = Need()
    need.do("reject", hours(1), reason="属于区人社局职责", redirect_to="区人社局劳动监察大队",
            public_note="已转交区人社局")
    assert need["status"] == domain.REJECTED
    assert need["rejection"] == {"reason": "属于区人社局职责", "redirect_to": "区人社局劳动监察大队"}
    assert need["public_notes"][-1]["note"] == "已转交区人社局"


def test_the_wall_title_hides_names_phones_and_the_enterprise():
    requester = {"name": "王建国", "phone": "13900002222", "enterprise": "某建材有限公司"}
    title = domain.public_title(
        "王建国：某建材有限公司拖欠三个月工资，电话13900002222，身份证420102199001011234，李师傅作证", requester)
    for secret in ("王建国", "13900002222", "2222", "某建材有限公司", "420102199001011234", "李师傅"):
        assert secret not in title
    assert "拖欠三个月工资" in title and "*师傅" in title


def test_the_wall_line_is_an_allow_list():
    need = dict(Need().state, need_id="need_1", version=1, kind="urgent_matter", title="王建国被拖欠工资",
                requester={"name": "王建国", "phone": "13900002222"}, details={"employer": "某建材"},
                submitted_at=T0, updated_at=T0, public_title="**被拖欠工资",
                timeline=[{"at": T0, "action": "submit", "from": None, "status": "submitted", "note": "内部备注",
                           "public_note": None}])
    line = domain.wall_entry(need)
    flat = repr(line)
    for secret in ("王建国", "13900002222", "某建材", "内部备注", "employer"):
        assert secret not in flat
    assert line["notes"] == [{"at": T0, "status": "submitted", "note": "已受理"}]


def test_statistics_count_resolve_time_overdue_rate_and_satisfaction():
    rows = [
        {"status": "closed", "category": "care", "grade": "urgent", "submitted_at": T0, "resolved_at": hours(10),
         "paused_seconds": 3600 * 2, "overdue_count": 0, "evaluation": {"rating": 5, "outcome": "fixed"}},
        {"status": "closed", "category": "care", "grade": "routine", "submitted_at": T0, "resolved_at": hours(30),
         "paused_seconds": 0, "overdue_count": 1, "evaluation": {"rating": 2, "outcome": "partly_fixed"}},
        {"status": "triaged", "category": "daily_life", "grade": "routine", "submitted_at": T0, "overdue_count": 1},
        {"status": "rejected", "category": "daily_life", "grade": "routine", "submitted_at": T0, "overdue_count": 0},
    ]
    stats = domain.statistics(rows, hours(40))
    assert stats["total"] == 4 and stats["open"] == 1
    assert stats["by_status"] == {"closed": 2, "triaged": 1, "rejected": 1}
    assert stats["by_category"] == {"care": 2, "daily_life": 2}
    assert stats["median_hours_to_resolve"] == 19.0  # (8 + 30) / 2
    assert stats["overdue_rate"] == 0.5
    assert stats["satisfaction"] == {"rated": 2, "mean_rating": 3.5, "fixed_share": 0.5}
