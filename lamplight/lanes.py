"""Lanes: which of a service's entrypoints a process serves.

A service's work is of two kinds. Most of it is the *main* lane: requests,
and the events on a person's path from a need to its notice, each a few
milliseconds of work. Some of it is *bulk*: a broadcast's fan-out to 20,000
people, the send loop that hands a park's queue to the providers at its rate
limit. In one process, bulk work and the main lane share one interpreter and
its green threads: a fan-out planning a thousand notices between two database
calls holds every other park's notice for that long, and nothing in the process
can take the turn back.

So an entrypoint names its lane (``@subscribe(..., lane=BULK)``,
``@timer(interval, lane=BULK)``; requests are always main), and the ``LANES``
setting says which lanes a process serves: empty (the default) serves every
lane, as one process always has. A service with bulk entrypoints runs as two
processes where parks share a deployment: ``<service>`` with ``LANES=main``
and ``<service>-bulk`` with ``LANES=bulk`` (``lamplight serve notify-bulk``),
each its own Deployment. The operating system then shares the cores between
them, and the bulk process runs at a lower weight: a lower CPU request in
Kubernetes (its cgroup weight), ``nice`` on a development machine. Both
processes are the same service: one name, one database, one set of queues
(each subscription has a queue of its own, so a bulk event never waits in
front of a main one) and one events exchange.
"""
import inspect
from typing import Any

from nameko.timer import Timer as NamekoTimer

from lamplight import settings

MAIN = "main"
BULK = "bulk"
LANE_NAMES = (MAIN, BULK)


def served() -> frozenset[str]:
    """The lanes this process serves (``LANES``: comma-separated; empty: all)."""
    raw = settings.get("LANES") or ""
    names = [part.strip() for part in str(raw).split(",") if part.strip()]
    unknown = sorted(set(names) - set(LANE_NAMES))
    if unknown:
        raise ValueError("LANES names {}: the lanes are {}".format(", ".join(unknown), ", ".join(LANE_NAMES)))
    return frozenset(names or LANE_NAMES)


def serves(lane: str) -> bool:
    return lane in served()


def check(lane: str) -> str:
    if lane not in LANE_NAMES:
        raise ValueError("no lane {!r}: the lanes are {}".format(lane, ", ".join(LANE_NAMES)))
    return lane


def lane_of(entrypoint: Any) -> str:
    """The lane of any entrypoint: its own, else main (requests, stock entrypoints)."""
    return getattr(entrypoint, "lane", MAIN)


def lanes_of(cls: type) -> set[str]:
    """The lanes a service class's entrypoints are in."""
    found = set()
    for _, method in inspect.getmembers(cls, inspect.isfunction):
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            found.add(lane_of(entrypoint))
    return found


class Timer(NamekoTimer):
    """nameko's timer, in a lane: a process that does not serve its lane never fires it."""

    def __init__(self, interval: float, eager: bool = False, lane: str = MAIN, **kwargs: Any) -> None:
        self.lane = check(lane)
        super().__init__(interval, eager=eager, **kwargs)

    def start(self) -> None:
        if serves(self.lane):
            super().start()

    def stop(self) -> None:
        if self.gt is not None:
            super().stop()

    def kill(self) -> None:
        if self.gt is not None:
            super().kill()


timer = Timer.decorator
