"""The running system the browser tests drive: the real app behind a real HTTP
server on a free loopback port, and a real `rq worker` process delivering what the
app queues — the two halves `make run` starts, without the demo around them — and
`Live`, all of it with the account's API client, as the tests get it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests
from flask import Flask
from rq import Worker
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from devstack.supervisor import stop_process_groups
from tests.fakes.fleetio import FleetioFake
from tests.fakes.salesforce import FakeSalesforce
from tests.receiver import ReceiverServer

ROOT = Path(__file__).resolve().parents[2]
RQ = str(Path(sys.executable).parent / "rq")
WORKER_START_SECONDS = 30.0


class LiveServer:
    """The app served by Werkzeug's threaded server in a thread of this process,
    so the tests' own fixtures (the database, the fakes) are a function call away.

    Every 5xx answer and every traceback the server logs lands in `errors`: the
    browser shows a user an error page, the tests show the engineer the cause."""

    def __init__(self, app: Flask) -> None:
        self.app = app  # for setting a scene no API reaches (a long last error, say)
        self.errors: list[str] = []
        errors = self.errors

        class Handler(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                # No access log; a 5xx is worth a line.
                if str(code).isdigit() and int(code) >= 500:
                    errors.append(f"{code} {self.command} {self.path}")

        class Server(ThreadedWSGIServer):
            daemon_threads = True
            block_on_close = False  # keep-alive connections of the browser end with it

            def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
                if type == "error":
                    errors.append(message % args if args else message)

        self._server = Server("127.0.0.1", 0, app, handler=Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()


class RqWorker:
    """One `rq worker` process with `worker.FleethookWorker` on the given queues, as
    production runs it (tests/test_workers.py launches them the same way). Its output
    goes to a log file whose tail a failing delivery test shows."""

    def __init__(
        self, redis_url: str, queues: list[str], name: str, env: dict[str, str], log: Path
    ) -> None:
        self.redis_url = redis_url
        self.name = name
        self.log = log
        self._command = [
            RQ,
            "worker",
            "--worker-class",
            "worker.FleethookWorker",
            "--url",
            redis_url,
            "--name",
            name,
            *queues,
        ]
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RqWorker:
        with self.log.open("wb") as output:
            self._process = subprocess.Popen(
                self._command,
                cwd=ROOT,
                env=self._env,
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_until_listening(self, timeout: float = WORKER_START_SECONDS) -> None:
        """Until the worker has registered itself in Redis (it imports and builds the
        app first, a second or two)."""
        assert self._process is not None
        connection = redis.Redis.from_url(self.redis_url)
        key = f"{Worker.redis_worker_namespace_prefix}{self.name}"
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"rq worker exited ({self._process.returncode}):\n" + self.log_tail()
                    )
                if Worker.find_by_key(key, connection=connection) is not None:
                    return
                time.sleep(0.1)
            raise RuntimeError(f"rq worker not listening after {timeout:.0f} s:\n{self.log_tail()}")
        finally:
            connection.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no worker log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._process is not None:
            stop_process_groups([self._process])
            self._process = None


class Api:
    """The REST API with the account's token, for setting the scene fast."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(headers)

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base_url + path, timeout=10, **kwargs)
        assert response.status_code == expect, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def post(self, path: str, json: Any, expect: int = 201) -> Any:
        return self.call("POST", path, expect, json=json)

    def get(self, path: str, expect: int = 200) -> Any:
        return self.call("GET", path, expect)

    def close(self) -> None:
        self.session.close()


@dataclass
class Live:
    """The running system, and what the tests need to reach into it."""

    url: str
    api: Api
    server: LiveServer
    worker: RqWorker
    receiver: ReceiverServer
    fleetio: FleetioFake
    salesforce: dict[str, FakeSalesforce]  # the login hosts: "production", "sandbox"
    account_name: str
    email: str
    password: str
