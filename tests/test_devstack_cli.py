"""The development CLI's settings (devstack/settings.py, behind ./fleethook) and
`make token`, on files in a temporary instance/ directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devstack import settings as devstack


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DEVELOPMENT_ENV", "MAKE_RUN_ENV", "DEMO_LOGIN"):
        monkeypatch.setattr(devstack, name, tmp_path / getattr(devstack, name).name)
    return tmp_path


def test_without_make_run_the_cli_runs_in_development_with_the_kept_keys(instance):
    env = devstack.cli_environment({"PATH": "/bin"})
    kept = devstack.read_env_file(instance / "development.env")
    assert env["FLEETHOOK_ENV"] == "development"
    assert env["SECRET_KEY"] == kept["SECRET_KEY"]
    assert env["FLEETHOOK_ENCRYPTION_KEYS"] == kept["FLEETHOOK_ENCRYPTION_KEYS"]
    assert "REDIS_URL" not in env
    assert stat.S_IMODE((instance / "development.env").stat().st_mode) == 0o600
    # The same keys next time: secrets encrypted by one command decrypt in the next.
    assert devstack.cli_environment({})["SECRET_KEY"] == kept["SECRET_KEY"]


def test_beside_make_run_the_cli_reaches_its_redis_and_database_with_its_keys(instance):
    devstack.development_secrets(instance / "development.env")
    stack = {
        "FLEETHOOK_ENV": "development",
        "REDIS_URL": "redis://127.0.0.1:40123/0",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1/fleethook",
        "SECRET_KEY": "given-to-make-run",
        "FLEETHOOK_ENCRYPTION_KEYS": "given-too",
        "PATH": "/usr/bin",
        "HOME": "/root",
    }
    devstack.write_private(instance / "make-run.env", devstack.stack_settings(stack))
    text = (instance / "make-run.env").read_text()
    assert "PATH=" not in text and "HOME=" not in text

    env = devstack.cli_environment({"PATH": "/bin"})
    assert env["REDIS_URL"] == "redis://127.0.0.1:40123/0"
    assert env["DATABASE_URL"] == "postgresql://postgres@127.0.0.1/fleethook"
    assert env["SECRET_KEY"] == "given-to-make-run"
    assert env["FLEETHOOK_ENCRYPTION_KEYS"] == "given-too"
    # What the caller set wins, as it does for `make run` itself.
    assert devstack.cli_environment({"REDIS_URL": "redis://elsewhere/1"})["REDIS_URL"] == (
        "redis://elsewhere/1"
    )


def test_make_token_prints_what_demo_seed_printed(instance, capsys):
    assert devstack.print_demo_login() == 1
    assert "`make run`" in capsys.readouterr().err
    printed = "Demo login:  demo@fleethook.example / fleethook-demo\nAPI token:   fh_abc\n"
    devstack.write_private(instance / "demo-login", printed)
    assert devstack.print_demo_login() == 0
    assert capsys.readouterr().out == printed
    assert devstack.demo_token(printed) == "fh_abc"
