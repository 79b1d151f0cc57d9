"""One dependency provider per service for logs, RED metrics and probes.

The probe server is a plain eventlet WSGI server started with the container,
outside nameko's worker pool: /healthz must answer while every worker is
busy, and liveness must not depend on RabbitMQ or MongoDB (that is /readyz).
"""
import json
import logging
import time
from typing import Any

import eventlet
import eventlet.wsgi
import structlog
from nameko import config
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lamplight import logs, settings
from lamplight.envelope import new_traceparent, trace_id
from lamplight.errors import LamplightError
from lamplight.ids import new_id
from lamplight.metrics import ENTRYPOINT_CALLS, ENTRYPOINT_DURATION

Check = tuple[str, bool, str]  # (dependency, up, what is wrong when it is not)


class _Silent:
    def write(self, *_: Any) -> None:
        pass


def _parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class Observability(DependencyProvider):
    """Bind log context, time every worker, serve the probes.

    Readiness asks every other extension of the container that has a
    ``readiness()`` method (the Mongo and event providers do) and answers 503
    naming the dependencies that are down.
    """

    def setup(self) -> None:
        self.service = self.container.service_name
        level = ((config.get("LOGGING") or {}).get("root") or {}).get("level", "INFO")
        logs.configure(self.service, level=logging.getLevelName(str(level).upper()))
        self.log = logs.get_logger()
        self._started: dict[WorkerContext, float] = {}
        self._server_thread: Any = None
        self._watch_thread: Any = None
        self._saturated_since: float | None = None
        self.address: str | None = None

    def start(self) -> None:
        address = settings.get("OBSERVABILITY_ADDRESS")
        if not address:
            return
        sock = eventlet.listen(_parse_address(address))
        self.address = "{}:{}".format(*sock.getsockname()[:2])
        self._server_thread = self.container.spawn_managed_thread(
            lambda: eventlet.wsgi.server(sock, self._app, log=_Silent(), log_output=False),
            identifier="observability-server",
        )
        self._watch_thread = self.container.spawn_managed_thread(self._watch_workers, identifier="worker-watch")
        self.log.info("probes.listening", listen=self.address)

    def _watch_workers(self) -> None:
        """Note since when every worker of the pool has been busy."""
        pool = self.container._worker_pool  # nameko's own pool: the one place that knows
        while True:
            if pool.free() > 0:
                self._saturated_since = None
            elif self._saturated_since is None:
                self._saturated_since = time.monotonic()
            eventlet.sleep(0.5)

    def keeping_up(self) -> Check:
        """Not ready while every worker has been busy for READY_SATURATED_S:
        what arrives now waits behind work this process cannot finish."""
        since, limit = self._saturated_since, settings.get_float("READY_SATURATED_S")
        busy = 0.0 if since is None else time.monotonic() - since
        return ("workers", busy < limit,
                "all {} workers busy for {:.0f} s: this process cannot keep up".format(
                    self.container.max_workers, busy))

    def stop(self) -> None:
        for thread in (self._server_thread, self._watch_thread):
            if thread is not None:
                thread.kill()

    kill = stop

    # probes -----------------------------------------------------------------
    def readiness(self) -> list[Check]:
        return []

    def _checks(self) -> list[Check]:
        results = []
        for ext in self.container.dependencies | self.container.subextensions:
            check = getattr(ext, "readiness", None)
            if check is None or ext is self:
                continue
            try:
                results.extend(check())
            except Exception as exc:  # a check that raises is a failed check
                results.append((type(ext).__name__, False, str(exc)))
        return results

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            return self._json(start_response, 200, {"status": "alive", "service": self.service})
        if path == "/readyz":
            checks = self._checks()
            # the probe server starts with the other extensions; until every
            # entrypoint is consuming, the process must not take traffic
            checks.append(("entrypoints", bool(getattr(self.container, "started", False)), "starting"))
            checks.append(self.keeping_up())
            down = {name: detail for name, ok, detail in checks if not ok}
            status = 503 if down else 200
            payload = {"status": "not ready" if down else "ready", "service": self.service,
                       "checks": {name: ("ok" if ok else detail) for name, ok, detail in checks}}
            return self._json(start_response, status, payload)
        return self._json(start_response, 404, {"error": {"code": "not_found", "message": path}})

    @staticmethod
    def _json(start_response: Any, status: int, payload: Any) -> list[bytes]:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        start_response("{} {}".format(status, reason), [("Content-Type", "application/json")])
        return [json.dumps(payload).encode()]

    # workers ----------------------------------------------------------------
    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        entrypoint = worker_ctx.entrypoint
        context = worker_ctx.context_data
        bound = {"entrypoint": entrypoint.method_name}
        if isinstance(entrypoint, HttpRequestHandler) and worker_ctx.args:
            request = worker_ctx.args[0]
            context.setdefault("traceparent", request.headers.get("traceparent") or new_traceparent())
            context.setdefault("request_id", request.headers.get("X-Request-Id") or new_id("req"))
            park = worker_ctx.kwargs.get("park")
            if park:
                bound["park_id"] = park
        elif isinstance(entrypoint, Rpc):
            park = worker_ctx.kwargs.get("park_id") or (worker_ctx.args[0] if worker_ctx.args else None)
            if isinstance(park, str):
                bound["park_id"] = park
        envelope = worker_ctx.args[0] if worker_ctx.args else None
        if isinstance(envelope, dict) and "specversion" in envelope:
            bound.update(park_id=envelope.get("parkid"), event_id=envelope.get("id"),
                         event_type=envelope.get("type"))
        if context.get("traceparent"):
            bound["trace_id"] = trace_id(context["traceparent"])
        if context.get("request_id"):
            bound["request_id"] = context["request_id"]
        structlog.contextvars.bind_contextvars(**bound)
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx: WorkerContext, result: Any = None, exc_info: Any = None) -> None:
        started = self._started.pop(worker_ctx, None)
        name = worker_ctx.entrypoint.method_name
        if started is not None:
            ENTRYPOINT_DURATION.labels(self.service, name).observe(time.perf_counter() - started)
        if exc_info is None:
            outcome = "ok"
        elif isinstance(exc_info[1], LamplightError):
            outcome = "rejected"
        else:
            outcome = "error"  # nameko logs the traceback itself
        ENTRYPOINT_CALLS.labels(self.service, name, outcome).inc()

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        structlog.contextvars.clear_contextvars()

    def get_dependency(self, worker_ctx: WorkerContext) -> Any:
        return logs.get_logger()
