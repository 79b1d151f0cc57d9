"""The platform's services as the tools see them: each name, its nameko class
(from the ``lamplight.services`` entry points, ``lamplight.installed``), and
the offset of its probe port in a local stack; and the processes they run as.
``lamplight serve`` starts one process; the development stack starts them all.

A service with entrypoints in the bulk lane (``lamplight.lanes``: a broadcast's
fan-out, the send loop) runs as two processes: ``<service>`` serves its main
lane (requests and the events on a person's path), ``<service>-bulk`` its bulk
lane, at a lower CPU weight, so that one park's broadcast never holds another
park's notice. Every other service is one process."""
from typing import NamedTuple

from lamplight import installed, lanes

# a process registered later than these gets the next free offset
PROBE_OFFSETS = {"gateway": 0, "needs": 1, "volunteers": 2, "points": 3, "notify": 4, "notify-bulk": 5}
BULK_SUFFIX = "-bulk"
# how much less CPU a bulk process asks for on a development machine (nice(2)); in
# Kubernetes its lower CPU request is its cgroup weight (deploy/k8s/base/notify-bulk.yaml)
BULK_NICE = 10


class Process(NamedTuple):
    name: str
    service: str
    path: str  # "module:Class"
    probe_offset: int
    env: dict[str, str]  # what the process's environment has unless it says otherwise
    nice: int


def _services():
    services, spare = {}, max(PROBE_OFFSETS.values()) + 1
    for name, path in installed.service_paths().items():
        offset = PROBE_OFFSETS.get(name)
        if offset is None:
            offset, spare = spare, spare + 1
        services[name] = (path, offset)
    return services


SERVICES = _services()


def _processes():
    processes, spare = {}, max(PROBE_OFFSETS.values()) + 1 + len(SERVICES)
    classes = installed.service_classes()
    for name, (path, offset) in SERVICES.items():
        if lanes.BULK not in lanes.lanes_of(classes[name]):
            processes[name] = Process(name, name, path, offset, {}, 0)
            continue
        bulk = name + BULK_SUFFIX
        bulk_offset = PROBE_OFFSETS.get(bulk)
        if bulk_offset is None:
            bulk_offset, spare = spare, spare + 1
        processes[name] = Process(name, name, path, offset, {"LANES": lanes.MAIN}, 0)
        processes[bulk] = Process(bulk, name, path, bulk_offset, {"LANES": lanes.BULK}, BULK_NICE)
    return processes


PROCESSES = _processes()
