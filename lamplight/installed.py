"""The services installed with the kernel, found through entry points.

A service registers itself in the packaging metadata (``pyproject.toml``):
its nameko class in the ``lamplight.services`` group and its ``PUBLISHED``
declarations in ``lamplight.published``. The kernel names no service: the
broker topology is read off the classes' ``@subscribe`` entrypoints, and
the event registry off the declarations, so a new subscription or event
type is one edit, in the service.
"""
import inspect
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from lamplight import topology

SERVICES_GROUP = "lamplight.services"
PUBLISHED_GROUP = "lamplight.published"


def _group(name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=name):
        if ep.name in found and found[ep.name].value != ep.value:
            raise RuntimeError("{} is registered twice in {}: {} and {}".format(
                ep.name, name, found[ep.name].value, ep.value))
        found[ep.name] = ep
    return dict(sorted(found.items()))


def service_paths() -> dict[str, str]:
    """{service name: "module:Class"} of every installed service (nothing imported)."""
    return {name: ep.value for name, ep in _group(SERVICES_GROUP).items()}


@cache
def service_classes() -> dict[str, type]:
    """{service name: its nameko class}; the name registered is the class's ``name``."""
    classes = {}
    for name, ep in _group(SERVICES_GROUP).items():
        cls = ep.load()
        if getattr(cls, "name", None) != name:
            raise RuntimeError("{} is registered as {!r} but its class is named {!r}".format(
                ep.value, name, getattr(cls, "name", None)))
        classes[name] = cls
    return classes


def publishers() -> list[str]:
    """The services that declare what they publish."""
    return list(_group(PUBLISHED_GROUP))


@cache
def published_by(service: str) -> tuple:
    """The ``PUBLISHED`` declarations of one service (imports its module alone)."""
    return tuple(_group(PUBLISHED_GROUP)[service].load())


def subscriptions_of(cls: type) -> set[topology.Subscription]:
    """Every ``@subscribe`` entrypoint of one service class."""
    from lamplight.consuming import Subscribe  # it imports the topology this module reads

    found = set()
    for _, method in inspect.getmembers(cls, inspect.isfunction):
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            if isinstance(entrypoint, Subscribe):
                found.add(topology.Subscription(getattr(cls, "name"), entrypoint.source_service, entrypoint.event_type))
    return found


@cache
def subscriptions() -> tuple[topology.Subscription, ...]:
    """Every internal subscription of the installed services, in a stable order."""
    found: set[topology.Subscription] = set()
    for cls in service_classes().values():
        found |= subscriptions_of(cls)
    return tuple(sorted(found, key=lambda s: (s.consumer, s.source, s.event_type)))
