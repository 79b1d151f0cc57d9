"""A loop's passes over parks: one park's slow pass holds no other park's, and
a park has one pass at a time, the one asked for meanwhile following it."""
import eventlet
from eventlet.event import Event

from lamplight.passes import ParkPasses
from lamplight.storage import Mongo


class Container:
    """What ParkPasses asks of a nameko container: its name, its dependencies, managed threads."""
    service_name = "notify"

    def __init__(self):
        self.dependencies = []

    def spawn_managed_thread(self, fn, identifier=None):
        return eventlet.spawn(fn)


def passes(limit=8, container=None):
    container = container or Container()
    p = ParkPasses("send", lambda: limit, drain_s=2.0).bind(container, "passes")
    p.held = container  # bound extensions keep only a weak reference to their container
    p.setup()
    return p


def test_a_slow_park_holds_its_own_pass_and_no_other():
    p = passes()
    release, seen = Event(), []

    def slow():
        seen.append("slow started")
        release.wait()
        seen.append("slow ended")

    assert p.start_pass("park-a", slow) is True
    eventlet.sleep(0)
    assert p.start_pass("park-b", lambda: seen.append("b")) is True
    eventlet.sleep(0.01)
    assert seen == ["slow started", "b"]  # b did not wait for a
    assert p.running("park-a") and not p.running("park-b")
    release.send()
    eventlet.sleep(0.01)
    assert seen[-1] == "slow ended" and not p.running("park-a")


def test_a_pass_asked_for_while_the_park_is_busy_follows_it_once_with_the_latest_ask():
    p = passes()
    release, seen = Event(), []

    def first():
        seen.append("first")
        release.wait()

    p.start_pass("park-a", first)
    eventlet.sleep(0)
    # two seconds of the loop ask while the first pass still runs: one pass follows, the later
    assert p.start_pass("park-a", seen.append, "second") is False
    assert p.start_pass("park-a", seen.append, "third") is False
    eventlet.sleep(0.01)
    assert seen == ["first"]  # never two of one park's passes at once
    release.send()
    eventlet.sleep(0.01)
    assert seen == ["first", "third"]
    assert not p.running("park-a")


def test_at_most_limit_parks_pass_at_once():
    p = passes(limit=2)
    release, running, most = Event(), [0], [0]

    def visit():
        running[0] += 1
        most[0] = max(most[0], running[0])
        release.wait()
        running[0] -= 1

    for i in range(5):
        p.start_pass("park-{}".format(i), visit)
    eventlet.sleep(0.01)
    assert running[0] == 2
    release.send()
    eventlet.sleep(0.05)
    assert most[0] == 2 and running[0] == 0


def test_a_failing_pass_is_logged_and_the_park_passes_again():
    p = passes()
    seen = []

    def broken():
        raise RuntimeError("provider exploded")

    p.start_pass("park-a", broken)
    eventlet.sleep(0.01)
    assert not p.running("park-a")
    assert p.start_pass("park-a", seen.append, "again") is True
    eventlet.sleep(0.01)
    assert seen == ["again"]


def test_stopping_lets_running_passes_finish_starts_none_and_keeps_the_database_open_until_then():
    container = Container()
    mongo = Mongo.__new__(Mongo)
    waits = []
    mongo.keep_open_for = waits.append
    container.dependencies.append(mongo)
    p = passes(container=container)
    (stopped,) = waits
    seen = []

    def visit():
        eventlet.sleep(0.05)
        seen.append("finished")

    p.start_pass("park-a", visit)
    p.start_pass("park-a", seen.append, "queued behind")
    eventlet.sleep(0)
    p.stop()
    assert seen == ["finished"]  # the running pass ended; the one queued behind it never started
    assert stopped.ready()
    assert p.start_pass("park-b", seen.append, "after stop") is False
    eventlet.sleep(0.01)
    assert seen == ["finished"]
