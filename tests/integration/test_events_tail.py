"""`lamplight events tail` against the real broker: live events of one park
and one type pattern, versioned routing keys included."""
import io
import threading

import eventlet
from nameko import config

from lamplight.envelope import new_event
from lamplight_tools import eventsctl
from tests.conftest import wait_for


def test_tail_shows_live_events_of_one_park_and_type_pattern(rabbit_config, broker):
    out = io.StringIO()
    ready = threading.Event()
    tail = eventlet.spawn(eventsctl.tail, config["AMQP_URI"], park="qln", type_glob="need.*", count=2, out=out,
                          ready=ready, timeout=10)
    wait_for(ready.is_set, what="the tail bound")
    events = [
        ("needs.events", "need.triaged", new_event("need.triaged", source="needs", park_id="other", subject="n0",
                                                   data={"need_id": "n0"})),
        ("points.events", "points.credited", new_event("points.credited", source="points", park_id="qln",
                                                       subject="m1", data={"amount": 1})),
        ("needs.events", "need.triaged", new_event("need.triaged", source="needs", park_id="qln", subject="n1",
                                                   data={"need_id": "n1"})),
        ("needs.events", "need.submitted.v2", new_event("need.submitted", source="needs", park_id="qln",
                                                        subject="n2", data={"need_id": "n2"}, version=2)),
    ]
    for exchange, key, envelope in events:
        broker.publish(exchange, key, envelope)
    assert tail.wait() == 2
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[1:4] for line in lines] == [["qln", "need.triaged", "n1"], ["qln", "need.submitted", "n2"]]
    assert '{"need_id": "n1"}' in lines[0]


def test_a_type_pattern_binds_versioned_keys_too():
    assert eventsctl.binding_keys("need.*") == ["need.*", "need.*.*"]
    assert eventsctl.binding_keys(None) == ["#"]
