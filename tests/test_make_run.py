"""`make run` from a clean clone: it installs, migrates, seeds, serves, and on
Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devstack import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.smoke

STARTUP_SECONDS = 600  # a fresh virtualenv is installed first


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_make_run_serves_the_portal_and_ctrl_c_stops_everything(tmp_path: Path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "fleethook"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(
            ("FLEETHOOK_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "VIRTUAL_ENV")
        )
    }
    port = free_port()
    env["PORT"] = str(port)
    log = (tmp_path / "make-run.log").open("w+")
    # Its own session, so SIGINT to the group is exactly what Ctrl-C in a terminal sends.
    make = subprocess.Popen(
        ["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        banner = ""
        while time.monotonic() < deadline and make.poll() is None:
            log.seek(0)
            banner = log.read()
            if "Ctrl-C stops everything" in banner:
                break
            time.sleep(1)
        assert "Ctrl-C stops everything" in banner, banner[-3000:]

        status, health = fetch(f"{base}/healthz")
        assert status == 200 and json.loads(health)["status"] == "ok"
        status, login = fetch(f"{base}/login")
        assert status == 200 and "Log in to Fleethook" in login

        token = re.search(r"API token:\s+(fh_\S+)", banner).group(1)
        status, account = fetch(f"{base}/api/v1/account", token)
        assert status == 200 and json.loads(account)["name"] == "Demo Fleet"
        redis_port = int(re.search(r"Redis: redis://127\.0\.0\.1:(\d+)/0", banner).group(1))
        assert redis_port != 6379, "make run must start its own Redis"
        assert (clone / "instance" / "fleethook.db").exists()

        started = psutil.Process(make.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        assert "gunicorn" in names and "redis-server" in names
        assert names.count("rq worker") >= 2 and "rq cron outbox.cron_config" in names

        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
        time.sleep(0.5)
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [p.cmdline() for p in left]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{base}/healthz", timeout=2)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        log.close()
