"""The volunteers routes: responders, dispatch and tasks, visit plans, emergency mode."""


from gateway.http import (
    idempotency_key,
    read_json,
    route,
)
from gateway.routes import (
    ADMIN,
    ALL,
    CREW,
    CREW_AS_RESPONDER,
    CREW_OWN_RESPONDER,
    DESK,
)
from services.volunteers import schemas as volunteers_schemas


class VolunteersRoutes:
    """Routes of the Gateway (gateway.service), a mixin of it."""

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
