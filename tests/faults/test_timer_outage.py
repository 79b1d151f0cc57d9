"""A timer whose work needs the database, while the database is paused: the
ticks that fail are logged, the process lives on and says so on /readyz
(not ready while the database is away), and the ticks write again once it is
back. The entrypoint types' other faults: an RPC's reply (test_rpc_reply_outage),
an event handler's ack (test_ack_outage), HTTP through the gateway
(test_broker_outage, and the chaos suite's database faults)."""
import os
import signal
import time
from pathlib import Path

import pytest
from nameko.timer import timer

from lamplight.clock import utcnow
from lamplight.observability import Observability
from lamplight.storage import Mongo
from tests.conftest import readyz, wait_for

PID_FILE = Path(__file__).resolve().parents[2] / ".stack" / "ferretdb.pid"


class Ticking:
    name = "ticking"
    db = Mongo()
    log = Observability()

    @timer(interval=0.2)
    def tick(self):
        self.db.unscoped("ticks", reason="the test's own").insert_one({"at": utcnow()})



@pytest.fixture
def paused_database():
    if not PID_FILE.exists():
        pytest.fail("this test pauses the development database; ./dev test starts it (MONGO_URI is another server)")
    pid = int(PID_FILE.read_text())
    paused = []

    def pause():
        os.kill(pid, signal.SIGSTOP)
        paused.append(pid)

    def resume():
        os.kill(pid, signal.SIGCONT)
        paused.clear()

    try:
        yield pause, resume
    finally:
        if paused:
            os.kill(pid, signal.SIGCONT)


def test_a_timer_lives_through_a_database_pause_and_writes_again(container_factory, service_config, db,
                                                                   paused_database):
    pause, resume = paused_database
    container = container_factory(Ticking)
    container.start()
    ticks = db("ticking").ticks
    wait_for(lambda: ticks.count_documents({}) >= 3, what="the timer writing")

    pause()
    try:
        time.sleep(1)
        wait_for(lambda: readyz(container)[0] == 503, timeout=15, what="/readyz not ready while the database is away")
        status, body = readyz(container)
        assert body["checks"]["mongodb"] != "ok", body
        time.sleep(4)  # ticks fail meanwhile
        assert not container._died.ready(), "the container died while its database was away"
    finally:
        resume()
    before = ticks.count_documents({})
    wait_for(lambda: ticks.count_documents({}) >= before + 3, timeout=30, what="the timer writing again")
    wait_for(lambda: readyz(container)[0] == 200, timeout=15, what="/readyz ready again")
    assert not container._died.ready()
