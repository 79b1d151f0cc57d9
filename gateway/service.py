"""The gateway: Lamplight's one HTTP front door.

Every route has the park in its path and a :class:`~gateway.auth.Policy`:
who may call it (roles, the caller's own park, a person's own records). A
call without a credential is answered 401, another park's 403, before any
service is asked. Every error has one body shape,
``{"error": {"code", "message", "fields"}}``, mapped from service errors in
:meth:`gateway.http.Api.response_from_exception` and nowhere else. Every answer carries
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
import functools
import json

from werkzeug.wrappers import Response

from gateway import auth, openapi, parks, wall
from gateway.auth import PEOPLE, Forbidden, Policy
from gateway.http import (
    MAX_IMPORT_BYTES,
    ROUTES,
    Credentials,
    created_or_replayed,
    idempotency_key,
    int_arg,
    json_response,
    principal_of,
    read_json,
    required,
    route,
)
from lamplight.errors import BadInput, NotFound, load_or_reject
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch
from lamplight.publishing import EventOutbox
from lamplight.rpc import DeadlineRpc
from lamplight.storage import Mongo
from services.needs import schemas as needs_schemas
from services.notify import schemas as notify_schemas
from services.points import schemas as points_schemas
from services.volunteers import schemas as volunteers_schemas

_key = auth.KeySchema()
_token = auth.TokenRequestSchema()
_park = parks.ParkSchema()
_configured = parks.ParkConfiguredSchema()

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
    @route("GET", "/api/v1/parks/<string:park>/needs/config", ALL, rpc="needs.config")
    def needs_config(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/needs/config", ADMIN, body=needs_schemas.NeedsConfigSchema,
           rpc="needs.set_config")
    def set_needs_config(self, request, park):
        ...

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

    @route("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>", CREW, result=needs_schemas.NeedViewSchema,
           rpc="needs.get")
    def get_need(self, request, park, need_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/needs/<string:need_id>/<string:action>", CREW)
    def need_action(self, request, park, need_id, action):
        """triage, assign, start, wait, resume, escalate, release, resolve,
        evaluate, reopen, reject, cancel, link_duplicate, review."""
        return self.needs.call("act", park, need_id, action, read_json(request))

    @route("GET", "/api/v1/parks/<string:park>/needs/<string:need_id>/followers", DESK)
    def need_followers(self, request, park, need_id):
        followers = self.needs.call("followers", park, need_id)
        return {"followers": followers, "count": len(followers)}

    @route("POST", "/api/v1/parks/<string:park>/needs-sweep", DESK, rpc="needs.sweep")
    def sweep_needs(self, request, park):
        ...

    @route("GET", "/api/v1/parks/<string:park>/needs-statistics", DESK, rpc="needs.statistics")
    def needs_statistics(self, request, park):
        ...

    # the echo wall: public ------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/wall", PUBLIC,
           query={"status": ("string", "one status"), "category": ("string", "a category code"),
                  "before": ("string", "ISO time: entries changed before it (the next page)"),
                  "limit": ("integer", "1-100")}, rpc="needs.wall")
    def wall(self, request, park):
        ...

    @route("GET", "/api/v1/parks/<string:park>/wall/<string:need_id>", PUBLIC, result=needs_schemas.WallEntrySchema,
           rpc="needs.wall_entry")
    def wall_entry(self, request, park, need_id):
        ...

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
    @route("PUT", "/api/v1/parks/<string:park>/resources/<string:code>", ADMIN, body=needs_schemas.ResourceSchema,
           rpc="needs.put_resource")
    def put_resource(self, request, park, code):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/projects/<string:code>", ADMIN, body=needs_schemas.ProjectSchema,
           rpc="needs.put_project")
    def put_project(self, request, park, code):
        ...

    @route("GET", "/api/v1/parks/<string:park>/lists", ALL, rpc="needs.lists")
    def three_lists(self, request, park):
        ...

    # responders -------------------------------------------------------------------
    @route("POST", "/api/v1/parks/<string:park>/responders", DESK, body=volunteers_schemas.ResponderRegistrationSchema,
           rpc="volunteers.register_responder", created=True)
    def register_responder(self, request, park):
        ...  # registered again under the same external_ref: the first, 200

    @route("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>", CREW_OWN_RESPONDER,
           result=volunteers_schemas.ResponderViewSchema, rpc="volunteers.get_responder")
    def get_responder(self, request, park, responder_id):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/roster", CREW_OWN_RESPONDER,
           body=volunteers_schemas.RosterSchema, rpc="volunteers.set_roster")
    def set_roster(self, request, park, responder_id):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/responders/<string:responder_id>/active", CREW_OWN_RESPONDER,
           body=volunteers_schemas.PauseSchema, rpc="volunteers.set_active")
    def set_active(self, request, park, responder_id):
        """{"active": false, "reason": …} pauses a responder; true resumes."""

    @route("GET", "/api/v1/parks/<string:park>/responders/<string:responder_id>/tasks", CREW_OWN_RESPONDER,
           rpc="volunteers.tasks_of")
    def responder_tasks(self, request, park, responder_id):
        ...

    # dispatch ----------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/volunteers/config", CREW, rpc="volunteers.config")
    def volunteers_config(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/volunteers/config", ADMIN,
           body=volunteers_schemas.VolunteersConfigSchema, rpc="volunteers.set_config")
    def set_volunteers_config(self, request, park):
        ...

    @route("GET", "/api/v1/parks/<string:park>/on-duty", DESK,
           query={"at": ("string", "ISO time"), "team": ("string", "a team code")}, rpc="volunteers.on_duty")
    def on_duty(self, request, park):
        ...

    @route("GET", "/api/v1/parks/<string:park>/tasks/<string:task_id>", CREW, result=volunteers_schemas.TaskViewSchema,
           rpc="volunteers.get_task")
    def get_task(self, request, park, task_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/tasks/<string:task_id>/<string:action>", CREW_AS_RESPONDER,
           body=volunteers_schemas.TaskActionSchema, rpc="volunteers.act")
    def task_action(self, request, park, task_id, action):
        """claim, decline, start, complete, release, request_takeover, answer_takeover."""

    @route("GET", "/api/v1/parks/<string:park>/wishes", ALL, query={"limit": ("integer", "")}, rpc="volunteers.wishes")
    def wishes(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/tasks-sweep", DESK, rpc="volunteers.sweep")
    def sweep_tasks(self, request, park):
        ...

    # visit plans -----------------------------------------------------------------------
    @route("PUT", "/api/v1/parks/<string:park>/households/<string:code>", DESK, body=volunteers_schemas.HouseholdSchema,
           rpc="volunteers.put_household")
    def put_household(self, request, park, code):
        ...

    @route("POST", "/api/v1/parks/<string:park>/visits/generate", DESK)
    def generate_visits(self, request, park):
        return self.volunteers.call("generate_visits", park, month=read_json(request).get("month"))

    @route("POST", "/api/v1/parks/<string:park>/visits/close-month", DESK)
    def close_visit_month(self, request, park):
        return self.volunteers.call("close_month", park, read_json(request).get("month"))

    @route("GET", "/api/v1/parks/<string:park>/visits", CREW,
           query={"month": ("string", "YYYY-MM"), "status": ("string", "")}, rpc="volunteers.visits")
    def visits(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/visits/<string:visit_id>/proof", CREW,
           body=volunteers_schemas.VisitProofSchema, rpc="volunteers.visit_proof")
    def visit_proof(self, request, park, visit_id):
        ...

    # emergency mode --------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/emergency", ALL, rpc="volunteers.mode")
    def emergency_mode(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/emergency", ADMIN, body=volunteers_schemas.EmergencySwitchSchema,
           rpc="volunteers.switch_mode")
    def switch_mode(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/emergency/callouts", DESK, body=volunteers_schemas.CalloutSchema)
    def call_out(self, request, park):
        callout = self.volunteers.call("call_out", park, read_json(request),
                                       idempotency_key=idempotency_key(request))
        return 201 if callout["created"] else 200, callout

    @route("GET", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>", CREW, rpc="volunteers.callout")
    def callout(self, request, park, callout_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/emergency/callouts/<string:callout_id>/replies", CREW_AS_RESPONDER,
           body=volunteers_schemas.ReplySchema, rpc="volunteers.reply")
    def callout_reply(self, request, park, callout_id):
        ...

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
           OWN_RESPONDER_INBOX, rpc="notify.mark_read")
    def mark_read(self, request, park, responder_id, notice_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices", OWN_RECIPIENT,
           query={"limit": ("integer", ""), "unread": ("boolean", "")})
    def recipient_inbox(self, request, park, recipient_id):
        return self.inbox(request, park, recipient_id)

    @route("POST",
           "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>/notices/<string:notice_id>/read",
           OWN_RECIPIENT, rpc="notify.mark_read")
    def recipient_mark_read(self, request, park, recipient_id, notice_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/notify/config", ADMIN, rpc="notify.config")
    def notify_config(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/notify/config", ADMIN, body=notify_schemas.NotifyConfigSchema,
           rpc="notify.set_config")
    def set_notify_config(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>", OWN_RECIPIENT,
           body=notify_schemas.RecipientSchema, rpc="notify.put_recipient")
    def put_recipient(self, request, park, recipient_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/notify/recipients/<string:recipient_id>", OWN_RECIPIENT,
           rpc="notify.get_recipient")
    def get_recipient(self, request, park, recipient_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/notify/recipients", ADMIN, max_body=MAX_IMPORT_BYTES,
           body=notify_schemas.RecipientImportBatchSchema)
    def import_recipients(self, request, park):
        return self.notify.call("import_recipients", park, read_json(request, MAX_IMPORT_BYTES))

    @route("GET", "/api/v1/parks/<string:park>/notify/templates", DESK, rpc="notify.templates")
    def templates(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>", ADMIN,
           body=notify_schemas.TemplateSchema, rpc="notify.put_template")
    def put_template(self, request, park, key, locale):
        ...

    @route("DELETE", "/api/v1/parks/<string:park>/notify/templates/<string:key>/<string:locale>", ADMIN,
           rpc="notify.delete_template")
    def delete_template(self, request, park, key, locale):
        ...

    @route("POST", "/api/v1/parks/<string:park>/notify/templates/preview", DESK, body=notify_schemas.PreviewSchema,
           rpc="notify.preview")
    def preview_template(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/notify/broadcasts", DESK, body=notify_schemas.BroadcastSchema)
    def broadcast(self, request, park):
        accepted = self.notify.call("broadcast", park, read_json(request), idempotency_key=idempotency_key(request))
        created = accepted.pop("created")
        headers = {"Location": "/api/v1/parks/{}/notify/broadcasts/{}".format(park, accepted["broadcast_id"])}
        return json_response(202 if created else 200, accepted, headers)

    @route("GET", "/api/v1/parks/<string:park>/notify/broadcasts/<string:broadcast_id>", DESK,
           rpc="notify.get_broadcast")
    def get_broadcast(self, request, park, broadcast_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/notify/deliveries", DESK,
           query={"recipient": ("string", "", "recipient_id"), "event": ("string", "source event id", "source_id"),
                  "notice": ("string", "", "notice_id"), "limit": ("integer", "")}, rpc="notify.deliveries")
    def deliveries(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/notify/send-due", DESK, rpc="notify.send_due")
    def notify_send_due(self, request, park):
        ...

    # points ----------------------------------------------------------------------------
    @route("GET", "/api/v1/parks/<string:park>/points/rules", ALL, rpc="points.catalogue")
    def points_rules(self, request, park):
        ...

    @route("PUT", "/api/v1/parks/<string:park>/points/rules", ADMIN, body=points_schemas.CatalogueSchema,
           rpc="points.set_catalogue")
    def set_points_rules(self, request, park):
        ...

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
           body=points_schemas.DecisionSchema, rpc="points.approve")
    def approve_points(self, request, park, approval_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/points/approvals/<path:approval_id>/reject", ADMIN,
           body=points_schemas.DecisionSchema, rpc="points.reject")
    def reject_points(self, request, park, approval_id):
        ...

    @route("POST", "/api/v1/parks/<string:park>/points/entries/<path:entry_id>/reversal", ADMIN,
           body=points_schemas.ReversalSchema, rpc="points.reverse", created=True)
    def reverse_points(self, request, park, entry_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points", OWN_MEMBER,
           result=points_schemas.AccountViewSchema,
           query={"kind": ("string", "discipline or service"), "year": ("integer", ""),
                  "at": ("string", "ISO time: the balance then")}, rpc="points.account")
    def member_points(self, request, park, member_id):
        ...

    @route("GET", "/api/v1/parks/<string:park>/members/<string:member_id>/points/history", OWN_MEMBER,
           query={"kind": ("string", ""), "year": ("integer", ""), "limit": ("integer", "")})
    def member_points_history(self, request, park, member_id):
        entries = self.points.call("history", park, member_id,
                                   kind=request.args.get("kind", "discipline"), year=int_arg(request, "year"),
                                   limit=int_arg(request, "limit", 50))
        return {"entries": entries, "count": len(entries)}

    @route("POST", "/api/v1/parks/<string:park>/members/<string:member_id>/move", ADMIN, body=points_schemas.MoveSchema,
           rpc="points.move_member")
    def move_member(self, request, park, member_id):
        ...

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

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions", REDEEM, body=points_schemas.RedeemSchema,
           rpc="points.redeem", keyed=True, created=True)
    def redeem(self, request, park):
        ...

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/confirm", DESK)
    def confirm_redemption(self, request, park, redemption_id):
        return self.points.call("confirm_redemption", park, redemption_id,
                                required(read_json(request), "actor"))

    @route("POST", "/api/v1/parks/<string:park>/points/redemptions/<string:redemption_id>/void", DESK)
    def void_redemption(self, request, park, redemption_id):
        body = read_json(request)
        return self.points.call("void_redemption", park, redemption_id, required(body, "actor"),
                                body.get("reason") or "voided at the desk")

    @route("POST", "/api/v1/parks/<string:park>/points/awards/<string:period>", ADMIN, query={"limit": ("integer", "")},
           rpc="points.freeze_award")
    def freeze_award(self, request, park, period):
        ...



@functools.cache
def openapi_text():
    """The OpenAPI document: the routes are fixed when the module is loaded, so it is built once."""
    return json.dumps(openapi.document(ROUTES), ensure_ascii=False)


def grant(principal, role):
    """A credential makes credentials only of the roles below its own."""
    if role not in auth.GRANTS.get(principal.role, ()):
        raise Forbidden("a {} may not make credentials for a {}".format(principal.role, role))
