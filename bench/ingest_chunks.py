"""One large telemetry request to an account with many webhooks: its time, the web
process's memory growth and the longest database transaction it held.

    .venv/bin/python bench/ingest_chunks.py [--reports 1000] [--webhooks 50]
        [--postgresql-url URL]

A fresh system (bench/stack.py) with `--reports` vehicles and `--webhooks`
Location webhooks; one warm-up request of one report, then one request of one
position report per vehicle (each matches every webhook: reports × webhooks
outbox rows). Memory is the process's peak RSS growth (psutil, sampled every
millisecond while the request runs); the transactions are timed from the
session's BEGIN to its COMMIT."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack  # noqa: E402

MIB = 1024 * 1024


@contextmanager
def transaction_times() -> Iterator[list[float]]:
    """Seconds each session transaction of this process lasted meanwhile."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    times: list[float] = []
    began: dict[int, float] = {}

    def begin(session: Any, _transaction: Any, _connection: Any) -> None:
        began[id(session)] = time.perf_counter()

    def end(session: Any) -> None:
        start = began.pop(id(session), None)
        if start is not None:
            times.append(time.perf_counter() - start)

    event.listen(Session, "after_begin", begin)
    event.listen(Session, "after_commit", end)
    event.listen(Session, "after_rollback", end)
    try:
        yield times
    finally:
        event.remove(Session, "after_begin", begin)
        event.remove(Session, "after_commit", end)
        event.remove(Session, "after_rollback", end)


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """The largest RSS above the starting one while the block runs (bytes)."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth[0] = max(peak[0], process.memory_info().rss) - start


def run(engine: str, postgresql_url: str | None, reports: int, webhooks: int) -> dict[str, Any]:
    with stack(engine, postgresql_url) as system:
        vins = system.add_vehicles(reports)
        system.add_webhooks([f"http://127.0.0.1:9/{n}" for n in range(webhooks)])
        client = system.api()
        when = system.epoch

        def body(count: int, offset: int) -> dict[str, Any]:
            moment = (when + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")
            return {
                "reports": [
                    {
                        "vin": vin,
                        "type": "position",
                        "time": moment,
                        "latitude": 41.88,
                        "longitude": -87.63,
                        "speed_mph": 30.0,
                        "heading": 90,
                        "ignition": True,
                    }
                    for vin in vins[:count]
                ]
            }

        warm = client.post("/api/v1/telemetry", json=body(1, 0), headers=system.headers)
        assert warm.status_code == 202, warm.get_json()
        payload = body(reports, 10)
        with transaction_times() as times, peak_rss_growth() as growth:
            began = time.perf_counter()
            response = client.post("/api/v1/telemetry", json=payload, headers=system.headers)
            elapsed = time.perf_counter() - began
        assert response.status_code == 202, response.get_json()
        return {
            "engine": engine,
            "seconds": round(elapsed, 2),
            "rss_growth_mib": round(growth[0] / MIB, 1),
            "transactions": len(times),
            "longest_transaction_s": round(max(times), 3) if times else 0,
            "answer": response.get_json(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--webhooks", type=int, default=50)
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    arguments = parser.parse_args()
    engine = "postgresql" if arguments.postgresql_url else "sqlite"
    print(run(engine, arguments.postgresql_url, arguments.reports, arguments.webhooks))


if __name__ == "__main__":
    main()
