"""The gateway's front door against the running platform: who may call what
(the role × park × route matrix), park administration end to end, rate and
size limits, request ids and traces, tokens and revocation."""
import io
import re

import requests

from gateway.service import ROUTES
from lamplight_tools import parks as park_files
from lamplight_tools import parksctl
from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, Api, api, stack  # noqa: F401 (fixtures)

OTHER = "xuwei"  # another park: the Xuwei New Area centre of DOMAIN.md
PARK_ROLES = ("park_admin", "dispatcher", "volunteer", "member", "requester")
SUBJECT = "QLN-P001"  # the person each person's credential acts as


def path_of(route, park, subject="someone-else"):
    """A route's path with its parameters filled in (a person's own ones with ``subject``)."""
    def fill(match):
        name = match.group(2)
        if name == "park":
            return park
        if name in route["policy"].own:
            return subject
        return {"action": "claim"}.get(name, "x-" + name)
    return re.sub(r"<(?:(\w+):)?(\w+)>", fill, route["path"])


def credentials(api, park="quanlinan"):
    """A key of each role of ``park`` (persons acting as SUBJECT), made by a platform admin."""
    keys = {}
    for role in PARK_ROLES:
        answer = api.http.post("{}/api/v1/parks/{}/keys".format(api.root, park), json={
            "role": role, "name": "matrix " + role, "subject": SUBJECT if role in ("volunteer", "member", "requester")
            else None, "rate_limit": "100000/minute"}, timeout=30)
        assert answer.status_code == 201, answer.text
        keys[role] = answer.json()["key"]
    return keys


def call(base, route, path, key=None, body=None):
    headers = {"Authorization": "Bearer " + key} if key else {}
    method = route["method"]
    kwargs = {"json": body if body is not None else {}} if method in ("POST", "PUT") else {}
    return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)


def test_every_cross_park_attempt_is_refused_for_every_role_and_route(stack, api):
    keys = credentials(api)
    guarded = [r for r in ROUTES if not r["policy"].public]
    in_a_park = [r for r in guarded if "<string:park>" in r["path"]]
    assert len(in_a_park) > 70
    refused, attempts = 0, 0
    for route in guarded:
        # no credential: 401, for any park
        answer = call(api.root, route, path_of(route, OTHER))
        assert answer.status_code == 401, (route["path"], answer.status_code)
        assert answer.json()["error"]["code"] == "unauthenticated"
        for role, key in keys.items():
            # another park's data: refused before any service is asked
            if route in in_a_park:
                attempts += 1
                answer = call(api.root, route, path_of(route, OTHER, SUBJECT), key)
                assert answer.status_code == 403, (role, route["method"], route["path"], answer.status_code)
                assert answer.json()["error"]["code"] == "forbidden"
                refused += 1
            # the own park: refused exactly where the route's policy says so
            answer = call(api.root, route, path_of(route, "quanlinan", SUBJECT), key)
            allowed = route["policy"].platform is False and role in route["policy"].roles
            if allowed:
                assert answer.status_code not in (401, 403), (role, route["path"], answer.text)
            else:
                assert answer.status_code == 403, (role, route["method"], route["path"], answer.status_code)
    print("cross-park: {} of {} attempts refused ({} routes x {} roles); {} routes checked by role".format(
        refused, attempts, len(in_a_park), len(keys), len(guarded)))
    assert refused == attempts == len(in_a_park) * len(PARK_ROLES)

    # a person reaches only what is theirs, even in their own park
    volunteer = Api(stack.gateway_url, key=keys["volunteer"])
    assert volunteer.get("/responders/{}/tasks".format(SUBJECT)).status_code != 403
    assert volunteer.get("/responders/QLN-P002/tasks").status_code == 403
    assert volunteer.post("/tasks/t-1/claim", {"responder_id": "QLN-P002"}).status_code == 403
    member = Api(stack.gateway_url, key=keys["member"])
    assert member.get("/members/QLN-P002/points").status_code == 403
    assert member.get("/members/{}/points".format(SUBJECT)).status_code == 200

    # and a platform admin's request for a park's data in another park's path finds nothing there
    need_id = api.post("/needs", NEED).json()["id"]
    assert Api(stack.gateway_url, park=OTHER, key=stack.admin_key()).get("/needs/" + need_id).status_code == 404


def test_every_route_naming_a_park_refuses_a_malformed_park_id_before_any_service(stack, api):
    # The entrypoint checks the <park> of every route, public pages too, once: no handler
    # repeats it, and none is reached with a park id the database would not take.
    admin = stack.admin_key()
    in_a_park = [r for r in ROUTES if "<string:park>" in r["path"]]
    assert len(in_a_park) > 75
    for route in in_a_park:
        answer = call(api.root, route, path_of(route, "Not_A_Park!"), None if route["policy"].public else admin)
        assert answer.status_code == 422, (route["method"], route["path"], answer.status_code, answer.text[:200])
        assert "park_id" in answer.json()["error"]["fields"], (route["path"], answer.text[:200])


