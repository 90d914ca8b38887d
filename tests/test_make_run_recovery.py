"""`make run` heals itself: during a burst of telemetry, each RQ worker, the sweeper
and a gunicorn worker is killed with SIGKILL (as the OOM killer would); each is
started again, the console names every restart, the portal answers /healthz all
along, and every event reaches the receiver.

It runs `python -m devstack run` (what `make run` runs) on a copy of this checkout as it
is, uncommitted changes included, with the test run's own virtualenv — no clone,
no install — and a short delivery lease, so that a drain killed mid-way is taken
up again within seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from devstack.redis_server import free_port
from tests.conftest import ROOT
from tests.receiver import ReceiverServer
from tests.test_make_run import BANNER_END, Stack, fetch
from tests.test_workers import SETTINGS

pytestmark = pytest.mark.smoke

STARTUP_SECONDS = 120
HEALTH_EVERY_SECONDS = 0.15
BATCHES = 40  # of one heartbeat per demo truck
BATCH_EVERY_SECONDS = 0.5
# Killed after these batches, in turn.
KILLS = {5: "worker", 12: "retry worker", 19: "sweeper", 26: "gunicorn worker", 33: "worker"}
# A killed drain's messages come back after the lease, then the next sweep.
DELIVERED_WITHIN_SECONDS = 45


def copy_of_checkout(target: Path) -> Path:
    """This checkout's files as they are now (what git tracks or would track), and
    the fetched htmx, so `python -m devstack run` needs no network."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copytree(ROOT / "static" / "vendor", target / "static" / "vendor")
    return target


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if not (ROOT / ".git").exists() or not (ROOT / "static" / "vendor").exists():
        pytest.skip("needs a git checkout with static/vendor fetched (make assets)")
    copy = copy_of_checkout(tmp_path / "fleethook")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(
            ("FLEETHOOK_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "VIRTUAL_ENV")
        )
    }
    port = free_port()
    env.update(SETTINGS, PORT=str(port), FLEETHOOK_SWEEP_SECONDS="2")
    log = (tmp_path / "make-run.log").open("w+")
    run = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run", "--no-simulator"],
        cwd=copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        console = ""
        while time.monotonic() < deadline and run.poll() is None and BANNER_END not in console:
            time.sleep(0.5)
            log.seek(0)
            console = log.read()
        assert BANNER_END in console, console[-3000:]
        banner = console[console.rindex("Fleethook portal:") : console.index(BANNER_END)]
        yield Stack(copy, env, port, run, log, banner)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
            try:
                run.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        log.close()


