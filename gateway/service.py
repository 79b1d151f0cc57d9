"""The gateway: Lamplight's one HTTP front door.

Every route has the park in its path. Every error has one body shape,
``{"error": {"code", "message", "fields"}}``, mapped from service errors in
:meth:`Api.response_from_exception` and nowhere else.

A need is accepted only when the needs service has written it (201, or 200
when an Idempotency-Key replays one already written). When the needs service
is down the gateway answers 503 with Retry-After; the RPC request carries a
TTL equal to the gateway's deadline, so a request the gateway gave up on is
dropped by the broker rather than processed later. A client that retries
with the same Idempotency-Key can never create a need twice.
"""
import json

from nameko.web.handlers import HttpRequestHandler
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from lamplight import logs
from lamplight.errors import BadInput, Conflict, LamplightError, NotFound, UnscopedQuery
from lamplight.observability import Observability
from lamplight.rpc import CachedSignatureCheck, DeadlineRpc, ServiceUnavailable
from lamplight.storage import check_park_id

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = 5
_STATUS = {BadInput: 422, NotFound: 404, Conflict: 409}
_log = logs.get_logger(component="gateway")


def error_body(code, message, fields=None):
    return json.dumps({"error": {"code": code, "message": message, "fields": fields or {}}},
                      ensure_ascii=False)


def json_response(status, payload, headers=None):
    return Response(json.dumps(payload, ensure_ascii=False), status=status,
                    headers=headers, mimetype="application/json")


class Api(CachedSignatureCheck, HttpRequestHandler):
    """nameko's HTTP entrypoint with JSON in, JSON out and one error mapping."""

    def __init__(self, method, url, **kwargs):
        # a 4xx or 503 is an answer, not a fault: nameko logs these as warnings
        kwargs.setdefault("expected_exceptions", (LamplightError, ServiceUnavailable, HTTPException))
        super().__init__(method, url, **kwargs)

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
        elif isinstance(exc, ServiceUnavailable):
            status, headers = 503, {"Retry-After": str(RETRY_AFTER_S)}
            body = error_body("unavailable", str(exc))
        elif isinstance(exc, HTTPException):
            status = exc.code or 400
            body = error_body("http_{}".format(status), exc.description or exc.name)
        else:
            _log.error("gateway.unhandled", error_type=type(exc).__name__, error=str(exc))
            status, body = 500, error_body("internal", "internal error; it has been logged")
        return Response(body, status=status, headers=headers, mimetype="application/json")


api = Api.decorator


def read_json(request):
    """The request body as a JSON object, or a 4xx naming the problem."""
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        raise BadInput("request body over {} bytes".format(MAX_BODY_BYTES), {"_body": ["too large"]})
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput("request body over {} bytes".format(MAX_BODY_BYTES), {"_body": ["too large"]})
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise BadInput("request body is not valid JSON: {}".format(exc), {"_body": ["invalid JSON"]})
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object", {"_body": ["not an object"]})
    return body


class Gateway:
    name = "gateway"

    log = Observability()
    needs = DeadlineRpc("needs")
    volunteers = DeadlineRpc("volunteers")
    notify = DeadlineRpc("notify")
    points = DeadlineRpc("points")

    # needs ----------------------------------------------------------------------
    @api("POST", "/api/v1/parks/<string:park>/needs")
    def submit_need(self, request, park):
        check_park_id(park)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 128:
            raise BadInput("Idempotency-Key must be 1-128 characters", {"Idempotency-Key": ["bad length"]})
        need = self.needs.call("submit", park, read_json(request), idempotency_key=key)
        created = need.pop("created")
        headers = {"Location": "/api/v1/parks/{}/needs/{}".format(park, need["id"])}
        return json_response(201 if created else 200, need, headers)

    @api("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>")
    def get_need(self, request, park, need_id):
        return self.needs.call("get", check_park_id(park), need_id)

    # responders -------------------------------------------------------------------
    @api("POST", "/api/v1/parks/<string:park>/responders")
    def register_responder(self, request, park):
        responder = self.volunteers.call("register_responder", check_park_id(park),
                         read_json(request))
        return 201 if responder.pop("created") else 200, responder

    @api("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>")
    def get_responder(self, request, park, responder_id):
        return self.volunteers.call("get_responder", check_park_id(park), responder_id)

    # notices ------------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices")
    def inbox(self, request, park, responder_id):
        try:
            limit = int(request.args.get("limit", 50))
        except ValueError:
            raise BadInput("limit must be an integer", {"limit": ["not an integer"]})
        unread = request.args.get("unread", "false").lower() in ("1", "true", "yes")
        notices = self.notify.call("inbox", check_park_id(park), responder_id,
                       unread_only=unread, limit=limit)
        return {"notices": notices, "count": len(notices)}

    @api("POST", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices/<string:notice_id>/read")
    def mark_read(self, request, park, responder_id, notice_id):
        return self.notify.call("mark_read", check_park_id(park), responder_id, notice_id)

    # points -------------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points")
    def member_points(self, request, park, member_id):
        year = request.args.get("year")
        try:
            year = int(year) if year else None
        except ValueError:
            raise BadInput("year must be an integer", {"year": ["not an integer"]})
        return self.points.call("account", check_park_id(park), member_id, year=year)
