"""The volunteers service's pure rules: rosters across midnight and across
the week's end, the night window, ranking, the task state machine, and a
property: dispatch never offers to someone off duty, over the cap, paused,
outside the teams or skills, or in another park."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.volunteers import domain
from services.volunteers.domain import dispatch, rosters
from services.volunteers.schemas import RosterSchema, VolunteersConfigSchema

SHANGHAI = rosters.zone("Asia/Shanghai")
CONFIG = VolunteersConfigSchema().load({"version": 1, "teams": [
    {"code": "orange", "name": "暖心橙", "categories": ["daily_life"], "leads": ["L1"]},
    {"code": "squad", "name": "应急小分队", "squad": True}],
    "skills": ["electrician", "first_aid"],
    "zones": [{"code": "a", "name": "A", "x": 0, "y": 0}, {"code": "b", "name": "B", "x": 300, "y": 0},
              {"code": "c", "name": "C", "x": 3000, "y": 0}]})
CONFIG["park_id"] = "p1"


def local(*args):
    """A wall-clock time in Shanghai, as UTC."""
    return datetime(*args, tzinfo=SHANGHAI).astimezone(timezone.utc)


def responder(rid, shifts=(), park="p1", **extra):
    r = {"_id": rid, "park_id": park, "kind": "volunteer", "active": True, "teams": ["orange"], "skills": [],
         "zone": "a", "shifts": list(shifts), "intervals": rosters.weekly_intervals(shifts), "leave": [],
         "extra": [], "last_work_at": None}
    r.update(extra)
    return r


NIGHT_FRIDAY = {"day": "fri", "start": "22:00", "end": "06:00", "overnight": True}
NIGHT_SUNDAY = {"day": "sun", "start": "22:00", "end": "06:00", "overnight": True}
# 2026-11-20 is a Friday, 2026-11-22 a Sunday, 2026-11-23 a Monday


# rosters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("at,expected", [
    (local(2026, 11, 20, 21, 59), False), (local(2026, 11, 20, 22, 0), True),
    (local(2026, 11, 20, 23, 59), True), (local(2026, 11, 21, 0, 0), True),  # past midnight: Saturday
    (local(2026, 11, 21, 5, 59), True), (local(2026, 11, 21, 6, 0), False),
    (local(2026, 11, 27, 23, 0), True),  # the next Friday
    (local(2026, 11, 22, 23, 0), False),  # a Sunday
])
def test_an_overnight_shift_runs_past_midnight_into_the_next_day(at, expected):
    assert rosters.on_duty(responder("r", [NIGHT_FRIDAY]), at, SHANGHAI) is expected


@pytest.mark.parametrize("at,expected", [
    (local(2026, 11, 22, 21, 59), False), (local(2026, 11, 22, 22, 0), True),
    (local(2026, 11, 22, 23, 59), True),
    (local(2026, 11, 23, 0, 0), True),  # Monday 00:00: a new week
    (local(2026, 11, 23, 5, 59), True), (local(2026, 11, 23, 6, 0), False),
    (local(2026, 11, 16, 3, 0), True),  # the Monday morning of the week before, from the Sunday before it
])
def test_a_sunday_night_shift_runs_across_the_end_of_the_week(at, expected):
    assert rosters.on_duty(responder("r", [NIGHT_SUNDAY]), at, SHANGHAI) is expected


def test_the_week_wrap_splits_into_two_intervals_and_both_ends_are_indexed():
    assert rosters.weekly_intervals([NIGHT_SUNDAY]) == [{"start": 0, "end": 360},
                                                       {"start": 6 * 1440 + 1320, "end": rosters.WEEK_MINUTES}]
    hours = rosters.duty_hours([NIGHT_SUNDAY])
    assert hours == [0, 1, 2, 3, 4, 5, 166, 167]
    # the index bucket of Monday 03:00 holds the Sunday night worker
    assert rosters.hour_of_week(local(2026, 11, 23, 3, 0), SHANGHAI) in hours


def test_a_shift_that_ends_before_it_starts_is_refused_unless_it_is_overnight():
    with pytest.raises(ValidationError) as refused:
        RosterSchema().load({"shifts": [{"day": "mon", "start": "18:00", "end": "09:00"}]})
    assert "ends (09:00) before it starts (18:00)" in str(refused.value.messages)
    with pytest.raises(ValidationError) as refused:
        RosterSchema().load({"shifts": [{"day": "mon", "start": "08:00", "end": "09:00", "overnight": True}]})
    assert "overnight" in str(refused.value.messages)
    with pytest.raises(ValidationError) as refused:
        RosterSchema().load({"leave": [{"start": "2026-11-21T10:00:00+08:00", "end": "2026-11-21T09:00:00+08:00"}]})
    assert "before it starts" in str(refused.value.messages)
    assert RosterSchema().load({"shifts": [NIGHT_SUNDAY]})["shifts"][0]["overnight"] is True


def test_leave_takes_a_shift_away_and_an_extra_shift_adds_one():
    r = responder("r", [NIGHT_FRIDAY], leave=[{"start": local(2026, 11, 20, 12, 0), "end": local(2026, 11, 21, 2, 0)}],
                  extra=[{"start": local(2026, 11, 22, 9, 0), "end": local(2026, 11, 22, 12, 0)}])
    assert not rosters.on_duty(r, local(2026, 11, 20, 23, 0), SHANGHAI)
    assert rosters.on_duty(r, local(2026, 11, 21, 2, 0), SHANGHAI)  # leave over, the shift still runs
    assert rosters.on_duty(r, local(2026, 11, 22, 10, 0), SHANGHAI)
    # the first time on duty after Friday 20:00 is when the leave ends
    assert rosters.next_on_duty(r, local(2026, 11, 20, 20, 0), local(2026, 11, 22, 0, 0), SHANGHAI) == \
        local(2026, 11, 21, 2, 0)


def test_next_on_duty_finds_the_next_shift_before_the_due_time_or_none():
    r = responder("r", [{"day": "mon", "start": "14:00", "end": "18:00"}])
    monday_morning = local(2026, 11, 23, 10, 0)
    assert rosters.next_on_duty(r, monday_morning, local(2026, 11, 24, 0, 0), SHANGHAI) == local(2026, 11, 23, 14, 0)
    assert rosters.next_on_duty(r, monday_morning, local(2026, 11, 23, 13, 0), SHANGHAI) is None
    # from Sunday night, across the week boundary
    assert rosters.next_on_duty(r, local(2026, 11, 22, 23, 0), local(2026, 11, 24, 0, 0), SHANGHAI) == \
        local(2026, 11, 23, 14, 0)


def test_the_night_window_runs_over_midnight():
    window = {"start": "22:00", "end": "06:00"}
    assert rosters.in_window(local(2026, 11, 20, 23, 0), SHANGHAI, window)
    assert rosters.in_window(local(2026, 11, 21, 3, 0), SHANGHAI, window)
    assert not rosters.in_window(local(2026, 11, 21, 6, 0), SHANGHAI, window)
    assert not rosters.in_window(local(2026, 11, 21, 12, 0), SHANGHAI, window)
    assert rosters.in_window(local(2026, 11, 21, 12, 0), SHANGHAI, {"start": "09:00", "end": "17:00"})


# ranking -----------------------------------------------------------------------------------
ALWAYS = [{"day": d, "start": "00:00", "end": "00:00", "overnight": True} for d in rosters.WEEKDAYS]


def task(**extra):
    t = {"task_id": "n1:task:1", "need_id": "n1", "teams": ["orange"], "skills": [], "zone": "a",
         "due_at": local(2026, 11, 23, 12, 0), "offered_to": []}
    t.update(extra)
    return t


def test_rank_prefers_on_duty_now_then_near_then_least_recently_given_work():
    at = local(2026, 11, 23, 9, 0)
    later = responder("later", [{"day": "mon", "start": "10:00", "end": "12:00"}])
    far = responder("far", ALWAYS, zone="c")
    near_busy = responder("near_busy", ALWAYS, zone="b", last_work_at=at - timedelta(minutes=5))
    near_idle = responder("near_idle", ALWAYS, zone="a", last_work_at=at - timedelta(days=3))
    ranked = [r["_id"] for r, _ in dispatch.rank([later, far, near_busy, near_idle], task(), "p1", at, SHANGHAI, {},
                                               CONFIG)]
    # a and b are within one 500 m step: fairness decides between them
    assert ranked == ["near_idle", "near_busy", "far", "later"]


def test_rank_leaves_out_each_kind_of_ineligible_responder():
    at = local(2026, 11, 23, 9, 0)
    pool = [responder("ok", ALWAYS), responder("other_park", ALWAYS, park="p2"),
            responder("paused", ALWAYS, active=False), responder("capped", ALWAYS, max_open_tasks=1),
            responder("team", ALWAYS, teams=["squad"]), responder("off", [NIGHT_FRIDAY]),
            responder("unit", ALWAYS, kind="unit"), responder("offered", ALWAYS)]
    t = task(offered_to=["offered"])
    reasons = {r["_id"]: dispatch.ineligible(r, t, "p1", at, SHANGHAI, {"capped": 1}.get(r["_id"], 0), CONFIG)
               for r in pool}
    assert reasons == {"ok": None, "other_park": "other_park", "paused": "paused", "capped": "cap", "team": "team",
                       "off": "off_duty", "unit": "not_a_volunteer", "offered": "already_offered"}
    assert [r["_id"] for r, _ in dispatch.rank(pool, t, "p1", at, SHANGHAI, {"capped": 1}, CONFIG)] == ["ok"]
    skilled = task(skills=["electrician"])
    assert dispatch.ineligible(responder("x", ALWAYS), skilled, "p1", at, SHANGHAI, 0, CONFIG) == "skills"
    assert dispatch.ineligible(responder("x", ALWAYS, skills=["electrician"]), skilled, "p1", at, SHANGHAI, 0,
                             CONFIG) is None


# the property ---------------------------------------------------------------------------------
def brute_on_duty(r, at):
    """An oracle written apart from the domain: walk the shifts as wall-clock
    spans starting this week and last week, leave and extras as given."""
    if any(span["start"] <= at < span["end"] for span in r["leave"]):
        return False
    if any(span["start"] <= at < span["end"] for span in r["extra"]):
        return True
    wall = at.astimezone(SHANGHAI).replace(tzinfo=None)
    monday = (wall - timedelta(days=wall.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    for shift in r["shifts"]:
        for week in (-1, 0):
            h, m = map(int, shift["start"].split(":"))
            start = monday + timedelta(days=7 * week + rosters.WEEKDAYS.index(shift["day"]), hours=h, minutes=m)
            eh, em = map(int, shift["end"].split(":"))
            end = start.replace(hour=eh, minute=em) + timedelta(days=1 if shift["overnight"] else 0)
            if start <= wall.replace(second=0, microsecond=0) < end:
                return True
    return False


times = st.integers(min_value=0, max_value=23).flatmap(
    lambda h: st.sampled_from([0, 30]).map(lambda m: "{:02d}:{:02d}".format(h, m)))


@st.composite
def shifts(draw):
    day, start, end = draw(st.sampled_from(rosters.WEEKDAYS)), draw(times), draw(times)
    overnight = end <= start
    return {"day": day, "start": start, "end": end, "overnight": overnight}


@st.composite
def responders(draw, n):
    base = local(2026, 11, 16, 0, 0)  # a Monday
    out = []
    for i in range(n):
        def span():  # hours after base
            return draw(st.integers(0, 14 * 24))
        leave = []
        if draw(st.booleans()):
            s = base + timedelta(hours=span())
            leave.append({"start": s, "end": s + timedelta(hours=draw(st.integers(1, 48)))})
        extra = []
        if draw(st.booleans()):
            s = base + timedelta(hours=span())
            extra.append({"start": s, "end": s + timedelta(hours=draw(st.integers(1, 12)))})
        out.append(responder(
            "r{}".format(i), draw(st.lists(shifts(), max_size=4)), park=draw(st.sampled_from(["p1", "p1", "p2"])),
            active=draw(st.booleans()) or draw(st.booleans()), teams=draw(st.sampled_from([["orange"], ["squad"],
                                                                                         ["orange", "squad"]])),
            skills=draw(st.sampled_from([[], ["electrician"], ["first_aid", "electrician"]])),
            max_open_tasks=draw(st.sampled_from([None, 1, 2])), zone=draw(st.sampled_from(["a", "b", "c", None])),
            leave=leave, extra=extra))
    return out


@settings(max_examples=400, deadline=None)
@given(pool=st.integers(1, 12).flatmap(responders), minutes=st.integers(0, 14 * 24 * 60),
       due_hours=st.integers(0, 96), skills=st.sampled_from([[], ["electrician"]]),
       open_counts=st.dictionaries(st.sampled_from(["r{}".format(i) for i in range(12)]), st.integers(0, 3)))
def test_dispatch_never_offers_to_anyone_off_duty_over_cap_paused_or_in_another_park(
        pool, minutes, due_hours, skills, open_counts):
    at = local(2026, 11, 16, 0, 0) + timedelta(minutes=minutes)
    t = task(skills=skills, due_at=at + timedelta(hours=due_hours))
    ranked = dispatch.rank(pool, t, "p1", at, SHANGHAI, open_counts, CONFIG)
    offered = {r["_id"] for r, _ in ranked}
    for r, start in ranked:
        assert r["park_id"] == "p1"
        assert r["active"]
        assert open_counts.get(r["_id"], 0) < (r["max_open_tasks"] or CONFIG["dispatch"]["default_cap"])
        assert "orange" in r["teams"] and set(skills) <= set(r["skills"])
        assert at <= start < max(t["due_at"], at + timedelta(minutes=1))
        assert brute_on_duty(r, start), "offered to {} who is off duty at {}".format(r["_id"], start)
    # and nobody who is on duty now and otherwise eligible is left out
    for r in pool:
        if r["park_id"] == "p1" and r["active"] and "orange" in r["teams"] and set(skills) <= set(r["skills"]) \
                and open_counts.get(r["_id"], 0) < (r["max_open_tasks"] or 3) and brute_on_duty(r, at):
            assert r["_id"] in offered


# the task state machine ------------------------------------------------------------------------
def offered_task(at):
    t = dispatch.new_task("p1", {"need_id": "n1", "routing": 1, "kind": "complaint", "category": "daily_life",
                               "item": None, "grade": "routine", "summary": "灯坏了", "due_at": at + timedelta(days=1)},
                        dispatch.MODE_OFFER, ["orange"], [], at, CONFIG)
    return dispatch.add_offers(t, [responder("rsp_a"), responder("rsp_b")], at, CONFIG, "dispatch")


def test_the_first_claim_wins_and_the_other_offers_are_withdrawn():
    at = local(2026, 11, 23, 9, 0)
    claimed, events = dispatch.transition(offered_task(at), "claim", {"responder_id": "rsp_a"}, at, CONFIG)
    assert events == ["task.claimed"] and claimed["status"] == dispatch.CLAIMED
    assert claimed["offers"]["rsp_b"]["status"] == dispatch.OFFER_WITHDRAWN
    with pytest.raises(domain.RuleBroken) as refused:
        dispatch.transition(claimed, "claim", {"responder_id": "rsp_b"}, at, CONFIG)
    # the refusal names the task's state, never who holds it
    assert refused.value.code == "already_taken" and refused.value.fields == {"status": ["claimed"]}
    assert "is claimed" in str(refused.value) and "rsp_a" not in str(refused.value)


def test_completion_records_hours_and_only_the_holder_may_complete():
    at = local(2026, 11, 23, 9, 0)
    claimed, _ = dispatch.transition(offered_task(at), "claim", {"responder_id": "rsp_a"}, at, CONFIG)
    with pytest.raises(domain.RuleBroken) as refused:
        dispatch.transition(claimed, "complete", {"responder_id": "rsp_b"}, at, CONFIG)
    assert refused.value.code == "not_holder"
    started, _ = dispatch.transition(claimed, "start", {"responder_id": "rsp_a"}, at + timedelta(minutes=10), CONFIG)
    done, events = dispatch.transition(started, "complete", {"responder_id": "rsp_a", "note": "换了灯管"},
                                     at + timedelta(minutes=100), CONFIG)
    assert events == ["task.completed", "volunteer.service_hours"]
    assert done["completion"]["hours"] == 1.5 and done["next_check_at"] is None


def test_offers_expire_at_their_time_and_the_sweep_sees_it():
    at = local(2026, 11, 23, 9, 0)
    t = offered_task(at)
    assert dispatch.next_check(t, CONFIG) == at + timedelta(minutes=30)
    assert dispatch.sweep_steps(t, at + timedelta(minutes=29), SHANGHAI, CONFIG) == []
    assert dispatch.sweep_steps(t, at + timedelta(minutes=30), SHANGHAI, CONFIG) == ["expire"]


def test_an_urgent_task_is_paged_to_the_squad_only_in_the_night_window():
    night = local(2026, 11, 23, 1, 0)
    t = dict(offered_task(night), grade="urgent")
    after = night + timedelta(minutes=16)
    assert "night_page" in dispatch.sweep_steps(t, after, SHANGHAI, CONFIG)
    day = local(2026, 11, 23, 11, 0)
    t = dict(offered_task(day), grade="urgent")
    assert "night_page" not in dispatch.sweep_steps(t, day + timedelta(minutes=16), SHANGHAI, CONFIG)


def test_a_task_write_rings_the_sweep_only_for_a_sooner_next_check():
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
    at = lambda minutes: {"next_check_at": None if minutes is None else t0 + timedelta(minutes=minutes)}  # noqa: E731
    assert dispatch.check_sooner(at(None), at(5)) == t0 + timedelta(minutes=5)  # a first check
    assert dispatch.check_sooner(at(10), at(5)) == t0 + timedelta(minutes=5)  # sooner
    assert dispatch.check_sooner(at(5), at(5)) is None  # the alarm rings by then already
    assert dispatch.check_sooner(at(5), at(60)) is None  # later: the sweep settles by the task itself
    assert dispatch.check_sooner(at(5), at(None)) is None  # nothing to check
