"""A real HTTP receiver on loopback for delivery tests. The path picks the answer:

    /ok  /no-content  /status/<code>[?retry_after=N]  /redirect  /redirect/<code>?to=<url>
    /hang  /reset  /slow/<ms>  /random/<low ms>-<high ms>
    /trickle[?seconds=N]  (headers, then one byte of body every 0.1 s)
    /big-header?bytes=N  (200 with one response header of N bytes)
    /fail-vehicle/<vehicle id>[?times=N]  (500 for that vehicle's first N events, else 200)

It records every request (path, headers, body) it gets, and the most requests it
had in hand at once."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict


@dataclass
class Received:
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real receivers
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every answer
    server: ReceiverServer

    def log_message(self, *args: object) -> None:
        pass

    def _answer(
        self, status: int, headers: dict[str, str] | None = None, body: bytes = b"ok"
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.server.started()
        try:
            self._post()
        finally:
            self.server.ended()

    def _post(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlsplit(self.path)
        self.server.record(
            Received(url.path, CaseInsensitiveDict(self.headers.items()), body, time.time())
        )
        parts = url.path.strip("/").split("/")
        query = parse_qs(url.query)
        if parts[0] == "ok":
            self._answer(200)
        elif parts[0] == "no-content":
            self._answer(204, body=b"")
        elif parts[0] == "status":
            headers = {"Retry-After": query["retry_after"][0]} if "retry_after" in query else {}
            self._answer(int(parts[1]), headers, b"x" * int(query.get("size", ["2"])[0]))
        elif parts[0] == "redirect" and parts[1:2] != [] and "to" in query:  # /redirect/<code>
            self._answer(int(parts[1]), {"Location": query["to"][0]})
        elif parts[0] == "redirect":
            self._answer(301, {"Location": "/ok"})
        elif parts[0] == "hang":
            time.sleep(float(query.get("seconds", ["3"])[0]))
            self._answer(200)
        elif parts[0] == "reset":
            # SO_LINGER 0: close with a TCP reset instead of a clean FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif parts[0] == "slow":
            time.sleep(int(parts[1]) / 1000)
            self._answer(200)
        elif parts[0] == "random":
            low, high = (int(ms) for ms in parts[1].split("-"))
            time.sleep(random.uniform(low, high) / 1000)
            self._answer(200)
        elif parts[0] == "trickle":
            self._trickle(float(query.get("seconds", ["30"])[0]))
        elif parts[0] == "fail-vehicle":
            vehicle = json.loads(body)["data"]["vehicle"]["id"]
            times = int(query.get("times", ["1000000"])[0])
            if vehicle == int(parts[1]) and self.server.count_failure(vehicle) <= times:
                self._answer(500)
            else:
                self._answer(200)
        elif parts[0] == "big-header":
            self._answer(200, {"X-Big": "a" * int(query["bytes"][0])})
        else:
            self._answer(404)

    def _trickle(self, seconds: float) -> None:
        """A 200 whose body comes one byte at a time: every read gets something,
        so only a deadline for the whole answer ends it."""
        length = int(seconds * 10) + 1
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            for _ in range(length):
                self.wfile.write(b".")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            self.close_connection = True  # the sender gave up


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: more connections at once than that would
    # wait for a SYN retransmit (a second), and miss a short deadline.
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._in_hand = 0
        self.most_at_once = 0
        self._failures: dict[int, int] = {}

    def started(self) -> None:
        with self._lock:
            self._in_hand += 1
            self.most_at_once = max(self.most_at_once, self._in_hand)

    def ended(self) -> None:
        with self._lock:
            self._in_hand -= 1

    def count_failure(self, vehicle: int) -> int:
        with self._lock:
            self._failures[vehicle] = self._failures.get(vehicle, 0) + 1
            return self._failures[vehicle]

    def record(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def requests_to(self, prefix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith(prefix)]


def start_receiver() -> ReceiverServer:
    server = ReceiverServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