def test_each_route_declares_its_body_query_and_result_once_and_the_document_says_so(stack):
    # one declaration per route (gateway.http.route): the OpenAPI operation is made from it
    spec = requests.get(stack.gateway_url + "/openapi.json", timeout=30).json()
    for route in ROUTES:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route["path"])
        op = spec["paths"][path][route["method"].lower()]
        if route["body"] is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("." + route["body"].__name__[:-len("Schema")]), (route["name"], ref)
        assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == set(route["query"]), route["name"]
        if route["page"]:
            assert "text/html" in op["responses"]["200" if "200" in op["responses"] else "404"]["content"]


def park_body(version, **changes):
    spec = park_files.load()["quanlinan"]
    body = dict(parksctl.desired(spec), name="徐圩新区产业邻里中心", version=version)
    body.update(changes)
    return body


def test_a_park_is_created_versioned_announced_and_installed_by_every_service(stack, api, broker):
    admin = api.http
    url = "{}/api/v1/parks/{}".format(api.root, OTHER)
    keys = credentials(api)
    with broker.recording("gateway.events", ["park.configured"]) as events:
        # only a platform admin creates a park; another park's admin cannot touch it
        assert requests.put(url, json=park_body(1), headers={"Authorization": "Bearer " + keys["park_admin"]},
                            timeout=30).status_code == 403
        bad = admin.put(url, json=park_body(1, needs={"categories": []}), timeout=30)
        assert bad.status_code == 422 and "categories" in bad.json()["error"]["fields"]["needs"]
        created = admin.put(url, json=park_body(1), timeout=30)
        assert created.status_code == 200, created.text
        assert created.json()["version"] == 1

        installed = wait_for(lambda: (lambda a: a.json() if a.status_code == 200 and a.json().get("park_version") == 1
                                      else None)(requests.get(url + "/needs/config", headers=admin.headers,
                                                              timeout=30)),
                             timeout=20, what="the needs section installed")
        assert installed["name"] == "徐圩新区产业邻里中心" and len(installed["categories"]) == 6
        for path in ("/volunteers/config", "/notify/config", "/points/rules"):
            wait_for(lambda: requests.get(url + path, headers=admin.headers,
                                          timeout=30).json().get("park_version") == 1,
                     timeout=20, what=path + " installed")
        rules = requests.get(url + "/points/rules", headers=admin.headers, timeout=30).json()
        assert len(rules["rules"]) == 25

        # versions: a stale one is refused, the same content changes nothing, a change is announced
        assert admin.put(url, json=park_body(1), timeout=30).status_code == 409
        same = admin.put(url, json=park_body(2), timeout=30).json()
        assert same == {"park_id": OTHER, "version": 1, "unchanged": True, "changed": []}
        notify = dict(park_body(2)["notify"], digest={"at": "21:00"})
        changed = admin.put(url, json=park_body(2, notify=notify), timeout=30).json()
        assert changed["version"] == 2 and changed["changed"] == ["notify"]
        wait_for(lambda: requests.get(url + "/notify/config", headers=admin.headers, timeout=30).json()["digest"]
                 == {"at": "21:00"}, timeout=20, what="the notify section of version 2 installed")
        announced = wait_for(lambda: (lambda e: e if len(e) == 2 else None)(events()), timeout=10,
                             what="two park.configured events")
    assert [data["version"] for _, data in announced] == [1, 2]
    assert sorted(announced[0][1]["sections"]) == ["needs", "notify", "points", "volunteers"]
    assert announced[1][1]["changed"] == ["notify"]
    # the park's own admin may change it (not create it)
    own_admin = requests.post(url + "/keys", json={"role": "park_admin", "name": "xuwei admin"},
                              headers=admin.headers, timeout=30).json()["key"]
    renamed = requests.put(url, json=park_body(3, name="徐圩新区", notify=notify),
                           headers={"Authorization": "Bearer " + own_admin},
                           timeout=30)
    assert renamed.status_code == 200 and renamed.json()["changed"] == ["name"]

    # lamplight parks apply: the diff first, nothing sent on a dry run, then the change
    gateway = parksctl.Gateway(stack.gateway_url, stack.admin_key())
    out = io.StringIO()
    assert parksctl.apply(park_files.DEMO_PARKS, gateway, dry_run=True, out=out) == 1
    assert "park/quanlinan (new)" in out.getvalue() and "+name: 全力南集聚区（武汉经开区）" in out.getvalue()
    assert gateway.get_park("quanlinan") is None
    out = io.StringIO()
    assert parksctl.apply(park_files.DEMO_PARKS, gateway, out=out, ask=lambda prompt: "n") == 2
    assert gateway.get_park("quanlinan") is None
    out = io.StringIO()
    assert parksctl.apply(park_files.DEMO_PARKS, gateway, yes=True, wait=30, out=out) == 0, out.getvalue()
    assert "park/quanlinan created at version 1" in out.getvalue()
    assert "installed by every service" in out.getvalue()
    out = io.StringIO()
    assert parksctl.apply(park_files.DEMO_PARKS, gateway, dry_run=True, out=out) == 0
    assert "park/quanlinan unchanged (version 1)" in out.getvalue()


