"""Every write route of the OpenAPI document, fuzzed with what a hostile or
careless client sends: lone surrogates, strings where booleans and numbers
belong, numbers out of range, NaN, huge strings, deeply nested bodies and a
doubled Idempotency-Key. Not one answer is a 5xx, the gateway's 5xx counter
stays at 0, and a refused request writes nothing (every collection of the
test's databases is counted before and after)."""
import json

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_input_faults import _example, _server_errors
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)

# CI's size; HOSTILE_EXAMPLES=2000 for a longer hunt
EXAMPLES = int(__import__("os").environ.get("HOSTILE_EXAMPLES", "150"))


HOSTILE = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
      .map(lambda s: "ok" + s),
    st.sampled_from(["yes", "on", "1", "true", "false", "0", "", "null", "2026-13-45", "NaN"]),
    st.booleans(),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    # built in the test from these tags (Hypothesis cannot print a list nested 20,000 deep)
    st.tuples(st.just("nested"), st.integers(min_value=200, max_value=20000)),
    st.tuples(st.just("long"), st.integers(min_value=10_000, max_value=100_000)),
)


def _write_routes(spec):
    routes = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if method not in ("post", "put", "delete") or not path.startswith("/api/"):
                continue
            content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            schema = (content or {}).get("schema") or {"type": "object"}
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            routes.append((method.upper(), path, schema))
    return sorted(routes, key=lambda r: (r[1], r[0]))


def _counts(mongo_client, prefix):
    """Documents in every collection of the test's databases (bookkeeping aside)."""
    counts = {}
    for name in mongo_client.list_database_names():
        if not name.startswith(prefix):
            continue
        for coll in mongo_client[name].list_collection_names():
            if coll.startswith("_"):
                continue
            counts["{}.{}".format(name, coll)] = mongo_client[name][coll].count_documents({})
    return counts


def test_no_hostile_input_gets_a_5xx_or_writes_anything(stack, api, mongo_client, db_prefix):
    api.post("/responders", dict(VOLUNTEER, external_ref="FZ-1")).raise_for_status()
    api.post("/needs", NEED, headers={"Idempotency-Key": "fz-need"}).raise_for_status()
    spec = requests.get(stack.gateway_url + "/openapi.json", timeout=30).json()
    routes = _write_routes(spec)
    assert len(routes) >= 40
    seen = {"requests": 0, "refused": 0, "statuses": {}}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(routes), target=st.integers(min_value=0, max_value=50), hostile=HOSTILE,
           mode=st.sampled_from(["field", "field", "field", "body", "two_keys"]))
    def attempt(route, target, hostile, mode):
        method, path, schema = route
        nested = None
        if isinstance(hostile, tuple):
            if hostile[0] == "nested":  # written as text: no JSON encoder goes 20,000 deep
                nested, hostile = "[" * hostile[1] + '"x"' + "]" * hostile[1], "__nested__"
            else:
                hostile = "长" * hostile[1]
        body = _example(schema, spec) if schema.get("properties") else {}
        if mode == "body":
            body = hostile
        elif body:
            names = sorted(schema.get("properties", {}))
            body[names[target % len(names)]] = hostile
        else:
            body = {"x": hostile}
        url = stack.gateway_url + path.replace("{park}", "quanlinan")
        url = url.replace("{", "").replace("}", "")
        headers = {"Content-Type": "application/json"}
        headers.update(api.http.headers)
        text = json.dumps(body, ensure_ascii=True)
        data = (text.replace('"__nested__"', nested, 1) if nested else text).encode()
        if mode == "two_keys":
            # http.client sends a list of values as repeated headers only through putheader; a
            # WSGI server joins repeated headers with commas, which is what arrives
            headers["Idempotency-Key"] = "fz-a, fz-b"
        else:
            headers["Idempotency-Key"] = "fz-{}".format(seen["requests"])
        before = _counts(mongo_client, db_prefix)
        answer = requests.request(method, url, data=data, headers=headers, timeout=30)
        seen["requests"] += 1
        seen["statuses"][answer.status_code] = seen["statuses"].get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (method, path, mode, repr(body)[:300], answer.status_code, answer.text[:500])
        if answer.status_code >= 400:
            seen["refused"] += 1
            assert answer.json()["error"]["code"]
            after = _counts(mongo_client, db_prefix)
            changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                       if before.get(k) != after.get(k)}
            assert not changed, (method, path, mode, repr(body)[:300], answer.status_code, changed)

    attempt()
    assert _server_errors(stack) == 0
    print("hostile inputs: {} requests on {} write routes, {} refused, statuses {}".format(
        seen["requests"], len(routes), seen["refused"], dict(sorted(seen["statuses"].items()))))
