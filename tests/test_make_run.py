"""`make run` from a clean clone: it installs, migrates, seeds and serves; its
console stays quiet after the banner; `make token` prints the banner's token;
every command of README.md and docs/ runs as written beside it; and on Ctrl-C it
stops every process it started.

One stack serves the module's tests, in order; the last one stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import pytest

from devstack.redis_server import free_port
from tests.conftest import ROOT, scratch_database
from tests.docs_commands import DOCUMENTS, script_of

pytestmark = pytest.mark.smoke

STARTUP_SECONDS = 600  # a fresh virtualenv is installed first
BANNER_END = "Ctrl-C stops everything"
QUIET_SECONDS = 10
# Lines the console may print in QUIET_SECONDS with the simulator on: its own
# status line, a summary line. Before it was quiet: about 20 a second.
QUIET_LINES = 5


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@dataclass
class Stack:
    clone: Path
    env: dict[str, str]
    port: int
    make: subprocess.Popen[bytes]
    log: IO[str]
    banner: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def console(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    """`make run` in a clean clone: on the embedded defaults, or, when this run is on
    PostgreSQL, on a database of its own on that server."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    with ExitStack() as cleanup:
        if database_url.startswith("postgresql"):
            database_url = cleanup.enter_context(scratch_database(database_url, "make_run"))
        else:
            database_url = ""
        yield from _make_run(tmp_path_factory, database_url)


def _make_run(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("make-run")
    clone = directory / "fleethook"
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
    if database_url:
        env["DATABASE_URL"] = database_url
    log = (directory / "make-run.log").open("w+")
    # Its own session, so SIGINT to the group is exactly what Ctrl-C in a terminal sends.
    make = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        console = ""
        while time.monotonic() < deadline and make.poll() is None:
            log.seek(0)
            console = log.read()
            if BANNER_END in console:
                break
            time.sleep(1)
        assert BANNER_END in console, console[-3000:]
        banner = console[console.rindex("Fleethook portal:") : console.index(BANNER_END)]
        yield Stack(clone, env, port, make, log, banner)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        log.close()


def test_make_run_serves_the_portal_with_its_own_redis(stack: Stack):
    status, health = fetch(f"{stack.base}/healthz")
    assert status == 200 and json.loads(health)["status"] == "ok"
    status, login = fetch(f"{stack.base}/login")
    assert status == 200 and "Log in to Fleethook" in login

    token = re.search(r"API token:\s+(fh_\S+)", stack.banner).group(1)
    status, account = fetch(f"{stack.base}/api/v1/account", token)
    assert status == 200 and json.loads(account)["name"] == "Demo Fleet"
    redis_port = int(re.search(r"Redis: redis://127\.0\.0\.1:(\d+)/0", stack.banner).group(1))
    assert redis_port != 6379, "make run must start its own Redis"
    on_postgresql = "DATABASE_URL" in stack.env
    assert (stack.clone / "instance" / "fleethook.db").exists() != on_postgresql
    assert (
        f"REDIS_URL=redis://127.0.0.1:{redis_port}/0"
        in (stack.clone / "instance" / "make-run.env").read_text()
    )


def test_the_console_stays_quiet_and_make_token_prints_the_banner_s_token(stack: Stack):
    before = stack.console()
    time.sleep(QUIET_SECONDS)
    printed = stack.console()[len(before) :]
    assert printed.count("\n") < QUIET_LINES, printed[-3000:]

    result = subprocess.run(
        ["make", "--silent", "token"],
        cwd=stack.clone,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = re.search(r"API token:\s+(fh_\S+)", stack.banner).group(1)
    assert result.stdout.splitlines() == [
        "Demo login:  demo@fleethook.example / fleethook-demo",
        f"API token:   {token}",
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_the_documents_commands_run_as_written_beside_make_run(stack: Stack, document: Path):
    script = script_of(document, stack.port)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=stack.clone,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # The last "### file:line" on stderr names the block that failed.
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])


def test_ctrl_c_stops_everything(stack: Stack):
    started = psutil.Process(stack.make.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in started)
    assert "gunicorn" in names and "redis-server" in names
    assert names.count("rq worker") >= 2 and "rq cron cron" in names

    os.killpg(stack.make.pid, signal.SIGINT)
    stack.make.wait(timeout=60)
    time.sleep(0.5)
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{stack.base}/healthz", timeout=2)
    # The CLI beside it no longer reaches for its Redis.
    assert not (stack.clone / "instance" / "make-run.env").exists()
