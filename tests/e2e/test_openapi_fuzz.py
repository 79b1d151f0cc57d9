"""Schemathesis against /openapi.json of the running platform: every
operation, generated and mutated inputs, and not one server error."""
import json
import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.test_echo_wall_page import ARTIFACTS
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)

ST = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "st"


@pytest.fixture
def stack_env():
    # thousands of calls to the public pages from one address in a minute
    return {"GATEWAY_PUBLIC_RATE_LIMIT": "1000000/minute"}


def test_schemathesis_finds_no_server_error_in_any_operation(stack, api):
    api.post("/responders", VOLUNTEER).raise_for_status()
    api.post("/needs", NEED).raise_for_status()
    key = requests.post(stack.gateway_url + "/api/v1/keys", headers=api.http.headers, timeout=30, json={
        "role": "platform_admin", "name": "schemathesis", "rate_limit": "1000000/minute"}).json()["key"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "schemathesis.json"
    run = subprocess.run(
        [str(ST), "run", stack.gateway_url + "/openapi.json", "-H", "Authorization: Bearer " + key,
         "--checks", "not_a_server_error", "--phases", "coverage,fuzzing", "--max-examples", "8", "--workers", "2",
         "--seed", "20261121", "--generation-database", ":memory:", "--report", "json",
         "--report-json-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=900)
    (ARTIFACTS / "schemathesis.txt").write_text(run.stdout + run.stderr)
    summary = run.stdout[run.stdout.find("SUMMARY"):]
    assert run.returncode == 0, summary or run.stderr[-3000:]
    result = json.loads(report.read_text())
    operations, cases = result["operations"], result["test_cases"]
    assert operations["tested"] == operations["total"] > 80 and operations["errored"] == 0, operations
    assert cases["with_failures"] == 0 and cases["errored"] == 0 and cases["generated"] > 1000, cases
    print("schemathesis: {} operations, {} test cases, 0 server errors (report {})".format(
        operations["tested"], cases["generated"], report))
