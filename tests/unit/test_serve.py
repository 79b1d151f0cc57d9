"""`lamplight serve SERVICE`: what a container runs — nameko in place of the CLI (exec)."""
import sys

import pytest

from lamplight_tools import cli


def test_serve_execs_nameko_with_the_services_class_and_config(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execvp", lambda exe, argv: calls.append((exe, argv)))
    cli.main(["serve", "notify", "--config", "/etc/lamplight/config.yaml"])
    assert calls == [(sys.executable, [sys.executable, "-m", "nameko", "run", "--config", "/etc/lamplight/config.yaml",
                                       "services.notify.service:NotifyService"])]


def test_serve_refuses_a_service_that_does_not_exist(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "billing"])
    assert "invalid choice: 'billing'" in capsys.readouterr().err
