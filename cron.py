"""The schedule `rq cron` runs: the sweeper every FLEETHOOK_SWEEP_SECONDS (5), and
the summary line at the start of every minute (fleet/summary.py).

    rq cron cron --url "$REDIS_URL"

The schedule lives in the cron process, not in Redis, so a flushed Redis does not
stop the sweeps that recover from it."""

from __future__ import annotations

import os

from rq import cron

from core.config import DEFAULT_REDIS_NAMESPACE
from fleet.summary import log_summary
from outbox.sweeper import sweep

namespace = os.environ.get("FLEETHOOK_REDIS_NAMESPACE") or DEFAULT_REDIS_NAMESPACE
cron.register(
    sweep,
    f"{namespace}:maintenance",
    interval=int(os.environ.get("FLEETHOOK_SWEEP_SECONDS") or 5),
    job_timeout=120,
    result_ttl=0,
    name="fleethook-sweeper",
)
cron.register(
    log_summary,
    f"{namespace}:maintenance",
    cron="* * * * *",
    job_timeout=60,
    result_ttl=0,
    name="fleethook-summary",
)
