"""A domain's refusal becomes the API error of its kind in one place: where it
leaves the service (the RPC reply; an event handler's dead letter)."""
import sys
from types import SimpleNamespace

import pytest

from lamplight.errors import EXPECTED, BadInput, Conflict, DomainError, NotFound, api_error
from lamplight.rpc import LightRpcConsumer
from services.needs import domain as needs
from services.notify import domain as notify
from services.points import domain as points
from services.volunteers import domain as volunteers


@pytest.mark.parametrize("refusal,api,code", [
    (needs.IllegalTransition("start", "closed"), Conflict, "illegal_transition"),
    (needs.UnknownCode("unknown grade x", {"grade": ["one of: a"]}), BadInput, None),
    (volunteers.RuleBroken("task t is claimed", "already_taken", {"status": ["claimed"]}), Conflict, "already_taken"),
    (volunteers.RuleBroken("unknown action fly", "unknown_action"), BadInput, "unknown_action"),
    (notify.NotifyRuleError("the body renders empty", {"body": ["renders empty"]}), BadInput, None),
    (points.PointsRefused("3 points are available", {"available": 3}, code=points.INSUFFICIENT_POINTS), Conflict,
     "insufficient_points"),
    (points.PointsInvalid("period must look like 2026H1", {"period": ["not a half-year"]}), BadInput, None),
    (DomainError("no such thing", kind="not_found"), NotFound, None),
])
def test_each_domains_refusal_is_the_api_error_of_its_kind(refusal, api, code):
    assert isinstance(refusal, DomainError) and isinstance(refusal, EXPECTED)
    error = api_error(refusal)
    assert type(error) is api and error.message == refusal.message and error.fields == refusal.fields
    assert error.code == (code or api.code)


def test_a_domain_error_of_no_known_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="bad_input, conflict, not_found"):
        DomainError("what", kind="teapot")


def test_the_rpc_reply_carries_the_api_error_not_the_domains(monkeypatch):
    sent = []

    class Responder:
        def __init__(self, *args, **kwargs):
            pass

        def send_response(self, result, exc_info):
            sent.append(exc_info)
            return result, exc_info

    monkeypatch.setattr("lamplight.rpc.LightResponder", Responder)
    monkeypatch.setattr(LightRpcConsumer, "amqp_uri", "memory://")
    consumer = LightRpcConsumer()
    consumer.consumer = SimpleNamespace(ack_message=lambda message: None)
    consumer.container = SimpleNamespace(service_name="needs")  # the ack is counted by service
    try:
        raise needs.IllegalTransition("start", "closed")
    except needs.IllegalTransition:
        exc_info = sys.exc_info()
    consumer.handle_result(SimpleNamespace(delivery_info={}, properties={}), None, exc_info)
    (replied,) = sent
    assert replied[0] is Conflict and replied[1].code == "illegal_transition"
    assert replied[1].fields == {"status": ["closed"], "allowed_actions": needs.allowed_actions("closed")}
    assert replied[2] is exc_info[2]  # the traceback of where the rule refused
