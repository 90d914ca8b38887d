"""The benchmark receiver's server (bench/receiver.py starts it): an asyncio
Protocol speaking just enough HTTP/1.1, recording every request under its path,
checking signatures and lanes, and answering as the path's behaviour says."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time
from array import array
from collections import deque
from http import HTTPStatus
from multiprocessing.connection import Connection
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


def http_response(status: int, body: bytes, close: bool = False) -> bytes:
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


_BAD_REQUEST = http_response(400, b"bad request", close=True)
_HEAD_TOO_LARGE = http_response(431, b"headers too large", close=True)
_CHUNKED = http_response(501, b"chunked bodies are not supported", close=True)

HANG = -1.0  # a PathBehaviour's delay that never ends
TRICKLE_BYTES = 1_000_000  # the Content-Length a trickling answer announces
TRICKLE_HEAD = (
    f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {TRICKLE_BYTES}\r\n\r\n"
).encode("latin-1")


class PathBehaviour:
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
        self.answer = TRICKLE_HEAD if trickle else http_response(status, body)
        self.answer_close = TRICKLE_HEAD if trickle else http_response(status, body, close=True)

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
        self.paths: dict[bytes, PathBehaviour] = {
            path.encode(): PathBehaviour(behaviour, secrets.get(path), verify_every, check_order)
            for path, behaviour in paths.items()
        }
        self.connections: set[_Connection] = set()
        self.accepted = 0  # connections since the start or the last reset

    def path(self, target: bytes) -> PathBehaviour:
        known = self.paths.get(target)
        if known is None:
            # an unlisted path: recorded under its own name (without query string)
            target = target.partition(b"?")[0]
            known = self.paths.get(target)
            if known is None:
                known = self.paths[target] = PathBehaviour(
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


def serve(
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
