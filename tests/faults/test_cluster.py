"""The platform on a three-node RabbitMQ cluster (lamplight_dev/cluster.py),
its queues quorum queues, under the chaos suite's steady load: the node its
connections go to first is killed (SIGKILL, a lost machine) and comes back,
then every node is restarted in turn (an upgrade). Nothing acknowledged is
lost or written twice, every routed need gets its task and every offer its
notice, and the platform catches up and settles within the README's bound —
as bench/chaos.py checks it from the databases."""
import pytest

from bench import chaos
from lamplight_dev import cluster


@pytest.fixture
def rabbit_cluster():
    try:
        yield cluster.up()
    finally:
        cluster.down()


def test_the_platform_on_a_cluster_loses_nothing_when_a_node_dies_or_every_node_restarts(rabbit_cluster, capsys):
    assert len(rabbit_cluster) == 3, rabbit_cluster
    code = chaos.main(["--cluster", "--rate", "4", "--gap", "20", "--faults", "node-kill,rolling-restart",
                       "--settle", str(chaos.SETTLE_BOUND_S)])
    report = capsys.readouterr().out
    assert code == 0, report
