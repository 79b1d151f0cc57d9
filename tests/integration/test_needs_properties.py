"""Random command sequences against the real database: a need never reaches
an invalid state, every refusal names what was allowed, and its timeline
replays to exactly the state stored."""
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nameko import config
from nameko.standalone.rpc import ClusterRpcClient

from lamplight.errors import BadInput, Conflict
from services.needs import domain
from services.needs.service import NeedsService
from tests.parks import needs_config

NEED = {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair", "channel": "wish_wall",
        "title": "路灯坏了", "details": {"location": "东门"}, "requester": {"kind": "worker", "name": "测试"}}
# a payload for each command that is valid whenever the need's status allows it
PAYLOADS = {
    "triage": st.sampled_from([{}, {"grade": "urgent"}, {"category": "care", "item": "safety_hazard"},
                               {"grade": "routine", "team": "green", "public": False}]),
    "assign": st.sampled_from([{"responder_id": "rsp_1", "member_id": "M1", "task_id": "t1"},
                               {"unit": "物业公司"}]),
    "start": st.just({}), "resume": st.just({}), "release": st.just({}), "resolve": st.just({}),
    "wait": st.just({"reason": "缺少材料"}),
    "escalate": st.just({"to": "园区综合党委"}),
    "evaluate": st.sampled_from([{"rating": 5, "outcome": "fixed"}, {"rating": 3, "outcome": "partly_fixed"},
                                 {"rating": 1, "outcome": "not_fixed"}]),
    "reopen": st.just({"reason": "群众再次反映"}),
    "reject": st.just({"reason": "不属于受理范围", "redirect_to": "区人社局"}),
    "cancel": st.just({"reason": "本人撤回"}),
    "review": st.sampled_from([{"by": "organisation", "score": 80}, {"by": "park_audit", "score": 95}]),
}
commands = st.lists(st.sampled_from(sorted(PAYLOADS)).flatmap(
    lambda action: st.tuples(st.just(action), PAYLOADS[action],
                             st.sampled_from([None, "已处理，感谢关注"]))), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def park_id():
    return "h" + uuid.uuid4().hex[:8]


@pytest.fixture
def needs(container_factory, service_config):
    with config.patch({"NEEDS_SWEEP_INTERVAL_S": 3600}):
        container = container_factory(NeedsService)
        container.start()
        with ClusterRpcClient(uri=config["AMQP_URI"]) as client:
            yield Needs(client.needs)


class Needs:
    """The RPC proxy behind a plain object: Hypothesis pretty-prints test
    arguments, and on the proxy itself that would be a remote call."""

    def __init__(self, proxy):
        self._proxy = proxy

    def __getattr__(self, method):
        if method.startswith("_"):  # _repr_pretty_ and friends are not remote methods
            raise AttributeError(method)
        return getattr(self._proxy, method)

    def __repr__(self):
        return "<needs over RPC>"


def check_invariants(need):
    status = need["status"]
    assert status in domain.STATUSES
    assert (need["paused_at"] is not None) == (status == domain.WAITING)
    assert (need["paused_from"] in domain.ALLOWED_FROM["wait"]) == (status == domain.WAITING)
    assert (need["closed_at"] is not None) == (status in domain.FINAL)
    if status == domain.RESOLVED:
        assert need["resolved_at"] is not None and need["evaluation_due"] is not None
    if status in (domain.SUBMITTED, domain.TRIAGED, domain.REOPENED, domain.ESCALATED):
        assert need["resolved_at"] is None
    if status == domain.CANCELLED and need["duplicate_of"] is None:
        assert need["cancel_reason"]
    assert need["due_at"] >= need["submitted_at"]
    for before, after in zip(need["timeline"], need["timeline"][1:]):
        assert after["from"] == before["status"]  # an unbroken chain of changes
        assert after["at"] >= before["at"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=commands)
def test_random_commands_keep_a_need_valid_and_its_timeline_replays(needs, db, steps):
    park = "h" + uuid.uuid4().hex[:8]
    needs.set_config(park, needs_config())
    need_id = needs.submit(park, NEED)["id"]
    stored = db("needs").needs
    for action, payload, public_note in steps:
        before = stored.find_one({"need_id": need_id})
        allowed = domain.allowed_actions(before["status"])
        body = dict(payload, actor="desk-01" if action != "evaluate" else "requester")
        if public_note and action not in ("evaluate", "review"):
            body["public_note"] = public_note
        try:
            after = needs.act(park, need_id, action, body)
        except Conflict as refused:
            assert action not in allowed, "refused an allowed {} from {}".format(action, before["status"])
            assert refused.code == "illegal_transition"
            assert refused.fields["allowed_actions"] == allowed
            assert stored.find_one({"need_id": need_id})["version"] == before["version"]  # nothing written
            continue
        except BadInput:
            pytest.fail("{} {} refused as bad input".format(action, body))
        assert action in allowed, "accepted {} from {}".format(action, before["status"])
        assert after["version"] == before["version"] + 1
        check_invariants(stored.find_one({"need_id": need_id}))

    final = stored.find_one({"need_id": need_id})
    check_invariants(final)
    replayed = domain.replay(final["timeline"])
    assert {k: final[k] for k in domain.STATE_FIELDS} == replayed
