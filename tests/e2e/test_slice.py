"""One need through the whole platform over HTTP, every service its own
``nameko run`` process, against the real broker and database."""
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)


def test_a_need_posted_to_the_gateway_reaches_the_volunteers_inbox(api):
    volunteer = api.post("/responders", VOLUNTEER)
    assert volunteer.status_code == 201, volunteer.text
    volunteer_id = volunteer.json()["id"]

    created = api.post("/needs", NEED, headers={"Idempotency-Key": "desk-0001"})
    assert created.status_code == 201, created.text
    need = created.json()
    assert need["status"] == "triaged" and need["grade"] == "routine" and need["team"] == "orange"
    assert created.headers["Location"].endswith("/needs/" + need["id"])
    assert api.get("/needs/" + need["id"]).json()["id"] == need["id"]

    inbox = wait_for(lambda: api.get("/responders/{}/notices".format(volunteer_id)).json()["notices"],
                     what="the notice in the volunteer's inbox")
    (notice,) = inbox
    assert notice["type"] == "task.offered" and notice["read"] is False
    assert "篮球场的灯坏了" in notice["body"]
    assert notice["subject"] == "{}:task:1".format(need["id"])

    read = api.post("/responders/{}/notices/{}/read".format(volunteer_id, notice["id"]))
    assert read.status_code == 200 and read.json()["read"] is True
    assert api.get("/responders/{}/notices".format(volunteer_id), params={"unread": "1"}).json()["count"] == 0


def test_the_same_idempotency_key_replays_or_conflicts(api):
    first = api.post("/needs", NEED, headers={"Idempotency-Key": "card-17"})
    again = api.post("/needs", NEED, headers={"Idempotency-Key": "card-17"})
    other = api.post("/needs", dict(NEED, title="另一件事"), headers={"Idempotency-Key": "card-17"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"


def test_bad_input_gets_one_error_shape_naming_the_fields(api):
    bad = api.post("/needs", {"kind": "wish", "channel": "fax", "requester": {"kind": "worker"}})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "bad_input"
    assert {"kind", "channel", "category", "title", "requester"} <= set(error["fields"])
    assert "name" in error["fields"]["requester"]

    not_json = api.http.post(api.base + "/needs", data=b"{oops", timeout=10)
    assert not_json.status_code == 422 and not_json.json()["error"]["fields"] == {"_body": ["invalid JSON"]}

    missing = api.get("/needs/need_does_not_exist")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_every_service_serves_probes_and_red_and_event_metrics(stack, api):
    volunteer_id = api.post("/responders", VOLUNTEER).json()["id"]
    api.post("/needs", NEED)
    wait_for(lambda: api.get("/responders/{}/notices".format(volunteer_id)).json()["count"], what="a notice")
    metrics = {}
    for name in ("gateway", "needs", "volunteers", "points", "notify"):
        assert requests.get(stack.probe_url(name, "/healthz"), timeout=5).status_code == 200
        ready = requests.get(stack.probe_url(name, "/readyz"), timeout=5)
        assert ready.status_code == 200, ready.text
        if name != "gateway":
            assert ready.json()["checks"] == {"mongodb": "ok", "rabbitmq": "ok", "entrypoints": "ok", "workers": "ok"}
        metrics[name] = requests.get(stack.probe_url(name, "/metrics"), timeout=5).text

    def sample(name, metric, **labels):
        for family in text_string_to_metric_families(metrics[name]):
            for s in family.samples:
                if s.name == metric and labels.items() <= s.labels.items():
                    return s.value
        raise AssertionError("{} {} not in {}'s /metrics".format(metric, labels, name))

    assert sample("gateway", "lamplight_entrypoint_calls_total", entrypoint="submit_need", outcome="ok") >= 1
    assert sample("needs", "lamplight_entrypoint_calls_total", entrypoint="submit", outcome="ok") >= 1
    assert sample("needs", "lamplight_entrypoint_duration_seconds_count", entrypoint="submit") >= 1
    assert sample("needs", "lamplight_events_published_total", type="need.submitted", park="quanlinan") >= 1
    assert sample("volunteers", "lamplight_events_consumed_total", type="need.triaged") >= 1
    assert sample("volunteers", "lamplight_events_published_total", type="task.offered") >= 1
    assert sample("notify", "lamplight_events_consumed_total", type="task.offered") >= 1
    assert sample("notify", "lamplight_notices_total", channel="inapp", outcome="sent") >= 1
    assert sample("needs", "lamplight_outbox_backlog") == 0
