"""Fleethook's benchmarks, side by side with the raw-POST ceiling of this machine.

    .venv/bin/python bench/run.py --quick            # a few minutes: every scenario ran
    .venv/bin/python bench/run.py --full [--postgresql-url URL] [--conditions TEXT]

Writes bench/results/<mode>.json; `bench/report.py bench/results/full.json >
BENCHMARKS.md` renders the tables. `--only SCENARIO` runs a part, `--engine` one
engine. Every figure is a ratio to a ceiling or limit measured in the same run, or
a percentile; absolute rates are context. The run fails (exit 1) if any event is
lost, any sampled signature fails to verify, any lane's messages reach a receiver
out of their `fleethook-sequence`, or an attempt at the trickling receiver does not
end at the deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ceiling import measure_ceiling  # noqa: E402
from bench.fan_out_options import fan_out_options  # noqa: E402
from bench.growth import (  # noqa: E402
    GridGrowth,
    IngestGrowth,
    WorkerMemory,
    grid_growth,
    ingest_growth,
    worker_memory,
)
from bench.slow import BusyWebhook, SlowWebhooks, Trickle, busy_webhook, slow_webhooks, trickle  # noqa: E402
from bench.steady import Isolation, Latency, Lost, Throughput, isolation, latency, throughput  # noqa: E402

RESULTS = ROOT / "bench" / "results"


Result = (
    Throughput
    | Latency
    | Isolation
    | SlowWebhooks
    | BusyWebhook
    | Trickle
    | GridGrowth
    | IngestGrowth
    | WorkerMemory
)


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(
    mode: str,
    engines: list[str],
    postgresql_url: str | None,
    only: list[str] | None = None,
    progress: Path | None = None,
) -> dict[str, Any]:
    """Every scenario of `mode` on each engine; with `progress`, the results so far
    are written there after each scenario (a failed run keeps what it measured)."""
    quick = mode == "quick"
    results: dict[str, Any] = {"mode": mode, "machine": machine(), "engines": {}}
    seconds = 3.0 if quick else 10.0
    ceilings = {w: measure_ceiling(w, seconds) for w in (1, 2)}
    results["ceiling_per_second"] = ceilings
    for engine in engines:
        rows: list[dict[str, Any]] = []
        scenarios: list[tuple[str, Callable[[], Result]]] = []
        events, webhooks = (200, 5) if quick else (2000, 10)
        worker_counts = (1,) if quick else ((1, 2, 4) if engine == "postgresql" else (1, 2))
        for w in worker_counts:
            ceiling = ceilings[min(w, 2)]
            scenarios.append(
                (
                    f"throughput W={w}",
                    partial(throughput, engine, w, events, webhooks, ceiling, postgresql_url),
                )
            )
        baseline_events = 40 if quick else 100  # one job per message: ~17 jobs/s
        scenarios.append(
            (
                "per-message jobs W=1",
                partial(
                    throughput,
                    engine,
                    1,
                    baseline_events,
                    webhooks,
                    ceilings[1],
                    postgresql_url,
                    per_message_jobs=True,
                ),
            )
        )
        rate, seconds = (50.0, 8.0) if quick else (200.0, 60.0)
        scenarios.append(
            (
                f"latency {rate:.0f} events/s",
                partial(latency, engine, rate, seconds, 1, postgresql_url),
            )
        )
        # 10 events/s × 20 webhooks = 200 deliveries/s: below what one main worker
        # keeps up with across 20 targets (at 50 events/s the backlog grows for the
        # whole run and both p95s measure the backlog, not the isolation).
        rate, seconds = (10.0, 5.0) if quick else (10.0, 20.0)
        scenarios.append(
            ("isolation", partial(isolation, engine, rate, seconds, 20, postgresql_url))
        )
        # Issue 14: receivers answering in 200 ms, make run's workers.
        for hooks, messages in [(10, 5)] if quick else [(200, 20), (1_000, 20)]:
            scenarios.append(
                (
                    f"slow webhooks {hooks}×{messages}",
                    partial(slow_webhooks, engine, hooks, messages, 200, postgresql_url),
                )
            )
        vehicles, reports = (20, 5) if quick else (200, 10)
        scenarios.append(
            (
                f"busy webhook {vehicles}×{reports}",
                partial(busy_webhook, engine, vehicles, reports, 200, 16, postgresql_url),
            )
        )
        # 10 events/s from 10 vehicles × 20 healthy webhooks: 200 deliveries/s at
        # 50–500 ms, about 55 requests in flight; each lane gets one message a second.
        rate, seconds, healthy, vehicles = (5.0, 4.0, 5, 5) if quick else (10.0, 20.0, 20, 10)
        scenarios.append(
            (
                "trickling receiver",
                partial(trickle, engine, rate, seconds, healthy, vehicles, postgresql_url),
            )
        )
        hooks, small, large = (100, 1_000, 10_000) if quick else (1_000, 10_000, 1_000_000)
        samples = 10 if quick else 40
        scenarios.append(
            (
                "grid growth",
                partial(grid_growth, engine, postgresql_url, hooks, small, large, samples),
            )
        )
        reports, few, many = (500, 10, 1_000) if quick else (5_000, 10, 10_000)
        scenarios.append(
            (
                "ingest vs landmarks",
                partial(ingest_growth, engine, postgresql_url, reports, few, many),
            )
        )
        scenarios.append(
            (
                "fan-out options",
                partial(fan_out_options, engine, postgresql_url, 500 if quick else 5_000),
            )
        )
        small, large = (1_000, 10_000) if quick else (10_000, 200_000)
        scenarios.append(
            ("worker memory", partial(worker_memory, engine, postgresql_url, 10, small, large))
        )
        for name, scenario in scenarios:
            if only and not any(name.startswith(prefix) for prefix in only):
                continue
            started = time.monotonic()
            result = scenario()
            row = asdict(result)
            row["scenario"] = name
            print(
                f"[{engine}] {name}: {result.summary()} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
            rows.append(row)
            results["engines"][engine] = rows
            if progress is not None:
                progress.write_text(json.dumps(results, indent=2))
        results["engines"][engine] = rows
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_const", dest="mode", const="quick")
    modes.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    parser.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run only the scenarios whose names start with this (repeatable), e.g. "
        "--only isolation; the results then go to <mode>-partial.json",
    )
    parser.add_argument(
        "--conditions",
        metavar="TEXT",
        help="what else ran on the machine meanwhile (BENCHMARKS.md prints it)",
    )
    parser.add_argument(
        "--engine",
        choices=["sqlite", "postgresql"],
        action="append",
        help="run on this engine only (repeatable; default: SQLite, and PostgreSQL when "
        "a URL is given)",
    )
    parser.set_defaults(mode="quick")
    arguments = parser.parse_args()
    engines = arguments.engine or (
        ["sqlite"] + (["postgresql"] if arguments.postgresql_url else [])
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{arguments.mode}{'-partial' if arguments.only else ''}.json"
    progress = RESULTS / f"{out.stem}-unfinished-partial.json"  # ignored by git, as -partial
    try:
        results = run(arguments.mode, engines, arguments.postgresql_url, arguments.only, progress)
    except Lost as lost:
        print(
            f"bench: FAILED — {lost} (the figures so far: {progress.relative_to(ROOT)})",
            file=sys.stderr,
        )
        return 1
    if arguments.conditions:
        results["conditions"] = arguments.conditions
    out.write_text(json.dumps(results, indent=2))
    progress.unlink(missing_ok=True)
    print(f"bench: results in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
