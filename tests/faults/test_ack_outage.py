"""The broker goes away as an event handler finishes: its ack cannot be sent,
and the service must live on — the broker hands the message out again once
it is back, and the idempotent handler sees it a second time. (Before, the
failed ack raised out of the worker's result handler and nameko killed the
whole container: the chaos suite's broker restart took volunteers down.)

nameko skips the ack when it already knows the connection is closed; the
fault is the ack written to a socket the broker has just reset, before the
consumer noticed. That moment is a race, so the test makes it certain: the
first ack meets a reset (ConnectionResetError, as in the chaos run's log),
then the broker really goes away and comes back."""
import eventlet
from eventlet.event import Event

from lamplight.consuming import subscribe
from lamplight.envelope import new_event
from tests.conftest import wait_for
from tests.faults.test_broker_outage import broker_outage, rabbitctl  # noqa: F401 (fixture)

entered = Event()
release = Event()
seen: list[str] = []


class Holding:
    name = "holding"

    @subscribe("needs", "need.submitted")
    def on_need(self, envelope):
        seen.append(envelope["id"])
        if not entered.ready():
            entered.send(True)
            release.wait()


def test_an_ack_that_cannot_be_sent_does_not_kill_the_service(container_factory, service_config, broker,
                                                               broker_outage):  # noqa: F811
    container = container_factory(Holding)
    container.start()
    (entrypoint,) = [e for e in container.entrypoints if e.method_name == "on_need"]
    real_ack = entrypoint.consumer.ack_message

    def ack_on_a_reset_socket(message):
        entrypoint.consumer.ack_message = real_ack
        raise ConnectionResetError(104, "Connection reset by peer")

    entrypoint.consumer.ack_message = ack_on_a_reset_socket
    event = new_event("need.submitted", source="needs", park_id="xuwei", subject="n1", data={"n": 1})
    broker.publish("needs.events", "need.submitted", event)
    with eventlet.Timeout(20):
        entered.wait()
    release.send(True)  # the handler finishes; its ack meets the reset
    with eventlet.Timeout(30):
        while container._worker_threads and not container._died.ready():
            eventlet.sleep(0.2)
    assert not container._died.ready(), "the service container died when its ack could not be sent"
    broker_outage()

    rabbitctl("start_app")
    rabbitctl("await_startup", "--timeout", "60")
    # the unacked message comes back to the reconnected consumer
    wait_for(lambda: seen.count(event["id"]) >= 2, timeout=60, what="the event delivered again")
    assert not container._died.ready()
