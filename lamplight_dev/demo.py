"""Load the demo park through the gateway, like any client would.

The Quanlinan cluster of Wuhan Economic Development Zone (DOMAIN.md, seed
003): a 45-person four-colour service team over six categories of needs, and
needs of the kinds the seeds report. Safe to run again: volunteers carry the
park's own numbers and needs carry idempotency keys.

    python -m lamplight_dev.demo [--gateway http://127.0.0.1:8000]
"""
import argparse
import os
import sys
import time

import requests

from lamplight_tools import parks, parksctl

PARK = "quanlinan"

# category code -> name (Wuhan: 6 categories)
CATEGORIES = {
    "government_affairs": "政务服务",
    "public_services": "公共服务",
    "party_services": "党建服务",
    "daily_life": "生活服务",
    "culture_sports": "文体服务",
    "care": "关爱服务",
}
# Wuhan's four colour teams and what each covers; 45 members in all
TEAMS = {
    "green": (12, "政企绿", ["government_affairs", "public_services"]),
    "blue": (11, "活力蓝", ["public_services", "culture_sports"]),
    "red": (11, "向阳红", ["party_services"]),
    "orange": (11, "暖心橙", ["daily_life", "care"]),
}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
         "华", "红"]

NEEDS = [
    ("qln-2026-001", {"kind": "enterprise_request", "category": "public_services", "item": "health_certificates",
                      "channel": "liaison_meeting", "title": "为1800名食堂员工集中办理健康证",
                      "details": {"headcount": 1800},
                      "requester": {"kind": "enterprise", "name": "园区餐饮企业", "enterprise": "某食品公司"}}),
    ("qln-2026-002", {"kind": "enterprise_request", "category": "government_affairs", "item": "recruitment",
                      "channel": "liaison_meeting", "title": "急需招聘60名一线操作工",
                      "details": {"headcount": 60, "positions": "一线操作工"},
                      "requester": {"kind": "enterprise", "name": "人事经理", "enterprise": "某汽车零部件公司"}}),
    ("qln-2026-003", {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair",
                      "channel": "wish_wall",
                      "title": "宿舍区篮球场的灯坏了，夜班下班后想打球", "details": {"location": "宿舍区篮球场"},
                      "requester": {"kind": "worker", "name": "李师傅", "phone": "13900001111"}}),
    ("qln-2026-004", {"kind": "urgent_matter", "category": "daily_life", "item": "wage_arrears", "channel": "hotline",
                      "title": "三个月工资被拖欠，联系电话13900002222", "entered_by": "desk-01",
                      "details": {"employer": "某建材公司", "amount_owed": 15600, "months": 3},
                      "requester": {"kind": "worker", "name": "王师傅", "phone": "13900002222"}}),
    ("qln-2026-005", {"kind": "micro_wish", "category": "party_services", "item": "party_transfer",
                      "channel": "official_account", "title": "流动党员组织关系转接咨询",
                      "requester": {"kind": "member", "name": "赵同志", "member_id": "QLN-M101"}}),
    ("qln-2026-006", {"kind": "micro_wish", "category": "culture_sports", "item": "sports_events",
                      "channel": "qq_group",
                      "title": "周末组织青年职工篮球联谊赛",
                      "requester": {"kind": "talent", "name": "刘工程师"}}),
]


REWARDS = [("towel", "毛巾", 20, 100), ("thermos", "保温杯", 50, 40), ("movie", "电影票", 80, 20)]


def load_points(http, base, rules):
    for code, name, cost, stock in REWARDS:
        http.put(base + "/points/rewards/" + code, json={"name": name, "cost": cost, "stock": stock},
                 timeout=30).raise_for_status()
    # a year at the desk for two members, safe to replay (idempotency keys)
    for key, member, rule, actor, approver in (
            ("qln-p-001", "QLN-M001", "absent-org-life", "desk-01", None),
            ("qln-p-002", "QLN-M001", "late-dues", "desk-01", None),
            ("qln-p-003", "QLN-M001", "work-discipline", "desk-01", "secretary"),
            ("qln-p-004", "QLN-M002", "good-deed", "desk-01", None),
            ("qln-p-005", "QLN-M002", "volunteer-event", "desk-01", None),
            ("qln-p-006", "QLN-M003", "volunteer-event", "desk-01", None),
            ("qln-p-007", "QLN-M003", "volunteer-event", "desk-01", None)):
        body = {"member_id": member, "rule_code": rule, "actor": actor, "reason": "demo"}
        answer = http.post(base + "/points/entries", json=body, headers={"Idempotency-Key": key}, timeout=30)
        answer.raise_for_status()
        if answer.status_code == 202:  # the rule needs a second person
            http.post(base + "/points/approvals/{}/approve".format(answer.json()["id"]), json={"approver": approver},
                      timeout=30).raise_for_status()
    standing = http.get(base + "/members/QLN-M001/points", timeout=30).json()
    board = http.get(base + "/points/leaderboard", timeout=30).json()["leaderboard"]
    print("points: {} rules; QLN-M001 has {} of 12 ({} stars, warning: {}); service leaderboard: {}".format(
        len(rules), standing["balance"], standing["stars"], standing["warning"],
        ", ".join("{} {}".format(r["member_id"], r["balance"]) for r in board[:3])))


