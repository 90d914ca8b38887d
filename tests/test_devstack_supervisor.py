"""`make run`'s supervisor (devstack/supervisor.py) on small real processes: one that dies is
started again after 1, 2, 4 … 30 s while it keeps dying, and after 1 s again once
it has stayed up; each death is logged with its pid and how it ended; the simulator
is not restarted; and stopping leaves nothing of any process group behind.

The clock is passed in (`check(now)`), so no test waits for a backoff."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from devstack.stack import wait_until_healthy
from devstack.supervisor import STAYED_UP_SECONDS, ChildProcess, Supervisor

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
# A leader with a child in its process group, like gunicorn and its workers.
FAMILY = ["sh", "-c", "sleep 60 & wait"]


def wait_dead(child: ChildProcess) -> None:
    child.started_process.wait(10)


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    running = Supervisor()
    yield running
    running.stop()


def test_a_child_that_keeps_dying_restarts_later_each_time_up_to_30_s(supervisor, capsys):
    child = supervisor.start(ChildProcess("crasher", CRASH, os.environ))
    delays = []
    for _ in range(7):
        pid = child.pid
        wait_dead(child)
        now = child.started_at + 0.5
        child.check(now)  # noticed: restart scheduled
        assert child.pid == pid and child.restart_at is not None
        delays.append(child.restart_at - now)
        line = capsys.readouterr().out
        assert line == (
            f"devstack: crasher (pid {pid}) died (exit code 3); "
            f"restarting in {child.restart_delay:g} s\n"
        )
        child.check(child.restart_at - 0.01)  # not yet
        assert child.pid == pid
        child.check(child.restart_at)
        assert child.pid != pid
        assert capsys.readouterr().out == f"devstack: crasher restarted (pid {child.pid})\n"
    assert delays == [1, 2, 4, 8, 16, 30, 30]


def test_after_staying_up_a_minute_the_next_restart_is_quick_again(supervisor, capsys):
    child = supervisor.start(ChildProcess("crasher", CRASH, os.environ))
    for _ in range(3):  # 1, 2, 4
        wait_dead(child)
        child.check(child.started_at)
        child.check(child.restart_at)
    wait_dead(child)
    # A moment past the minute: (t + 60) - t is 59.9999… for some floats t.
    child.check(child.started_at + STAYED_UP_SECONDS + 0.001)
    assert child.restart_delay == 1
    assert "restarting in 1 s" in capsys.readouterr().out


def test_a_killed_child_is_named_with_its_signal_and_its_group_goes_before_it_restarts(
    supervisor, capsys
):
    child = supervisor.start(ChildProcess("portal", FAMILY, os.environ))
    pid = child.pid
    time.sleep(0.3)  # the shell has started its sleep
    leftovers = [p for p in group_members(pid) if p.pid != pid]
    assert leftovers, "the shell's child should be in its group"
    os.kill(pid, signal.SIGKILL)
    wait_dead(child)
    child.check(time.monotonic())
    assert f"devstack: portal (pid {pid}) died (signal 9, SIGKILL); restarting in 1 s" in (
        capsys.readouterr().out
    )
    psutil.wait_procs(leftovers, timeout=5)  # SIGTERMed: they may finish their work
    assert not any(p.is_running() for p in leftovers)
    child.check(child.restart_at)
    assert child.running and child.pid != pid


def test_the_simulator_is_not_restarted(supervisor, capsys):
    child = supervisor.start(ChildProcess("simulator", CRASH, os.environ, restart=False))
    pid = child.pid
    wait_dead(child)
    supervisor.check()
    supervisor.check()
    assert capsys.readouterr().out == (
        f"devstack: simulator (pid {pid}) died (exit code 3); not restarted, "
        "the rest keeps running\n"
    )
    assert child.ended and not child.running


def test_stop_ends_every_process_and_its_group(supervisor):
    children = [
        supervisor.start(ChildProcess(name, FAMILY, os.environ, stops_last=name == "redis"))
        for name in ("worker", "sweeper", "redis")
    ]
    time.sleep(0.3)
    members = [p for child in children for p in group_members(child.pid)]
    assert len(members) == 6
    supervisor.stop()
    _, alive = psutil.wait_procs(members, timeout=5)
    assert alive == []


def test_a_portal_that_cannot_start_stops_the_stack_at_once():
    supervisor = Supervisor()
    portal = supervisor.start(ChildProcess("portal", CRASH, os.environ))
    started = time.monotonic()
    healthy = wait_until_healthy("http://127.0.0.1:9/healthz", portal, supervisor)
    assert not healthy and time.monotonic() - started < 5
    supervisor.stop()
