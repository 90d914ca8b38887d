"""The chaos run's reduced mode as a smoke test (bench/chaos.py --reduced, about two
minutes): workers killed with SIGKILL, Redis restarted empty and a receiver
black-holed while messages flow — every message still arrives, once or again with
the same body, and the portal keeps answering. The full run is a command (README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import ExitStack

import pytest

from tests.conftest import ROOT, scratch_database

pytestmark = pytest.mark.smoke


def test_the_reduced_chaos_run_loses_nothing(database_url: str):
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("DATABASE_URL", "REDIS_URL", "FLEETHOOK_REDIS_NAMESPACE", "BENCH_POSTGRESQL_URL")
    }
    command = [sys.executable, "bench/chaos.py", "--reduced"]
    with ExitStack() as cleanup:
        if database_url.startswith("postgresql"):
            # A database of its own on this run's server, which stays up: other tests use it.
            url = cleanup.enter_context(scratch_database(database_url, "chaos"))
            command += ["--postgresql-url", url, "--keep-postgresql"]
        finished = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "chaos: passed" in output
    assert len(re.findall(r"kill -9 worker", output)) == 6, output
    assert "Redis restarted empty" in output and "black-holed" in output, output
    sent, delivered = map(int, re.search(r"sent (\d+), delivered (\d+) distinct", output).groups())
    assert sent == delivered == 750, output
