"""A fast webhook receiver for benchmarks, in its own process(es) so it never shares
a GIL with the sender being measured.

    with Receiver({"/a": "ok", "/gone": "status:410", "/never": "hang", "/lag": "slow:200"},
                  secrets={"/a": "whsec_..."}) as receiver:
        requests.post(receiver.url + "/a", ...)
        receiver.stats()["/a"]["received"]

The server is an asyncio `Protocol` speaking just enough HTTP/1.1: the request
line, the headers and a Content-Length body, keep-alive and pipelining (answers go
out in request order, so a slow or hung request holds back the ones behind it on
its connection, as HTTP/1.1 requires). What a path does is fixed at start:

    "ok"            200 with a two-byte body
    "status:<code>" that status (e.g. "status:500", "status:410")
    "hang"          read the request and never answer; the connection stays open
    "slow:<ms>"     answer 200 after <ms> milliseconds (a timer: other connections
                    are not held up); "slow:<min>-<max>" a random delay in that range
    "trickle"       send the status line and headers of a 200 at once (Content-Length
                    1,000,000), then one body byte every 100 ms ("trickle:<ms>": every
                    <ms>) until the client goes: the answer never completes in time

`behave(path, behaviour)` changes a path's behaviour while it runs (requests already
hung stay hung).

Unknown paths get 404 (or the `default` behaviour). Every request is recorded
under its path as (webhook-id, arrival time.time()); the arrival time is when the
request's last byte was read. Every `verify_every`-th request of a path that has a
secret is checked with `standardwebhooks` (the first request of each path always
is); failures are counted and the first few messages kept. A webhook-id that comes
again with another body counts as a `body_mismatch` (a redelivery must repeat the
message exactly).

Lanes: a request carrying `fleethook-ordering-key` and `fleethook-sequence` headers
is checked against the lane (that key, at that path) the first time its webhook-id
arrives: the first arrivals of each lane must carry 1, 2, 3, … in that order. A
first arrival with another number counts as `out_of_sequence` (the first few kept
in `order_failures`); redeliveries of an id already seen are not checked again
(at-least-once). The check needs every request of a lane in one process, so it is
made only with `processes` = 1.

The parent talks to the server over a multiprocessing Pipe (stats, reset, stop),
so control traffic never shows up in the counts. With `processes` > 1 several
servers share the port through SO_REUSEPORT (the kernel spreads connections over
them by a hash of the addresses) and `stats()` merges what they saw; duplicates
are counted on the merged ids, so a retry landing on another process still counts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import signal
import socket
import time
from array import array
from collections import deque
from http import HTTPStatus
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, TypedDict

MAX_HEAD = 64 * 1024  # bytes of request line and headers before we give up on a client
MAX_FAILURE_MESSAGES = 10
START_TIMEOUT = 30.0  # seconds for a spawned server to report its port


class PathStats(TypedDict):
    received: int
    unique: int
    duplicates: int
    verified: int  # signatures checked (passed or failed)
    signature_failures: int
    body_mismatches: int  # repeats of a webhook-id with another body
    failures: list[str]  # the first few failure messages, "<webhook-id>: <error>"
    arrivals: list[tuple[str, float]]  # (webhook-id, time.time()), in arrival order
    lanes: int  # distinct fleethook-ordering-key values seen (0: not checked)
    in_sequence: int  # first arrivals whose fleethook-sequence was the lane's next
    out_of_sequence: int  # first arrivals whose fleethook-sequence was not
    order_failures: list[str]  # the first few, "<webhook-id>: <what>"


def _response(status: int, body: bytes, close: bool = False) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body


_BAD_REQUEST = _response(400, b"bad request", close=True)
_HEAD_TOO_LARGE = _response(431, b"headers too large", close=True)
_CHUNKED = _response(501, b"chunked bodies are not supported", close=True)

HANG = -1.0  # a _Path's delay that never ends
TRICKLE_BYTES = 1_000_000  # the Content-Length a trickling answer announces
TRICKLE_HEAD = (
    f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {TRICKLE_BYTES}\r\n\r\n"
).encode("latin-1")


class _Path:
    """One path's behaviour and what it has received (in the server process)."""

    __slots__ = (
        "behaviour",
        "delays",
        "answer",
        "answer_close",
        "webhook",
        "verify_every",
        "ids",
        "times",
        "seen",
        "count",
        "verified",
        "failures",
        "messages",
        "mismatches",
        "trickle",
        "lanes",
        "in_sequence",
        "out_of_sequence",
        "order_messages",
    )

    def __init__(
        self, behaviour: str, secret: str | None, verify_every: int, check_order: bool = True
    ) -> None:
        # lane → the last fleethook-sequence that arrived first; None: not checked
        self.lanes: dict[bytes, int] | None = {} if check_order else None
        self.behave(behaviour)
        self.webhook: Any = None
        if secret:
            from standardwebhooks.webhooks import Webhook

            self.webhook = Webhook(secret)
        self.verify_every = max(1, verify_every)
        self.reset()

    def behave(self, behaviour: str) -> None:
        delays = (0.0, 0.0)  # seconds before answering, at least and at most
        status = 200
        trickle = 0.0  # seconds between the body bytes of a trickling answer
        if behaviour == "ok":
            pass
        elif behaviour == "hang":
            delays = (HANG, HANG)
        elif behaviour == "trickle" or behaviour.startswith("trickle:"):
            trickle = int(behaviour.partition(":")[2] or 100) / 1000
            if trickle <= 0:
                raise ValueError(f"a trickle needs a pause between bytes: {behaviour!r}")
        elif behaviour.startswith("status:"):
            status = int(behaviour.removeprefix("status:"))
        elif behaviour.startswith("slow:"):
            low, _, high = behaviour.removeprefix("slow:").partition("-")
            delays = (int(low) / 1000, int(high or low) / 1000)
            if delays[1] < delays[0]:
                raise ValueError(f"an empty range: {behaviour!r}")
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {behaviour!r}")
        body = b"ok" if status < 300 else b"error"
        self.behaviour = behaviour
        self.delays = delays
        self.trickle = trickle
        self.answer = TRICKLE_HEAD if trickle else _response(status, body)
        self.answer_close = TRICKLE_HEAD if trickle else _response(status, body, close=True)

    @property
    def delay(self) -> float:
        low, high = self.delays
        return low if low == high else random.uniform(low, high)

    def reset(self) -> None:
        self.ids: list[bytes] = []
        # distinct ids (so polling need not ship the lists) → a digest of the body
        self.seen: dict[bytes, int] = {}
        self.times = array("d")
        self.count = 0
        self.verified = 0
        self.failures = 0
        self.mismatches = 0
        self.messages: list[str] = []
        if self.lanes is not None:
            self.lanes = {}
        self.in_sequence = 0
        self.out_of_sequence = 0
        self.order_messages: list[str] = []

    def sequence(self, lane: bytes, number: bytes, webhook_id: bytes) -> None:
        """A first arrival in `lane` numbered `number`: the lane's next, or counted."""
        assert self.lanes is not None
        expected = self.lanes.get(lane, 0) + 1
        try:
            got = int(number)
        except ValueError:
            got = -1
        if got == expected:
            self.in_sequence += 1
        else:
            self.out_of_sequence += 1
            if len(self.order_messages) < MAX_FAILURE_MESSAGES:
                self.order_messages.append(
                    f"{webhook_id.decode('latin-1') or '(no webhook-id)'}: lane "
                    f"{lane.decode('latin-1')} got fleethook-sequence "
                    f"{number.decode('latin-1')!r} where {expected} was next"
                )
        # Judge what follows against this one, so one swap is not a cascade.
        self.lanes[lane] = max(got, self.lanes.get(lane, 0))

    def check(self, head: bytes, body: bytes, webhook_id: bytes) -> None:
        """Verify one request's signature, counting a failure."""
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self.verified += 1
        try:
            self.webhook.verify(body, headers, json_parse=False)
        except Exception as error:  # WebhookVerificationError, or a body that is not UTF-8
            self.failures += 1
            if len(self.messages) < MAX_FAILURE_MESSAGES:
                shown = webhook_id.decode("latin-1") or "(no webhook-id)"
                self.messages.append(f"{shown}: {type(error).__name__}: {error}")

    def snapshot(self, arrivals: bool) -> dict[str, Any]:
        return {
            "received": self.count,
            "unique": len(self.seen),
            "verified": self.verified,
            "signature_failures": self.failures,
            "body_mismatches": self.mismatches,
            "failures": list(self.messages),
            "lanes": len(self.lanes) if self.lanes is not None else 0,
            "in_sequence": self.in_sequence,
            "out_of_sequence": self.out_of_sequence,
            "order_failures": list(self.order_messages),
            "ids": list(self.ids) if arrivals else None,
            "times": self.times.tobytes() if arrivals else None,
        }


