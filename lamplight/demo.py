"""Load the demo park through the gateway, like any client would.

The Quanlinan cluster of Wuhan Economic Development Zone (DOMAIN.md, seed
003): a 45-person four-colour service team over six categories of needs, and
needs of the kinds the seeds report. Safe to run again: volunteers carry the
park's own numbers and needs carry idempotency keys.

    python -m lamplight.demo [--gateway http://127.0.0.1:8000]
"""
import argparse
import sys
import time

import requests

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
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "华", "红"]

NEEDS = [
    ("qln-2026-001", {"kind": "enterprise_request", "category": "public_services", "channel": "liaison_meeting",
                      "title": "为1800名食堂员工集中办理健康证",
                      "requester": {"kind": "enterprise", "name": "园区餐饮企业", "enterprise": "某食品公司"}}),
    ("qln-2026-002", {"kind": "enterprise_request", "category": "government_affairs", "channel": "liaison_meeting",
                      "title": "急需招聘60名一线操作工",
                      "requester": {"kind": "enterprise", "name": "人事经理", "enterprise": "某汽车零部件公司"}}),
    ("qln-2026-003", {"kind": "micro_wish", "category": "daily_life", "channel": "wish_wall",
                      "title": "宿舍区篮球场的灯坏了，夜班下班后想打球",
                      "requester": {"kind": "worker", "name": "李师傅", "phone": "13900001111"}}),
    ("qln-2026-004", {"kind": "urgent_matter", "category": "care", "channel": "hotline",
                      "title": "三个月工资被拖欠，联系电话13900002222",
                      "requester": {"kind": "worker", "name": "王师傅", "phone": "13900002222"}}),
    ("qln-2026-005", {"kind": "micro_wish", "category": "party_services", "channel": "official_account",
                      "title": "流动党员组织关系转接咨询",
                      "requester": {"kind": "member", "name": "赵同志"}}),
    ("qln-2026-006", {"kind": "micro_wish", "category": "culture_sports", "channel": "qq_group",
                      "title": "周末组织青年职工篮球联谊赛",
                      "requester": {"kind": "talent", "name": "刘工程师"}}),
]


def volunteers():
    n = 0
    for team, (count, _label, categories) in TEAMS.items():
        for i in range(count):
            name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
            yield {"kind": "volunteer", "name": name, "phone": "1380000{:04d}".format(n),
                   "party_member": team == "red" or n % 3 == 0, "teams": [team], "categories": categories,
                   "zone": "片区{}".format(n % 4 + 1), "external_ref": "QLN-V{:03d}".format(n + 1)}
            n += 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lamplight.demo")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    base = "{}/api/v1/parks/{}".format(args.gateway, PARK)
    http = requests.Session()

    registered = {}
    for v in volunteers():
        r = http.post(base + "/responders", json=v, timeout=30)
        r.raise_for_status()
        registered[r.json()["id"]] = r.json()
    print("demo park {}: {} volunteers in {} colour teams".format(PARK, len(registered), len(TEAMS)))

    for key, need in NEEDS:
        r = http.post(base + "/needs", json=need, headers={"Idempotency-Key": key}, timeout=30)
        r.raise_for_status()
        need_id = r.json()["id"]
        offered = None
        deadline = time.monotonic() + 15
        while offered is None and time.monotonic() < deadline:
            for rid, v in registered.items():
                if set(v["categories"]) & {need["category"]}:
                    inbox = http.get(base + "/responders/{}/notices".format(rid), timeout=30).json()["notices"]
                    if any(n["subject"].startswith(need_id) for n in inbox):
                        offered = v
                        break
            else:
                time.sleep(0.3)
        who = "{} ({}队) got the offer in their inbox".format(offered["name"], offered["teams"][0]) if offered \
            else "no offer yet"
        print("  {} {} [{}] -> {}".format(need_id, need["title"][:18], CATEGORIES[need["category"]], who))
        if offered:
            last = (need_id, offered["id"])
    if NEEDS and offered:
        need_id, rid = last
        print("\nlook at it:\n  curl -s {}/needs/{}\n  curl -s {}/responders/{}/notices".format(base, need_id, base, rid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
