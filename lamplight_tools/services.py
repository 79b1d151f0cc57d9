"""The platform's services as the tools see them: each name, its nameko class
(from the ``lamplight.services`` entry points, ``lamplight.installed``), and
the offset of its probe port in a local stack. ``lamplight serve`` starts one;
the development stack starts them all."""
from lamplight import installed

# a service registered later than these gets the next free offset
PROBE_OFFSETS = {"gateway": 0, "needs": 1, "volunteers": 2, "points": 3, "notify": 4}


def _services():
    services, spare = {}, max(PROBE_OFFSETS.values()) + 1
    for name, path in installed.service_paths().items():
        offset = PROBE_OFFSETS.get(name)
        if offset is None:
            offset, spare = spare, spare + 1
        services[name] = (path, offset)
    return services


SERVICES = _services()
