"""The points routes: rules, the ledger, approvals, accounts, rewards, awards and moves."""


from gateway.http import (
    created_or_replayed,
    idempotency_key,
    int_arg,
    read_json,
    required,
    route,
)
from gateway.routes import (
    ADMIN,
    ALL,
    DESK,
    OWN_MEMBER,
    REDEEM,
)
from lamplight.errors import BadInput
from services.points import schemas as points_schemas


class PointsRoutes:
    """Routes of the Gateway (gateway.service), a mixin of it."""

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
