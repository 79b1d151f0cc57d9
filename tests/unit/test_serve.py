"""`lamplight serve SERVICE`: what a container runs — nameko in place of the CLI (exec)."""
import sys

import pytest

from lamplight_tools import cli


@pytest.fixture
def execs(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execvpe", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.delenv("LANES", raising=False)
    return calls


def test_serve_execs_nameko_with_the_services_class_and_config(execs):
    cli.main(["serve", "needs", "--config", "/etc/lamplight/config.yaml"])
    [(exe, argv, env)] = execs
    assert (exe, argv) == (sys.executable, [sys.executable, "-m", "nameko", "run", "--config",
                                            "/etc/lamplight/config.yaml", "services.needs.service:NeedsService"])
    assert "LANES" not in env


def test_notify_and_its_bulk_process_are_the_same_class_serving_different_lanes(execs):
    cli.main(["serve", "notify"])
    cli.main(["serve", "notify-bulk"])
    assert [argv[-1] for _, argv, _ in execs] == ["services.notify.service:NotifyService"] * 2
    assert [env["LANES"] for _, _, env in execs] == ["main", "bulk"]


def test_the_environment_s_lanes_win(execs, monkeypatch):
    monkeypatch.setenv("LANES", "main,bulk")
    cli.main(["serve", "notify"])
    assert execs[0][2]["LANES"] == "main,bulk"


def test_serve_refuses_a_service_that_does_not_exist(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "billing"])
    assert "invalid choice: 'billing'" in capsys.readouterr().err