class _Server:
    """The state shared by a server process's connections."""

    def __init__(
        self,
        paths: dict[str, str],
        secrets: dict[str, str],
        verify_every: int,
        default: str | None,
        check_order: bool = True,
    ) -> None:
        self.verify_every = verify_every
        self.default = default or "status:404"
        self.check_order = check_order
        self.paths: dict[bytes, _Path] = {
            path.encode(): _Path(behaviour, secrets.get(path), verify_every, check_order)
            for path, behaviour in paths.items()
        }
        self.connections: set[_Connection] = set()
        self.accepted = 0  # connections since the start or the last reset

    def path(self, target: bytes) -> _Path:
        known = self.paths.get(target)
        if known is None:
            # an unlisted path: recorded under its own name (without query string)
            target = target.partition(b"?")[0]
            known = self.paths.get(target)
            if known is None:
                known = self.paths[target] = _Path(
                    self.default, None, self.verify_every, self.check_order
                )
        return known

    def reset(self) -> None:
        self.accepted = 0
        for path in self.paths.values():
            path.reset()

    def snapshot(self, arrivals: bool) -> dict[str, dict[str, Any]]:
        return {
            path.decode("latin-1"): record.snapshot(arrivals) for path, record in self.paths.items()
        }


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buffer", "queue", "closing", "loop", "drip")

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buffer = bytearray()
        # Answers not yet written, in request order: [bytes or None, close after?].
        # Empty unless a slow or hung request is holding the connection back.
        # A trickling answer holds its slot for good: [None, close, (head, pause)].
        self.queue: deque[list[Any]] = deque()
        self.closing = False  # a "Connection: close" request was read
        self.drip: asyncio.TimerHandle | None = None  # the next byte of a trickle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.server.connections.add(self)
        self.server.accepted += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.queue.clear()
        if self.drip is not None:
            self.drip.cancel()
            self.drip = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buffer = self.buffer
        buffer += data
        now = time.time()  # every request completed by this read arrived now
        out: list[bytes] = []
        position = 0
        size = len(buffer)
        while True:
            end = buffer.find(b"\r\n\r\n", position)
            if end < 0:
                if size - position > MAX_HEAD:
                    return self._fail(out, _HEAD_TOO_LARGE)
                break
            head = bytes(buffer[position:end])
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 17)
                try:
                    length = int(head[at + 17 : stop if stop >= 0 else None])
                except ValueError:
                    length = -1
                if length < 0:
                    return self._fail(out, _BAD_REQUEST)
            elif b"\r\ntransfer-encoding:" in lower:
                return self._fail(out, _CHUNKED)
            body_start = end + 4
            if size < body_start + length:
                break  # the rest of the body has not come yet
            position = body_start + length

            line_end = head.find(b"\r\n")
            request_line = head[:line_end] if line_end >= 0 else head
            parts = request_line.split(b" ")
            if len(parts) != 3:
                return self._fail(out, _BAD_REQUEST)
            webhook_id = b""
            at = lower.find(b"\r\nwebhook-id:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 13)
                webhook_id = head[at + 13 : stop if stop >= 0 else None].strip()
            close = parts[2] == b"HTTP/1.0"
            at = lower.find(b"\r\nconnection:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 13)
                value = lower[at + 13 : stop if stop >= 0 else None].strip()
                close = value == b"close" or (close and value != b"keep-alive")

            record = self.server.path(parts[1])
            record.ids.append(webhook_id)
            digest = hash(bytes(buffer[body_start:position]))
            first = webhook_id not in record.seen
            if record.seen.setdefault(webhook_id, digest) != digest:
                record.mismatches += 1
            if first and record.lanes is not None:
                at = lower.find(b"\r\nfleethook-ordering-key:")
                if at >= 0:
                    stop = lower.find(b"\r\n", at + 25)
                    lane = head[at + 25 : stop if stop >= 0 else None].strip()
                    at = lower.find(b"\r\nfleethook-sequence:")
                    number = b""
                    if at >= 0:
                        stop = lower.find(b"\r\n", at + 21)
                        number = head[at + 21 : stop if stop >= 0 else None].strip()
                    record.sequence(lane, number, webhook_id)
            record.times.append(now)
            if record.webhook is not None and record.count % record.verify_every == 0:
                record.check(head, bytes(buffer[body_start:position]), webhook_id)
            record.count += 1

            answer = record.answer_close if close else record.answer
            if record.trickle:
                self.queue.append([None, close, (answer, record.trickle)])
                if close:
                    self.closing = True
                    break
                continue
            delay = record.delay
            if delay == 0.0 and not self.queue:
                out.append(answer)
            else:
                slot: list[Any] = [None, close]
                if delay == 0.0:
                    slot[0] = answer
                self.queue.append(slot)
                if delay > 0:
                    self.loop.call_later(delay, self._ready, slot, answer)
            if close:
                self.closing = True
                break
        del buffer[:position]
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self.queue:
            self._trickle_if_first()
        elif self.closing:
            self.transport.close()

    def _ready(self, slot: list[Any], answer: bytes) -> None:
        """A slow answer's time has come: write it and any answers queued behind."""
        slot[0] = answer
        out: list[bytes] = []
        close = False
        while self.queue and self.queue[0][0] is not None:
            answer, close = self.queue.popleft()
            out.append(answer)
            if close:
                break
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()
                return
        self._trickle_if_first()

    def _trickle_if_first(self) -> None:
        """A trickling answer whose turn has come: its head now, then its bytes."""
        if self.drip is not None or not self.queue or self.transport.is_closing():
            return
        trickle = self.queue[0][2] if len(self.queue[0]) > 2 else None
        if trickle is None:
            return
        head, pause = trickle
        self.transport.write(head)
        self.drip = self.loop.call_later(pause, self._drip, pause, TRICKLE_BYTES)

    def _drip(self, pause: float, left: int) -> None:
        if self.transport.is_closing():
            self.drip = None
            return
        self.transport.write(b".")
        # (Never in a benchmark: 1,000,000 bytes take 28 hours at 100 ms each.)
        self.drip = self.loop.call_later(pause, self._drip, pause, left - 1) if left > 1 else None

    def _fail(self, out: list[bytes], answer: bytes) -> None:
        self.closing = True
        self.buffer.clear()
        if self.queue:  # an earlier answer is pending; give up on the connection
            self.transport.abort()
            return
        self.transport.write(b"".join([*out, answer]))
        self.transport.close()


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _serve(
    control: Connection,
    port: int,
    paths: dict[str, str],
    secrets: dict[str, str],
    verify_every: int,
    default: str | None,
    check_order: bool = True,
) -> None:
    """A server process: listen, report the port, then serve until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        state = _Server(paths, secrets, verify_every, default, check_order)
        sock = _listen(port)
    except Exception as error:
        control.send(("error", f"{type(error).__name__}: {error}"))
        return
    asyncio.run(_main(control, sock, state))


async def _main(control: Connection, sock: socket.socket, state: _Server) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(state), sock=sock, backlog=1024)
    stopped = loop.create_future()

    def on_control() -> None:
        try:
            command, argument = control.recv()
        except (EOFError, OSError):  # the parent is gone
            command, argument = "stop", None
        if command == "stats":
            control.send(state.snapshot(bool(argument)))
        elif command == "connections":
            control.send(state.accepted)
        elif command == "reset":
            state.reset()
            control.send("reset")
        elif command == "behave":
            path, behaviour = argument
            state.path(path.encode()).behave(behaviour)
            control.send("behave")
        elif command == "stop":
            if not stopped.done():
                stopped.set_result(None)
        else:
            control.send(("error", f"unknown command {command!r}"))

    loop.add_reader(control.fileno(), on_control)
    control.send(("ready", sock.getsockname()[1]))
    await stopped
    loop.remove_reader(control.fileno())
    server.close()
    for connection in list(state.connections):
        connection.transport.abort()


class Receiver:
    """The parent's handle on the benchmark receiver processes.

    paths: {path: behaviour}, e.g. {"/w/1": "ok", "/bad": "status:500"};
    secrets: {path: "whsec_..."}; paths without one are not verified;
    verify_every: check every Nth request of a path (1: all);
    processes: server processes sharing the port (SO_REUSEPORT); lanes are checked
        only with one (a lane's requests may reach two processes);
    default: the behaviour of unlisted paths (None: 404).
    """

    def __init__(
        self,
        paths: dict[str, str],
        secrets: dict[str, str] | None = None,
        verify_every: int = 10,
        processes: int = 1,
        default: str | None = None,
    ) -> None:
        for behaviour in [*paths.values(), *([default] if default else [])]:
            _Path(behaviour, None, 1)  # fail here, not in the server process
        unknown = set(secrets or {}) - set(paths)
        if unknown:
            raise ValueError(f"secrets for paths that are not served: {sorted(unknown)}")
        self.paths = dict(paths)
        self.secrets = dict(secrets or {})
        self.verify_every = verify_every
        self.processes = processes
        self.default = default
        self.port = 0
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:41234 (add the path)."""
        if not self.port:
            raise RuntimeError("the receiver is not started")
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def start(self) -> Receiver:
        if self._workers:
            return self
        context = multiprocessing.get_context("spawn")
        try:
            for _ in range(self.processes):
                parent_end, child_end = context.Pipe()
                process = context.Process(
                    target=_serve,
                    args=(
                        child_end,
                        self.port,
                        self.paths,
                        self.secrets,
                        self.verify_every,
                        self.default,
                        self.processes == 1,
                    ),
                    name="bench-receiver",
                    daemon=True,
                )
                process.start()
                child_end.close()
                self._workers.append((process, parent_end))
                if not parent_end.poll(START_TIMEOUT):
                    raise RuntimeError("the receiver process did not start")
                try:
                    status, value = parent_end.recv()
                except EOFError:
                    status, value = "error", f"it exited (exit code {process.exitcode})"
                if status != "ready":
                    raise RuntimeError(f"the receiver process failed: {value}")
                self.port = value  # the first one's; the others join it
        except BaseException:
            self.stop()
            raise
        return self

    def _ask(self, command: str, argument: Any = None) -> list[Any]:
        if not self._workers:
            raise RuntimeError("the receiver is not started")
        for _, connection in self._workers:
            connection.send((command, argument))
        return [connection.recv() for _, connection in self._workers]

    def stats(self, arrivals: bool = True) -> dict[str, PathStats]:
        """Per path, merged over the server processes. Without `arrivals` the
        (webhook-id, time) lists are left empty and nothing big crosses the pipe:
        cheap enough to poll, and it barely pauses the server. (With several
        processes and no arrivals, `unique` sums each process's distinct ids, so a
        retry that reached another process over a new connection counts twice.)"""
        merged: dict[str, PathStats] = {}
        columns: dict[str, tuple[list[str], array[float]]] = {}
        for snapshot in self._ask("stats", arrivals):
            for path, record in snapshot.items():
                into = merged.setdefault(
                    path,
                    PathStats(
                        received=0,
                        unique=0,
                        duplicates=0,
                        verified=0,
                        signature_failures=0,
                        body_mismatches=0,
                        failures=[],
                        arrivals=[],
                        lanes=0,
                        in_sequence=0,
                        out_of_sequence=0,
                        order_failures=[],
                    ),
                )
                into["received"] += record["received"]
                into["unique"] += record["unique"]
                into["duplicates"] = into["received"] - into["unique"]
                into["verified"] += record["verified"]
                into["signature_failures"] += record["signature_failures"]
                into["body_mismatches"] += record["body_mismatches"]
                room = MAX_FAILURE_MESSAGES - len(into["failures"])
                into["failures"].extend(record["failures"][:room])
                into["lanes"] += record["lanes"]
                into["in_sequence"] += record["in_sequence"]
                into["out_of_sequence"] += record["out_of_sequence"]
                room = MAX_FAILURE_MESSAGES - len(into["order_failures"])
                into["order_failures"].extend(record["order_failures"][:room])
                if arrivals:
                    ids, times = columns.setdefault(path, ([], array("d")))
                    ids.extend(i.decode("latin-1") for i in record["ids"])
                    times.frombytes(record["times"])
        for path, (ids, times) in columns.items():
            pairs = list(zip(ids, times, strict=True))
            into = merged[path]
            into["arrivals"] = pairs
            if self.processes > 1:
                pairs.sort(key=lambda pair: pair[1])
                into["unique"] = len(set(ids))
                into["duplicates"] = len(ids) - into["unique"]
        return merged

    def counts(self) -> dict[str, int]:
        """Requests received per path (a cheap poll; see also stats(arrivals=False))."""
        return {path: record["received"] for path, record in self.stats(False).items()}

    def connections(self) -> int:
        """Connections accepted since the start or the last reset (keep-alive
        shows as few connections for many requests)."""
        return sum(self._ask("connections"))

    def reset(self) -> None:
        """Forget what was received (behaviours and open connections stay)."""
        self._ask("reset")

    def behave(self, path: str, behaviour: str) -> None:
        """From now on answer `path` this way (see the module docstring)."""
        _Path(behaviour, None, 1)  # fail here, not in the server process
        self._ask("behave", (path, behaviour))

    def stop(self) -> None:
        workers, self._workers = self._workers, []
        for _process, connection in workers:
            try:
                connection.send(("stop", None))
            except OSError:
                pass
        for process, connection in workers:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
            connection.close()
        self.port = 0

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_workers", None):
            self.stop()