def load_park(gateway_url, api_key, http, base, park):
    """The demo parks of parks/demo.yaml as an operator loads them
    (``lamplight parks apply``: a diff, then a new version only where a park
    changed, installed by every service); then the park's resources and
    service projects."""
    status = parksctl.apply(parks.DEMO_PARKS, parksctl.Gateway(gateway_url, api_key), yes=True, wait=60)
    if status != 0:
        raise SystemExit("applying {} failed ({})".format(parks.DEMO_PARKS, status))
    for code, resource in park.get("resources", {}).items():
        http.put(base + "/resources/" + code, json=resource, timeout=30).raise_for_status()
    for code, project in park.get("projects", {}).items():
        http.put(base + "/projects/" + code, json=project, timeout=30).raise_for_status()


# three shifts a day, every day: "production never stops" (人停产不停)
SHIFTS = (("08:00", "16:00", False), ("16:00", "00:00", True), ("00:00", "08:00", False))
ZONES = ("dorms", "plants-north", "plants-south", "centre")
TEAM_SKILLS = {"green": ["legal", "driving"], "blue": ["driving", "counselling"], "red": ["counselling"],
               "orange": ["electrician", "plumbing"]}


def volunteers():
    n = 0
    for team, (count, _label, _categories) in TEAMS.items():
        for i in range(count):
            name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
            party_member = team == "red" or n % 3 == 0
            start, end, overnight = SHIFTS[i % 3]
            skills = TEAM_SKILLS[team] if i % 2 == 0 else ["first_aid"]
            yield {"kind": "volunteer", "name": name, "phone": "1380000{:04d}".format(n),
                   "party_member": party_member, "member_id": "QLN-M{:03d}".format(n + 1) if party_member else None,
                   # the first three of each team are also on the emergency squad
                   "teams": [team] + (["squad"] if i < 3 else []), "skills": skills, "zone": ZONES[n % 4],
                   "roster": {"shifts": [{"day": d, "start": start, "end": end, "overnight": overnight}
                                         for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]},
                   "external_ref": "QLN-V{:03d}".format(n + 1)}
            n += 1


# a night-shift worker from dormitory 3: the requester of the court light, who follows it
WORKER = ("worker-li", {"locale": "zh-CN", "building": "dorm-3",
                        "shifts": [{"day": d, "start": "20:00", "end": "08:00", "overnight": True}
                                   for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]})


