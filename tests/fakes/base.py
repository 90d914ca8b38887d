"""What every fake provider shares: a threaded HTTP server on loopback that routes
requests to handler methods, records every request as the provider would see it
(method, path, query, headers, JSON or form body), and can be told to answer the
next requests with an error (401, 422, 429 with Retry-After, 500) or to drop them,
and throttles at the provider's documented limit (`throttle`): past it, the
provider's own 429 (`throttled`)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Failure:
    status: int
    times: int
    body: Any
    headers: dict[str, str]
    path: str | None  # only requests whose path contains this


Route = tuple[str, re.Pattern[str], Callable[..., Answer]]


class FakeProvider:
    """Subclasses add routes with `self.route("GET", r"/v1/vehicles", handler)`; a
    handler gets the Request and the pattern's groups and returns an Answer.
    Unmatched requests answer 404 like the real APIs."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._routes: list[Route] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        # The documented limit: at most `limit` requests in any `window` seconds
        # (None: not throttled); the times of the requests it counted, and the 429s.
        self.limit: int | None = None
        self.window = 60.0
        self._counted: list[float] = []
        self.throttled_count = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                headers = CaseInsensitiveDict(self.headers.items())
                request = Request(
                    self.command, url.path, parse_qs(url.query), headers, body, time.time()
                )
                answer = fake._dispatch(request)
                payload = (
                    answer.body
                    if isinstance(answer.body, bytes)
                    else (b"" if answer.body is None else json.dumps(answer.body).encode())
                )
                self.send_response(answer.status)
                if not isinstance(answer.body, bytes) and answer.body is not None:
                    self.send_header("Content-Type", "application/json")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, method: str, pattern: str, handler: Callable[..., Answer]) -> None:
        self._routes.append((method, re.compile(pattern + "$"), handler))

    def fail_next(
        self,
        status: int,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` requests (whose path contains `path`) with `status`."""
        with self._lock:
            self._failures.append(
                _Failure(status, times, body or {"error": f"HTTP {status}"}, headers or {}, path)
            )

    def throttle(self, limit: int | None, window: float = 60.0) -> None:
        """Answer `throttled` to any request past `limit` in a sliding `window`."""
        with self._lock:
            self.limit, self.window, self._counted = limit, window, []

    def throttled(self, retry_after: float, request: Request) -> Answer:
        """The provider's answer past its limit; subclasses give the documented one."""
        return Answer(
            429,
            {"error": "Too Many Requests"},
            {"Retry-After": str(max(1, round(retry_after + 0.5)))},
        )

    def _over_limit(self, request: Request) -> Answer | None:
        """Count the request against the limit; the 429 if it is over (not counted)."""
        if self.limit is None:
            return None
        now = time.monotonic()
        self._counted = [t for t in self._counted if t > now - self.window]
        if len(self._counted) >= self.limit:
            self.throttled_count += 1
            return self.throttled(self._counted[0] + self.window - now, request)
        self._counted.append(now)
        return None

    def received(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The requests recorded so far, optionally only those of a method and path."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path is None or re.fullmatch(path, r.path))
            ]

    def _dispatch(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            for failure in self._failures:
                if failure.times > 0 and (failure.path is None or failure.path in request.path):
                    failure.times -= 1
                    return Answer(failure.status, failure.body, failure.headers)
            over = self._over_limit(request)
        if over is not None:
            return over
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if method == request.method and match:
                return handler(request, *match.groups())
        return Answer(404, {"error": "Not found"})

    def authenticate(self, request: Request) -> Answer | None:
        """None if the request carries valid credentials, else the provider's refusal."""
        return None
