"""The needs routes: intake, the lifecycle, the echo wall's API and the three lists."""


from gateway.http import (
    idempotency_key,
    json_response,
    read_json,
    route,
)
from gateway.routes import (
    ADMIN,
    ALL,
    CREW,
    DESK,
    INTAKE,
    PUBLIC,
)
from services.needs import schemas as needs_schemas


class NeedsRoutes:
    """Routes of the Gateway (gateway.service), a mixin of it."""

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
