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
from gateway.http import ROUTES, Credentials
from gateway.routes.needs import NeedsRoutes
from gateway.routes.notify import NotifyRoutes
from gateway.routes.platform import PlatformRoutes
from gateway.routes.points import PointsRoutes
from gateway.routes.volunteers import VolunteersRoutes
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch
from lamplight.publishing import EventOutbox
from lamplight.rpc import DeadlineRpc
from lamplight.storage import Mongo

__all__ = ["Gateway", "ROUTES"]  # ROUTES: every route of the Gateway, once this module is loaded


class Gateway(PlatformRoutes, NeedsRoutes, VolunteersRoutes, NotifyRoutes, PointsRoutes):
    """The routes are the mixins' (gateway/routes/); the dependencies they use are here."""

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
