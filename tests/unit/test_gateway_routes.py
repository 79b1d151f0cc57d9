"""The gateway's route table where no service is needed: every forward
names an RPC its service has, with the arguments it takes, and the
forwarding itself run on a worker of the Gateway whose RPC proxies are
mocks (nameko's worker_factory)."""
import inspect
import re
from unittest.mock import Mock

import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.service import ROUTES, Gateway
from lamplight.errors import BadInput
from lamplight.installed import service_classes

FORWARDS = [r for r in ROUTES if r["rpc"]]


def request(path="/", query=None, body=None, headers=None):
    return Request(EnvironBuilder(path=path, method="POST" if body is not None else "GET", query_string=query,
                                  json=body, headers=headers or {}).get_environ())


def test_most_routes_are_declared_forwards():
    assert len(FORWARDS) >= 50 and len(FORWARDS) > len(ROUTES) / 2


@pytest.mark.parametrize("route", FORWARDS, ids=[r["name"] for r in FORWARDS])
def test_every_forward_names_an_rpc_of_its_service_that_takes_what_the_route_sends(route):
    service, method = route["rpc"].split(".")
    classes = service_classes()
    target = getattr(classes[service], method, None)
    assert target is not None, "{} has no {}".format(service, method)
    positional = re.findall(r"<(?:\w+:)?(\w+)>", route["path"]) + (["body"] if route["body"] else [])
    keywords = {spec[2] if len(spec) > 2 else name: None for name, spec in route["query"].items()}
    if route["keyed"]:
        keywords["idempotency_key"] = "k"
    inspect.signature(target).bind(None, *positional, **keywords)  # self, then all a forward may send


def test_a_forward_sends_the_path_parameters_in_order_and_answers_what_the_service_answered():
    gateway = worker_factory(Gateway, volunteers=Mock())
    gateway.volunteers.call.return_value = {"task_id": "t1"}
    assert gateway.get_task(request(), park="quanlinan", task_id="t1") == {"task_id": "t1"}
    gateway.volunteers.call.assert_called_once_with("get_task", "quanlinan", "t1")


def test_a_forward_passes_the_query_a_request_gives_by_the_rpcs_names_and_leaves_the_rest_to_its_defaults():
    gateway = worker_factory(Gateway, notify=Mock())
    gateway.notify.call.return_value = {"deliveries": []}
    gateway.deliveries(request(query="recipient=w1&limit=5"), park="quanlinan")
    gateway.notify.call.assert_called_once_with("deliveries", "quanlinan", recipient_id="w1", limit=5)
    with pytest.raises(BadInput) as bad:
        gateway.deliveries(request(query="limit=many"), park="quanlinan")
    assert bad.value.fields == {"limit": ["not an integer: 'many'"]}


def test_a_keyed_forward_sends_the_idempotency_key_and_answers_201_for_what_it_created_and_200_for_a_replay():
    gateway = worker_factory(Gateway, points=Mock())
    body = {"member_id": "M-1", "reward_code": "tea"}
    gateway.points.call.return_value = {"id": "rdm_1", "created": True}
    assert gateway.redeem(request(body=body, headers={"Idempotency-Key": "k-1"}), park="quanlinan") == (
        201, {"id": "rdm_1"})
    gateway.points.call.assert_called_once_with("redeem", "quanlinan", body, idempotency_key="k-1")
    gateway.points.call.return_value = {"id": "rdm_1", "created": False}
    assert gateway.redeem(request(body=body, headers={"Idempotency-Key": "k-1"}), park="quanlinan")[0] == 200
