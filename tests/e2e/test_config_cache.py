"""Park configurations are cached in each process, and a change is seen at
once by every process of the service: two replicas of the needs service,
both warm, then a new item; every need naming it right after is accepted."""
import copy
import os
import subprocess
import sys
import time

import requests

from lamplight_dev.devstack import ROOT
from lamplight_tools.services import SERVICES
from tests.conftest import wait_for
from tests.parks import needs_config
from tests.stackfixtures import NEED, api, stack  # noqa: F401 (fixtures)

REPLICA_PROBE_PORT = 19111


def _replica(stack, name, probe_port):
    env = dict(os.environ, **stack.env)
    env.update({"OBSERVABILITY_ADDRESS": "127.0.0.1:{}".format(probe_port), "PYTHONUNBUFFERED": "1",
                "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    log = open(stack.log_dir / "{}-replica.log".format(name), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "nameko", "run", "--config", str(ROOT / "config.yaml"),
                             SERVICES[name][0]], cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get("http://127.0.0.1:{}/readyz".format(probe_port), timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the replica did not become ready")


def _calls(url, entrypoint):
    text = requests.get(url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lamplight_entrypoint_calls_total{") and 'entrypoint="{}"'.format(entrypoint) in line)


def _db_reads(url, collection):
    text = requests.get(url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lamplight_db_requests_total{") and 'collection="{}"'.format(collection) in line
               and 'command="find"' in line)


def test_every_replica_sees_a_new_configuration_at_once(stack, api):
    replica = _replica(stack, "needs", REPLICA_PROBE_PORT)
    try:
        urls = [stack.probe_url("needs", "/metrics"), "http://127.0.0.1:{}/metrics".format(REPLICA_PROBE_PORT)]
        n = 0
        while min(_calls(url, "submit") for url in urls) < 3:  # both replicas warm, their caches filled
            n += 1
            assert n < 200, "the requests did not reach both replicas"
            answer = api.post("/needs", dict(NEED, title="宿舍楼道灯坏了{}".format(n),
                                             requester={"kind": "worker", "name": "工友{}".format(n)}),
                              headers={"Idempotency-Key": "warm-{}".format(n)})
            assert answer.status_code == 201, answer.text
        reads_before = sum(_db_reads(url, "configs") for url in urls)
        for m in range(10):  # warm: the configuration is not read again for each need
            api.post("/needs", dict(NEED, title="宿舍楼道灯又坏了{}".format(m),
                                    requester={"kind": "worker", "name": "工人{}".format(m)}),
                     headers={"Idempotency-Key": "warm2-{}".format(m)}).raise_for_status()
        assert sum(_db_reads(url, "configs") for url in urls) - reads_before <= 2

        config = needs_config(version=2)
        daily = next(c for c in config["categories"] if c["code"] == "daily_life")
        item = copy.deepcopy(next(i for i in daily["items"] if i["code"] == "facilities_repair"))
        daily["items"].append(dict(item, code="street_lamp", name="路灯报修"))
        assert api.put("/needs/config", config).status_code == 200
        for m in range(20):  # at once, on both replicas
            answer = api.post("/needs", dict(NEED, item="street_lamp", title="厂区{}号路灯不亮".format(m),
                                             requester={"kind": "worker", "name": "夜班工人{}".format(m)}),
                              headers={"Idempotency-Key": "lamp-{}".format(m)})
            assert answer.status_code == 201, (m, answer.text)
        assert min(_calls(url, "submit") for url in urls) >= 3
    finally:
        replica.terminate()
        replica.wait(20)


def test_every_notify_replica_renders_a_park_template_changed_a_moment_ago(stack, api):
    """The park's own templates are cached in each notify process too (each
    notice read them): after a change, every replica renders the new one."""
    replica = _replica(stack, "notify", REPLICA_PROBE_PORT + 1)
    try:
        urls = [stack.probe_url("notify", "/metrics"), "http://127.0.0.1:{}/metrics".format(REPLICA_PROBE_PORT + 1)]

        def preview():
            answer = api.post("/notify/templates/preview", {"key": "need.triaged", "locale": "zh-CN"})
            assert answer.status_code == 200, answer.text
            return answer.json()["title"]

        n = 0
        while min(_calls(url, "preview") for url in urls) < 3:  # both replicas warm
            n += 1
            assert n < 200, "the previews did not reach both replicas"
            preview()
        reads_before = sum(_db_reads(url, "templates") for url in urls)
        titles = {preview() for _ in range(10)}
        assert sum(_db_reads(url, "templates") for url in urls) - reads_before == 0, "read from the cache"
        assert len(titles) == 1

        for version in ("一", "二"):
            title = "需求已受理（第{}版）".format(version)
            answer = api.put("/notify/templates/need.triaged/zh-CN", {"title": title, "body": "{{ summary }}"})
            assert answer.status_code == 200, answer.text
            calls = [_calls(url, "preview") for url in urls]
            assert [preview() for _ in range(20)] == [title] * 20  # at once, on both replicas
            assert all(_calls(url, "preview") > before for url, before in zip(urls, calls))
        assert api.delete("/notify/templates/need.triaged/zh-CN").status_code == 200
        assert {preview() for _ in range(10)} == titles
    finally:
        replica.terminate()
        replica.wait(20)


def test_every_notify_replica_uses_a_recipient_profile_changed_a_moment_ago(stack, api):
    """Recipients' profiles are cached in each notify process (each notice
    read them): after a change, every replica's notices follow the new one."""
    replica = _replica(stack, "notify", REPLICA_PROBE_PORT + 2)
    try:
        urls = [stack.probe_url("notify", "/metrics"), "http://127.0.0.1:{}/metrics".format(REPLICA_PROBE_PORT + 2)]
        member, recipient = "M-CACHE", "worker-cache"
        profile = {"member_id": member, "locale": "zh-CN"}  # the in-app inbox only
        assert api.put("/notify/recipients/" + recipient, profile).status_code == 200
        rules = {"version": 1, "rules": [{"code": "volunteer-event", "name": "参加志愿活动", "account": "service",
                                          "points": 3}]}
        assert api.put("/points/rules", rules).status_code == 200
        posted = [0]

        def credit():
            posted[0] += 1
            answer = api.post("/points/entries", {"member_id": member, "rule_code": "volunteer-event", "actor": "desk",
                                                  "reason": "活动{}".format(posted[0])},
                              headers={"Idempotency-Key": "cache-credit-{}".format(posted[0])})
            assert answer.status_code == 201, answer.text

        def titles():
            notices = api.get("/notify/recipients/{}/notices".format(recipient), params={"limit": 100}).json()
            return [n["title"] for n in notices["notices"]]

        n = 0
        while min(_calls(url, "on_event") for url in urls) < 3:  # both replicas have read the profile
            n += 1
            assert n < 100, "the events did not reach both replicas"
            credit()
            wait_for(lambda: len(titles()) == posted[0], what="the notice of credit {}".format(posted[0]))
        assert set(titles()) == {"积分到账"}

        assert api.put("/notify/recipients/" + recipient, dict(profile, locale="en")).status_code == 200
        calls = [_calls(url, "on_event") for url in urls]
        for _ in range(12):
            credit()
        wait_for(lambda: len(titles()) == posted[0], what="the notices of the last credits")
        assert titles()[:12] == ["Points credited"] * 12  # newest first: every one in the new locale
        assert all(_calls(url, "on_event") > before for url, before in zip(urls, calls)), "both replicas sent some"
    finally:
        replica.terminate()
        replica.wait(20)
