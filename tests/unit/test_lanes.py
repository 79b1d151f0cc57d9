"""Lanes: which entrypoints a process serves, and the processes a service runs as."""
from pathlib import Path

import pytest
import yaml

from lamplight import lanes
from lamplight.lanes import Timer
from lamplight_tools.services import PROCESSES, SERVICES
from services.notify.service import NotifyService

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lanes_set(monkeypatch):
    def set_(value):
        monkeypatch.setattr(lanes.settings, "get", lambda key: value if key == "LANES" else None)
    return set_


def test_a_process_serves_every_lane_unless_told(lanes_set):
    lanes_set("")
    assert lanes.served() == {"main", "bulk"}
    lanes_set("bulk")
    assert lanes.served() == {"bulk"}
    lanes_set(" main , bulk ")
    assert lanes.served() == {"main", "bulk"}


def test_an_unknown_lane_is_refused_by_name(lanes_set):
    lanes_set("main,fast")
    with pytest.raises(ValueError, match="LANES names fast"):
        lanes.served()
    with pytest.raises(ValueError, match="no lane 'fast'"):
        Timer(1, lane="fast")


def test_notify_s_broadcasts_and_send_loop_are_its_bulk_lane():
    bulk = {name for name in ("on_broadcast_requested", "on_emergency", "tick")}
    found = {}
    for name in dir(NotifyService):
        for entrypoint in getattr(getattr(NotifyService, name), "nameko_entrypoints", ()):
            found.setdefault(lanes.lane_of(entrypoint), set()).add(name)
    assert found["bulk"] == bulk
    assert "on_event" in found["main"] and "broadcast" in found["main"]  # the request is main; its fan-out bulk


def test_notify_runs_as_two_processes_and_the_others_as_one():
    assert PROCESSES["notify"].env == {"LANES": "main"}
    assert PROCESSES["notify-bulk"].env == {"LANES": "bulk"} and PROCESSES["notify-bulk"].service == "notify"
    assert PROCESSES["notify-bulk"].nice > 0 == PROCESSES["notify"].nice
    for name in ("gateway", "needs", "volunteers", "points"):
        assert PROCESSES[name].env == {} and PROCESSES[name].path == SERVICES[name][0]
    offsets = [p.probe_offset for p in PROCESSES.values()]
    assert len(offsets) == len(set(offsets))


def test_every_process_has_a_deployment_and_every_deployment_runs_a_process():
    run = {}
    for path in sorted((ROOT / "deploy" / "k8s" / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                run[doc["metadata"]["name"]] = container.get("args", [None])[0]
    assert set(run.values()) == set(PROCESSES), run
