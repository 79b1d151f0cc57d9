"""The points service layer (services/points/handlers/) driven directly:
postings and their events, idempotency, approval by a second person, postings
from events with their caps, reversal of a reopened need, and redemption,
against a repository and the worker's Events, with no nameko, broker or
database. The same tests run against the real repository on the
MongoDB-protocol server (tests/integration/test_points_handlers_on_the_server.py):
the in-memory one is held to it."""
import uuid

import pytest

from lamplight import logs
from lamplight.envelope import new_event
from lamplight.errors import BadInput, Conflict
from services.points import domain
from services.points.handlers import Work, postings, rewards
from services.points.schemas import PUBLISHED, PostingSchema, RedeemSchema, RewardSchema, SourceEventSchema
from tests.unit.outbox import RecordingOutbox, events
from tests.unit.points_repos import InMemoryPointsStore, catalogue


@pytest.fixture
def repo():
    return InMemoryPointsStore("quanlinan", catalogue())


@pytest.fixture
def work(repo):
    outbox = RecordingOutbox("points", PUBLISHED)
    return Work(repo, events(outbox), logs.get_logger(component="points-handlers"), lambda park: repo), outbox


def post(work, member, rule, key, actor="desk-01", reason="记录"):
    data = PostingSchema().load({"member_id": member, "rule_code": rule, "actor": actor, "reason": reason})
    return postings.post(work, data, key)


def event(work, event_type, **data):
    envelope = new_event(event_type, source="volunteers", park_id=work.park_id, subject="s-" + uuid.uuid4().hex[:6],
                         data=data)
    return envelope, SourceEventSchema().load(data)


def test_a_first_posting_opens_the_year_at_12_and_crossing_9_is_published_with_it(work):
    w, outbox = work
    entry, created, pending = post(w, "m1", "missed-meeting", "desk-1")
    assert created and not pending and (entry["seq"], entry["balance_after"]) == (2, 9)
    assert outbox.types() == ["points.credited", "points.debited", "points.threshold_crossed"]
    crossed = outbox.published[-1]["data"]
    assert (crossed["threshold"], crossed["balance"], crossed["entry_id"]) == (9, 9, entry["_id"])
    view = postings.account(w, "m1", domain.DISCIPLINE, None, None)
    assert (view["balance"], view["seq"], view["warning"]) == (9, 2, domain.warning_level(9))


def test_the_same_key_returns_the_first_entry_and_another_body_under_it_is_refused(work):
    w, outbox = work
    first, _, _ = post(w, "m1", "volunteer-award", "desk-2")
    again, created, _ = post(w, "m1", "volunteer-award", "desk-2")
    assert again["_id"] == first["_id"] and created is False and outbox.types() == ["points.credited"]
    with pytest.raises(Conflict):
        post(w, "m1", "volunteer-award", "desk-2", reason="另一次")
    assert postings.account(w, "m1", domain.SERVICE, None, None)["balance"] == 10 and outbox.staged == {}


def test_a_rule_that_needs_approval_posts_nothing_until_another_person_approves(work):
    w, outbox = work
    approval, created, pending = post(w, "m2", "serious-breach", "desk-3", actor="sec-01")
    assert created and pending and approval["status"] == "pending" and outbox.published == []
    with pytest.raises(BadInput):
        postings.approve(w, approval["_id"], {"approver": "sec-01", "reason": None})
    entry = postings.approve(w, approval["_id"], {"approver": "sec-02", "reason": None})
    assert entry["amount"] == -3 and entry["metadata"]["approved_by"] == "sec-02"
    assert postings.approve(w, approval["_id"], {"approver": "sec-02", "reason": None})["_id"] == entry["_id"]
    assert outbox.types().count("points.debited") == 1
    with pytest.raises(Conflict):
        postings.reject(w, approval["_id"], {"approver": "sec-03", "reason": "重复"})


def test_an_event_posts_by_the_parks_rules_once_and_a_cap_skips_what_is_over_it(work):
    w, outbox = work
    envelope, source = event(w, "task.completed", member_id="m3", task_id="t1")
    assert postings.from_event(w, envelope, source) == 1
    assert postings.from_event(w, envelope, source) == 1  # delivered again: the same posting, found
    assert postings.account(w, "m3", domain.SERVICE, None, None)["balance"] == 2
    for n in range(3):  # the day's cap is 4 points: the second posting reaches it, the others are skipped
        postings.from_event(w, *event(w, "task.completed", member_id="m3", task_id="t{}".format(n + 2)))
    assert postings.account(w, "m3", domain.SERVICE, None, None)["balance"] == 4
    assert outbox.types() == ["points.credited", "points.credited"]
    assert postings.from_event(w, *event(w, "task.completed", task_id="t9")) == 0  # nobody to credit


def test_a_reopened_need_takes_back_what_its_closing_posted_once(work):
    w, outbox = work
    closed, source = event(w, "need.closed", member_id="m4", need_id="need-1")
    postings.from_event(w, closed, source)
    reopened, _ = event(w, "need.reopened", need_id="need-1")
    postings.need_reopened(w, reopened, "need-1")
    postings.need_reopened(w, reopened, "need-1")
    assert postings.account(w, "m4", domain.SERVICE, None, None)["balance"] == 0
    assert outbox.types() == ["points.credited", "points.reversed"]
    with pytest.raises(BadInput):
        postings.need_reopened(w, reopened, None)


def test_a_redemption_holds_points_and_stock_and_one_it_cannot_afford_gives_the_stock_back(work):
    w, outbox = work
    rewards.put_reward(w, RewardSchema().load({"code": "tea", "name": "茶叶", "cost": 8, "stock": 1}))
    post(w, "m5", "volunteer-award", "desk-5")
    held, created = rewards.redeem(w, RedeemSchema().load({"member_id": "m5", "reward_code": "tea"}), "r-1")
    assert created and held["status"] == domain.HELD and w.store.reward("tea")["stock"] == 0
    account = postings.account(w, "m5", domain.SERVICE, None, None)
    assert (account["balance"], account["held"]) == (2, 8)
    confirmed = rewards.confirm(w, held["_id"], "desk-01")
    assert confirmed["status"] == domain.CONFIRMED
    assert postings.account(w, "m5", domain.SERVICE, None, None)["held"] == 0
    rewards.put_reward(w, RewardSchema().load({"code": "tea", "name": "茶叶", "cost": 8, "stock": 1}))
    with pytest.raises(domain.PointsRefused) as short:  # 2 points left
        rewards.redeem(w, RedeemSchema().load({"member_id": "m5", "reward_code": "tea"}), "r-2")
    assert short.value.code == domain.INSUFFICIENT_POINTS and w.store.reward("tea")["stock"] == 1
    assert outbox.types() == ["points.credited", "points.held", "points.redeemed"] and outbox.staged == {}
