"""The benchmarks' quick mode as a smoke test: every scenario runs and delivers
every event with verified signatures, each vehicle's messages in their order, and
every attempt at a trickling receiver ends at the deadline (bench/run.py fails
loudly otherwise). It checks that the harness and the engine's promises hold,
never speed: timings on a shared machine vary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.smoke, pytest.mark.bench]


def test_the_quick_benchmark_delivers_everything(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "FLEETHOOK_REDIS_NAMESPACE")
    }
    env.pop("BENCH_POSTGRESQL_URL", None)
    finished = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    results = json.loads((ROOT / "bench" / "results" / "quick.json").read_text())
    rows = {row["scenario"]: row for row in results["engines"]["sqlite"]}
    assert set(rows) == {
        "throughput W=1",
        "per-message jobs W=1",
        "latency 50 events/s",
        "isolation",
        "slow webhooks 10×5",
        "busy webhook 20×5",
        "trickling receiver",
        "grid growth",
        "ingest vs landmarks",
        "fan-out options",
        "worker memory",
    }
    for name in ("throughput W=1", "per-message jobs W=1"):
        row = rows[name]
        assert row["deliveries"] == row["events"] * row["webhooks"]
        assert row["signatures_checked"] > 0 and row["per_second"] > 0
    latency = rows["latency 50 events/s"]
    assert latency["events"] > 0
    assert latency["deliveries"] == latency["events"] * latency["webhooks"]
    assert latency["signatures_checked"] > 0 and latency["p99_ms"] > 0
    isolation = rows["isolation"]
    assert isolation["events"] > 0
    assert isolation["healthy_deliveries"] == isolation["events"] * isolation["healthy_webhooks"]
    assert isolation["signatures_checked"] > 0 and isolation["p95_ms_without"] > 0
    # the bad endpoints were there and were tried
    assert isolation["hang_requests"] > 0 and isolation["failing_requests"] > 0
    # Ten webhooks whose receivers answer in 200 ms: every webhook got its five
    # messages, once each, as one lane numbered 1 to 5 (the run fails otherwise).
    slow = rows["slow webhooks 10×5"]
    assert slow["deliveries"] == 10 * 5 and slow["duplicates"] == 0
    assert slow["signatures_checked"] > 0
    assert slow["seconds"] >= slow["limit_seconds"] * 0.9  # five round trips one after another
    # One webhook, 20 vehicles × 5 reports: never more than its 16 requests at once.
    busy = rows["busy webhook 20×5"]
    assert busy["deliveries"] == 20 * 5 and busy["signatures_checked"] > 0
    assert 1 < busy["peak_in_flight"] <= busy["max_in_flight"] == 16
    # A receiver that trickles its answer: it was tried, each attempt ended at the
    # deadline, and the healthy webhooks beside it still got everything.
    trickle = rows["trickling receiver"]
    assert trickle["trickle_requests"] >= trickle["trickle_attempts"] > 0
    assert trickle["deadline_ms"] <= trickle["attempt_ms_min"]
    assert trickle["attempt_ms_max"] <= trickle["deadline_ms"] + 1000
    assert trickle["healthy_deliveries"] == trickle["events"] * trickle["healthy_webhooks"]
    grid = rows["grid growth"]
    assert grid["messages_large"] > grid["messages_small"] and grid["p95_ms_large"] > 0
    ingest = rows["ingest vs landmarks"]
    assert ingest["landmarks_large"] > ingest["landmarks_small"] and ingest["per_second_large"] > 0
    options = rows["fan-out options"]["per_second"]
    assert set(options) == {
        "plain",
        "area: circle",
        "area: polygon of 1,000 points",
        "redaction",
        "tracks of 100",
    }
    assert all(rate > 0 for rate in options.values())
    memory = rows["worker memory"]
    assert memory["deliveries_large"] > memory["deliveries_small"]
    assert memory["rss_mib_small"] > 0 and memory["signatures_checked"] > 0
    assert all(value > 0 for value in results["ceiling_per_second"].values())
