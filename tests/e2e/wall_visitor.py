"""A visitor on the echo wall, in Debian's chromium driven by Playwright.

Run as its own process (no eventlet: the test process is monkey-patched by
nameko, which Playwright's event loop does not share well); prints what the
visitor saw as JSON for the test to check, and keeps screenshots.

    python tests/e2e/wall_visitor.py BASE_URL PARK NEED_ID ARTIFACTS_DIR CHROMIUM
"""
import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def visit(base, park, need_id, artifacts, chromium):
    seen = {}
    wall_url = "{}/parks/{}/wall".format(base, park)
    artifacts = Path(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, locale="zh-CN")
        page.set_default_timeout(15000)
        response = page.goto(wall_url)
        seen["wall_status"] = response.status
        seen["lang"] = page.locator("html").get_attribute("lang")
        seen["title"] = page.title()
        seen["entries"] = [{"need": e.get_attribute("data-need"), "title": e.locator("h2").inner_text(),
                            "status": e.locator(".status").inner_text(), "text": e.inner_text(),
                            "marks": e.locator(".mark").all_inner_texts()}
                           for e in page.locator("#wall .entry").all()]
        seen["summary"] = page.locator(".summary").last.inner_text()
        seen["body"] = page.locator("body").inner_text()
        seen["scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(artifacts / "echo-wall.png"), full_page=True)

        page.locator('#wall .entry[data-need="{}"] h2 a'.format(need_id)).click()
        page.wait_for_load_state()
        seen["entry_url"] = page.url
        seen["entry_heading"] = page.locator("h3").inner_text()
        seen["timeline"] = page.locator(".timeline li").all_inner_texts()
        page.get_by_role("button", name="关注进展").click()
        page.wait_for_selector("[role=status]")
        seen["followed_url"] = page.url
        seen["followed_notice"] = page.get_by_role("status").inner_text()
        seen["unfollow_visible"] = page.get_by_role("button", name="取消关注").is_visible()
        page.screenshot(path=str(artifacts / "echo-wall-need.png"), full_page=True)

        page.goto(wall_url)
        seen["following"] = page.locator(".following .entry h2").all_inner_texts()
        missing = page.goto("{}/parks/nowhere-at-all/wall".format(base))
        seen["missing_status"] = missing.status
        seen["missing_text"] = page.locator("main").inner_text()
        browser.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(visit(*sys.argv[1:6]), ensure_ascii=False))
