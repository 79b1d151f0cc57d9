"""Who am I, API keys and tokens, parks, the API's own description and the echo wall's pages."""
import functools
import json

from werkzeug.wrappers import Response

from gateway import auth, openapi, parks, wall
from gateway.auth import Forbidden
from gateway.http import (
    MAX_IMPORT_BYTES,
    ROUTES,
    principal_of,
    read_json,
    route,
)
from gateway.routes import (
    ADMIN,
    DESK,
    PLATFORM,
    PUBLIC,
    SIGNED_IN,
)
from lamplight.errors import NotFound, load_or_reject

_key = auth.KeySchema()
_token = auth.TokenRequestSchema()
_park = parks.ParkSchema()
_configured = parks.ParkConfiguredSchema()


class PlatformRoutes:
    """Routes of the Gateway (gateway.service), a mixin of it."""

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


@functools.cache
def openapi_text():
    """The OpenAPI document: the routes are fixed when the module is loaded, so it is built once."""
    return json.dumps(openapi.document(ROUTES), ensure_ascii=False)


def grant(principal, role):
    """A credential makes credentials only of the roles below its own."""
    if role not in auth.GRANTS.get(principal.role, ()):
        raise Forbidden("a {} may not make credentials for a {}".format(principal.role, role))

