"""The integrations' benchmark in its quick mode as a smoke test: real workers
drain a few trucks' reports to all five providers' throttling fakes, and every
message ends delivered or superseded, every provider holds each truck's latest
value, and no window holds more requests than the provider's limit
(bench/providers.py fails loudly otherwise). Never speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.smoke, pytest.mark.bench]


def test_every_provider_ends_with_the_latest_values_within_its_limit():
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "FLEETHOOK_REDIS_NAMESPACE")
    }
    finished = subprocess.run(
        [sys.executable, "bench/providers.py", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    results = json.loads((ROOT / "bench" / "results" / "providers-quick.json").read_text())
    rows = {row["provider"]: row for row in results["rows"]}
    assert set(rows) == {"servicemax", "servicetitan", "fleetio", "asana", "agilefleet"}
    for row in rows.values():
        assert row["delivered"] > 0 and row["dead"] == row["left"] == 0, row
        assert row["latest_values_ok"] and row["busiest_window"] <= row["limit"], row
