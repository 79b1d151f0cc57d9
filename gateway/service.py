"""The gateway: Lamplight's one HTTP front door.

Every route has the park in its path and a :class:`~gateway.auth.Policy`:
who may call it (roles, the caller's own park, a person's own records). A
call without a credential is answered 401, another park's 403, before any
service is asked. Every error has one body shape,
``{"error": {"code", "message", "fields"}}``, mapped from service errors in
:meth:`Api.response_from_exception` and nowhere else. Every answer carries
``X-Request-Id`` and ``traceparent``; both travel with the RPC calls the
request makes (nameko context headers) and into the events they publish.

A need is accepted only when the needs service has written it (201, or 200
when an Idempotency-Key replays one already written). A 503 (with
Retry-After) means the outcome is unknown: the service was down or did not
answer within the deadline. A request still waiting when its deadline passed
is dropped unrun (by the broker's TTL, or when a worker takes it), but one
already running completes — so a need may exist after a 503. A client retries
with the same Idempotency-Key, which is always safe: it gets 201 if the retry
wrote the need, 200 if an earlier attempt had, and never two needs.
"""
import contextvars
import functools
import json
import math
import re
import time
from datetime import date, datetime
from decimal import Decimal

from amqp.exceptions import ConnectionError as AmqpConnectionError
from bson import ObjectId
from kombu.exceptions import OperationalError as KombuOperationalError
from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.web.handlers import HttpRequestHandler
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure as MongoConnectionFailure
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from gateway import auth, openapi, parks, wall
from gateway.auth import PEOPLE, Forbidden, Policy, TooManyRequests, Unauthenticated
from lamplight import logs, settings
from lamplight.envelope import _TRACEPARENT, new_traceparent
from lamplight.errors import BadInput, Conflict, LamplightError, NotFound, UnscopedQuery, load_or_reject
from lamplight.ids import new_id
from lamplight.metrics import SERVER_ERRORS
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch
from lamplight.publishing import EventOutbox
from lamplight.rpc import CachedSignatureCheck, DeadlineRpc, ServiceUnavailable
from lamplight.storage import Mongo, RequestCounter, check_park_id
from services.needs import schemas as needs_schemas
from services.notify import schemas as notify_schemas
from services.points import schemas as points_schemas
from services.volunteers import schemas as volunteers_schemas

MAX_BODY_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 4 * 1024 * 1024  # a list of up to 5,000 recipients
MAX_DEPTH = 32  # lists and objects within each other: the deepest schema needs 5
RETRY_AFTER_S = 5
_key = auth.KeySchema()
_token = auth.TokenRequestSchema()
_park = parks.ParkSchema()
_configured = parks.ParkConfiguredSchema()


class MalformedRequest(LamplightError):
    """The HTTP request itself is wrong (a header given twice): 400."""

    code = "bad_request"


_STATUS = {BadInput: 422, NotFound: 404, Conflict: 409, Unauthenticated: 401, Forbidden: 403,
           TooManyRequests: 429, MalformedRequest: 400}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# the exceptions that mean a dependency is away, not that the request is wrong
# (OSError: ECONNREFUSED, a reset or a timeout on a socket of ours)
DEPENDENCY_DOWN = (AmqpConnectionError, KombuOperationalError, MongoConnectionFailure, OSError)
# the request id of the request being answered, for the log line of a 500
current_request_id = contextvars.ContextVar("request_id", default=None)
_log = logs.get_logger(component="gateway")

# who may call what -------------------------------------------------------------------
ADMIN = Policy(roles=("park_admin",))
DESK = Policy(roles=auth.STAFF)
CREW = Policy(roles=auth.STAFF + ("volunteer",))
ALL = Policy(roles=auth.STAFF + PEOPLE)
INTAKE = ALL
PUBLIC = Policy(public=True)
PLATFORM = Policy(platform=True)
CREW_OWN_RESPONDER = Policy(roles=auth.STAFF + ("volunteer",), own=("responder_id",))
CREW_AS_RESPONDER = Policy(roles=auth.STAFF + ("volunteer",), own_body=("responder_id",))
OWN_RESPONDER_INBOX = Policy(roles=auth.STAFF + PEOPLE, own=("responder_id",))
OWN_RECIPIENT = Policy(roles=auth.STAFF + PEOPLE, own=("recipient_id",))
OWN_MEMBER = Policy(roles=auth.STAFF + ("member",), own=("member_id",))
REDEEM = Policy(roles=auth.STAFF + ("member",), own_body=("member_id",))

SIGNED_IN = Policy(roles=auth.ROLES)

# every route, for the OpenAPI document and the authorization matrix
ROUTES = []