def notices(http, base):
    """The worker's inbox, and a red broadcast to the whole park; what the
    delivery log says of each."""
    worker_id, _ = WORKER
    body = {"title": "红色广播", "body": "园区职工子女秋季入学登记本周五截止，请到党群服务中心办理。",
            "actor": "desk-01"}
    answer = http.post(base + "/notify/broadcasts", json=body, headers={"Idempotency-Key": "qln-red-001"}, timeout=30)
    answer.raise_for_status()
    report = answer.json()
    deadline = time.monotonic() + 30
    while report["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.3)
        report = http.get(base + "/notify/broadcasts/" + report["broadcast_id"], timeout=30).json()
    inbox = http.get(base + "/notify/recipients/{}/notices".format(worker_id), timeout=30).json()["notices"]
    print("notices: red broadcast {} to {} people; {} (night shift, dorm 3) has {} in the inbox:".format(
        report["status"], report["recipients"], worker_id, len(inbox)))
    for notice in reversed(inbox):
        print("  [{}] {}".format(notice["title"], notice["body"][:40]))


def act(http, base, need_id, action, body):
    """One desk action, skipped when the need is already past it (a re-run)."""
    need = http.get(base + "/needs/" + need_id, timeout=30).json()
    if action not in need["allowed_actions"]:
        return need
    answer = http.post("{}/needs/{}/{}".format(base, need_id, action), json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()


def claim_and_fix(http, base, need_id, volunteer):
    """The volunteer the light was offered to claims it, starts and finishes;
    each step reaches the need through the task events."""
    task = "{}/tasks/{}:task:1".format(base, need_id)
    for action, body, status in (("claim", {}, "assigned"), ("start", {}, "in_progress"),
                                 ("complete", {"note": "已更换灯管，夜班下班后可以打球了", "place": "宿舍区篮球场",
                                               "photo_ref": "demo/court-light.jpg", "hours": 1.5}, "resolved")):
        answer = http.post("{}/{}".format(task, action), json=dict(body, responder_id=volunteer["id"]), timeout=30)
        if answer.status_code not in (200, 409):  # 409: a re-run, the step was taken before
            answer.raise_for_status()
        deadline = time.monotonic() + 10
        while http.get(base + "/needs/" + need_id, timeout=30).json()["status"] not in (status, "resolved", "closed"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    done = http.get(task, timeout=30).json()
    print("task {}: {} by {} ({} h of service)".format(done["task_id"], done["status"], volunteer["name"],
                                                      (done["completion"] or {}).get("hours")))


def desk(http, base, offers):
    """A day at the desk: the court light fixed and rated, the wage arrears
    handed to the labour inspectorate; then the echo wall as the public sees it."""
    if "qln-2026-003" in offers:
        need_id, volunteer = offers["qln-2026-003"]
        claim_and_fix(http, base, need_id, volunteer)
        act(http, base, need_id, "evaluate", {"rating": 5, "outcome": "fixed", "comment": "谢谢"})
    if "qln-2026-004" in offers:
        need_id, _ = offers["qln-2026-004"]
        act(http, base, need_id, "assign", {"actor": "desk-01", "unit": "区人社局劳动监察大队",
                                            "public_note": "已移交劳动监察大队，限24小时内处理"})
    # the wall is a projection fed by events: wait until it shows where each need stands
    current = {need_id: http.get(base + "/needs/" + need_id, timeout=30).json()["status"]
               for need_id, _ in offers.values()}
    deadline = time.monotonic() + 10
    while True:
        wall = http.get(base + "/wall", timeout=30).json()["entries"]
        if {line["need_id"]: line["status"] for line in wall if line["need_id"] in current} == current \
                or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    print("echo wall ({} lines, no names or phone numbers):".format(len(wall)))
    for line in wall:
        stars = "★" * line["rating"] if line["rating"] else ""
        print("  [{}] {} — {} {}".format(line["status_label"], line["title"][:24], line["notes"][-1]["note"], stars))
    lists = http.get(base + "/lists", timeout=30).json()["counts"]
    print("three lists: {items} items in {categories} categories, {resources} resources, {projects} service projects"
          .format(**lists))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lamplight_dev.demo")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=os.environ.get("LAMPLIGHT_API_KEY"),
                        help="a platform admin's key (default $LAMPLIGHT_API_KEY)")
    args = parser.parse_args(argv)
    if not args.api_key:
        raise SystemExit("no API key: pass --api-key or set LAMPLIGHT_API_KEY "
                         "(./dev up keeps one in .stack/run/admin.key)")
    base = "{}/api/v1/parks/{}".format(args.gateway, PARK)
    http = requests.Session()
    http.headers["Authorization"] = "Bearer " + args.api_key
    park = parks.load()[PARK]

    load_park(args.gateway, args.api_key, http, base, park)
    registered = {}
    for v in volunteers():
        r = http.post(base + "/responders", json=v, timeout=30)
        if r.status_code >= 400:
            raise SystemExit("registering {} failed: {} {}".format(v["external_ref"], r.status_code, r.text))
        registered[r.json()["id"]] = r.json()
    worker_id, profile = WORKER
    http.put(base + "/notify/recipients/" + worker_id, json=profile, timeout=30).raise_for_status()
    on_duty = http.get(base + "/on-duty", timeout=30).json()["count"]
    print("demo park {}: {} volunteers in {} colour teams, three shifts a day; {} on duty now".format(
        PARK, len(registered), len(TEAMS), on_duty))

    offers = {}
    for key, need in NEEDS:
        r = http.post(base + "/needs", json=need, headers={"Idempotency-Key": key}, timeout=30)
        r.raise_for_status()
        need_id = r.json()["id"]
        if key == "qln-2026-003":  # the worker who asked follows the need on the echo wall
            http.post(base + "/wall/{}/followers".format(need_id), json={"follower_id": worker_id},
                      timeout=30).raise_for_status()
        offered, task = None, {}
        deadline = time.monotonic() + 15
        while offered is None and time.monotonic() < deadline:
            task = http.get("{}/tasks/{}:task:1".format(base, need_id), timeout=30).json()
            for rid in sorted(task.get("offers", {})):
                inbox = http.get(base + "/responders/{}/notices".format(rid), timeout=30).json()["notices"]
                if any(n["subject"].startswith(need_id) for n in inbox):
                    offered = registered[rid]
                    break
            else:
                time.sleep(0.3)
        if offered:
            who = "offered to {} of the {}队 on duty; {} has it in the inbox".format(
                len(task["offers"]), offered["teams"][0], offered["name"])
        elif task.get("mode") == "unit" or task.get("holder"):
            who = "assigned to a unit"
        else:
            who = "no offer yet"
        print("  {} {} [{}] -> {}".format(need_id, need["title"][:18], CATEGORIES[need["category"]], who))
        if offered:
            last = (need_id, offered["id"])
            offers[key] = (need_id, offered)
    desk(http, base, offers)
    load_points(http, base, park["points"]["rules"])
    notices(http, base)
    if NEEDS and offered:
        need_id, rid = last
        auth = "-H \"Authorization: Bearer $(cat .stack/run/admin.key)\""
        print("\nlook at it:\n  curl -s {} {}/needs/{}\n  curl -s {} {}/responders/{}/notices".format(
            auth, base, need_id, auth, base, rid))
        print("  curl -s {} '{}/notify/deliveries?recipient={}'".format(auth, base, worker_id))
        print("  the echo wall, public: {}/parks/{}/wall".format(args.gateway, PARK))
    return 0


if __name__ == "__main__":
    sys.exit(main())
