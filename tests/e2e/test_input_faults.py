"""Inputs a client can send, answered 4xx (never 5xx), and answers that hold
the documents as they really are (escalated tasks, proven visits): each of
these answered 500 once, some after writing."""
import http.client
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import requests

from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)


def _server_errors(stack):
    """lamplight_http_server_errors_total of the gateway, all statuses."""
    text = requests.get(stack.probe_url("gateway", "/metrics"), timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lamplight_http_server_errors_total{"))


def test_answers_holding_dates_are_json_escalated_tasks_and_proven_visits_included(stack, api):
    # a need nobody is on duty for: its task is escalated to the team's leads (a date inside)
    need = api.post("/needs", NEED, headers={"Idempotency-Key": "esc-1"}).json()
    task_id = "{}:task:1".format(need["id"])
    task = wait_for(lambda: (lambda r: r.status_code != 404 and r)(api.get("/tasks/" + task_id)),
                    what="the task")
    assert task.status_code == 200, task.text
    assert task.json()["escalations"][0]["level"] == "lead"
    datetime.fromisoformat(task.json()["escalations"][0]["at"])  # ISO 8601, not a 500

    visitor = api.post("/responders", dict(VOLUNTEER, external_ref="VIS-1")).json()
    assert api.put("/households/hh-1", {"kind": "elderly_alone", "label": "3栋独居老人",
                                        "visitor_ref": "VIS-1"}).status_code == 200
    month = datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m")
    api.post("/visits/generate", {"month": month}).raise_for_status()
    proof = api.post("/visits/hh-1:{}/proof".format(month), {
        "responder_id": visitor["id"], "visited_at": datetime.now(timezone(timedelta(hours=8))).isoformat(),
        "note": "身体健康"})
    assert proof.status_code == 200, proof.text
    assert proof.json()["status"] == "done" and proof.json()["proof"]["visited_at"]
    listed = api.get("/visits", params={"month": month})
    assert listed.status_code == 200, listed.text
    assert [v["status"] for v in listed.json()["visits"]] == ["done"]
    assert _server_errors(stack) == 0


def test_a_lone_surrogate_is_422_naming_the_field_and_writes_nothing(stack, api):
    broadcast = api.post("/notify/broadcasts", {"title": "\ud800abc", "body": "停电通知", "actor": "desk"},
                         headers={"Idempotency-Key": "sur-1"})
    assert broadcast.status_code == 422, broadcast.text
    assert list(broadcast.json()["error"]["fields"]) == ["title"]
    batch = api.post("/needs/batch", {"meeting": {"title": "联席会", "held_on": "2026-11-20"},
                                      "entered_by": "desk\udfff", "needs": [NEED]},
                     headers={"Idempotency-Key": "sur-2"})
    assert batch.status_code == 422 and list(batch.json()["error"]["fields"]) == ["entered_by"], batch.text
    nested = api.post("/needs", dict(NEED, requester={"kind": "worker", "name": "\udc00"}),
                      headers={"Idempotency-Key": "sur-3"})
    assert nested.status_code == 422 and list(nested.json()["error"]["fields"]) == ["requester.name"]
    # the same keys with valid bodies are new: nothing was written under them
    assert api.post("/needs", NEED, headers={"Idempotency-Key": "sur-3"}).status_code == 201
    assert _server_errors(stack) == 0


def test_booleans_and_numbers_are_json_booleans_and_numbers(api):
    for critical in ("yes", "true", 1, "1", "on"):
        answer = api.post("/notify/broadcasts", {"title": "停电", "body": "停电通知", "actor": "desk",
                                                 "critical": critical},
                          headers={"Idempotency-Key": "crit-{!r}".format(critical)})
        assert answer.status_code == 422, (critical, answer.text)
        assert list(answer.json()["error"]["fields"]) == ["critical"]
    pause = api.post("/responders", dict(VOLUNTEER, external_ref="NUM-1", max_open_tasks="3"))
    assert pause.status_code == 422 and "max_open_tasks" in pause.json()["error"]["fields"], pause.text
    flag = api.post("/responders", dict(VOLUNTEER, external_ref="NUM-2", max_open_tasks=True))
    assert flag.status_code == 422 and "max_open_tasks" in flag.json()["error"]["fields"], flag.text
    fine = api.post("/responders", dict(VOLUNTEER, external_ref="NUM-3", max_open_tasks=3.0))
    assert fine.status_code == 201, fine.text  # JSON does not tell 3 from 3.0


def test_a_manual_posting_needs_its_idempotency_key(api):
    api.put("/points/rules", {"version": 1, "rules": [
        {"code": "volunteer-event", "name": "参加志愿活动", "account": "service", "points": 3}]}).raise_for_status()
    body = {"member_id": "M-1", "rule_code": "volunteer-event", "actor": "desk", "reason": "活动"}
    missing = api.post("/points/entries", body)
    assert missing.status_code == 422 and list(missing.json()["error"]["fields"]) == ["Idempotency-Key"]
    assert api.get("/members/M-1/points", params={"kind": "service"}).json()["balance"] == 0
    assert api.post("/points/entries", body, headers={"Idempotency-Key": "p-1"}).status_code == 201
    assert api.post("/points/entries", body, headers={"Idempotency-Key": "p-1"}).status_code == 200
    assert api.get("/members/M-1/points", params={"kind": "service"}).json()["balance"] == 3


def test_two_idempotency_keys_are_400_and_write_nothing(stack, api):
    url = urlparse(api.base + "/needs")
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", url.path)
    for name, value in [("Authorization", api.http.headers["Authorization"]), ("Content-Type", "application/json"),
                        ("Idempotency-Key", "dup-a"), ("Idempotency-Key", "dup-b")]:
        conn.putheader(name, value)
    body = json.dumps(NEED).encode()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    answer = conn.getresponse()
    payload = json.loads(answer.read())
    assert answer.status == 400 and payload["error"]["fields"] == {"Idempotency-Key": ["given more than once"]}
    # neither key was used: each alone creates its need now
    assert api.post("/needs", NEED, headers={"Idempotency-Key": "dup-a"}).status_code == 201
    assert api.post("/needs", dict(NEED, requester={"kind": "worker", "name": "王五"}),
                    headers={"Idempotency-Key": "dup-b"}).status_code == 201


def _example(schema, spec):
    """A value of the documented JSON schema: only its required properties, plain values."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: _example(schema["properties"].get(name, {}), spec) for name in schema.get("required", [])}
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}.get(kind, "x")


def test_every_documented_body_is_the_shape_its_route_takes(stack, api):
    """A documented body with its required properties is never refused for a
    property the document does not name, nor for one it does name being
    unknown: the document and the route agree on the shape."""
    spec = requests.get(stack.gateway_url + "/openapi.json", timeout=30).json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if not content or content["schema"] == {"type": "object"}:
                continue
            schema = content["schema"]
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            documented = set(schema.get("properties", {}))
            path_params = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            url = stack.gateway_url + path.replace("{park}", "quanlinan")
            url = url.replace("{", "").replace("}", "")  # other path parameters: any value
            answer = api.http.request(method.upper(), url, json=_example(schema, spec), timeout=30,
                                      headers={"Idempotency-Key": "doc-{}".format(checked)})
            assert answer.status_code < 500, (method, path, answer.text)
            if answer.status_code == 422:
                fields = answer.json()["error"]["fields"]
                top = {name.split(".")[0] for name in fields}
                undocumented = top - documented - path_params - {"_body", "_schema", "Idempotency-Key"}
                assert not undocumented, (method, path, "refused for", undocumented, "documented", documented)
                unknown = [name for name, problems in fields.items() if name in documented and
                           "Unknown field." in json.dumps(problems)]
                assert not unknown, (method, path, unknown)
            checked += 1
    assert checked >= 30
    assert _server_errors(stack) == 0
