"""The public echo wall page in a real browser: Debian's chromium, headless,
driven by Playwright (tests/e2e/wall_visitor.py) on a phone-sized screen.
What a visitor sees is checked and screenshots kept under test-artifacts/."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for
from tests.parks import fast_needs_config
from tests.stackfixtures import NEED, api, stack  # noqa: F401 (fixtures)

ARTIFACTS = Path(os.environ.get("LAMPLIGHT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def test_a_visitor_reads_the_wall_on_a_phone_and_follows_a_need(stack, api):
    # time limits of two seconds, so that the wall has overdue needs to show
    assert api.put("/needs/config", fast_needs_config(version=2, due_seconds=2.0)).status_code == 200
    wage = dict(NEED, kind="urgent_matter", item="wage_arrears", title="三个月工资被拖欠，联系电话13900002222",
                details={"employer": "某建材公司", "amount_owed": 15600, "months": 3})
    wage_id = api.post("/needs", wage).json()["id"]
    light_id = api.post("/needs", NEED).json()["id"]
    wait_for(lambda: api.post("/needs-sweep").json()["overdue"] >= 2 or None, timeout=20, interval=0.5,
             what="both needs overdue")

    visitor = subprocess.run([sys.executable, str(Path(__file__).with_name("wall_visitor.py")), stack.gateway_url,
                              "quanlinan", light_id, str(ARTIFACTS), CHROMIUM],
                             capture_output=True, text=True, timeout=120)
    assert visitor.returncode == 0, visitor.stderr[-3000:]
    seen = json.loads(visitor.stdout)

    assert seen["wall_status"] == 200 and seen["lang"] == "zh-CN" and seen["title"].endswith("回音壁")
    entries = {e["need"]: e for e in seen["entries"]}
    assert set(entries) == {light_id, wage_id}
    light = entries[light_id]
    assert light["title"] == NEED["title"] and light["status"] == "已分类分级"
    assert "已受理 0 天" in light["text"] and light["marks"] == ["已超时"]
    assert "2 条已超时" in seen["summary"]
    # no personal data: the phone number in the title is masked, no requester name anywhere
    assert "13900002222" not in seen["body"] and NEED["requester"]["name"] not in seen["body"]
    assert "联系电话***" in entries[wage_id]["title"]
    # readable on a phone: nothing wider than the screen
    assert seen["scroll_width"] <= 390
    assert (ARTIFACTS / "echo-wall.png").stat().st_size > 10000

    # the visitor opened the court light, read its timeline and followed it
    assert seen["entry_url"].endswith("/wall/" + light_id)
    assert seen["entry_heading"] == "办理进程" and seen["timeline"]
    assert seen["followed_url"].endswith("/wall/{}?followed=1".format(light_id))
    assert seen["followed_notice"] == "已关注，办理有进展时会通知您" and seen["unfollow_visible"]
    followers = api.get("/needs/{}/followers".format(light_id)).json()["followers"]
    assert len(followers) == 1 and followers[0].startswith("web-")
    # back on the wall, the need is under 我关注的
    assert seen["following"] == [NEED["title"]]
    # a park that does not exist is a page too, in Chinese
    assert seen["missing_status"] == 404 and "没有找到" in seen["missing_text"]
