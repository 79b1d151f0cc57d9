"""The needs desk and the echo wall over HTTP, every service its own process."""
import json

from lamplight_dev import demo
from tests.conftest import wait_for
from tests.stackfixtures import NEED, api, stack  # noqa: F401 (fixtures)


def seed_secrets():
    """Every name, phone number and enterprise in the demo park's seed data."""
    secrets = set()
    for _, need in demo.NEEDS:
        requester = need["requester"]
        secrets.update(v for v in (requester.get("name"), requester.get("phone"), requester.get("enterprise")) if v)
        secrets.update(str(v) for k, v in need.get("details", {}).items() if k in ("employer",))
    for volunteer in demo.volunteers():
        secrets.update((volunteer["name"], volunteer["phone"]))
    return secrets


def test_the_echo_wall_of_the_seeded_park_shows_no_name_or_phone_number(stack, api):
    assert demo.main(["--gateway", stack.gateway_url, "--api-key", stack.admin_key()]) == 0
    wall = wait_for(lambda: (lambda w: w if len(w["entries"]) == len(demo.NEEDS) else None)(
        api.get("/wall", params={"limit": 100}).json()), what="every seeded need on the wall")
    pages = [wall]
    for line in wall["entries"]:
        pages.append(api.get("/wall/" + line["need_id"]).json())
    for status in ("triaged", "assigned", "closed"):
        pages.append(api.get("/wall", params={"status": status}).json())
    pages.append(api.get("/lists").json())
    text = json.dumps(pages, ensure_ascii=False)
    secrets = seed_secrets()
    assert len(secrets) > 90  # 45 volunteers' names and phones, and the requesters'
    leaked = sorted(s for s in secrets if s in text)
    assert leaked == [], "personal data on the echo wall: {}".format(leaked)
    # what the wall does show: progress, the desk's public notes, the requester's stars
    by_status = {line["status"]: line for line in wall["entries"]}
    assert by_status["closed"]["rating"] == 5 and by_status["closed"]["status_label"] == "已办结"
    assert by_status["assigned"]["notes"][-1]["note"] == "已移交劳动监察大队，限24小时内处理"
    assert by_status["assigned"]["title"] == "三个月工资被拖欠，联系电话***"


def test_the_desk_moves_a_need_and_every_answer_is_json(api):
    created = api.post("/needs", NEED).json()
    refused = api.post("/needs/{}/resolve".format(created["id"]), {"actor": "desk-01"})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "illegal_transition" and "assign" in error["fields"]["allowed_actions"]
    for action, body in (("assign", {"actor": "desk-01", "unit": "物业公司"}),
                         ("resolve", {"actor": "desk-01", "public_note": "已修好"}),
                         ("evaluate", {"rating": 4, "outcome": "partly_fixed"}),
                         ("review", {"actor": "committee-1", "by": "committee", "score": 88})):
        answer = api.post("/needs/{}/{}".format(created["id"], action), body)
        assert answer.status_code == 200, answer.text
    need = answer.json()
    assert need["status"] == "closed" and need["evaluation"]["rating"] == 4
    assert need["reviews"]["committee"]["score"] == 88
    assert [e["action"] for e in need["timeline"]] == ["submit", "triage", "assign", "resolve", "evaluate", "review"]

    follow = api.post("/wall/{}/followers".format(created["id"]), {"follower_id": "wx-1"})
    assert follow.status_code == 201
    assert api.get("/needs/{}/followers".format(created["id"])).json()["followers"] == ["wx-1"]
    stats = api.get("/needs-statistics").json()
    assert stats["satisfaction"]["rated"] == 1 and stats["by_status"] == {"closed": 1}
    assert api.post("/needs-sweep").json() == {"overdue": 0, "supervise": 0, "close_unevaluated": 0}

    other_park = api.http.post(api.base.replace("/quanlinan", "/nowhere") + "/needs", json=NEED, timeout=30)
    assert other_park.status_code == 404 and other_park.json()["error"]["code"] == "not_found"
    batch = api.post("/needs/batch", {"meeting": {"title": "联席会", "held_on": "2026-11-20"},
                                      "entered_by": "desk-02", "needs": [NEED, dict(NEED, title="食堂排队太久")]},
                     headers={"Idempotency-Key": "meeting-11"})
    assert batch.status_code == 201 and batch.json()["created"] == 2


def test_the_wall_pages_over_http_with_the_cursor_as_given(api):
    """A park of 235 needs (five liaison meetings), paged 100 at a time by
    pasting next_before into the URL as it comes: every need once. (A cursor
    with "+00:00" arrived as " 00:00" and paging stopped after 100 lines.)"""
    ids = set()
    for meeting, count in enumerate((47, 47, 47, 47, 47)):
        needs = [dict(NEED, title="宿舍区第{}处路灯坏了".format(meeting * 100 + n),
                      requester={"kind": "worker", "name": "工友{}-{}".format(meeting, n)}) for n in range(count)]
        batch = api.post("/needs/batch", {"meeting": {"title": "第{}次联席会".format(meeting + 1),
                                                      "held_on": "2026-11-20"}, "entered_by": "desk-02",
                                          "needs": needs}, headers={"Idempotency-Key": "wall-{}".format(meeting)})
        assert batch.status_code == 201, batch.text
        ids |= {n["id"] for n in batch.json()["needs"]}
    assert len(ids) == 235
    wait_for(lambda: len(_all_pages(api)) == 235, timeout=90, interval=1, what="235 lines on the wall")
    seen = _all_pages(api)
    assert len(seen) == len(set(seen)) and set(seen) == ids


def _all_pages(api):
    seen, before = [], None
    for _ in range(10):
        path = "/wall?limit=100" + ("&before=" + before if before else "")  # as a client pastes it
        answer = api.get(path)
        assert answer.status_code == 200, answer.text
        seen += [entry["need_id"] for entry in answer.json()["entries"]]
        before = answer.json()["next_before"]
        if before is None:
            return seen
    raise AssertionError("more than 10 pages")
