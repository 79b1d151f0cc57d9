"""Who is calling, and may they: API keys, signed tokens, roles, parks.

A credential comes as ``Authorization: Bearer <credential>`` (or
``X-Api-Key: <key>``). Two kinds:

- **API keys** ``llk_<key id>_<secret>`` for systems and operators (the
  centre's desk, a department's system, the official account's backend). Only
  the SHA-256 of the secret is stored; the key is shown once when it is made.
  A key is revoked by deleting it; a gateway notices within ``KEY_CACHE_S``.
- **Tokens**: JWTs signed with HS256 by the gateway (``GATEWAY_TOKEN_SECRET``)
  for people (a volunteer in the mini-program, a member on the official
  account). A park's admin or desk mints them for a subject of their park;
  they expire (at most ``TOKEN_MAX_TTL_S``).

Each credential carries a role and, except for a platform admin, one park.
A call for another park's data is refused (403) before any service is asked;
a person (volunteer, member, requester) may only reach what is theirs.
"""
import hashlib
import hmac
import re
import secrets
import time
from collections import namedtuple

import jwt
from limits import parse as parse_limit
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from lamplight import fields as strict
from lamplight.clock import utcnow
from lamplight.errors import BadInput, LamplightError, NotFound

ROLES = ("platform_admin", "park_admin", "dispatcher", "volunteer", "member", "requester")
PEOPLE = ("volunteer", "member", "requester")
STAFF = ("park_admin", "dispatcher")
# a credential may make credentials of the roles below its own, in its own park
GRANTS = {
    "platform_admin": ROLES,
    "park_admin": ("dispatcher",) + PEOPLE,
    "dispatcher": PEOPLE,
}
KEY_PREFIX = "llk_"
_KEY = re.compile(r"^llk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
TOKEN_ISSUER = "lamplight"
TOKEN_MAX_TTL_S = 24 * 3600
KEY_CACHE_S = 10.0

Principal = namedtuple("Principal", "id role park subject kind rate_limit")


class Unauthenticated(LamplightError):
    """401: no credential, or one that is not valid."""

    code = "unauthenticated"


class Forbidden(LamplightError):
    """403: a valid credential that may not do this."""

    code = "forbidden"


class TooManyRequests(LamplightError):
    """429: over the credential's rate limit; ``retry_after`` in seconds."""

    code = "rate_limited"

    def __init__(self, message, retry_after):
        super().__init__(message, {})
        self.retry_after = retry_after


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in the gateway's database (collection ``api_keys``)."""

    def __init__(self, db):
        self.keys = db["api_keys"]
        self._cache = {}

    def create(self, role, park=None, name="", subject=None, rate_limit=None):
        """(the key, shown once; its stored record without the hash)."""
        check_role_park(role, park)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        doc = {"_id": key_id, "hash": hash_secret(secret), "role": role, "park": park, "name": name,
               "subject": subject, "rate_limit": rate_limit, "created_at": utcnow()}
        self.keys.insert_one(doc)
        return "{}{}_{}".format(KEY_PREFIX, key_id, secret), public(doc)

    def list(self, park=None):
        query = {"park": park} if park else {}
        return [public(doc) for doc in self.keys.find(query).sort("created_at", 1)]

    def get(self, key_id):
        doc = self.keys.find_one({"_id": key_id})
        if doc is None:
            raise NotFound("no API key {}".format(key_id), {"key_id": ["unknown"]})
        return public(doc)

    def revoke(self, key_id):
        if self.keys.delete_one({"_id": key_id}).deleted_count == 0:
            raise NotFound("no API key {}".format(key_id), {"key_id": ["unknown"]})
        self._cache.pop(key_id, None)

    def verify(self, credential):
        """The principal of an API key, or Unauthenticated."""
        match = _KEY.match(credential)
        if not match:
            raise Unauthenticated("malformed API key")
        key_id, secret = match.groups()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] >= time.monotonic():
            doc = cached[1]
        else:
            doc = self.keys.find_one({"_id": key_id})
            if doc is None:  # only keys that exist are kept: made-up ids must not grow the cache
                self._cache.pop(key_id, None)
            else:
                self._cache[key_id] = (time.monotonic() + KEY_CACHE_S, doc)
        if doc is None or not hmac.compare_digest(doc["hash"], hash_secret(secret)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal("key:" + key_id, doc["role"], doc.get("park"), doc.get("subject"), "key",
                         doc.get("rate_limit"))


def public(doc):
    return {"id": doc["_id"], "role": doc["role"], "park": doc.get("park"), "name": doc.get("name", ""),
            "subject": doc.get("subject"), "rate_limit": doc.get("rate_limit"),
            "created_at": doc["created_at"].isoformat() if hasattr(doc.get("created_at"), "isoformat")
            else doc.get("created_at")}


def check_role_park(role, park):
    if role not in ROLES:
        raise BadInput("unknown role {!r}".format(role), {"role": ["one of " + ", ".join(ROLES)]})
    if role == "platform_admin" and park:
        raise BadInput("a platform admin belongs to no park", {"park": ["must be empty for platform_admin"]})
    if role != "platform_admin" and not park:
        raise BadInput("a {} belongs to one park".format(role), {"park": ["required for {}".format(role)]})


class Tokens:
    def __init__(self, secret):
        if not secret or len(secret) < 32:
            raise ValueError("GATEWAY_TOKEN_SECRET must be at least 32 characters")
        self.secret = secret

    def mint(self, role, park, subject, ttl_s, issued_by):
        check_role_park(role, park)
        now = int(time.time())
        claims = {"iss": TOKEN_ISSUER, "sub": subject, "role": role, "park": park, "iat": now,
                  "exp": now + ttl_s, "jti": secrets.token_hex(8), "by": issued_by}
        return jwt.encode(claims, self.secret, algorithm="HS256"), claims

    def verify(self, token):
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], issuer=TOKEN_ISSUER,
                                options={"require": ["exp", "iat", "sub", "role"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("invalid token: {}".format(exc))
        if claims["role"] not in ROLES:
            raise Unauthenticated("invalid token: unknown role")
        return Principal("token:" + claims.get("jti", ""), claims["role"], claims.get("park"), claims["sub"],
                         "token", None)


def rate_limit_string(value):
    try:
        parse_limit(value)
    except ValueError as exc:
        raise ValidationError("not a rate limit such as '600/minute': {}".format(exc))


def credential_of(request):
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("Authorization must be 'Bearer <API key or token>'")
        return value.strip()
    return request.headers.get("X-Api-Key")


class Policy:
    """Who may call a route. ``roles``: the roles allowed (a platform admin
    always is). ``own``: for a person's role, the path parameters or body
    fields that must name the caller (their subject)."""

    def __init__(self, roles=(), public=False, own=(), own_body=(), platform=False):
        self.roles = frozenset(roles)
        self.public = public
        self.own = tuple(own)
        self.own_body = tuple(own_body)
        self.platform = platform

    def check(self, principal, park, path_values, body_of):
        if principal.role == "platform_admin":
            return
        if self.platform:
            raise Forbidden("only a platform admin may do this")
        if park is not None and principal.park != park:
            raise Forbidden("this credential is for park {}, not {}".format(principal.park, park))
        if principal.role not in self.roles:
            raise Forbidden("a {} may not do this".format(principal.role))
        if principal.role in PEOPLE:
            for name in self.own:
                if path_values.get(name) != principal.subject:
                    raise Forbidden("a {} may only reach their own {}".format(principal.role, name))
            if self.own_body:
                body = body_of()
                for name in self.own_body:
                    if isinstance(body, dict) and body.get(name) not in (None, principal.subject):
                        raise Forbidden("a {} may only act as themselves ({})".format(principal.role, name))


class KeySchema(Schema):
    """POST /api/v1/keys (any park) or /api/v1/parks/{park}/keys"""

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    park = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{1,62}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                         metadata={"description": "what the key is for: 'desk tablet 2', 'district HR system'"})
    subject = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,100}$"),
                            metadata={"description": "the person or system the key acts as"})
    rate_limit = fields.String(load_default=None, validate=rate_limit_string,
                               metadata={"description": "e.g. '600/minute'; default GATEWAY_RATE_LIMIT"})

    @validates_schema
    def role_fits_park(self, data, **_):
        try:
            check_role_park(data["role"], data.get("park"))
        except BadInput as exc:
            raise ValidationError(exc.fields)


class TokenRequestSchema(Schema):
    """POST /api/v1/parks/{park}/tokens"""

    role = fields.String(required=True, validate=validate.OneOf(PEOPLE + ("dispatcher", "park_admin")))
    subject = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:@-]{1,100}$"),
                            metadata={"description": "the person: a responder id, member id or requester id"})
    ttl_s = strict.Integer(load_default=3600, validate=validate.Range(min=60, max=TOKEN_MAX_TTL_S))
