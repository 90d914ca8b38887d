"""The storage benchmark in its quick mode as a smoke test: three trucks for
three simulated days with a one-day window, through the real ingest, drain and
retention. The pruning ran (reports and delivered messages were deleted), the
rows kept stay a window's worth, and the database file at day 3 is no larger
than 1.1 times itself at day 1. Never speed (bench/storage.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.smoke, pytest.mark.bench]


def test_the_database_stops_growing_once_the_retention_prunes(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "FLEETHOOK_REDIS_NAMESPACE")
    }
    out = tmp_path / "storage.json"
    finished = subprocess.run(
        [sys.executable, "bench/storage.py", "--quick", "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = json.loads(out.read_text())
    assert results["scale"]["days"] == 3 and results["scale"]["window_days"] == 1
    assert results["pruned"]["reports"] > 0 and results["pruned"]["delivered"] > 0, results
    day_1, day_3 = results["sizes_by_day"]["1"], results["sizes_by_day"]["3"]
    # A day of reports is kept, however many days went by.
    assert day_3["rows"]["telemetry_report"] <= 1.05 * day_1["rows"]["telemetry_report"]
    assert results["size_ratio"]["used_page_bytes"] <= 1.1, results["size_ratio"]
    # The file itself; the WAL beside it is the high-water mark of a few MB between
    # checkpoints, reported apart (it is most of the change on a 13 MB database).
    # The file also keeps the free pages a prune leaves until they are reused: on
    # this three-day smoke it moved between 1.03 and 1.10 from run to run (the pages
    # in use, above, are the measure; the 14-day benchmark's file gave 1.03).
    assert results["size_ratio"]["file_bytes"] <= 1.2, results["size_ratio"]
    assert day_3["wal_bytes"] < 16 * 1024 * 1024
    assert finished.returncode == 0, finished.stdout + finished.stderr
