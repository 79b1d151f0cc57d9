"""The platform as it runs in production: a three-node RabbitMQ cluster
(lamplight_dev/cluster.py) with quorum queues, and two replicas of every
service, under the chaos suite's steady load. One replica of every service
is killed at once (the others serve: a 503 only within the RPC timeout of
the kill), the node the connections go to first is killed (SIGKILL, a lost
machine) and comes back, then every node is restarted in turn (an upgrade).
Nothing acknowledged is lost or written twice, every routed need gets its
task and every offer its notice, and the platform catches up and settles
within the README's bound — as bench/chaos.py checks it from the databases."""
import pytest

from bench import chaos
from lamplight_dev import cluster


@pytest.fixture
def rabbit_cluster():
    try:
        yield cluster.up()
    finally:
        cluster.down()


def test_two_replicas_on_a_cluster_lose_nothing_when_replicas_die_a_node_dies_or_every_node_restarts(
        rabbit_cluster, capsys):
    assert len(rabbit_cluster) == 3, rabbit_cluster
    code = chaos.main(["--cluster", "--replicas", "2", "--rate", "4", "--gap", "20",
                       "--faults", "kill-replicas,node-kill,rolling-restart", "--settle", str(chaos.SETTLE_BOUND_S)])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "kill-replicas" in report and "2 of each service" in report, report
