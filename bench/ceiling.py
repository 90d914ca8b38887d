"""The physical ceiling on this machine: how many signed webhook POSTs per second a
plain `requests.Session` keep-alive loop gets through to our benchmark receiver,
with W sender processes, and how many the receiver itself can take.

    .venv/bin/python bench/ceiling.py [--seconds 5] [--workers 1,2]

Every sender POSTs the same bodies: a pool of location events (the catalogue's
example, `events.catalogue.example_event`), each with its own message id, encoded
and signed once with a real secret through `webhooks.wire` (the functions the
delivery worker uses), so the receiver verifies a sample of them exactly as it
does in the throughput scenario. A run fails loudly if a POST is not answered 200,
if the receiver counted a different number of POSTs than were sent, or if a
signature failed.

The receiver's own ceiling is measured with a sender that cannot be the
bottleneck: raw sockets pipelining `depth` ready-made requests at a time on several
connections (one asyncio process), so the figure is what one receiver process
takes when it is the only thing working hard. It is printed a second time with one
request in flight per connection (depth 1), the way delivery workers use it: there
every POST costs the receiver a read and a write system call, and the sender, on
the same two cores, costs as much again, so that figure is a lower bound.

The bodies carry a timestamp signed at start; Standard Webhooks refuses timestamps
older than five minutes, so keep a run well under that.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.receiver import Receiver  # noqa: E402

PATH = "/ceiling"
POOL = 256  # distinct signed messages the senders cycle through
WARMUP = 50  # POSTs per sender before the clock starts
START_TIMEOUT = 60.0  # seconds for the senders to be spawned and warmed up

SignedRequest = tuple[dict[str, str], bytes]


def signed_requests(secret: str, count: int = POOL) -> list[SignedRequest]:
    """`count` signed location events, as the delivery worker would POST them."""
    from events.catalogue import EVENT_TYPES, example_event
    from outbox.models import new_message_id
    from webhooks.wire import ContentType, encode_body, request_headers

    body = encode_body(example_event(EVENT_TYPES["location"]), ContentType.JSON)
    now = int(time.time())
    return [
        (request_headers(ContentType.JSON, new_message_id(), now, body, [secret]), body)
        for _ in range(count)
    ]


def _ceiling_receiver(verify_every: int = 10) -> tuple[Receiver, list[SignedRequest]]:
    from webhooks.wire import new_secret

    secret = new_secret()
    receiver = Receiver({PATH: "ok"}, {PATH: secret}, verify_every=verify_every).start()
    return receiver, signed_requests(secret)


def _check_receiver(receiver: Receiver, sent: int) -> None:
    stats = receiver.stats(arrivals=False)[PATH]
    if stats["received"] != sent:
        raise RuntimeError(f"the receiver counted {stats['received']} POSTs, {sent} were sent")
    if stats["signature_failures"] or not stats["verified"]:
        raise RuntimeError(
            f"{stats['signature_failures']} of {stats['verified']} signatures checked failed: "
            + "; ".join(stats["failures"])
        )


# --- requests.Session senders -------------------------------------------------------


def _session_sender(
    url: str,
    pool: list[SignedRequest],
    seconds: float,
    barrier: Barrier,
    results: Any,  # multiprocessing Queue of (posts, seconds, total posts incl. warm-up)
) -> None:
    import requests

    session = requests.Session()
    session.trust_env = False  # as the delivery worker's session: no proxy lookups per POST
    sent = 0
    try:
        for headers, body in pool[:WARMUP]:
            response = session.post(url, data=body, headers=headers)
            sent += 1
            if response.status_code != 200:
                raise RuntimeError(f"warm-up POST answered {response.status_code}")
        barrier.wait(START_TIMEOUT)
        posts = 0
        size = len(pool)
        began = time.perf_counter()
        deadline = began + seconds
        while True:
            headers, body = pool[posts % size]
            response = session.post(url, data=body, headers=headers)
            posts += 1
            if response.status_code != 200:
                raise RuntimeError(f"POST answered {response.status_code}")
            if posts % 16 == 0 and time.perf_counter() >= deadline:
                break
        results.put((posts, time.perf_counter() - began, sent + posts))
    except BaseException as error:
        barrier.abort()
        results.put(error)
        raise


def measure_ceiling(workers: int, seconds: float, verify_every: int = 10) -> float:
    """POST/s of `workers` processes, each a requests.Session keep-alive loop
    POSTing the signed bodies for `seconds`, to a fresh receiver that verifies
    every `verify_every`-th signature."""
    receiver, pool = _ceiling_receiver(verify_every)
    try:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(workers + 1)
        results = context.Queue()
        # each sender starts at its own place in the pool, so ids differ between them
        url = receiver.url + PATH
        processes = []
        for n in range(workers):
            first = n * POOL // workers
            processes.append(
                context.Process(
                    target=_session_sender,
                    args=(url, pool[first:] + pool[:first], seconds, barrier, results),
                    daemon=True,
                )
            )
        for process in processes:
            process.start()
        outcomes = _run(barrier, results, processes, seconds)
        total = sum(outcome[2] for outcome in outcomes)
        _check_receiver(receiver, total)
        return sum(outcome[0] / outcome[1] for outcome in outcomes)
    finally:
        receiver.stop()


def _run(
    barrier: Barrier, results: Any, processes: list[Any], seconds: float
) -> list[tuple[int, float, int]]:
    """Release the senders together and collect what each did."""
    try:
        barrier.wait(START_TIMEOUT)
    except Exception:
        pass  # a sender failed; its error is on the queue
    outcomes = []
    for _ in processes:
        outcome = results.get(timeout=START_TIMEOUT + seconds)
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"a sender failed: {outcome!r}") from outcome
        outcomes.append(outcome)
    for process in processes:
        process.join(10)
    return outcomes


# --- the receiver's own ceiling ---------------------------------------------------------


def raw_request(port: int, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes requests would put on the wire for this POST."""
    lines = [
        f"POST {PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept-Encoding: gzip, deflate",
        "Accept: */*",
        "Connection: keep-alive",
        *(f"{name}: {value}" for name, value in headers.items()),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _pipeline(
    port: int, batches: list[bytes], answers: bytes, seconds: float, barrier: Barrier
) -> tuple[int, float]:
    """`len(batches)` connections, each writing a batch of requests and reading its
    answers in a loop; returns (batches answered, seconds)."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in batches]
    for (reader, writer), batch in zip(connections, batches, strict=True):
        writer.write(batch)
        if await reader.readexactly(len(answers)) != answers:
            raise RuntimeError("the receiver did not answer 200 to every pipelined POST")
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait, START_TIMEOUT)
    began = time.perf_counter()
    deadline = began + seconds

    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, batch: bytes) -> int:
        done = 0
        while time.perf_counter() < deadline:
            writer.write(batch)
            if await reader.readexactly(len(answers)) != answers:
                raise RuntimeError("the receiver did not answer 200 to every pipelined POST")
            done += 1
        return done

    counts = await asyncio.gather(
        *(
            loop(reader, writer, batch)
            for (reader, writer), batch in zip(connections, batches, strict=True)
        )
    )
    elapsed = time.perf_counter() - began
    for _, writer in connections:
        writer.close()
    return sum(counts), elapsed


def _pipeline_sender(
    port: int,
    batches: list[bytes],
    answers: bytes,
    seconds: float,
    barrier: Barrier,
    results: Any,
) -> None:
    try:
        done, elapsed = asyncio.run(_pipeline(port, batches, answers, seconds, barrier))
        depth = answers.count(b"HTTP/1.1 ")
        # (POSTs timed, seconds, POSTs in all: the warm-up batch per connection too)
        results.put((done * depth, elapsed, (done + len(batches)) * depth))
    except BaseException as error:
        barrier.abort()
        results.put(error)
        raise


def measure_receiver_ceiling(
    seconds: float,
    connections: int = 8,
    depth: int = 32,
    senders: int = 1,
    verify_every: int = 10,
) -> float:
    """POST/s one receiver process takes from a sender that is not the bottleneck:
    `senders` processes of `connections` connections each, pipelining `depth` of
    the same signed requests at a time."""
    from bench.receiver_server import http_response

    receiver, pool = _ceiling_receiver(verify_every)
    try:
        requests_ = [raw_request(receiver.port, headers, body) for headers, body in pool]
        answers = http_response(200, b"ok") * depth
        batches = [
            b"".join(requests_[(c * depth + i) % POOL] for i in range(depth))
            for c in range(connections)
        ]
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(senders + 1)
        results = context.Queue()
        processes = [
            context.Process(
                target=_pipeline_sender,
                args=(receiver.port, batches, answers, seconds, barrier, results),
                daemon=True,
            )
            for _ in range(senders)
        ]
        for process in processes:
            process.start()
        outcomes = _run(barrier, results, processes, seconds)
        _check_receiver(receiver, sum(outcome[2] for outcome in outcomes))
        return sum(outcome[0] / outcome[1] for outcome in outcomes)
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="1,2")
    arguments = parser.parse_args()
    import os

    print(
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{arguments.seconds:g} s per figure",
        flush=True,
    )
    ceilings = {}
    for workers in (int(n) for n in arguments.workers.split(",")):
        ceilings[workers] = measure_ceiling(workers, arguments.seconds)
        print(
            f"requests.Session ceiling, W = {workers}: {ceilings[workers]:8.0f} POST/s", flush=True
        )
    highest = max(ceilings.values())
    pipelined = measure_receiver_ceiling(arguments.seconds)
    print(
        f"receiver's own ceiling, pipelined (8 connections × 32): {pipelined:8.0f} POST/s "
        f"({pipelined / highest:.0f}× the highest ceiling above)",
        flush=True,
    )
    one_by_one = measure_receiver_ceiling(arguments.seconds, connections=8, depth=1)
    print(
        f"receiver's own ceiling, one POST at a time (8 connections): {one_by_one:8.0f} POST/s "
        f"({one_by_one / highest:.0f}×; the sender shares the cores, so a lower bound)"
    )


if __name__ == "__main__":
    main()
