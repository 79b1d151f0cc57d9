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
MAX_IMPORT_BYTES = 4 * 1024 * 1024  # a list of up to 5,000 recipients
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


def read_json(request, max_bytes=MAX_BODY_BYTES):
    """The request body as a JSON object, or a 4xx naming the problem."""
    if request.content_length and request.content_length > max_bytes:
        raise BadInput("request body over {} bytes".format(max_bytes), {"_body": ["too large"]})
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise BadInput("request body over {} bytes".format(max_bytes), {"_body": ["too large"]})
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
    @api("GET", "/api/v1/parks/<string:park>/needs/config")
    def needs_config(self, request, park):
        return self.needs.call("config", check_park_id(park))

    @api("PUT", "/api/v1/parks/<string:park>/needs/config")
    def set_needs_config(self, request, park):
        return self.needs.call("set_config", check_park_id(park), read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/needs")
    def submit_need(self, request, park):
        check_park_id(park)
        need = self.needs.call("submit", park, read_json(request), idempotency_key=idempotency_key(request))
        created = need.pop("created")
        headers = {"Location": "/api/v1/parks/{}/needs/{}".format(park, need["id"])}
        return json_response(201 if created else 200, need, headers)

    @api("POST", "/api/v1/parks/<string:park>/needs/batch")
    def submit_needs_batch(self, request, park):
        batch = self.needs.call("submit_batch", check_park_id(park), read_json(request),
                                idempotency_key(request))
        return 201 if batch["created"] else 200, batch

    @api("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>")
    def get_need(self, request, park, need_id):
        return self.needs.call("get", check_park_id(park), need_id)

    @api("POST", "/api/v1/parks/<string:park>/needs/<string:need_id>/<string:action>")
    def need_action(self, request, park, need_id, action):
        """triage, assign, start, wait, resume, escalate, release, resolve,
        evaluate, reopen, reject, cancel, link_duplicate, review."""
        return self.needs.call("act", check_park_id(park), need_id, action, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>/followers")
    def need_followers(self, request, park, need_id):
        followers = self.needs.call("followers", check_park_id(park), need_id)
        return {"followers": followers, "count": len(followers)}

    @api("POST", "/api/v1/parks/<string:park>/needs-sweep")
    def sweep_needs(self, request, park):
        return self.needs.call("sweep", check_park_id(park))

    @api("GET", "/api/v1/parks/<string:park>/needs-statistics")
    def needs_statistics(self, request, park):
        return self.needs.call("statistics", check_park_id(park))

    # the echo wall: public ------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/wall")
    def wall(self, request, park):
        return self.needs.call("wall", check_park_id(park), status=request.args.get("status"),
                               category=request.args.get("category"), before=request.args.get("before"),
                               limit=int_arg(request, "limit", 20))

    @api("GET", "/api/v1/parks/<string:park>/wall/<string:need_id>")
    def wall_entry(self, request, park, need_id):
        return self.needs.call("wall_entry", check_park_id(park), need_id)

    @api("POST", "/api/v1/parks/<string:park>/wall/<string:need_id>/followers")
    def follow_need(self, request, park, need_id):
        answer = self.needs.call("follow", check_park_id(park), need_id, read_json(request), following=True)
        return 201 if answer["changed"] else 200, answer

    @api("DELETE", "/api/v1/parks/<string:park>/wall/<string:need_id>/followers/<string:follower_id>")
    def unfollow_need(self, request, park, need_id, follower_id):
        return self.needs.call("follow", check_park_id(park), need_id, {"follower_id": follower_id},
                               following=False)

    # the three lists ----------------------------------------------------------------------
    @api("PUT", "/api/v1/parks/<string:park>/resources/<string:code>")
    def put_resource(self, request, park, code):
        return self.needs.call("put_resource", check_park_id(park), code, read_json(request))

    @api("PUT", "/api/v1/parks/<string:park>/projects/<string:code>")
    def put_project(self, request, park, code):
        return self.needs.call("put_project", check_park_id(park), code, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/lists")
    def three_lists(self, request, park):
        return self.needs.call("lists", check_park_id(park))

    # responders -------------------------------------------------------------------
    @api("POST", "/api/v1/parks/<string:park>/responders")
    def register_responder(self, request, park):
        responder = self.volunteers.call("register_responder", check_park_id(park),
                         read_json(request))
        return created_or_replayed(responder)

    @api("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>")
    def get_responder(self, request, park, responder_id):
        return self.volunteers.call("get_responder", check_park_id(park), responder_id)

    @api("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/roster")
    def set_roster(self, request, park, responder_id):
        return self.volunteers.call("set_roster", check_park_id(park), responder_id, read_json(request))

    @api("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/active")
    def set_active(self, request, park, responder_id):
        """{"active": false, "reason": …} pauses a responder; true resumes."""
        return self.volunteers.call("set_active", check_park_id(park), responder_id, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/tasks")
    def responder_tasks(self, request, park, responder_id):
        return self.volunteers.call("tasks_of", check_park_id(park), responder_id)

    # dispatch ----------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/volunteers/config")
    def volunteers_config(self, request, park):
        return self.volunteers.call("config", check_park_id(park))

    @api("PUT", "/api/v1/parks/<string:park>/volunteers/config")
    def set_volunteers_config(self, request, park):
        return self.volunteers.call("set_config", check_park_id(park), read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/on-duty")
    def on_duty(self, request, park):
        return self.volunteers.call("on_duty", check_park_id(park), at=request.args.get("at"),
                                    team=request.args.get("team"))

    @api("GET", "/api/v1/parks/<string:park>/tasks/<string:task_id>")
    def get_task(self, request, park, task_id):
        return self.volunteers.call("get_task", check_park_id(park), task_id)

    @api("POST", "/api/v1/parks/<string:park>/tasks/<string:task_id>/<string:action>")
    def task_action(self, request, park, task_id, action):
        """claim, decline, start, complete, release, request_takeover, answer_takeover."""
        return self.volunteers.call("act", check_park_id(park), task_id, action, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/wishes")
    def wishes(self, request, park):
        return self.volunteers.call("wishes", check_park_id(park), limit=int_arg(request, "limit", 50))

    @api("POST", "/api/v1/parks/<string:park>/tasks-sweep")
    def sweep_tasks(self, request, park):
        return self.volunteers.call("sweep", check_park_id(park))

    # visit plans -----------------------------------------------------------------------
    @api("PUT", "/api/v1/parks/<string:park>/households/<string:code>")
    def put_household(self, request, park, code):
        return self.volunteers.call("put_household", check_park_id(park), code, read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/visits/generate")
    def generate_visits(self, request, park):
        return self.volunteers.call("generate_visits", check_park_id(park), month=read_json(request).get("month"))

    @api("POST", "/api/v1/parks/<string:park>/visits/close-month")
    def close_visit_month(self, request, park):
        return self.volunteers.call("close_month", check_park_id(park), read_json(request).get("month"))

    @api("GET", "/api/v1/parks/<string:park>/visits")
    def visits(self, request, park):
        return self.volunteers.call("visits", check_park_id(park), month=request.args.get("month"),
                                    status=request.args.get("status"))

    @api("POST", "/api/v1/parks/<string:park>/visits/<string:visit_id>/proof")
    def visit_proof(self, request, park, visit_id):
        return self.volunteers.call("visit_proof", check_park_id(park), visit_id, read_json(request))

    # emergency mode --------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/emergency")
    def emergency_mode(self, request, park):
        return self.volunteers.call("mode", check_park_id(park))

    @api("POST", "/api/v1/parks/<string:park>/emergency")
    def switch_mode(self, request, park):
        return self.volunteers.call("switch_mode", check_park_id(park), read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/emergency/callouts")
    def call_out(self, request, park):
        callout = self.volunteers.call("call_out", check_park_id(park), read_json(request),
                                       idempotency_key=idempotency_key(request))
        return 201 if callout["created"] else 200, callout

    @api("GET", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>")
    def callout(self, request, park, callout_id):
        return self.volunteers.call("callout", check_park_id(park), callout_id)

    @api("POST", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>/replies")
    def callout_reply(self, request, park, callout_id):
        return self.volunteers.call("reply", check_park_id(park), callout_id, read_json(request))

    # notices ------------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices")
    def inbox(self, request, park, responder_id):
        limit = int_arg(request, "limit", 50)
        unread = request.args.get("unread", "false").lower() in ("1", "true", "yes")
        notices = self.notify.call("inbox", check_park_id(park), responder_id,
                       unread_only=unread, limit=limit)
        return {"notices": notices, "count": len(notices)}

    @api("POST", "/api/v1/parks/<string:park>/responders/<string:responder_id>/notices/<string:notice_id>/read")
    def mark_read(self, request, park, responder_id, notice_id):
        return self.notify.call("mark_read", check_park_id(park), responder_id, notice_id)

    @api("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices")
    def recipient_inbox(self, request, park, recipient_id):
        return self.inbox(request, park, recipient_id)

    @api("POST", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices/<string:notice_id>/read")
    def recipient_mark_read(self, request, park, recipient_id, notice_id):
        return self.notify.call("mark_read", check_park_id(park), recipient_id, notice_id)

    @api("GET", "/api/v1/parks/<string:park>/notify/config")
    def notify_config(self, request, park):
        return self.notify.call("config", check_park_id(park))

    @api("PUT", "/api/v1/parks/<string:park>/notify/config")
    def set_notify_config(self, request, park):
        return self.notify.call("set_config", check_park_id(park), read_json(request))

    @api("PUT", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>")
    def put_recipient(self, request, park, recipient_id):
        return self.notify.call("put_recipient", check_park_id(park), recipient_id, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>")
    def get_recipient(self, request, park, recipient_id):
        return self.notify.call("get_recipient", check_park_id(park), recipient_id)

    @api("POST", "/api/v1/parks/<string:park>/notify/recipients")
    def import_recipients(self, request, park):
        return self.notify.call("import_recipients", check_park_id(park), read_json(request, MAX_IMPORT_BYTES))

    @api("GET", "/api/v1/parks/<string:park>/notify/templates")
    def templates(self, request, park):
        return self.notify.call("templates", check_park_id(park))

    @api("PUT", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>")
    def put_template(self, request, park, key, locale):
        return self.notify.call("put_template", check_park_id(park), key, locale, read_json(request))

    @api("DELETE", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>")
    def delete_template(self, request, park, key, locale):
        return self.notify.call("delete_template", check_park_id(park), key, locale)

    @api("POST", "/api/v1/parks/<string:park>/notify/templates/preview")
    def preview_template(self, request, park):
        return self.notify.call("preview", check_park_id(park), read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/notify/broadcasts")
    def broadcast(self, request, park):
        check_park_id(park)
        accepted = self.notify.call("broadcast", park, read_json(request), idempotency_key=idempotency_key(request))
        created = accepted.pop("created")
        headers = {"Location": "/api/v1/parks/{}/notify/broadcasts/{}".format(park, accepted["broadcast_id"])}
        return json_response(202 if created else 200, accepted, headers)

    @api("GET", "/api/v1/parks/<string:park>/notify/broadcasts/<string:broadcast_id>")
    def get_broadcast(self, request, park, broadcast_id):
        return self.notify.call("get_broadcast", check_park_id(park), broadcast_id)

    @api("GET", "/api/v1/parks/<string:park>/notify/deliveries")
    def deliveries(self, request, park):
        return self.notify.call("deliveries", check_park_id(park), recipient_id=request.args.get("recipient"),
                                source_id=request.args.get("event"), notice_id=request.args.get("notice"),
                                limit=int_arg(request, "limit", 200))

    @api("POST", "/api/v1/parks/<string:park>/notify/send-due")
    def notify_send_due(self, request, park):
        return self.notify.call("send_due", check_park_id(park))

    # points ----------------------------------------------------------------------------
    @api("GET", "/api/v1/parks/<string:park>/points/rules")
    def points_rules(self, request, park):
        return self.points.call("catalogue", check_park_id(park))

    @api("PUT", "/api/v1/parks/<string:park>/points/rules")
    def set_points_rules(self, request, park):
        return self.points.call("set_catalogue", check_park_id(park), read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/points/entries")
    def post_points(self, request, park):
        entry = self.points.call("post", check_park_id(park), read_json(request),
                                 idempotency_key=idempotency_key(request))
        if entry.pop("approval_pending", False):  # the rule needs a second person: nothing posted yet
            entry.pop("created")
            return 202, entry
        return created_or_replayed(entry)

    @api("GET", "/api/v1/parks/<string:park>/points/approvals")
    def points_approvals(self, request, park):
        approvals = self.points.call("approvals", check_park_id(park), status=request.args.get("status", "pending"),
                                     limit=int_arg(request, "limit", 100))
        return {"approvals": approvals, "count": len(approvals)}

    @api("POST", "/api/v1/parks/<string:park>/points/approvals/<path:approval_id>/approve")
    def approve_points(self, request, park, approval_id):
        return self.points.call("approve", check_park_id(park), approval_id, read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/points/approvals/<path:approval_id>/reject")
    def reject_points(self, request, park, approval_id):
        return self.points.call("reject", check_park_id(park), approval_id, read_json(request))

    @api("POST", "/api/v1/parks/<string:park>/points/entries/<path:entry_id>/reversal")
    def reverse_points(self, request, park, entry_id):
        entry = self.points.call("reverse", check_park_id(park), entry_id, read_json(request))
        return created_or_replayed(entry)

    @api("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points")
    def member_points(self, request, park, member_id):
        return self.points.call("account", check_park_id(park), member_id,
                                kind=request.args.get("kind", "discipline"), year=int_arg(request, "year"),
                                at=request.args.get("at"))

    @api("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points/history")
    def member_points_history(self, request, park, member_id):
        entries = self.points.call("history", check_park_id(park), member_id,
                                   kind=request.args.get("kind", "discipline"), year=int_arg(request, "year"),
                                   limit=int_arg(request, "limit", 50))
        return {"entries": entries, "count": len(entries)}

    @api("POST", "/api/v1/parks/<string:park>/members/<string:member_id>/move")
    def move_member(self, request, park, member_id):
        return self.points.call("move_member", check_park_id(park), member_id, read_json(request))

    @api("GET", "/api/v1/parks/<string:park>/points/leaderboard")
    def points_leaderboard(self, request, park):
        rows = self.points.call("leaderboard", check_park_id(park), kind=request.args.get("kind", "service"),
                                year=int_arg(request, "year"), limit=int_arg(request, "limit", 20))
        return {"leaderboard": rows}

    @api("GET", "/api/v1/parks/<string:park>/points/rewards")
    def rewards(self, request, park):
        return {"rewards": self.points.call("rewards", check_park_id(park))}

    @api("PUT", "/api/v1/parks/<string:park>/points/rewards/<string:code>")
    def put_reward(self, request, park, code):
        body = read_json(request)
        if body.setdefault("code", code) != code:
            raise BadInput("the body names another reward than the path", {"code": ["must be {}".format(code)]})
        return self.points.call("put_reward", check_park_id(park), body)

    @api("POST", "/api/v1/parks/<string:park>/points/redemptions")
    def redeem(self, request, park):
        redemption = self.points.call("redeem", check_park_id(park), read_json(request),
                                      idempotency_key=idempotency_key(request))
        return created_or_replayed(redemption)

    @api("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/confirm")
    def confirm_redemption(self, request, park, redemption_id):
        return self.points.call("confirm_redemption", check_park_id(park), redemption_id,
                                required(read_json(request), "actor"))

    @api("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/void")
    def void_redemption(self, request, park, redemption_id):
        body = read_json(request)
        return self.points.call("void_redemption", check_park_id(park), redemption_id, required(body, "actor"),
                                body.get("reason") or "voided at the desk")

    @api("POST", "/api/v1/parks/<string:park>/points/awards/<string:period>")
    def freeze_award(self, request, park, period):
        return self.points.call("freeze_award", check_park_id(park), period, limit=int_arg(request, "limit", 10))


def created_or_replayed(result):
    """201 for what a call created, 200 for what an idempotent replay returned."""
    return 201 if result.pop("created") else 200, result


def idempotency_key(request):
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 128:
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