def _encode(value):
    """What JSON lacks, written once for every answer: times as ISO 8601
    (services return datetimes over RPC: a proof's visited_at, an
    escalation's at), and ids of other types as strings."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (ObjectId, Decimal)):
        return str(value)
    raise TypeError("{} is not JSON serializable".format(type(value).__name__))


def dumps(payload):
    """Every JSON answer of the gateway goes through here."""
    return json.dumps(payload, ensure_ascii=False, default=_encode)


def error_body(code, message, fields=None):
    return dumps({"error": {"code": code, "message": message, "fields": fields or {}}})


def json_response(status, payload, headers=None):
    return Response(dumps(payload), status=status, headers=headers, mimetype="application/json")


class Guard(SharedExtension):
    """Credentials and rate limits, shared by every route of a process."""

    def setup(self):
        self.client = MongoClient(settings.get("MONGO_URI"), serverSelectionTimeoutMS=5000,
                                  connectTimeoutMS=5000, appname="lamplight-gateway-auth", tz_aware=True,
                                  event_listeners=[RequestCounter("gateway")])
        self.keys = auth.KeyStore(self.client[settings.get("MONGO_DB_PREFIX") + "gateway"])
        self.tokens = auth.Tokens(settings.get("GATEWAY_TOKEN_SECRET"))
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.key_limit = parse_limit(settings.get("GATEWAY_RATE_LIMIT"))
        self.public_limit = parse_limit(settings.get("GATEWAY_PUBLIC_RATE_LIMIT"))
        self.forwarded_hops = settings.get_int("GATEWAY_FORWARDED_HOPS")

    def stop(self):
        self.client.close()

    def authenticate(self, request):
        credential = auth.credential_of(request)
        if not credential:
            raise Unauthenticated("a credential is required: 'Authorization: Bearer <API key or token>'")
        if credential.startswith(auth.KEY_PREFIX):
            return self.keys.verify(credential)
        return self.tokens.verify(credential)

    def client_address(self, request):
        """The caller's address; behind N trusted proxies, the Nth address
        from the right of X-Forwarded-For."""
        if self.forwarded_hops:
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
            if len(hops) >= self.forwarded_hops:
                return hops[-self.forwarded_hops]
        return request.remote_addr or "unknown"

    def limit(self, principal, request):
        """429 with the seconds to wait when the caller is over its limit. A
        key's limit is its own (or GATEWAY_RATE_LIMIT); all tokens of one
        person share one; public pages are limited per client address."""
        if principal is None:
            item, who = self.public_limit, "ip:" + self.client_address(request)
        elif principal.kind == "token":
            item, who = self.key_limit, "person:{}:{}".format(principal.park, principal.subject)
        else:
            item = parse_limit(principal.rate_limit) if principal.rate_limit else self.key_limit
            who = principal.id
        if not self.limiter.hit(item, who):
            reset = self.limiter.get_window_stats(item, who).reset_time
            raise TooManyRequests("rate limit {} exceeded".format(item),
                                  max(1, math.ceil(reset - time.time())))


class Api(CachedSignatureCheck, HttpRequestHandler):
    """nameko's HTTP entrypoint with a policy, JSON in, JSON out and one
    error mapping."""

    guard = Guard()

    def __init__(self, method, url, policy=None, max_body=MAX_BODY_BYTES, **kwargs):
        # a 4xx or 503 is an answer, not a fault: nameko logs these as warnings
        kwargs.setdefault("expected_exceptions", (LamplightError, ServiceUnavailable, HTTPException))
        self.policy = policy
        self.max_body = max_body
        super().__init__(method, url, **kwargs)

    def handle_request(self, request):
        request.shallow = False  # a policy may read the body before the route does
        request_id = request.headers.get("X-Request-Id", "")
        request_id = request_id if _REQUEST_ID.match(request_id) else new_id("req")
        traceparent = request.headers.get("traceparent", "")
        traceparent = traceparent if _TRACEPARENT.match(traceparent) else new_traceparent()
        # what the worker (lamplight.observability) puts into its context, and RPC carries on
        request.environ["HTTP_X_REQUEST_ID"] = request_id
        request.environ["HTTP_TRACEPARENT"] = traceparent
        current_request_id.set(request_id)
        try:
            principal = self.admit(request)
            request.environ["lamplight.principal"] = principal
            park = (getattr(request, "path_values", None) or {}).get("park")
            if park is not None:  # every route naming a park: checked here, once
                check_park_id(park)
            response = super().handle_request(request)
        except Exception as exc:
            response = self.response_from_exception(exc)
        response.headers["X-Request-Id"] = request_id
        response.headers["traceparent"] = traceparent
        return response

    def admit(self, request):
        """The caller, checked against the route's policy, rate limit and
        body size (in that order: a stranger learns nothing of the limits)."""
        principal = None
        if not self.policy.public:
            principal = self.guard.authenticate(request)
            values = getattr(request, "path_values", None) or {}
            self.policy.check(principal, values.get("park"), values, lambda: peek_json(request, self.max_body))
        self.guard.limit(principal, request)
        request.max_content_length = self.max_body
        if request.content_length and request.content_length > self.max_body:
            raise RequestEntityTooLarge("request body over {} bytes".format(self.max_body))
        return principal

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (200, result)
        return json_response(status, payload)

    def response_from_exception(self, exc):
        headers = {}
        if isinstance(exc, LamplightError) and not isinstance(exc, UnscopedQuery):
            status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
            body = error_body(exc.code, exc.message, exc.fields)
            if isinstance(exc, TooManyRequests):
                headers = {"Retry-After": str(exc.retry_after)}
            elif isinstance(exc, Unauthenticated):
                headers = {"WWW-Authenticate": 'Bearer realm="lamplight"'}
        elif isinstance(exc, ServiceUnavailable):
            status, headers = 503, {"Retry-After": str(RETRY_AFTER_S)}
            body = error_body("unavailable", str(exc))
        elif isinstance(exc, DEPENDENCY_DOWN):
            # the broker or the database is away (ECONNREFUSED while RabbitMQ
            # restarts, AutoReconnect while MongoDB fails over): an answer to
            # retry, not a fault of ours
            _log.warning("gateway.dependency_down", error_type=type(exc).__name__, error=str(exc))
            status, headers = 503, {"Retry-After": str(RETRY_AFTER_S)}
            body = error_body("unavailable", "a service the platform depends on is not reachable; "
                                             "try again shortly with the same Idempotency-Key")
        elif isinstance(exc, HTTPException):
            status = exc.code or 400
            code = "too_large" if status == 413 else "http_{}".format(status)
            body = error_body(code, exc.description or exc.name)
        else:
            request_id = current_request_id.get()
            _log.error("gateway.unhandled", error_type=type(exc).__name__, error=str(exc), request_id=request_id,
                       exc_info=exc)
            status, body = 500, error_body("internal", "internal error; it has been logged as request {}".format(
                request_id))
        if status >= 500:
            SERVER_ERRORS.labels("gateway", str(status)).inc()
        return Response(body, status=status, headers=headers, mimetype="application/json")


def route(method, url, policy, max_body=MAX_BODY_BYTES, body=None, result=None, query=None, page=False):
    """An HTTP route of the gateway, declared once: its method and path (a ``<park>`` in it is
    checked before the handler runs), who may call it (``policy``), the schema of its JSON
    ``body``, the schema of its ``result`` when it is one of the services' views, its ``query``
    parameters ({name: (type, description)}), and whether it answers an HTML ``page``. ROUTES
    holds them all; the OpenAPI document and the authorization tests are made from it."""
    def decorate(fn):
        ROUTES.append({"method": method, "path": url, "name": fn.__name__, "policy": policy,
                       "doc": (fn.__doc__ or "").strip(), "body": body, "result": result, "query": query or {},
                       "page": page})
        return Api.decorator(method, url, policy=policy, max_body=max_body)(fn)
    return decorate


def principal_of(request):
    return request.environ.get("lamplight.principal")


def peek_json(request, max_bytes=MAX_BODY_BYTES):
    """The body as JSON for a policy to look at (kept for the route), or None."""
    if request.content_length and request.content_length > max_bytes:
        return None
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, RecursionError):
        return None  # the route's read_json names the problem


def read_json(request, max_bytes=MAX_BODY_BYTES):
    """The request body as a JSON object, or a 4xx naming the problem."""
    if request.content_length and request.content_length > max_bytes:
        raise RequestEntityTooLarge("request body over {} bytes".format(max_bytes))
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise RequestEntityTooLarge("request body over {} bytes".format(max_bytes))
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise BadInput("request body is nested too deeply", {"_body": [
            "nested deeper than {} levels".format(MAX_DEPTH)]})
    except ValueError as exc:
        raise BadInput("request body is not valid JSON: {}".format(exc), {"_body": ["invalid JSON"]})
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object", {"_body": ["not an object"]})
    if _depth(body) > MAX_DEPTH:
        raise BadInput("request body is nested too deeply", {"_body": [
            "nested deeper than {} levels".format(MAX_DEPTH)]})
    bad = _unencodable(body)
    if bad is not None:
        raise BadInput("{} holds a lone UTF-16 surrogate (\\ud800-\\udfff): not text".format(bad),
                       {bad: ["not valid Unicode text"]})
    return body


def _depth(value):
    """How deeply ``value`` nests lists and objects (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest


def _unencodable(value, path=""):
    """The path of the first string (or key) in ``value`` that is not valid
    Unicode (JSON's "\\ud800" parses to a lone surrogate, which no UTF-8
    encoder takes: the database and the broker would fail on it), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = "{}.{}".format(path, key) if path else str(key)
            if _unencodable(key) is not None:
                return inner.encode("utf-8", "backslashreplace").decode("utf-8")
            found = _unencodable(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unencodable(item, "{}.{}".format(path, i) if path else str(i))
            if found is not None:
                return found
    return None


class Credentials(DependencyProvider):
    """What a route gets to manage keys and tokens: the process's Guard."""

    guard = Guard()

    def get_dependency(self, worker_ctx):
        return self.guard


class Gateway:
    name = "gateway"

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    db = Mongo()
    events = EventOutbox(collections=("configs",))
    credentials = Credentials()
    needs = DeadlineRpc("needs")
    volunteers = DeadlineRpc("volunteers")
    notify = DeadlineRpc("notify")
    points = DeadlineRpc("points")

    # who am I, keys and tokens --------------------------------------------------------
    @route("GET", "/api/v1/whoami", SIGNED_IN)
    def whoami(self, request):
        """The caller as the gateway sees it: role, park, subject."""
        principal = principal_of(request)
        return {"id": principal.id, "role": principal.role, "park": principal.park,
                "subject": principal.subject, "kind": principal.kind}

    @route("POST", "/api/v1/keys", PLATFORM, body=auth.KeySchema)
    def create_platform_key(self, request):
        """Make an API key for any park and role (the key is shown once)."""
        body = load_or_reject(_key, read_json(request), "the API key")
        return self._create_key(request, body)

    @route("GET", "/api/v1/keys", PLATFORM, query={"park": ("string", "one park's keys")})
    def platform_keys(self, request):
        keys = self.credentials.keys.list(park=request.args.get("park"))
        return {"keys": keys, "count": len(keys)}

    @route("POST", "/api/v1/parks/<string:park>/keys", ADMIN, body=auth.KeySchema)
    def create_key(self, request, park):
        """Make an API key of this park, for a role below the caller's."""
        body = load_or_reject(_key, dict(read_json(request), park=park), "the API key")
        return self._create_key(request, body)

    def _create_key(self, request, body):
        grant(principal_of(request), body["role"])
        key, record = self.credentials.keys.create(body["role"], body.get("park"), body["name"], body.get("subject"),
                                                   body.get("rate_limit"))
        self.log.info("gateway.key_created", key_id=record["id"], role=record["role"], key_park=record["park"],
                      by=principal_of(request).id)
        return 201, dict(record, key=key)

    @route("GET", "/api/v1/parks/<string:park>/keys", ADMIN)
    def park_keys(self, request, park):
        keys = self.credentials.keys.list(park=park)
        return {"keys": keys, "count": len(keys)}

    @route("DELETE", "/api/v1/parks/<string:park>/keys/<string:key_id>", ADMIN)
    def revoke_key(self, request, park, key_id):
        """Revoke a key of this park: refused by every gateway within KEY_CACHE_S seconds."""
        if self.credentials.keys.get(key_id)["park"] != park:
            raise NotFound("no API key {} in park {}".format(key_id, park), {"key_id": ["unknown"]})
        self.credentials.keys.revoke(key_id)
        self.log.info("gateway.key_revoked", key_id=key_id, by=principal_of(request).id)
        return {"id": key_id, "revoked": True}

    @route("POST", "/api/v1/parks/<string:park>/tokens", DESK, body=auth.TokenRequestSchema)
    def mint_token(self, request, park):
        """A signed token for a person of this park (a volunteer, member or
        requester signed in through the official account or mini-program)."""
        body = load_or_reject(_token, read_json(request), "the token request")
        principal = principal_of(request)
        grant(principal, body["role"])
        token, claims = self.credentials.tokens.mint(body["role"], park, body["subject"],
                                                     body["ttl_s"], principal.id)
        return 201, {"token": token, "role": claims["role"], "park": claims["park"], "subject": claims["sub"],
                     "expires_at": claims["exp"]}

    # parks ---------------------------------------------------------------------------
    @route("GET", "/api/v1/parks", PLATFORM)
    def list_parks(self, request):
        rows = self.db.unscoped("configs", reason="the list of parks").find(
            {}, {"_outbox": 0}).sort("_id", 1)
        found = [{"park_id": row["park_id"], "version": row["version"], "name": row.get("name")} for row in rows]
        return {"parks": found, "count": len(found)}

    @route("GET", "/api/v1/parks/<string:park>", ADMIN, result=parks.ParkViewSchema)
    def get_park(self, request, park):
        """The park's whole configuration as of its current version."""
        return parks.view(park, parks.park_config(self.db.park(park)).require())

    @route("PUT", "/api/v1/parks/<string:park>", ADMIN, max_body=MAX_IMPORT_BYTES, body=parks.ParkSchema)
    def put_park(self, request, park):
        """Create a park (version 1, platform admins only) or change its
        configuration (the current version + 1); each change is announced as
        park.configured and every service installs its section."""
        config = load_or_reject(_park, read_json(request, MAX_IMPORT_BYTES), "the park configuration")
        principal = principal_of(request)
        if config["version"] == 1 and principal.role != "platform_admin":
            raise Forbidden("only a platform admin creates a park")
        store = parks.park_config(self.db.park(park))
        previous = store.current()
        event = self.events.new("park.configured", park_id=park, subject=park, data=_configured.dump({
            "park_id": park, "version": config["version"], "name": config["name"],
            "sections": {name: config[name] for name in parks.SECTIONS if config.get(name) is not None},
            "changed": parks.changed_sections(previous, config), "saved_by": principal.id}))
        with self.events.staging([event]) as staged:
            version, unchanged = store.install_over(previous, config, dict(staged.fields(), saved_by=principal.id))
            staged.written = not unchanged
        return {"park_id": park, "version": version, "unchanged": unchanged,
                "changed": [] if unchanged else event["data"]["changed"]}

    # the API's own description ---------------------------------------------------------
    @route("GET", "/openapi.json", PUBLIC)
    def openapi_json(self, request):
        return Response(openapi_text(), mimetype="application/json")

    @route("GET", "/docs", PUBLIC, page=True)
    def docs(self, request):
        return Response(openapi.DOCS_PAGE, mimetype="text/html")

    # the echo wall as a page: public, in Chinese, for a phone --------------------------------
    @route("GET", "/parks/<string:park>/wall", PUBLIC,
           query={"status": ("string", "one status"), "before": ("string", "the next page")}, page=True)
    def wall_page(self, request, park):
        return wall.page(self, request, park)

    @route("GET", "/parks/<string:park>/wall/<string:need_id>", PUBLIC, page=True)
    def wall_entry_page(self, request, park, need_id):
        return wall.entry_page(self, request, park, need_id)

    @route("POST", "/parks/<string:park>/wall/<string:need_id>/follow", PUBLIC, page=True)
    def wall_follow_form(self, request, park, need_id):
        return wall.follow_form(self, request, park, need_id)

    # needs ----------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/needs/config", ALL)
    def needs_config(self, request, park):
        return self.needs.call("config", park)

    @route("PUT", "/api/v1/parks/<string:park>/needs/config", ADMIN, body=needs_schemas.NeedsConfigSchema)
    def set_needs_config(self, request, park):
        return self.needs.call("set_config", park, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/needs", INTAKE, body=needs_schemas.NeedSubmissionSchema)
    def submit_need(self, request, park):
        need = self.needs.call("submit", park, read_json(request), idempotency_key=idempotency_key(request))
        created = need.pop("created")
        headers = {"Location": "/api/v1/parks/{}/needs/{}".format(park, need["id"])}
        return json_response(201 if created else 200, need, headers)

    @route("POST", "/api/v1/parks/<string:park>/needs/batch", DESK, body=needs_schemas.BatchSchema)
    def submit_needs_batch(self, request, park):
        batch = self.needs.call("submit_batch", park, read_json(request),
                                idempotency_key(request))
        return 201 if batch["created"] else 200, batch

    @route("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>", CREW, result=needs_schemas.NeedViewSchema)
    def get_need(self, request, park, need_id):
        return self.needs.call("get", park, need_id)

    @route("POST", "/api/v1/parks/<string:park>/needs/<string:need_id>/<string:action>", CREW)
    def need_action(self, request, park, need_id, action):
        """triage, assign, start, wait, resume, escalate, release, resolve,
        evaluate, reopen, reject, cancel, link_duplicate, review."""
        return self.needs.call("act", park, need_id, action, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>/followers", DESK)
    def need_followers(self, request, park, need_id):
        followers = self.needs.call("followers", park, need_id)
        return {"followers": followers, "count": len(followers)}

    @route("POST", "/api/v1/parks/<string:park>/needs-sweep", DESK)
    def sweep_needs(self, request, park):
        return self.needs.call("sweep", park)

    @route("GET", "/api/v1/parks/<string:park>/needs-statistics", DESK)
    def needs_statistics(self, request, park):
        return self.needs.call("statistics", park)

    # the echo wall: public ------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/wall", PUBLIC,
           query={"status": ("string", "one status"), "category": ("string", "a category code"),
                  "before": ("string", "ISO time: entries changed before it (the next page)"),
                  "limit": ("integer", "1-100")})
    def wall(self, request, park):
        return self.needs.call("wall", park, status=request.args.get("status"),
                               category=request.args.get("category"), before=request.args.get("before"),
                               limit=int_arg(request, "limit", 20))

    @route("GET", "/api/v1/parks/<string:park>/wall/<string:need_id>", PUBLIC, result=needs_schemas.WallEntrySchema)
    def wall_entry(self, request, park, need_id):
        return self.needs.call("wall_entry", park, need_id)

    @route("POST", "/api/v1/parks/<string:park>/wall/<string:need_id>/followers", PUBLIC,
           body=needs_schemas.FollowSchema)
    def follow_need(self, request, park, need_id):
        answer = self.needs.call("follow", park, need_id, read_json(request), following=True)
        return 201 if answer["changed"] else 200, answer

    @route("DELETE", "/api/v1/parks/<string:park>/wall/<string:need_id>/followers/<string:follower_id>", PUBLIC)
    def unfollow_need(self, request, park, need_id, follower_id):
        return self.needs.call("follow", park, need_id, {"follower_id": follower_id},
                               following=False)

    # the three lists ----------------------------------------------------------------------
    @route("PUT", "/api/v1/parks/<string:park>/resources/<string:code>", ADMIN, body=needs_schemas.ResourceSchema)
    def put_resource(self, request, park, code):
        return self.needs.call("put_resource", park, code, read_json(request))

    @route("PUT", "/api/v1/parks/<string:park>/projects/<string:code>", ADMIN, body=needs_schemas.ProjectSchema)
    def put_project(self, request, park, code):
        return self.needs.call("put_project", park, code, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/lists", ALL)
    def three_lists(self, request, park):
        return self.needs.call("lists", park)

    # responders -------------------------------------------------------------------
    @route("POST", "/api/v1/parks/<string:park>/responders", DESK, body=volunteers_schemas.ResponderRegistrationSchema)
    def register_responder(self, request, park):
        responder = self.volunteers.call("register_responder", park,
                         read_json(request))
        return created_or_replayed(responder)

    @route("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>", CREW_OWN_RESPONDER,
           result=volunteers_schemas.ResponderViewSchema)
    def get_responder(self, request, park, responder_id):
        return self.volunteers.call("get_responder", park, responder_id)

    @route("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/roster", CREW_OWN_RESPONDER,
           body=volunteers_schemas.RosterSchema)
    def set_roster(self, request, park, responder_id):
        return self.volunteers.call("set_roster", park, responder_id, read_json(request))

    @route("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/active", CREW_OWN_RESPONDER,
           body=volunteers_schemas.PauseSchema)
    def set_active(self, request, park, responder_id):
        """{"active": false, "reason": …} pauses a responder; true resumes."""
        return self.volunteers.call("set_active", park, responder_id, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/tasks", CREW_OWN_RESPONDER)
    def responder_tasks(self, request, park, responder_id):
        return self.volunteers.call("tasks_of", park, responder_id)

    # dispatch ----------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/volunteers/config", CREW)
    def volunteers_config(self, request, park):
        return self.volunteers.call("config", park)

    @route("PUT", "/api/v1/parks/<string:park>/volunteers/config", ADMIN,
           body=volunteers_schemas.VolunteersConfigSchema)
    def set_volunteers_config(self, request, park):
        return self.volunteers.call("set_config", park, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/on-duty", DESK,
           query={"at": ("string", "ISO time"), "team": ("string", "a team code")})
    def on_duty(self, request, park):
        return self.volunteers.call("on_duty", park, at=request.args.get("at"),
                                    team=request.args.get("team"))

    @route("GET", "/api/v1/parks/<string:park>/tasks/<string:task_id>", CREW, result=volunteers_schemas.TaskViewSchema)
    def get_task(self, request, park, task_id):
        return self.volunteers.call("get_task", park, task_id)

    @route("POST", "/api/v1/parks/<string:park>/tasks/<string:task_id>/<string:action>", CREW_AS_RESPONDER,
           body=volunteers_schemas.TaskActionSchema)
    def task_action(self, request, park, task_id, action):
        """claim, decline, start, complete, release, request_takeover, answer_takeover."""
        return self.volunteers.call("act", park, task_id, action, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/wishes", ALL, query={"limit": ("integer", "")})
    def wishes(self, request, park):
        return self.volunteers.call("wishes", park, limit=int_arg(request, "limit", 50))

    @route("POST", "/api/v1/parks/<string:park>/tasks-sweep", DESK)
    def sweep_tasks(self, request, park):
        return self.volunteers.call("sweep", park)

    # visit plans -----------------------------------------------------------------------
    @route("PUT", "/api/v1/parks/<string:park>/households/<string:code>", DESK, body=volunteers_schemas.HouseholdSchema)
    def put_household(self, request, park, code):
        return self.volunteers.call("put_household", park, code, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/visits/generate", DESK)
    def generate_visits(self, request, park):
        return self.volunteers.call("generate_visits", park, month=read_json(request).get("month"))

    @route("POST", "/api/v1/parks/<string:park>/visits/close-month", DESK)
    def close_visit_month(self, request, park):
        return self.volunteers.call("close_month", park, read_json(request).get("month"))

    @route("GET", "/api/v1/parks/<string:park>/visits", CREW,
           query={"month": ("string", "YYYY-MM"), "status": ("string", "")})
    def visits(self, request, park):
        return self.volunteers.call("visits", park, month=request.args.get("month"),
                                    status=request.args.get("status"))

    @route("POST", "/api/v1/parks/<string:park>/visits/<string:visit_id>/proof", CREW,
           body=volunteers_schemas.VisitProofSchema)
    def visit_proof(self, request, park, visit_id):
        return self.volunteers.call("visit_proof", park, visit_id, read_json(request))

    # emergency mode --------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/emergency", ALL)
    def emergency_mode(self, request, park):
        return self.volunteers.call("mode", park)

    @route("POST", "/api/v1/parks/<string:park>/emergency", ADMIN, body=volunteers_schemas.EmergencySwitchSchema)
    def switch_mode(self, request, park):
        return self.volunteers.call("switch_mode", park, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/emergency/callouts", DESK, body=volunteers_schemas.CalloutSchema)
    def call_out(self, request, park):
        callout = self.volunteers.call("call_out", park, read_json(request),
                                       idempotency_key=idempotency_key(request))
        return 201 if callout["created"] else 200, callout

    @route("GET", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>", CREW)
    def callout(self, request, park, callout_id):
        return self.volunteers.call("callout", park, callout_id)

    @route("POST", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>/replies", CREW_AS_RESPONDER,
           body=volunteers_schemas.ReplySchema)
    def callout_reply(self, request, park, callout_id):
        return self.volunteers.call("reply", park, callout_id, read_json(request))

    # notices ------------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices", OWN_RESPONDER_INBOX,
           query={"limit": ("integer", ""), "unread": ("boolean", "")})
    def inbox(self, request, park, responder_id):
        limit = int_arg(request, "limit", 50)
        unread = request.args.get("unread", "false").lower() in ("1", "true", "yes")
        notices = self.notify.call("inbox", park, responder_id,
                       unread_only=unread, limit=limit)
        return {"notices": notices, "count": len(notices)}

    @route("POST", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices/<string:notice_id>/read",
           OWN_RESPONDER_INBOX)
    def mark_read(self, request, park, responder_id, notice_id):
        return self.notify.call("mark_read", park, responder_id, notice_id)

    @route("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices", OWN_RECIPIENT,
           query={"limit": ("integer", ""), "unread": ("boolean", "")})
    def recipient_inbox(self, request, park, recipient_id):
        return self.inbox(request, park, recipient_id)

    @route("POST",
           "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices/<string:notice_id>/read",
           OWN_RECIPIENT)
    def recipient_mark_read(self, request, park, recipient_id, notice_id):
        return self.notify.call("mark_read", park, recipient_id, notice_id)

    @route("GET", "/api/v1/parks/<string:park>/notify/config", ADMIN)
    def notify_config(self, request, park):
        return self.notify.call("config", park)

    @route("PUT", "/api/v1/parks/<string:park>/notify/config", ADMIN, body=notify_schemas.NotifyConfigSchema)
    def set_notify_config(self, request, park):
        return self.notify.call("set_config", park, read_json(request))

    @route("PUT", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>", OWN_RECIPIENT,
           body=notify_schemas.RecipientSchema)
    def put_recipient(self, request, park, recipient_id):
        return self.notify.call("put_recipient", park, recipient_id, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>", OWN_RECIPIENT)
    def get_recipient(self, request, park, recipient_id):
        return self.notify.call("get_recipient", park, recipient_id)

    @route("POST", "/api/v1/parks/<string:park>/notify/recipients", ADMIN, max_body=MAX_IMPORT_BYTES,
           body=notify_schemas.RecipientImportBatchSchema)
    def import_recipients(self, request, park):
        return self.notify.call("import_recipients", park, read_json(request, MAX_IMPORT_BYTES))

    @route("GET", "/api/v1/parks/<string:park>/notify/templates", DESK)
    def templates(self, request, park):
        return self.notify.call("templates", park)

    @route("PUT", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>", ADMIN,
           body=notify_schemas.TemplateSchema)
    def put_template(self, request, park, key, locale):
        return self.notify.call("put_template", park, key, locale, read_json(request))

    @route("DELETE", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>", ADMIN)
    def delete_template(self, request, park, key, locale):
        return self.notify.call("delete_template", park, key, locale)

    @route("POST", "/api/v1/parks/<string:park>/notify/templates/preview", DESK, body=notify_schemas.PreviewSchema)
    def preview_template(self, request, park):
        return self.notify.call("preview", park, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/notify/broadcasts", DESK, body=notify_schemas.BroadcastSchema)
    def broadcast(self, request, park):
        accepted = self.notify.call("broadcast", park, read_json(request), idempotency_key=idempotency_key(request))
        created = accepted.pop("created")
        headers = {"Location": "/api/v1/parks/{}/notify/broadcasts/{}".format(park, accepted["broadcast_id"])}
        return json_response(202 if created else 200, accepted, headers)

    @route("GET", "/api/v1/parks/<string:park>/notify/broadcasts/<string:broadcast_id>", DESK)
    def get_broadcast(self, request, park, broadcast_id):
        return self.notify.call("get_broadcast", park, broadcast_id)

    @route("GET", "/api/v1/parks/<string:park>/notify/deliveries", DESK,
           query={"recipient": ("string", ""), "event": ("string", "source event id"), "notice": ("string", ""),
                  "limit": ("integer", "")})
    def deliveries(self, request, park):
        return self.notify.call("deliveries", park, recipient_id=request.args.get("recipient"),
                                source_id=request.args.get("event"), notice_id=request.args.get("notice"),
                                limit=int_arg(request, "limit", 200))

    @route("POST", "/api/v1/parks/<string:park>/notify/send-due", DESK)
    def notify_send_due(self, request, park):
        return self.notify.call("send_due", park)

    # points ----------------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/points/rules", ALL)
    def points_rules(self, request, park):
        return self.points.call("catalogue", park)

    @route("PUT", "/api/v1/parks/<string:park>/points/rules", ADMIN, body=points_schemas.CatalogueSchema)
    def set_points_rules(self, request, park):
        return self.points.call("set_catalogue", park, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/points/entries", DESK, body=points_schemas.PostingSchema)
    def post_points(self, request, park):
        entry = self.points.call("post", park, read_json(request),
                                 idempotency_key=idempotency_key(request, required=True))
        if entry.pop("approval_pending", False):  # the rule needs a second person: nothing posted yet
            entry.pop("created")
            return 202, entry
        return created_or_replayed(entry)

    @route("GET", "/api/v1/parks/<string:park>/points/approvals", DESK,
           query={"status": ("string", "pending, approved, rejected"), "limit": ("integer", "")})
    def points_approvals(self, request, park):
        approvals = self.points.call("approvals", park, status=request.args.get("status", "pending"),
                                     limit=int_arg(request, "limit", 100))
        return {"approvals": approvals, "count": len(approvals)}

    @route("POST", "/api/v1/parks/<string:park>/points/approvals/<path:approval_id>/approve", ADMIN,
           body=points_schemas.DecisionSchema)
    def approve_points(self, request, park, approval_id):
        return self.points.call("approve", park, approval_id, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/points/approvals/<path:approval_id>/reject", ADMIN,
           body=points_schemas.DecisionSchema)
    def reject_points(self, request, park, approval_id):
        return self.points.call("reject", park, approval_id, read_json(request))

    @route("POST", "/api/v1/parks/<string:park>/points/entries/<path:entry_id>/reversal", ADMIN,
           body=points_schemas.ReversalSchema)
    def reverse_points(self, request, park, entry_id):
        entry = self.points.call("reverse", park, entry_id, read_json(request))
        return created_or_replayed(entry)

    @route("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points", OWN_MEMBER,
           result=points_schemas.AccountViewSchema,
           query={"kind": ("string", "discipline or service"), "year": ("integer", ""),
                  "at": ("string", "ISO time: the balance then")})
    def member_points(self, request, park, member_id):
        return self.points.call("account", park, member_id,
                                kind=request.args.get("kind", "discipline"), year=int_arg(request, "year"),
                                at=request.args.get("at"))

    @route("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points/history", OWN_MEMBER,
           query={"kind": ("string", ""), "year": ("integer", ""), "limit": ("integer", "")})
    def member_points_history(self, request, park, member_id):
        entries = self.points.call("history", park, member_id,
                                   kind=request.args.get("kind", "discipline"), year=int_arg(request, "year"),
                                   limit=int_arg(request, "limit", 50))
        return {"entries": entries, "count": len(entries)}

    @route("POST", "/api/v1/parks/<string:park>/members/<string:member_id>/move", ADMIN, body=points_schemas.MoveSchema)
    def move_member(self, request, park, member_id):
        return self.points.call("move_member", park, member_id, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/points/leaderboard", ALL,
           query={"kind": ("string", ""), "year": ("integer", ""), "limit": ("integer", "")})
    def points_leaderboard(self, request, park):
        rows = self.points.call("leaderboard", park, kind=request.args.get("kind", "service"),
                                year=int_arg(request, "year"), limit=int_arg(request, "limit", 20))
        return {"leaderboard": rows}

    @route("GET", "/api/v1/parks/<string:park>/points/rewards", ALL)
    def rewards(self, request, park):
        return {"rewards": self.points.call("rewards", park)}

    @route("PUT", "/api/v1/parks/<string:park>/points/rewards/<string:code>", ADMIN, body=points_schemas.RewardSchema)
    def put_reward(self, request, park, code):
        body = read_json(request)
        if body.setdefault("code", code) != code:
            raise BadInput("the body names another reward than the path", {"code": ["must be {}".format(code)]})
        return self.points.call("put_reward", park, body)

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions", REDEEM, body=points_schemas.RedeemSchema)
    def redeem(self, request, park):
        redemption = self.points.call("redeem", park, read_json(request),
                                      idempotency_key=idempotency_key(request))
        return created_or_replayed(redemption)

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/confirm", DESK)
    def confirm_redemption(self, request, park, redemption_id):
        return self.points.call("confirm_redemption", park, redemption_id,
                                required(read_json(request), "actor"))

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/void", DESK)
    def void_redemption(self, request, park, redemption_id):
        body = read_json(request)
        return self.points.call("void_redemption", park, redemption_id, required(body, "actor"),
                                body.get("reason") or "voided at the desk")

    @route("POST", "/api/v1/parks/<string:park>/points/awards/<string:period>", ADMIN, query={"limit": ("integer", "")})
    def freeze_award(self, request, park, period):
        return self.points.call("freeze_award", park, period, limit=int_arg(request, "limit", 10))


@functools.cache
def openapi_text():
    """The OpenAPI document: the routes are fixed when the module is loaded, so it is built once."""
    return json.dumps(openapi.document(ROUTES), ensure_ascii=False)


def grant(principal, role):
    """A credential makes credentials only of the roles below its own."""
    if role not in auth.GRANTS.get(principal.role, ()):
        raise Forbidden("a {} may not make credentials for a {}".format(principal.role, role))


def created_or_replayed(result):
    """201 for what a call created, 200 for what an idempotent replay returned."""
    return 201 if result.pop("created") else 200, result


def idempotency_key(request, required=False):
    """The request's Idempotency-Key: one header, 1-128 characters without a
    comma. Given twice it is 400 (which of the two would make a retry
    safe?); a route
    that must not be repeated by accident requires it (422 naming it)."""
    # a WSGI server joins a repeated header into one value with commas
    keys = [part.strip() for value in request.headers.getlist("Idempotency-Key") for part in value.split(",")]
    if len(keys) > 1:
        raise MalformedRequest("Idempotency-Key is given {} times; send it once".format(len(keys)),
                               {"Idempotency-Key": ["given more than once"]})
    key = keys[0] if keys else None
    if key is None:
        if required:
            raise BadInput("this call needs an Idempotency-Key header, so that a retry cannot post twice",
                           {"Idempotency-Key": ["Missing data for required field."]})
        return None
    if not 1 <= len(key) <= 128:
        raise BadInput("Idempotency-Key must be 1-128 characters", {"Idempotency-Key": ["bad length"]})
    return key


def int_arg(request, name, default=None):
    value = request.args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInput("{} must be an integer".format(name), {name: ["not an integer: {!r}".format(value)]})


def required(body, name):
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadInput("{} is required".format(name), {name: ["Missing data for required field."]})
    return value
