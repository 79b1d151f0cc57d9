"""100 concurrent postings to one account from three points processes."""
import eventlet
from nameko.standalone.rpc import ClusterRpcClient

from lamplight_dev.devstack import Stack
from lamplight_tools import cli
from tests.conftest import MONGO_URI

PARK = "funing"


def test_concurrent_postings_from_several_processes_keep_one_consistent_chain(rabbit_uri, db_prefix, tmp_path, db):
    replicas = [Stack(tmp_path / "points{}".format(i), port_base=19200 + 10 * i, web_port=18100 + i,
                      env={"AMQP_URI": rabbit_uri, "MONGO_URI": MONGO_URI, "MONGO_DB_PREFIX": db_prefix})
                for i in range(3)]
    try:
        for replica in replicas:
            replica.up(names=("points",))
        with ClusterRpcClient(uri=rabbit_uri) as rpc:
            rpc.points.set_catalogue(PARK, {"version": 1, "rules": [
                {"code": "service", "name": "志愿服务", "account": "service", "points": 3},
                {"code": "minus", "name": "扣分", "account": "discipline", "points": -1}]})

        def post(i):
            # one client per caller: a standalone client is not safe to share
            rule = "service" if i % 2 else "minus"
            with ClusterRpcClient(uri=rabbit_uri) as own:
                return own.points.post(PARK, {"member_id": "m-1", "rule_code": rule, "actor": "desk",
                                              "reason": "concurrent {}".format(i)}, idempotency_key="c{}".format(i))

        results = list(eventlet.GreenPool(100).imap(post, range(100)))
        with ClusterRpcClient(uri=rabbit_uri) as rpc:
            retried = rpc.points.post(PARK, {"member_id": "m-1", "rule_code": "minus", "actor": "desk",
                                             "reason": "concurrent 0"}, idempotency_key="c0")
            service = rpc.points.account(PARK, "m-1", kind="service")
            discipline = rpc.points.account(PARK, "m-1", kind="discipline")
    finally:
        for replica in replicas:
            replica.down(names=("points",))

    assert all(r["created"] for r in results) and retried["created"] is False
    assert service["balance"] == 50 * 3 and service["entries"] == 50
    assert discipline["balance"] == 12 - 50 and discipline["entries"] == 51
    entries = list(db("points").entries.find({"park_id": PARK}))
    assert len(entries) == 101
    writers = {e["_outbox_by"] for e in entries}
    assert len(writers) >= 2, "the postings were all written by one process"
    problems, accounts, checked = cli.points_verify(MONGO_URI, db_prefix + "points", PARK)
    assert (problems, accounts, checked) == ([], 2, 101)
