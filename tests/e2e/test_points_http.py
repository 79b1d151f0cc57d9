"""The points routes of the gateway, every service its own process."""
from tests.stackfixtures import api, stack  # noqa: F401 (fixtures)

RULES = {"version": 1, "rules": [
    {"code": "absent-org-life", "name": "无故缺席组织生活", "account": "discipline", "points": -2},
    {"code": "volunteer-event", "name": "参加志愿活动", "account": "service", "points": 3},
    {"code": "work-discipline", "name": "违反工作纪律", "account": "discipline", "points": -3,
     "approval_required": True},
]}


def test_points_over_http(api):
    assert api.http.put(api.base + "/points/rules", json=RULES, timeout=30).json()["version"] == 1
    stale = api.http.put(api.base + "/points/rules", json=RULES, timeout=30)
    assert stale.status_code == 409 and stale.json()["error"]["fields"] == {"version": ["expected 2"]}

    posted = api.post("/points/entries", {"member_id": "M-7", "rule_code": "absent-org-life", "actor": "desk",
                                          "reason": "三会一课缺席"}, headers={"Idempotency-Key": "desk-0007"})
    assert posted.status_code == 201 and posted.json()["balance_after"] == 10
    replay = api.post("/points/entries", {"member_id": "M-7", "rule_code": "absent-org-life", "actor": "desk",
                                          "reason": "三会一课缺席"}, headers={"Idempotency-Key": "desk-0007"})
    assert replay.status_code == 200 and replay.json()["id"] == posted.json()["id"]
    unknown = api.post("/points/entries", {"member_id": "M-7", "rule_code": "nope", "actor": "desk", "reason": "xx"},
                       headers={"Idempotency-Key": "desk-0008"})
    assert unknown.status_code == 422 and "absent-org-life" in unknown.json()["error"]["fields"]["rule_code"][0]

    standing = api.get("/members/M-7/points").json()
    assert (standing["balance"], standing["stars"], standing["eligible_for_awards"]) == (10, 4, False)

    reversal = api.post("/points/entries/{}/reversal".format(posted.json()["id"]), {"actor": "sec", "reason": "误记"})
    assert reversal.status_code == 201 and reversal.json()["balance_after"] == 12
    history = api.get("/members/M-7/points/history").json()["entries"]
    assert [e["kind"] for e in history] == ["reversal", "posting", "opening"]

    api.http.put(api.base + "/points/rewards/towel", json={"name": "毛巾", "cost": 5, "stock": 2}, timeout=30)
    api.post("/points/entries", {"member_id": "M-8", "rule_code": "volunteer-event", "actor": "desk", "reason": "活动"},
             headers={"Idempotency-Key": "desk-0009"})
    short = api.post("/points/redemptions", {"member_id": "M-9", "reward_code": "towel"})
    assert short.status_code == 409
    assert short.json()["error"]["code"] == "insufficient_points" and short.json()["error"]["fields"]["available"] == 0
    too_much = api.post("/points/redemptions", {"member_id": "M-8", "reward_code": "towel"})
    assert too_much.status_code == 409 and too_much.json()["error"]["fields"]["available"] == 3

    api.post("/points/entries", {"member_id": "M-8", "rule_code": "volunteer-event", "actor": "desk", "reason": "活动"},
             headers={"Idempotency-Key": "desk-0010"})
    held = api.post("/points/redemptions", {"member_id": "M-8", "reward_code": "towel"},
                    headers={"Idempotency-Key": "r1"})
    assert held.status_code == 201 and held.json()["status"] == "held"
    confirmed = api.post("/points/redemptions/{}/confirm".format(held.json()["id"]), {"actor": "desk"})
    assert confirmed.json()["status"] == "confirmed"
    assert api.get("/members/M-8/points", params={"kind": "service"}).json()["balance"] == 1
    board = api.get("/points/leaderboard").json()["leaderboard"]
    assert board[0] == {"rank": 1, "member_id": "M-8", "balance": 1}

    pending = api.post("/points/entries", {"member_id": "M-7", "rule_code": "work-discipline", "actor": "desk",
                                           "reason": "迟到早退"}, headers={"Idempotency-Key": "desk-0042"})
    assert pending.status_code == 202 and pending.json()["status"] == "pending"
    assert api.get("/points/approvals").json()["count"] == 1
    approved = api.post("/points/approvals/{}/approve".format(pending.json()["id"]), {"approver": "secretary"})
    assert approved.status_code == 200 and approved.json()["balance_after"] == 9
