"""A loop's passes over parks, each park's on its own clock.

A loop that visits parks (notify's send loop) decides once a period which
parks have work (lamplight.alarms) and visits them. A visit may take the
whole period: a park sending at its rate limit paces its sends through the
second. When the loop's timer waited for every visit to end before its next
period, the slowest park set the pace of all: one park's visit running past
the second's end cost every park the next second, a second of sending lost
for parks that had nothing to do with it.

So the timer only starts the visits (``ParkPasses.start_pass``) and returns; each
park's pass runs in a thread of its own, at most ``limit`` at once. One park
has one pass at a time in a process: a park whose pass is still running when
it is wanted again gets the next one as soon as that ends (the latest ask
wins, asks in between are one), so a slow park is late for its own work and
for no one else's, and two passes of one park never claim the same sends.

The threads are the container's (nameko's managed threads): a process that
stops lets the passes running finish, up to ``drain_s`` (as long as the
database is kept open for them: MONGO_CLOSE_WAIT_S unless told), and starts
no new one.
"""
from collections.abc import Callable
from typing import Any

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from lamplight import logs, settings
from lamplight.metrics import PASS_SECONDS, PASSES_DEFERRED
from lamplight.storage import Mongo

Pass = tuple[Callable[..., Any], tuple[Any, ...]]


class ParkPasses(DependencyProvider):
    """The passes of loop ``loop``: at most ``limit()`` parks' at once."""

    def __init__(self, loop: str, limit: Callable[[], int], drain_s: float | None = None) -> None:
        self.loop = loop
        self.limit = limit
        self.drain_s = drain_s

    def setup(self) -> None:
        self.service = self.container.service_name
        self.log = logs.get_logger(component="passes", loop=self.loop)
        self._slots = Semaphore(self.limit())
        if self.drain_s is None:
            self.drain_s = settings.get_float("MONGO_CLOSE_WAIT_S")
        self._running: dict[str, Any] = {}
        self._again: dict[str, Pass] = {}
        self._stopping = False
        self._stopped = Event()
        for dependency in self.container.dependencies:
            if isinstance(dependency, Mongo):  # the database stays open while passes finish
                dependency.keep_open_for(self._stopped)

    def get_dependency(self, worker_ctx: Any) -> "ParkPasses":
        return self

    def running(self, park_id: str) -> bool:
        return park_id in self._running

    def start_pass(self, park_id: str, visit: Callable[..., Any], *args: Any) -> bool:
        """A pass of ``visit(*args)`` for the park: started now (True), or
        after the park's pass now running (False)."""
        if self._stopping:
            return False
        if park_id in self._running:
            self._again[park_id] = (visit, args)
            PASSES_DEFERRED.labels(self.service, self.loop, park_id).inc()
            return False
        self._spawn(park_id, (visit, args))
        return True

    def _spawn(self, park_id: str, job: Pass) -> None:
        # a placeholder first: the thread may run (and end) before spawn returns
        self._running[park_id] = None
        self._running[park_id] = self.container.spawn_managed_thread(
            lambda: self._run(park_id, job), identifier="{}:{}".format(self.loop, park_id))

    def _run(self, park_id: str, job: Pass) -> None:
        visit, args = job
        try:
            with self._slots:
                with PASS_SECONDS.labels(self.service, self.loop).time():
                    visit(*args)
        except Exception as exc:  # a managed thread that raises kills its container
            self.log.error("passes.pass_failed", park_id=park_id, error="{}: {}".format(type(exc).__name__, exc))
        finally:
            self._running.pop(park_id, None)
            nxt = self._again.pop(park_id, None)
            if nxt is not None and not self._stopping:
                self._spawn(park_id, nxt)
            elif not self._running and self._stopping and not self._stopped.ready():
                self._stopped.send()

    def stop(self) -> None:
        self._stopping = True
        self._again.clear()
        if self._running:
            with eventlet.Timeout(self.drain_s, False):
                self._stopped.wait()
        self.kill()

    def kill(self) -> None:
        self._stopping = True
        for thread in list(self._running.values()):
            if thread is not None:
                thread.kill()
        self._running.clear()
        if not self._stopped.ready():
            self._stopped.send()
