"""The notify routes: inboxes, recipients, templates, broadcasts and the delivery log."""


from gateway.http import (
    MAX_IMPORT_BYTES,
    idempotency_key,
    int_arg,
    json_response,
    read_json,
    route,
)
from gateway.routes import (
    ADMIN,
    DESK,
    OWN_RECIPIENT,
    OWN_RESPONDER_INBOX,
)
from services.notify import schemas as notify_schemas


class NotifyRoutes:
    """Routes of the Gateway (gateway.service), a mixin of it."""

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
