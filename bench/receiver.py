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

import multiprocessing
from array import array
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from bench.receiver_server import (
    MAX_FAILURE_MESSAGES,
    START_TIMEOUT,
    PathBehaviour,
    PathStats,
    serve,
)


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
            PathBehaviour(behaviour, None, 1)  # fail here, not in the server process
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
                    target=serve,
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
        PathBehaviour(behaviour, None, 1)  # fail here, not in the server process
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
