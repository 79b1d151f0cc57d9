"""The development stack's replicas (``./dev up --cluster``): each on ports
and in a run directory of its own, sharing the token secret, and found
again by ``down`` and ``status`` from their directories."""
from lamplight_dev import devstack


def test_replicas_have_ports_and_run_directories_of_their_own_and_share_the_token_secret(tmp_path):
    stacks = devstack.replicas(tmp_path / "run", 9100, 8000, 3, {"QUEUE_TYPE": "quorum"})
    assert [s.run_dir.name for s in stacks] == ["run", "run-2", "run-3"]
    assert [s.web_port for s in stacks] == [8000, 8001, 8002]
    assert [s.probe_port("needs") for s in stacks] == [9101, 9111, 9121]
    assert len({s.env["GATEWAY_TOKEN_SECRET"] for s in stacks}) == 1
    assert all(s.env["QUEUE_TYPE"] == "quorum" for s in stacks)


def test_down_and_status_find_the_replicas_up_started(tmp_path):
    for k in (2, 3):
        (tmp_path / "run-{}".format(k)).mkdir()
    found = devstack.running_replicas(tmp_path / "run", 9100, 8000)
    assert [s.run_dir.name for s in found] == ["run", "run-2", "run-3"]
    assert len(devstack.running_replicas(tmp_path / "other", 9100, 8000)) == 1
