"""The points service against the real database and broker."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from nameko import config
from nameko.testing.services import entrypoint_hook

from lamplight.envelope import new_event
from lamplight.errors import BadInput, Conflict, DomainError, api_error
from lamplight_tools import cli
from services.points import domain
from services.points.schemas import CatalogueSchema
from services.points.service import PointsService
from tests.conftest import wait_for

PARK = "wuhan-qln"
RULES = [
    {"code": "missed-meeting", "name": "无故缺席组织生活", "account": "discipline", "points": -1},
    {"code": "serious-breach", "name": "严重违纪", "account": "discipline", "points": -3,
     "approval_required": True},
    {"code": "good-deed", "name": "好人好事", "account": "discipline", "points": 1, "caps": {"month": 2}},
    {"code": "volunteer-award", "name": "志愿服务奖励", "account": "service", "points": 10},
    {"code": "task-done", "name": "完成服务任务", "account": "service", "points": 2, "mode": "auto",
     "event_type": "task.completed", "caps": {"day": 6}},
    {"code": "service-hours", "name": "服务时长", "account": "service", "points": 1, "mode": "auto",
     "event_type": "volunteer.service_hours", "per_hour": True},
    {"code": "visit-missed", "name": "未完成必访", "account": "discipline", "points": -1, "mode": "auto",
     "event_type": "visit.missed"},
    {"code": "need-closed", "name": "办结群众需求", "account": "service", "points": 3, "mode": "auto",
     "event_type": "need.closed"},
    {"code": "bad-review", "name": "群众评价不满意", "account": "discipline", "points": -1, "mode": "auto",
     "event_type": "need.evaluated", "rating_at_most": 2},
]


@pytest.fixture
def points(container_factory, service_config):
    container = container_factory(PointsService)
    container.start()
    call(container, "set_catalogue", PARK, {"version": 1, "rules": RULES})
    return container


def call(container, method, *args, **kwargs):
    """The entrypoint, answering as it answers an RPC caller: a rule's refusal arrives as the API
    error of its kind, made at the RPC reply (lamplight.rpc), which a hook does not go through."""
    with entrypoint_hook(container, method) as hook:
        try:
            return hook(*args, **kwargs)
        except DomainError as exc:
            raise api_error(exc) from exc


def post(container, member, rule, key=None, actor="desk-01", reason="记录", **extra):
    return call(container, "post", PARK, dict({"member_id": member, "rule_code": rule, "actor": actor,
                                               "reason": reason}, **extra), idempotency_key=key)


def outbox_types(db, member):
    return [e["type"] for entry in db("points").entries.find({"member_id": member}).sort("seq", 1)
            for e in entry.get("_outbox", [])]


def test_a_first_posting_opens_the_year_at_12_and_is_chained(points, db):
    entry = post(points, "m1", "missed-meeting")
    assert entry["created"] and entry["amount"] == -1 and entry["balance_after"] == 11 and entry["seq"] == 2
    account = call(points, "account", PARK, "m1")
    assert account["balance"] == 11 and account["entries"] == 2
    assert (account["stars"], account["eligible_for_awards"]) == (4, False)
    assert outbox_types(db, "m1") == ["points.credited", "points.debited"]
    problems, accounts, entries = cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points")
    assert (problems, accounts, entries) == ([], 1, 2)


def test_a_catalogue_is_a_park_configuration_installed_as_the_next_version(points):
    assert call(points, "catalogue", PARK)["version"] == 1
    with pytest.raises(Conflict) as stale:  # version 1 again: someone installed it first
        call(points, "set_catalogue", PARK, {"version": 1, "rules": RULES})
    assert stale.value.fields == {"version": ["expected 2"]}
    assert call(points, "set_catalogue", PARK, {"version": 2, "rules": RULES}) == {
        "version": 1, "rules": len(RULES), "unchanged": True}  # the same catalogue changes nothing
    changed = call(points, "set_catalogue", PARK, {"version": 2, "rules": RULES[:3]})
    assert changed == {"version": 2, "rules": 3, "unchanged": False}
    assert [r["code"] for r in call(points, "catalogue", PARK)["rules"]] == [r["code"] for r in RULES[:3]]


def test_a_catalogue_saved_before_catalogues_were_park_configurations_becomes_version_1_of_one(points, db):
    park = "wuhan-old"
    rules = domain.validate_catalogue(CatalogueSchema().load({"version": 1, "rules": RULES[:1]})["rules"])
    db("points").catalogues.insert_one({"_id": "{}/catalogue/rules".format(park), "park_id": park, "version": 7,
                                        "rules": rules, "star_thresholds": None, "park_version": 3,
                                        "updated_at": datetime.now(timezone.utc)})
    shown = call(points, "catalogue", park)
    assert (shown["version"], shown["rules"], shown["park_version"]) == (1, rules, 3)
    assert db("points").configs.find_one({"_id": park + "/config"})["migrated_from_version"] == 7
    posted = call(points, "post", park, {"member_id": "m1", "rule_code": "missed-meeting", "actor": "desk-01",
                                         "reason": "记录"}, idempotency_key="old-1")
    assert posted["balance_after"] == 11
    assert call(points, "set_catalogue", park, {"version": 2, "rules": RULES})["version"] == 2


def test_the_same_key_returns_the_first_entry_and_another_body_is_refused(points, db):
    first = post(points, "m1", "missed-meeting", key="desk-17")
    again = post(points, "m1", "missed-meeting", key="desk-17")
    assert again["id"] == first["id"] and again["created"] is False
    with pytest.raises(Conflict, match="another posting"):
        post(points, "m1", "good-deed", key="desk-17")
    assert db("points").entries.count_documents({"member_id": "m1"}) == 2  # opening + one posting


def test_bad_postings_are_refused_naming_the_problem(points, db):
    with pytest.raises(BadInput) as err:
        post(points, "m1", "no-such-rule")
    assert "missed-meeting" in err.value.fields["rule_code"][0]  # lists the park's rules
    with pytest.raises(BadInput) as err:
        call(points, "post", PARK, {"member_id": "m1", "rule_code": "missed-meeting"})
    assert {"actor", "reason"} <= set(err.value.fields)
    with pytest.raises(BadInput, match="automatically"):
        post(points, "m1", "task-done")
    assert db("points").entries.count_documents({}) == 0  # nothing partial


def test_a_rule_needing_approval_posts_only_when_another_person_approves(points, db):
    request = post(points, "m1", "serious-breach", key="desk-99", reason="违纪")
    assert request["approval_pending"] and request["status"] == "pending"
    assert db("points").entries.count_documents({}) == 0  # nothing posted yet
    assert post(points, "m1", "serious-breach", key="desk-99", reason="违纪")["id"] == request["id"]  # a retry
    assert [a["id"] for a in call(points, "approvals", PARK)] == [request["id"]]
    with pytest.raises(BadInput, match="another person"):
        call(points, "approve", PARK, request["id"], {"approver": "desk-01"})  # the actor
    entry = call(points, "approve", PARK, request["id"], {"approver": "secretary"})
    assert entry["amount"] == -3 and entry["metadata"]["approved_by"] == "secretary"
    assert call(points, "approve", PARK, request["id"], {"approver": "secretary"})["id"] == entry["id"]
    assert call(points, "account", PARK, "m1")["balance"] == 9
    assert call(points, "approvals", PARK) == []
    with pytest.raises(Conflict, match="approved"):
        call(points, "reject", PARK, request["id"], {"approver": "secretary", "reason": "改主意"})

    other = post(points, "m1", "serious-breach", key="desk-100", reason="另一件")
    with pytest.raises(BadInput, match="reason"):
        call(points, "reject", PARK, other["id"], {"approver": "secretary"})
    rejected = call(points, "reject", PARK, other["id"], {"approver": "secretary", "reason": "证据不足"})
    assert rejected["status"] == "rejected" and rejected["decision_reason"] == "证据不足"
    with pytest.raises(Conflict, match="rejected"):
        call(points, "approve", PARK, other["id"], {"approver": "secretary"})
    assert call(points, "account", PARK, "m1")["balance"] == 9


def test_every_ladder_crossing_is_published_once_and_again_after_recovery(points, db):
    for _ in range(12):
        post(points, "m2", "missed-meeting")
    crossed = [e["data"]["level"] for entry in db("points").entries.find({"member_id": "m2"}).sort("seq", 1)
               for e in entry["_outbox"] if e["type"] == "points.threshold_crossed"]
    assert crossed == ["reminder", "red_warning", "yellow_alert", "handling"]
    assert call(points, "account", PARK, "m2")["warning"] == "handling"

    post(points, "m3", "missed-meeting")
    post(points, "m3", "missed-meeting")
    post(points, "m3", "missed-meeting")  # 9: reminder
    post(points, "m3", "good-deed")  # 10
    post(points, "m3", "missed-meeting")  # 9 again: reminder again
    levels = [e["data"]["level"] for e in db("points").entries.find({"member_id": "m3"}).sort("seq", 1)
              for e in e["_outbox"] if e["type"] == "points.threshold_crossed"]
    assert levels == ["reminder", "reminder"]


def test_the_star_rating_and_award_eligibility_follow_the_score(points):
    post(points, "m4", "good-deed")
    assert (call(points, "account", PARK, "m4")["stars"], call(points, "account", PARK,
                                                               "m4")["eligible_for_awards"]) == (5, True)
    post(points, "m4", "missed-meeting")
    post(points, "m4", "missed-meeting")  # 11
    account = call(points, "account", PARK, "m4")
    assert (account["balance"], account["stars"], account["eligible_for_awards"]) == (11, 4, False)


def test_a_cap_refuses_a_manual_posting_with_what_is_left(points):
    post(points, "m5", "good-deed")
    post(points, "m5", "good-deed")
    with pytest.raises(Conflict) as err:
        post(points, "m5", "good-deed")
    assert err.value.code == "cap_reached" and err.value.fields["available"] == 0


def test_a_replay_returns_its_entry_even_when_a_cap_or_the_balance_would_now_refuse_it(points):
    post(points, "m15", "good-deed", key="gd-1")
    second = post(points, "m15", "good-deed", key="gd-2")  # the month's cap of 2 is now used
    replay = post(points, "m15", "good-deed", key="gd-2")
    assert replay["id"] == second["id"] and replay["created"] is False
    with pytest.raises(Conflict) as err:
        post(points, "m15", "good-deed", key="gd-3")
    assert err.value.code == "cap_reached"

    call(points, "put_reward", PARK, {"code": "cup", "name": "杯子", "cost": 10, "stock": 5})
    post(points, "m15", "volunteer-award")
    held = call(points, "redeem", PARK, {"member_id": "m15", "reward_code": "cup"}, idempotency_key="cup-1")
    assert call(points, "redeem", PARK, {"member_id": "m15", "reward_code": "cup"},
                idempotency_key="cup-1")["id"] == held["id"]


def test_a_reversal_corrects_and_cannot_be_doubled(points, db):
    entry = post(points, "m6", "missed-meeting")
    reversal = call(points, "reverse", PARK, entry["id"], {"actor": "secretary", "reason": "误记"})
    assert reversal["amount"] == 1 and reversal["reverses"] == entry["id"] and reversal["balance_after"] == 12
    again = call(points, "reverse", PARK, entry["id"], {"actor": "secretary", "reason": "误记"})
    assert again["id"] == reversal["id"] and again["created"] is False
    with pytest.raises(Conflict):
        call(points, "reverse", PARK, entry["id"], {"actor": "other", "reason": "再次冲正"})
    assert db("points").entries.count_documents({"member_id": "m6"}) == 3


def test_redemption_holds_then_confirms_or_voids_and_never_overdraws(points, db):
    call(points, "put_reward", PARK, {"code": "tea", "name": "茶杯", "cost": 8, "stock": 1})
    post(points, "m7", "volunteer-award")  # 10 service points
    with pytest.raises(Conflict) as err:
        call(points, "redeem", PARK, {"member_id": "m8", "reward_code": "tea"})
    assert err.value.code == "insufficient_points" and err.value.fields["available"] == 0
    assert call(points, "rewards", PARK)[0]["stock"] == 1  # the failed attempt gave its unit back

    held = call(points, "redeem", PARK, {"member_id": "m7", "reward_code": "tea"}, idempotency_key="r1")
    assert held["status"] == "held"
    service = call(points, "account", PARK, "m7", kind="service")
    assert (service["balance"], service["held"]) == (2, 8)
    with pytest.raises(Conflict) as err:
        call(points, "redeem", PARK, {"member_id": "m7", "reward_code": "tea"}, idempotency_key="r2")
    assert err.value.code == "out_of_stock"

    voided = call(points, "void_redemption", PARK, held["id"], "desk-01", "changed mind")
    assert voided["status"] == "voided"
    assert call(points, "rewards", PARK)[0]["stock"] == 1
    assert call(points, "account", PARK, "m7", kind="service")["balance"] == 10

    again = call(points, "redeem", PARK, {"member_id": "m7", "reward_code": "tea"}, idempotency_key="r3")
    confirmed = call(points, "confirm_redemption", PARK, again["id"], "desk-01")
    assert confirmed["status"] == "confirmed"
    service = call(points, "account", PARK, "m7", kind="service")
    assert (service["balance"], service["held"]) == (2, 0)
    assert call(points, "rewards", PARK)[0]["stock"] == 0
    with pytest.raises(Conflict, match="confirmed"):
        call(points, "void_redemption", PARK, again["id"], "desk-01")
    assert cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points")[0] == []


def test_a_hold_that_times_out_is_voided(points, db):
    call(points, "put_reward", PARK, {"code": "towel", "name": "毛巾", "cost": 5, "stock": 3, "hold_minutes": 1})
    post(points, "m9", "volunteer-award")
    held = call(points, "redeem", PARK, {"member_id": "m9", "reward_code": "towel"})
    db("points").redemptions.update_one({"_id": held["id"]},
                                        {"$set": {"expires_at": datetime.now(timezone.utc) - timedelta(seconds=1)}})
    call(points, "void_expired_holds")
    assert db("points").redemptions.find_one({"_id": held["id"]})["status"] == "voided"
    assert call(points, "account", PARK, "m9", kind="service")["balance"] == 10
    assert call(points, "rewards", PARK)[0]["stock"] == 3


def test_events_post_automatically_once_and_a_reopened_need_is_reversed(points, broker, db):
    task = new_event("task.completed", source="volunteers", park_id=PARK, subject="task_1",
                     data={"task_id": "task_1", "member_id": "m10", "need_id": "need_9"})
    broker.publish("volunteers.events", "task.completed", task)
    broker.publish("volunteers.events", "task.completed", task)  # redelivered
    hours = new_event("volunteer.service_hours", source="volunteers", park_id=PARK, subject="m10",
                      data={"member_id": "m10", "hours": 2.5})
    broker.publish("volunteers.events", "volunteer.service_hours", hours)
    closed = new_event("need.closed", source="needs", park_id=PARK, subject="need_9",
                       data={"need_id": "need_9", "member_id": "m10"})
    broker.publish("needs.events", "need.closed", closed)
    wait_for(lambda: db("points").entries.count_documents({"member_id": "m10"}) == 3, what="three postings")
    wait_for(lambda: broker.depth("points--task.completed") == 0, what="the duplicate consumed")
    assert call(points, "account", PARK, "m10", kind="service")["balance"] == 2 + 2 + 3  # 2.5 h rounds to 2

    broker.publish("needs.events", "need.reopened", new_event(
        "need.reopened", source="needs", park_id=PARK, subject="need_9", data={"need_id": "need_9"}))
    wait_for(lambda: call(points, "account", PARK, "m10", kind="service")["balance"] == 4,
             what="the closing's posting reversed")
    reversal = db("points").entries.find_one({"member_id": "m10", "kind": "reversal"})
    assert reversal["metadata"]["need_id"] == "need_9" and reversal["amount"] == -3

    bad = new_event("need.evaluated", source="needs", park_id=PARK, subject="need_9",
                    data={"need_id": "need_9", "member_id": "m10", "rating": 1})
    good = new_event("need.evaluated", source="needs", park_id=PARK, subject="need_8",
                     data={"need_id": "need_8", "member_id": "m10", "rating": 5})
    broker.publish("needs.events", "need.evaluated", good)
    broker.publish("needs.events", "need.evaluated", bad)
    wait_for(lambda: call(points, "account", PARK, "m10")["balance"] == 11, what="the bad review's deduction")
    wait_for(lambda: broker.depth("points--need.evaluated") == 0, what="both reviews consumed")
    assert call(points, "account", PARK, "m10")["balance"] == 11


def test_balance_at_a_past_time(points):
    post(points, "m11", "volunteer-award")
    between = datetime.now(timezone.utc)
    eventlet.sleep(0.01)
    post(points, "m11", "volunteer-award")
    assert call(points, "account", PARK, "m11", kind="service")["balance"] == 20
    past = call(points, "account", PARK, "m11", kind="service", at=between.isoformat())
    assert past["balance"] == 10 and past["entries"] == 1


def test_the_half_year_award_is_frozen_and_reproducible(points, db):
    """Entries of a past half-year, written as the service writes them."""
    at = datetime(2025, 9, 1, tzinfo=timezone.utc)
    for member, amounts in (("a", [5, 5]), ("b", [12]), ("c", [3])):
        account = domain.new_account(PARK, member, domain.SERVICE, None, at)
        for i, amount in enumerate(amounts):
            entry = domain.next_entry(account, kind=domain.POSTING, amount=amount, at=at + timedelta(days=i),
                                      idempotency_key="{}-{}".format(member, i), actor="x", reason="y")
            db("points").entries.insert_one(entry)
            account = domain.apply(account, entry)
        db("points").accounts.insert_one(account)
    # b's 2025 discipline score is 11: not eligible
    discipline = domain.new_account(PARK, "b", domain.DISCIPLINE, 2025, at)
    opening = domain.next_entry(discipline, kind=domain.OPENING, amount=12, at=at, idempotency_key="ob",
                                actor="x", reason="y")
    discipline = domain.apply(discipline, opening)
    minus = domain.next_entry(discipline, kind=domain.POSTING, amount=-1, at=at, idempotency_key="mb",
                              actor="x", reason="y")
    db("points").entries.insert_many([opening, minus])
    db("points").accounts.insert_one(domain.apply(discipline, minus))

    first = call(points, "freeze_award", PARK, "2025H2", limit=5)
    assert [(r["member_id"], r["points"]) for r in first["ranking"]] == [("a", 10), ("c", 3)]
    assert first["excluded_not_eligible"] == ["b"]
    post(points, "a", "volunteer-award")  # later activity does not change a frozen snapshot
    assert call(points, "freeze_award", PARK, "2025H2", limit=5)["digest"] == first["digest"]
    with pytest.raises(Conflict, match="not over"):
        call(points, "freeze_award", PARK, "{}H2".format(datetime.now(timezone.utc).year))


def test_a_member_moving_park_keeps_their_history(points, db):
    post(points, "m12", "volunteer-award")
    post(points, "m12", "missed-meeting")
    moved = call(points, "move_member", PARK, "m12", {"to_park": "xuwei", "actor": "admin"})
    assert moved["to_park"] == "xuwei"
    assert call(points, "account", "xuwei", "m12", kind="service")["balance"] == 10
    assert call(points, "account", "xuwei", "m12")["balance"] == 11
    assert call(points, "account", PARK, "m12", kind="service")["balance"] == 0
    history = call(points, "history", "xuwei", "m12", kind="discipline")
    assert [e["kind"] for e in history] == ["transfer_in", "transfer_out", "posting", "opening"]
    assert {e["park_id"] for e in history} == {PARK, "xuwei"}
    assert cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points")[0] == []


def test_verify_names_an_entry_edited_or_deleted_behind_the_services_back(points, db):
    for _ in range(4):
        post(points, "m13", "missed-meeting")
    entries = db("points").entries
    target = entries.find_one({"member_id": "m13", "seq": 3})
    entries.update_one({"_id": target["_id"]}, {"$set": {"amount": 1, "balance_after": 12}})
    problems, _, _ = cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points", PARK)
    assert (target["_id"], "content does not match its hash: the entry was edited") in problems

    entries.update_one({"_id": target["_id"]}, {"$set": {"amount": -1, "balance_after": 10}})
    assert cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points", PARK)[0] == []
    entries.delete_one({"member_id": "m13", "seq": 4})
    problems, _, _ = cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points", PARK)
    assert any("missing" in p for _, p in problems)
    rc = cli.main(["points", "verify", "--mongo-uri", config["MONGO_URI"],
                   "--database", config["MONGO_DB_PREFIX"] + "points"])
    assert rc == 1


def test_a_dead_writers_half_done_posting_is_finished_by_the_relay(points, db):
    """A writer that inserted an entry and died before moving the account
    head: the relay's takeover finishes it, so the leaderboard is right too."""
    from lamplight.publishing import EventOutbox

    post(points, "m14", "volunteer-award")  # balance 10, the account head at seq 1
    head = db("points").accounts.find_one({"member_id": "m14", "kind": "service"})
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    half_done = domain.next_entry(head, kind=domain.POSTING, amount=10, at=past, idempotency_key="crashed-1",
                                  actor="desk", reason="written by a writer that died")
    half_done.update({"_outbox": [], "_outbox_at": past, "_outbox_by": "points-dead-7"})
    db("points").entries.insert_one(half_done)
    db("points")["_writers"].insert_one({"_id": "points-dead-7", "service": "points",
                                         "checkpoint": past - timedelta(seconds=1), "heartbeat": past})
    assert call(points, "leaderboard", PARK)[0]["balance"] == 10  # the cached head is behind

    outbox = next(d for d in points.dependencies if isinstance(d, EventOutbox))
    outbox.relay_once()
    assert call(points, "leaderboard", PARK)[0] == {"rank": 1, "member_id": "m14", "balance": 20}
    assert cli.points_verify(config["MONGO_URI"], config["MONGO_DB_PREFIX"] + "points", PARK)[0] == []
