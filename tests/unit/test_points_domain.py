"""The points rules, without a database."""
from datetime import datetime, timedelta, timezone

import pytest

from services.points import domain
from services.points.chain import GENESIS, verify_chain

AT = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=timezone.utc)
RULE = {"code": "volunteer", "name": "志愿服务", "account": "service", "points": 2,
        "caps": {"day": 4, "month": 10, "year": None}}


def account(kind=domain.DISCIPLINE):
    return domain.new_account("wuhan", "m1", kind, 2026 if kind == domain.DISCIPLINE else None, AT)


def chain(amounts, kind=domain.DISCIPLINE):
    acc, entries = account(kind), []
    for i, amount in enumerate(amounts):
        entry = domain.next_entry(acc, kind=domain.POSTING, amount=amount, at=AT + timedelta(minutes=i),
                                  idempotency_key="k{}".format(i), actor="desk", reason="test")
        entries.append(entry)
        acc = domain.apply(acc, entry)
    return acc, entries


@pytest.mark.parametrize("before,after,expected", [
    (12, 10, []),
    (12, 9, [(9, "reminder")]),
    (10, 8, [(9, "reminder")]),
    (9, 8, []),  # 9 was already reached: not crossed again
    (7, 6, [(6, "red_warning")]),
    (4, 3, [(3, "yellow_alert")]),
    (1, 0, [(0, "handling")]),
    (12, 2, [(9, "reminder"), (6, "red_warning"), (3, "yellow_alert")]),
    (12, -1, [(9, "reminder"), (6, "red_warning"), (3, "yellow_alert"), (0, "handling")]),
    (8, 10, []),  # credits cross nothing
])
def test_each_ladder_crossing_once(before, after, expected):
    assert domain.crossings(before, after) == expected


def test_a_threshold_is_crossed_again_after_credits_lift_the_balance():
    path = [12, 8, 10, 8]
    crossed = [c for a, b in zip(path, path[1:]) for c in domain.crossings(a, b)]
    assert crossed == [(9, "reminder"), (9, "reminder")]


@pytest.mark.parametrize("score,stars,eligible", [
    (14, 5, True), (12, 5, True), (11, 4, False), (10, 4, False), (8, 3, False), (0, 1, False), (-3, 0, False),
])
def test_stars_and_the_cap_below_12(score, stars, eligible):
    assert domain.stars(score) == (stars, eligible)


def test_a_park_that_gives_5_stars_below_12_is_still_capped_at_4():
    generous = {"5": 8, "4": 6, "3": 4, "2": 2, "1": 0}
    assert domain.stars(9, generous) == (4, False)
    assert domain.stars(12, generous) == (5, True)


def test_caps_per_day_and_month():
    counters, at = {}, AT
    counters = domain.counters_after(counters, RULE, 2, at)
    counters = domain.counters_after(counters, RULE, 2, at)
    with pytest.raises(domain.PointsRefused) as err:
        domain.counters_after(counters, RULE, 2, at)
    assert err.value.code == domain.CAP_REACHED and err.value.fields["available"] == 0
    # the next day the day cap starts over, the month cap does not
    for day in range(1, 4):
        counters = domain.counters_after(counters, RULE, 2, at + timedelta(days=day))
    with pytest.raises(domain.PointsRefused, match="month"):
        domain.counters_after(counters, RULE, 2, at + timedelta(days=4))


def test_a_service_account_never_goes_below_zero():
    acc = account(domain.SERVICE)
    with pytest.raises(domain.PointsRefused) as err:
        domain.next_entry(acc, kind=domain.HOLD, amount=-5, held_delta=5, at=AT, idempotency_key="h",
                          actor="m1", reason="redeem")
    assert err.value.code == domain.INSUFFICIENT_POINTS and err.value.fields["available"] == 0


def test_a_discipline_account_may_fall_below_zero():
    acc, entries = chain([12, -13])
    assert acc["balance"] == -1


def test_entries_are_chained_and_times_kept_to_the_millisecond():
    acc, entries = chain([12, -1, -2])
    assert entries[0]["prev_hash"] == GENESIS
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert entries[0]["at"].microsecond == 123000
    assert verify_chain(entries, acc) == []


def test_verify_names_an_edited_entry():
    acc, entries = chain([12, -1, -2])
    entries[1] = dict(entries[1], amount=+1, balance_after=13)
    problems = verify_chain(entries, acc)
    assert (entries[1]["_id"], "content does not match its hash: the entry was edited") in problems


def test_verify_names_a_deleted_entry():
    acc, entries = chain([12, -1, -2, -3])
    del entries[1]
    problems = verify_chain(entries, acc)
    assert any(eid == entries[1]["_id"] and "missing" in p for eid, p in problems)
    last_deleted = verify_chain(entries[:-1], acc)
    assert any("deleted" in p for _, p in last_deleted)


def test_only_postings_can_be_reversed():
    assert domain.reversal_of({"kind": domain.POSTING, "amount": -3}) == 3
    with pytest.raises(domain.PointsInvalid):
        domain.reversal_of({"kind": domain.HOLD, "amount": -3})


def test_award_ranking_is_deterministic_and_skips_the_ineligible():
    earned = {"m3": 10, "m1": 10, "m2": 30, "m4": 5, "m5": 0}
    rows = domain.award_ranking(earned, {"m2": False}, limit=3)
    assert rows == [{"rank": 1, "member_id": "m1", "points": 10}, {"rank": 2, "member_id": "m3", "points": 10},
                    {"rank": 3, "member_id": "m4", "points": 5}]


@pytest.mark.parametrize("period,start,end", [("2026H1", (2026, 1, 1), (2026, 7, 1)),
                                              ("2026H2", (2026, 7, 1), (2027, 1, 1))])
def test_half_years(period, start, end):
    s, e = domain.half_year(period)
    assert (s.year, s.month, s.day) == start and (e.year, e.month, e.day) == end


def test_a_bad_half_year_is_refused():
    with pytest.raises(domain.PointsInvalid):
        domain.half_year("2026Q3")


def test_a_catalogue_with_duplicate_codes_or_small_caps_is_refused():
    with pytest.raises(domain.PointsInvalid) as err:
        domain.validate_catalogue([RULE, RULE, dict(RULE, code="x", caps={"day": 1})])
    assert set(err.value.fields) == {"1", "2"}
