"""The gateway's OpenAPI 3 document, built from its routes as they declare
themselves (gateway.http.route: path, policy, body, result and query
schemas) with apispec, served at /openapi.json with a docs page at /docs."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

TITLE = "Lamplight API"
VERSION = "1.0.0"
PARK_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

ERRORS = {"401": "no credential, or not a valid one", "403": "another park's data, or not the caller's role",
          "404": "not found", "409": "a conflict: stale version, idempotency key reused with another body",
          "413": "request body too large", "422": "the input is not valid: fields name each problem",
          "429": "over the rate limit: see Retry-After",
          "400": "the request itself is malformed (a header given twice)",
          "503": "a service is down or did not answer in time: the call may or may not have taken effect; "
                 "retry after Retry-After with the same Idempotency-Key"}
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__[:-6] if cls.__name__.endswith("Schema") else cls.__name__
    return "{}.{}".format(cls.__module__.split(".")[-2] if cls.__module__.count(".") >= 2
                          else cls.__module__.split(".")[0], name)


def _roles(policy):
    if policy.public:
        return "public: no credential"
    if policy.platform:
        return "platform admin"
    roles = sorted(policy.roles | {"platform_admin"})
    text = "roles: " + ", ".join(roles)
    if policy.own or policy.own_body:
        text += "; a volunteer, member or requester only as themselves ({})".format(
            ", ".join(policy.own + policy.own_body))
    return text


def document(routes):
    spec = APISpec(title=TITLE, version=VERSION, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin(schema_name_resolver=_name)],
                   info={"description": "Lamplight's HTTP API. Every call but the public echo wall needs "
                                        "'Authorization: Bearer <API key or token>'; a credential belongs to "
                                        "one park (a platform admin's to all). Errors have one shape: "
                                        "{\"error\": {\"code\", \"message\", \"fields\"}}."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "an API key (llk_…) or a signed token"})
    spec.components.schema("Error", {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "fields"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "fields": {"type": "object"}}}}})
    paths = {}
    for route in routes:
        path = _PARAM.sub(lambda m: "{" + m.group(2) + "}", route["path"])
        name, policy = route["name"], route["policy"]
        parameters = []
        for _, param in path_parameters(route["path"]):
            schema = {"type": "string", "pattern": PARK_PATTERN, "example": "quanlinan"} if param == "park" else \
                {"type": "string", "minLength": 1, "maxLength": 200}
            parameters.append({"name": param, "in": "path", "required": True, "schema": schema})
        for param, (kind, text, *_) in route["query"].items():
            parameters.append({"name": param, "in": "query", "required": False, "schema": {"type": kind},
                               "description": text})
        op = {"operationId": name, "summary": (route["doc"].split("\n")[0] or name.replace("_", " ")),
              "description": _roles(policy), "parameters": parameters, "tags": [_tag(route["path"])],
              "responses": {}}
        if policy.public:
            op["security"] = []
        else:
            op["security"] = [{"bearer": []}]
        method = route["method"].lower()
        if name == "wall_follow_form":
            op["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {"action": {"type": "string", "enum": ["follow", "unfollow"]}}}}}}
        elif method in ("post", "put"):
            body = route["body"]
            op["requestBody"] = {"required": body is not None, "content": {"application/json": {
                "schema": body if body is not None else {"type": "object"}}}}
        if route["page"]:
            ok = {"description": "a page", "content": {"text/html": {"schema": {"type": "string"}}}}
            op["responses"]["303" if name == "wall_follow_form" else "200"] = \
                {"description": "back to the need's page"} if name == "wall_follow_form" else ok
            op["responses"]["404"] = ok
            op["responses"]["503"] = ok
        else:
            result = route["result"]
            content = {"application/json": {"schema": result if result is not None else {"type": "object"}}}
            for status in ("200", "201", "202") if method in ("post", "put") else ("200",):
                op["responses"][status] = {"description": "done", "content": content}
            for status, text in ERRORS.items():
                if policy.public and status in ("401", "403"):
                    continue
                op["responses"][status] = {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(path, {})[method] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _tag(path):
    parts = [p for p in path.split("/") if p and not p.startswith("<")]
    if parts[:1] == ["parks"]:
        return "echo wall (pages)"
    if parts[:3] == ["api", "v1", "parks"] and len(parts) > 3:
        return parts[3].split("-")[0]
    return parts[2] if len(parts) > 2 else parts[0]


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lamplight API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222} header{background:#c8102e;color:#fff;padding:12px 20px}
main{max-width:980px;margin:0 auto;padding:12px 20px} h2{margin:28px 0 6px;font-size:18px;text-transform:capitalize}
.op{border:1px solid #ddd;border-radius:6px;margin:6px 0;padding:6px 10px}
.m{display:inline-block;width:64px;font-weight:700}
.GET{color:#1971c2}.POST{color:#2f9e44}.PUT{color:#f08c00}.DELETE{color:#c92a2a} code{font-size:14px}
.d{color:#555;font-size:13px} details pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
</style></head><body><header><strong>Lamplight API</strong> ·
<a style="color:#fff" href="/openapi.json">openapi.json</a></header>
<main id="ops">Loading…</main>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const byTag = {};
  for (const [path, ops] of Object.entries(spec.paths)) for (const [m, op] of Object.entries(ops)) {
    (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push([m.toUpperCase(), path, op]); }
  const main = document.getElementById('ops'); main.textContent = '';
  const p = document.createElement('p'); p.textContent = spec.info.description; main.appendChild(p);
  for (const tag of Object.keys(byTag).sort()) {
    const h = document.createElement('h2'); h.textContent = tag; main.appendChild(h);
    for (const [m, path, op] of byTag[tag]) {
      const div = document.createElement('div'); div.className = 'op';
      const head = document.createElement('div');
      const ms = document.createElement('span'); ms.className = 'm ' + m; ms.textContent = m;
      const code = document.createElement('code'); code.textContent = path;
      head.append(ms, code); div.appendChild(head);
      const d = document.createElement('div'); d.className = 'd'; d.textContent = op.summary + ' — ' + op.description;
      div.appendChild(d);
      if (op.requestBody) { const det = document.createElement('details'); const s = document.createElement('summary');
        s.textContent = 'request body'; const pre = document.createElement('pre');
        pre.textContent = JSON.stringify(Object.values(op.requestBody.content)[0].schema, null, 2);
        det.append(s, pre); div.appendChild(det); }
      main.appendChild(div);
    }
  }
});
</script></body></html>
"""


def path_parameters(path):
    """[(converter, name)] of a route's path, in order."""
    return _PARAM.findall(path)
