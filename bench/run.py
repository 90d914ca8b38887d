"""Fleethook's benchmarks, side by side with the raw-POST ceiling of this machine.

    .venv/bin/python bench/run.py --quick            # under 2 minutes: every scenario ran
    .venv/bin/python bench/run.py --full [--postgresql-url URL]

Writes bench/results/<mode>-<engine>.json and, for --full, the tables of
BENCHMARKS.md. Every figure is a ratio or a percentile from one run; absolute
rates are context. The run fails (exit 1) if any event is lost or any sampled
signature fails to verify.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ceiling import measure_ceiling  # noqa: E402
from bench.receiver import Receiver  # noqa: E402
from bench.stack import NAMESPACE, Stack, stack, wait_until  # noqa: E402

RESULTS = ROOT / "bench" / "results"


class Lost(AssertionError):
    """An event did not reach a receiver, or a signature did not verify."""


@dataclass
class Throughput:
    engine: str
    workers: int
    events: int
    webhooks: int
    deliveries: int
    seconds: float  # first arrival to last
    per_second: float
    ceiling_per_second: float
    ratio: float
    duplicates: int
    signatures_checked: int


def _check_delivered(stats: dict[str, Any], paths: list[str], expected: int) -> tuple[int, int]:
    """Every path got `expected` distinct webhook-ids and every sampled signature
    verified; returns (duplicates, signatures checked) or raises Lost."""
    duplicates = checked = 0
    for path in paths:
        got = stats[path]
        if got["unique"] != expected:
            raise Lost(f"{path}: {got['unique']} of {expected} events arrived")
        if got["signature_failures"]:
            raise Lost(f"{path}: {got['signature_failures']} signatures failed to verify")
        duplicates += got["duplicates"]
        checked += got["verified"]
    return duplicates, checked


def _webhooks_at(system: Stack, receiver_paths: list[str]) -> dict[str, str]:
    """One Location webhook per path (created before the receiver knows its secret);
    returns path → signing secret."""
    made = system.add_webhooks([f"http://127.0.0.1:9/{p.strip('/')}" for p in receiver_paths])
    return {path: secret for path, (_, secret) in zip(receiver_paths, made, strict=True)}


def _point_webhooks(system: Stack, base_url: str) -> None:
    from sqlalchemy import update

    from extensions import db
    from webhooks.models import Webhook

    with system.app.app_context():
        for webhook in db.session.scalars(db.select(Webhook)):
            path = webhook.url.split("/", 3)[3]
            db.session.execute(
                update(Webhook).where(Webhook.id == webhook.id).values(url=f"{base_url}/{path}")
            )
        db.session.commit()
        db.session.remove()


def throughput(
    engine: str, workers: int, events: int, webhooks: int, ceiling: float,
    postgresql_url: str | None, per_message_jobs: bool = False,
) -> Throughput:  # fmt: skip
    """N events ingested through the API, fanned out to K webhooks, delivered by W
    `rq worker` processes; deliveries per second from the first arrival to the last."""
    paths = [f"/w{n}" for n in range(webhooks)]
    with stack(engine, postgresql_url) as system:
        secrets = _webhooks_at(system, paths)
        with Receiver(dict.fromkeys(paths, "ok"), secrets) as receiver:
            _point_webhooks(system, receiver.url)
            if per_message_jobs:
                _queue_per_message_jobs(system, events)
            else:
                system.ingest(events)
            system.start_workers(workers)
            expected = events * webhooks
            done = wait_until(
                lambda: (
                    sum(s["unique"] for s in receiver.stats(arrivals=False).values()) >= expected
                ),
                timeout=max(120.0, expected / 20),
            )
            system.stop_workers()
            stats = receiver.stats()
            if not done:
                got = sum(s["unique"] for s in stats.values())
                raise Lost(f"only {got} of {expected} deliveries arrived in time")
            duplicates, checked = _check_delivered(stats, paths, events)
            arrivals = [t for s in stats.values() for _, t in s["arrivals"]]
            seconds = max(arrivals) - min(arrivals)
            rate = len(arrivals) / seconds if seconds > 0 else float("inf")
            return Throughput(engine, workers, events, webhooks, expected, round(seconds, 3),
                              round(rate, 1), round(ceiling, 1), round(rate / ceiling, 3),
                              duplicates, checked)  # fmt: skip


def _queue_per_message_jobs(system: Stack, events: int) -> None:
    """Ingest with the drains' nudges removed, then one RQ job per message."""
    from rq import Queue
    from sqlalchemy import select

    from extensions import db, redis_client
    from outbox.models import OutboxMessage

    system.ingest(events)
    with system.app.app_context():
        connection = redis_client()
        queue = Queue(f"{NAMESPACE}:deliveries", connection=connection)
        queue.empty()  # the drains the ingest queued: this baseline sends without them
        ids = list(db.session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))
        for message_id in ids:
            queue.enqueue("bench.jobs.deliver_one", message_id, result_ttl=0)
        db.session.remove()


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(mode: str, engines: list[str], postgresql_url: str | None) -> dict[str, Any]:
    quick = mode == "quick"
    results: dict[str, Any] = {"mode": mode, "machine": machine(), "engines": {}}
    seconds = 3.0 if quick else 10.0
    ceilings = {w: measure_ceiling(w, seconds) for w in (1, 2)}
    results["ceiling_per_second"] = ceilings
    for engine in engines:
        rows: list[dict[str, Any]] = []
        scenarios: list[tuple[str, Callable[[], Throughput]]] = []
        events, webhooks = (200, 5) if quick else (2000, 10)
        worker_counts = (1,) if quick else ((1, 2, 4) if engine == "postgresql" else (1, 2))
        for w in worker_counts:
            ceiling = ceilings[min(w, 2)]
            scenarios.append((f"throughput W={w}", partial(
                throughput, engine, w, events, webhooks, ceiling, postgresql_url)))  # fmt: skip
        baseline_events = 40 if quick else 300
        scenarios.append(("per-message jobs W=1", partial(
            throughput, engine, 1, baseline_events, webhooks, ceilings[1], postgresql_url,
            per_message_jobs=True)))  # fmt: skip
        for name, scenario in scenarios:
            started = time.monotonic()
            row = asdict(scenario())
            row["scenario"] = name
            print(f"[{engine}] {name}: {row['per_second']:.0f} deliveries/s, "
                  f"{row['ratio']:.2f} of the ceiling "
                  f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
            rows.append(row)
        results["engines"][engine] = rows
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_const", dest="mode", const="quick")
    modes.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    parser.set_defaults(mode="quick")
    arguments = parser.parse_args()
    engines = ["sqlite"] + (["postgresql"] if arguments.postgresql_url else [])
    try:
        results = run(arguments.mode, engines, arguments.postgresql_url)
    except Lost as lost:
        print(f"bench: FAILED — {lost}", file=sys.stderr)
        return 1
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{arguments.mode}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"bench: results in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
