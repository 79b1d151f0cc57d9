"""Properties of the ledger under random concurrent use, against the real database."""
import random
import uuid

import eventlet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nameko import config
from nameko.standalone.rpc import ClusterRpcClient

from lamplight.errors import Conflict
from services.points.chain import verify_chain
from services.points.service import PointsService

RULES = [
    {"code": "minus", "name": "扣分", "account": "discipline", "points": -2},
    {"code": "plus", "name": "加分", "account": "discipline", "points": 1, "caps": {"month": 3}},
    {"code": "service", "name": "志愿服务", "account": "service", "points": 5},
]

operations = st.lists(st.one_of(
    # a posting: member, rule, and a key from a small pool so that keys repeat,
    # sometimes with the same body (a retry), sometimes another (a conflict)
    st.tuples(st.just("post"), st.sampled_from(["a", "b"]), st.sampled_from(["minus", "plus", "service"]),
              st.integers(0, 9)),
    # a reversal of the i-th entry that exists when it runs
    st.tuples(st.just("reverse"), st.integers(0, 50)),
), min_size=1, max_size=30)


@pytest.fixture
def points(container_factory, service_config):
    """The service in a container, called over real RPC, one client per
    concurrent caller: nameko's entrypoint_hook hands concurrent callers the
    first result, and one standalone client is not safe to share."""
    container = container_factory(PointsService)
    container.start()

    def client():
        return ClusterRpcClient(uri=config["AMQP_URI"])

    return client


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, seed=st.integers(0, 2 ** 32))
def test_every_balance_is_the_sum_of_its_entries_and_nothing_posts_twice(points, db, ops, seed):
    park = "p" + uuid.uuid4().hex[:10]
    with points() as rpc:
        rpc.points.set_catalogue(park, {"version": 1, "rules": RULES})
    order = list(ops)
    random.Random(seed).shuffle(order)  # reordered, then run concurrently
    accepted = {}  # idempotency key -> entry ids returned for it

    def run(op):
        with points() as rpc:
            try:
                if op[0] == "post":
                    _, member, rule, key = op
                    body = {"member_id": member, "rule_code": rule, "actor": "desk", "reason": "property test"}
                    entry = rpc.points.post(park, body, idempotency_key="k{}".format(key))
                    accepted.setdefault("k{}".format(key), set()).add(entry["id"])
                else:
                    entries = list(db("points").entries.find({"park_id": park, "kind": "posting"}).sort("_id", 1))
                    if entries:
                        target = entries[op[1] % len(entries)]
                        rpc.points.reverse(park, target["_id"], {"actor": "desk", "reason": "undo"})
            except Conflict:
                pass  # a reused key with another body, a cap reached, a double reversal with another reason

    pool = eventlet.GreenPool(8)
    list(pool.imap(run, order))

    entries = list(db("points").entries.find({"park_id": park}))
    accounts = list(db("points").accounts.find({"park_id": park}))
    for account in accounts:
        mine = [e for e in entries if e["account_id"] == account["_id"]]
        assert account["balance"] == sum(e["amount"] for e in mine)
        assert account["seq"] == len(mine)
        assert verify_chain(mine, account) == []
    keys = [e["idempotency_key"] for e in entries]
    assert len(keys) == len(set(keys))  # no key posted twice
    assert all(len(ids) == 1 for ids in accepted.values())  # every retry got the first entry back
    reversed_ids = [e["reverses"] for e in entries if e["kind"] == "reversal"]
    assert len(reversed_ids) == len(set(reversed_ids))  # no entry reversed twice
    for entry in entries:
        if entry["kind"] == "reversal":
            original = next(e for e in entries if e["_id"] == entry["reverses"])
            assert entry["amount"] == -original["amount"]
