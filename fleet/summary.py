"""The summary line: once a minute, what the minute that just ended did — reports
received, deliveries and failures — with the messages waiting and the targets
waiting for a person. A quiet console (`make run` logs no line per request or
job) still shows the installation at work; `rq cron` runs `log_summary` at the
start of every minute (cron.py) and one worker logs it.

It reads what is already counted: the per-minute delivery counters of
outbox/activity.py, the reports table by its received_at index, and the targets'
own Queue Depth — never a count over the outbox, which grows without bound."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select

from core.extensions import db
from core.times import utcnow
from fleet.models import TelemetryReport
from outbox.activity import minute_of
from outbox.models import HELD, Target, TargetActivity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinuteSummary:
    """One minute of the whole installation (all accounts)."""

    minute: int  # whole minutes since the Unix epoch, as TargetActivity counts them
    reports: int
    delivered: int
    failed: int
    queued: int  # messages not yet ended, over all targets (their Queue Depth)
    held: int  # targets paused, disabled or needing attention: a person must act

    @property
    def line(self) -> str:
        # Local time, like the timestamps of the log lines around it.
        at = datetime.fromtimestamp(self.minute * 60).strftime("%H:%M")
        return (
            f"{at} · {self.reports:,} reports · {self.delivered:,} delivered · "
            f"{self.failed:,} failed · {self.queued:,} queued · "
            f"{self.held:,} waiting for attention"
        )


def minute_summary(minute: int) -> MinuteSummary:
    """The figures of `minute` (reports and attempts in it), with the queues and
    the held targets as they are now."""
    start = datetime.fromtimestamp(minute * 60, UTC)
    reports = db.session.scalar(
        select(func.count())
        .select_from(TelemetryReport)
        .where(
            TelemetryReport.received_at >= start,
            TelemetryReport.received_at < start + timedelta(minutes=1),
        )
    )
    delivered, failed = db.session.execute(
        select(
            func.coalesce(func.sum(TargetActivity.delivered), 0),
            func.coalesce(func.sum(TargetActivity.failed), 0),
        ).where(TargetActivity.minute == minute)
    ).one()
    queued, held = db.session.execute(
        select(
            func.coalesce(func.sum(Target.queue_depth), 0),
            func.coalesce(
                func.sum(case((Target.status.in_([status.value for status in HELD]), 1), else_=0)),
                0,
            ),
        )
    ).one()
    return MinuteSummary(
        minute, int(reports or 0), int(delivered), int(failed), int(queued), int(held)
    )


def log_summary() -> str:
    """RQ job (run by `rq cron` each minute): log the summary of the minute that
    just ended, and return its line."""
    line = minute_summary(minute_of(utcnow()) - 1).line
    log.info("%s", line)
    return line