def test_limits_request_ids_tokens_and_revocation(stack, api, broker):
    admin = api.http
    # a key's own rate limit: 429 with the seconds to wait
    limited = requests.post(api.base + "/keys", json={"role": "dispatcher", "name": "tight", "rate_limit": "3/minute"},
                            headers=admin.headers, timeout=30).json()
    desk = Api(stack.gateway_url, key=limited["key"])
    assert [desk.get("/needs/config").status_code for _ in range(3)] == [200, 200, 200]
    over = desk.get("/needs/config")
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 60

    # request size: 413 before anything is read or asked
    big = api.post("/needs", dict(NEED, details={"location": "x" * 70000}))
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"

    # the request id and the trace go into the events the request causes
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with broker.recording("needs.events", ["need.submitted"]) as events:
        answer = api.post("/needs", NEED, headers={"X-Request-Id": "desk-42.7", "traceparent": trace})
        assert answer.status_code == 201
        assert answer.headers["X-Request-Id"] == "desk-42.7" and answer.headers["traceparent"] == trace
        envelope = wait_for(lambda: events() and events.envelopes[0], timeout=10, what="need.submitted")
    assert envelope["requestid"] == "desk-42.7"
    assert envelope["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    odd = api.get("/needs/config", headers={"X-Request-Id": "no spaces allowed", "traceparent": "junk"})
    assert re.match(r"^req_\w+$", odd.headers["X-Request-Id"])
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", odd.headers["traceparent"])

    # tokens: the desk signs in a volunteer; the volunteer reaches their own tasks only
    responder = api.post("/responders", VOLUNTEER).json()["id"]
    dispatcher = requests.post(api.base + "/keys", json={"role": "dispatcher", "name": "desk"}, headers=admin.headers,
                               timeout=30).json()["key"]
    as_desk = Api(stack.gateway_url, key=dispatcher)
    assert as_desk.post("/tokens", {"role": "park_admin", "subject": "someone"}).status_code == 403
    minted = as_desk.post("/tokens", {"role": "volunteer", "subject": responder, "ttl_s": 600})
    assert minted.status_code == 201, minted.text
    person = Api(stack.gateway_url, key=minted.json()["token"])
    assert person.get("/responders/{}/tasks".format(responder)).status_code == 200
    assert person.get("/responders/rsp_someone_else/tasks").status_code == 403
    assert person.get("/needs-statistics").status_code == 403
    whoami = requests.get(stack.gateway_url + "/api/v1/whoami", headers=person.http.headers, timeout=30).json()
    assert whoami["role"] == "volunteer" and whoami["park"] == "quanlinan" and whoami["subject"] == responder
    forged = minted.json()["token"][:-4] + ("AAAA" if not minted.json()["token"].endswith("AAAA") else "BBBB")
    assert Api(stack.gateway_url, key=forged).get("/wishes").status_code == 401

    # a revoked key is refused from the next call on
    assert as_desk.get("/wishes").status_code == 200
    key_id = dispatcher.split("_")[1]
    assert requests.delete(api.base + "/keys/" + key_id, headers=admin.headers, timeout=30).status_code == 200
    assert as_desk.get("/wishes").status_code == 401
    keys = requests.get(api.base + "/keys", headers=admin.headers, timeout=30).json()["keys"]
    assert key_id not in [k["id"] for k in keys] and all("hash" not in k for k in keys)


def test_openapi_describes_every_route_and_the_docs_page_reads_it(stack):
    spec = requests.get(stack.gateway_url + "/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    routes = {(r["method"], re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r["path"])) for r in ROUTES}
    assert operations == routes
    submit = spec["paths"]["/api/v1/parks/{park}/needs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("NeedSubmission")
    assert "NeedSubmission" in "".join(spec["components"]["schemas"])
    assert spec["paths"]["/parks/{park}/wall"]["get"]["security"] == []
    docs = requests.get(stack.gateway_url + "/docs", timeout=30)
    assert docs.status_code == 200 and "/openapi.json" in docs.text