def post(url: str, token: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class HealthWatch(threading.Thread):
    """GET /healthz every HEALTH_EVERY_SECONDS; every answer that was not a 200
    (a refused connection, a 5xx) is kept. `quiet` is held for each request, so
    a kill can wait until no health check is in hand: a request inside a process
    that is killed is lost whatever the supervisor does."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.quiet = threading.Lock()
        self.checks = 0
        self.failures: list[str] = []
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.is_set():
            with self.quiet:
                try:
                    status, body = fetch(self.url)
                    if status != 200:
                        self.failures.append(f"{status} {body[:200]}")
                except OSError as error:
                    self.failures.append(repr(error))
                self.checks += 1
            time.sleep(HEALTH_EVERY_SECONDS)


def stack_processes(stack: Stack) -> dict[str, psutil.Process]:
    """The stack's processes by role: devstack's children (not, say, the scheduler
    process the worker forks, whose command line is the worker's), and the
    gunicorn master's first worker."""
    found: dict[str, psutil.Process] = {}
    for process in psutil.Process(stack.make.pid).children():
        command = " ".join(process.cmdline())
        if "rq cron" in command:
            found["sweeper"] = process
        elif "rq worker" in command:
            found["worker" if "--with-scheduler" in command else "retry worker"] = process
        elif "gunicorn" in command:
            found["portal"] = process
    portal_workers = found["portal"].children()
    assert portal_workers, "gunicorn has no workers"
    found["gunicorn worker"] = portal_workers[0]
    return found


def outbox_state(stack: Stack) -> list[tuple[Any, ...]]:
    """The stack's messages by target and status, and each target's last error:
    what a failure message needs to say where the missing ones are."""
    with closing(sqlite3.connect(stack.clone / "instance" / "fleethook.db")) as database:
        return database.execute(
            "SELECT m.target_id, m.status, count(*), t.status, t.last_error"
            " FROM outbox_message m JOIN target t ON t.id = m.target_id"
            " GROUP BY m.target_id, m.status"
        ).fetchall()


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def test_killed_workers_sweeper_and_portal_worker_restart_and_nothing_is_lost(
    stack: Stack, receiver: ReceiverServer
):
    started = time.monotonic()
    token = re.search(r"API token:\s+(fh_\S+)", stack.banner).group(1)
    api = f"{stack.base}/api/v1"
    status, webhook = post(
        f"{api}/webhooks",
        token,
        {"event_type": "heartbeat", "name": "Recovery", "url": receiver.url("/ok")},
    )
    assert status == 201, webhook
    status, listing = fetch(f"{api}/vehicles", token)
    vins = [vehicle["vin"] for vehicle in json.loads(listing)["vehicles"]]
    assert len(vins) == 5, listing

    health = HealthWatch(f"{stack.base}/healthz")
    health.start()
    # Every process the stack ran, the killed ones' leftovers included.
    seen = set(psutil.Process(stack.make.pid).children(recursive=True))
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sent: set[tuple[str, str]] = set()
    killed: dict[str, int] = {}
    for batch in range(BATCHES):
        at = (first + timedelta(seconds=batch)).isoformat().replace("+00:00", "Z")
        reports = [{"vin": vin, "type": "heartbeat", "time": at} for vin in vins]
        status, answer = post(f"{api}/telemetry", token, {"reports": reports})
        assert status == 202 and answer["messages"] == len(vins), (status, answer)
        sent |= {(vin, at) for vin in vins}
        if batch in KILLS:
            role = KILLS[batch]
            with health.quiet:
                victim = stack_processes(stack)[role]
                killed.setdefault(role, victim.pid)
                seen |= set(psutil.Process(stack.make.pid).children(recursive=True))
                victim.kill()
                victim.wait(5)
        time.sleep(BATCH_EVERY_SECONDS)

    def delivered() -> set[tuple[str, str]]:
        bodies = [json.loads(r.body) for r in receiver.requests_to("/ok")]
        return {(b["data"]["vehicle"]["vin"], b["timestamp"]) for b in bodies}

    everything = wait_for(lambda: delivered() >= sent, DELIVERED_WITHIN_SECONDS)
    health.finished.set()
    health.join()
    console = stack.console()
    assert everything, (len(sent - delivered()), outbox_state(stack), console[-3000:])

    # Every event once by its webhook-id; a drain killed after sending and before
    # marking sends its messages again (at-least-once), under the same ids.
    ids = Counter(r.headers["webhook-id"] for r in receiver.requests_to("/ok"))
    assert len(ids) == len(sent) == BATCHES * len(vins)
    assert delivered() == sent

    assert health.checks > 50 and health.failures == [], health.failures
    for role in ("worker", "retry worker", "sweeper"):
        assert f"devstack: {role} (pid {killed[role]}) died (signal 9, SIGKILL); restarting" in (
            console
        ), console[-3000:]
    # The worker died twice within a minute: its second restart waits longer.
    assert re.search(
        r"devstack: worker \(pid \d+\) died \(signal 9, SIGKILL\); restarting in 2 s", console
    ), console[-3000:]
    assert f"Worker (pid:{killed['gunicorn worker']}) was sent SIGKILL!" in console
    now = stack_processes(stack)
    assert now["worker"].pid != killed["worker"]
    assert killed["gunicorn worker"] not in [p.pid for p in now["portal"].children()]
    assert len(now["portal"].children()) == 2  # gunicorn booted a new worker
    assert time.monotonic() - started < 90

    seen |= set(psutil.Process(stack.make.pid).children(recursive=True))
    os.killpg(stack.make.pid, signal.SIGINT)  # Ctrl-C stops everything, restarted or not
    stack.make.wait(timeout=60)
    left = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]
