"""The gateway's HTTP machinery: the Api entrypoint (authentication, rate
limits, the one error body and status mapping, request ids and traces), the
route declaration and the forwards it makes, and reading a request (its JSON
body, query, Idempotency-Key). The routes themselves are the Gateway's
(gateway/service.py)."""
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

from gateway import auth, openapi
from gateway.auth import Forbidden, TooManyRequests, Unauthenticated
from lamplight import logs, settings
from lamplight.envelope import _TRACEPARENT, new_traceparent
from lamplight.errors import BadInput, Conflict, LamplightError, NotFound, UnscopedQuery
from lamplight.ids import new_id
from lamplight.metrics import SERVER_ERRORS
from lamplight.rpc import CachedSignatureCheck, ServiceUnavailable
from lamplight.storage import RequestCounter, check_park_id

MAX_BODY_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 4 * 1024 * 1024  # a list of up to 5,000 recipients
MAX_DEPTH = 32  # lists and objects within each other: the deepest schema needs 5
RETRY_AFTER_S = 5



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


def route(method, url, policy, max_body=MAX_BODY_BYTES, body=None, result=None, query=None, page=False,
          rpc=None, keyed=False, created=False):
    """An HTTP route of the gateway, declared once: its method and path (a ``<park>`` in it is
    checked before the handler runs), who may call it (``policy``), the schema of its JSON
    ``body``, the schema of its ``result`` when it is one of the services' views, its ``query``
    parameters ({name: (type, description[, the RPC's keyword when it has another name])}),
    and whether it answers an HTML ``page``. ROUTES holds them all; the OpenAPI document and
    the authorization tests are made from it.

    ``rpc`` ("service.method") makes the route a forward, and the decorated function only
    names and documents it: the RPC gets the path's parameters in order, then the body when
    the route has one, the query parameters the request gives as keywords (an absent one
    leaves the RPC's default), and the Idempotency-Key when ``keyed`` ("required": 422
    without one); with ``created`` the answer is 201 for what the call created, 200 for a
    replay. A route that does more than forward writes its own handler."""
    def decorate(fn):
        ROUTES.append({"method": method, "path": url, "name": fn.__name__, "policy": policy,
                       "doc": (fn.__doc__ or "").strip(), "body": body, "result": result, "query": query or {},
                       "page": page, "rpc": rpc, "keyed": keyed})
        handler = fn if rpc is None else functools.wraps(fn)(_forward(url, rpc, body, query or {}, keyed, created))
        return Api.decorator(method, url, policy=policy, max_body=max_body)(handler)
    return decorate


def _forward(url, rpc, body, query, keyed, created):
    service, method = rpc.split(".")
    names = [name for _, name in openapi.path_parameters(url)]

    def forward(self, request, **params):
        args = [params[name] for name in names]
        if body is not None:
            args.append(read_json(request))
        kwargs = {spec[2] if len(spec) > 2 else name: query_arg(request, name, spec[0])
                  for name, spec in query.items() if request.args.get(name) not in (None, "")}
        if keyed:
            kwargs["idempotency_key"] = idempotency_key(request, required=keyed == "required")
        answer = getattr(self, service).call(method, *args, **kwargs)
        return created_or_replayed(answer) if created else answer
    return forward


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


def query_arg(request, name, kind):
    """A query parameter of the type its route declares (a 422 naming it when it is not)."""
    if kind == "integer":
        return int_arg(request, name)
    if kind == "boolean":
        return request.args.get(name, "").lower() in ("1", "true", "yes")
    return request.args.get(name)


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
