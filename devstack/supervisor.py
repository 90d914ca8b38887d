"""`make run`'s supervisor: its child processes, each started in a process group
of its own; one that dies is started again after a growing delay (and says so),
and stopping stops every group, the ones marked to stop last (Redis) last."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devstack.paths import ROOT

# Seconds a stopping process gets before it is killed.
STOP_GRACE_SECONDS = 10.0
# A process of the stack that dies starts again after 1 s, then 2, 4 … up to 30 s
# while it keeps dying; back to 1 s once it has stayed up a minute. A crash loop
# (a syntax error being fixed, say) neither spins the CPU nor waits long once fixed.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STAYED_UP_SECONDS = 60.0
# How often the supervisor looks at its processes.
SUPERVISE_EVERY_SECONDS = 0.2


def say(line: str) -> None:
    print(f"devstack: {line}", flush=True)


def stop_process_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child's whole process group, wait, then SIGKILL what outlives
    the grace period (an RQ work horse, say). Each child leads its own group."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # stragglers of a group whose leader left
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def how_it_ended(returncode: int) -> str:
    """How a process ended, as "exit code 1" or "signal 9, SIGKILL": what a log
    reader needs to tell a crash from the OOM killer from a clean exit."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {-returncode}, {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


@dataclass
class ChildProcess:
    """One process of the stack, leading its own process group. When it dies it
    is started again after a delay that doubles while it keeps dying — unless
    `restart` is False (the simulator: demo traffic only)."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    restart: bool = True
    # Stopped after the others, which need it while they stop (Redis).
    stops_last: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = 0.0
    restart_at: float | None = None  # set while it waits to start again
    ended: bool = False  # it died and is not restarted

    def start(self) -> ChildProcess:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=dict(self.env), start_new_session=True
        )
        self.started_at = time.monotonic()
        return self

    @property
    def started_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    @property
    def pid(self) -> int:
        return self.started_process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self, now: float) -> None:
        """Notice that it died, and start it again once its delay has passed."""
        if self.process is None or self.ended:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                # Whatever is left of its group (gunicorn's workers of a master that
                # was killed, holding the port) goes first.
                _signal_group(self.process, signal.SIGKILL)
                self.restart_at = None
                self.start()
                say(f"{self.name} restarted (pid {self.process.pid})")
            return
        returncode = self.process.poll()
        if returncode is None:
            return
        died = f"{self.name} (pid {self.process.pid}) died ({how_it_ended(returncode)})"
        if not self.restart:
            say(f"{died}; not restarted, the rest keeps running")
            self.ended = True
            return
        stayed_up = now - self.started_at >= STAYED_UP_SECONDS
        if stayed_up or not self.restart_delay:
            self.restart_delay = RESTART_FIRST_SECONDS
        else:
            self.restart_delay = min(self.restart_delay * 2, RESTART_MAX_SECONDS)
        self.restart_at = now + self.restart_delay
        # The rest of its group may finish what it has in hand meanwhile.
        _signal_group(self.process, signal.SIGTERM)
        say(f"{died}; restarting in {self.restart_delay:g} s")


class Supervisor:
    """The stack's processes: started, restarted when they die, stopped together."""

    def __init__(self) -> None:
        self.children: list[ChildProcess] = []

    def start(self, child: ChildProcess) -> ChildProcess:
        self.children.append(child)
        return child.start()

    def adopt(self, child: ChildProcess) -> ChildProcess:
        """Watch a child started elsewhere (with its `process` set)."""
        child.started_at = time.monotonic()
        self.children.append(child)
        return child

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            child.check(now)

    def stop(self) -> None:
        """Stop them all, the ones the others need (Redis) last."""
        for last in (False, True):
            stop_process_groups(
                [c.process for c in self.children if c.stops_last is last and c.process]
            )
