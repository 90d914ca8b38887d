"""Delivery activity: each target's deliveries and failures per minute, and the
last hour of them as the portal charts it.

A drain adds its batch's results to the current minute's `TargetActivity` row
(one upsert per batch, in the transaction that records the results), the
sweeper drops rows older than KEPT_MINUTES, and a grid reads the last hour of all
the targets it shows in one query. Nothing here counts over the outbox or attempt
tables: they grow without bound, and the grids poll every 2 s."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from core.extensions import db
from outbox.claims import rows_changed
from outbox.models import Target, TargetActivity

# Minutes the charts show, and minutes of rows kept (a little more than shown,
# so a slow sweeper never leaves a chart with a hole at its old end).
WINDOW_MINUTES = 60
KEPT_MINUTES = 120

# The charts' drawing box: one minute is STEP units wide, the busiest minute
# HEIGHT units high. The SVG scales it to whatever size the CSS gives it.
STEP = 2
WIDTH = WINDOW_MINUTES * STEP
HEIGHT = 40


def minute_of(moment: datetime) -> int:
    """Whole minutes since the Unix epoch: the `minute` of a TargetActivity row."""
    return int(moment.timestamp()) // 60


def record_activity(target_id: int, now: datetime, delivered: int, failed: int) -> None:
    """Add a batch's results to the target's row of this minute. Not committed:
    it goes with the results it counts."""
    if not (delivered or failed):
        return
    # Both engines the app runs on speak INSERT … ON CONFLICT DO UPDATE.
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(TargetActivity).values(
        target_id=target_id, minute=minute_of(now), delivered=delivered, failed=failed
    )
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=[TargetActivity.target_id, TargetActivity.minute],
            set_={
                "delivered": TargetActivity.delivered + statement.excluded.delivered,
                "failed": TargetActivity.failed + statement.excluded.failed,
            },
        )
    )


def prune_activity(now: datetime) -> int:
    """Drop rows older than KEPT_MINUTES (the sweeper's job); commits."""
    removed = db.session.execute(
        delete(TargetActivity)
        .where(TargetActivity.minute < minute_of(now) - KEPT_MINUTES)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return rows_changed(removed)


@dataclass(frozen=True)
class Activity:
    """One target's last hour: totals, and per minute (oldest first) the attempts
    and the failures among them, drawn as two step areas."""

    delivered: int
    failed: int
    attempts_path: str
    failed_path: str
    peak: int

    @property
    def success_percent(self) -> int | None:
        """Delivered of all attempts, in whole percent: 100 only if none failed,
        0 only if none was delivered (rounding hides neither)."""
        total = self.delivered + self.failed
        if not total:
            return None
        percent = round(100 * self.delivered / total)
        if self.failed:
            percent = min(percent, 99)
        if self.delivered:
            percent = max(percent, 1)
        return percent

    @property
    def description(self) -> str:
        """The figures in words: the chart's title, for screen readers and on hover."""
        if not (self.delivered or self.failed):
            return "Last hour: no deliveries"
        return (
            f"Last hour: {self.delivered:,} delivered, {self.failed:,} failed "
            f"({self.success_percent} % success)"
        )


QUIET = Activity(delivered=0, failed=0, attempts_path="", failed_path="", peak=0)


class RecentActivity(dict[int, Activity]):
    """Activity by target id; a target without any in the last hour is QUIET."""

    def __missing__(self, target_id: int) -> Activity:
        return QUIET


def _height(value: int, peak: int) -> int:
    # A minute with any attempt stays visible, however busy the busiest.
    return 0 if value <= 0 else max(1, round(value * HEIGHT / peak))


def step_area(values: Sequence[int], peak: int) -> str:
    """An SVG path: a step area over the minutes, one STEP wide each, scaled so
    `peak` fills the HEIGHT. Runs of equal height are one segment; nothing to
    draw is ""."""
    if not any(values) or peak <= 0:
        return ""
    parts = [f"M0 {HEIGHT}"]
    level = HEIGHT
    for index, value in enumerate(values):
        y = HEIGHT - _height(value, peak)
        if y != level:
            parts.append(f"H{index * STEP}V{y}")
            level = y
    parts.append(f"H{len(values) * STEP}V{HEIGHT}Z")
    return "".join(parts)


def summarise(minutes: dict[int, tuple[int, int]], last_minute: int) -> Activity:
    """The Activity of one target from its rows ({minute: (delivered, failed)})
    of the WINDOW_MINUTES up to and including `last_minute`."""
    first = last_minute - WINDOW_MINUTES + 1
    delivered = [0] * WINDOW_MINUTES
    failed = [0] * WINDOW_MINUTES
    for minute, (ok, bad) in minutes.items():
        if first <= minute <= last_minute:
            delivered[minute - first] = ok
            failed[minute - first] = bad
    attempts = [ok + bad for ok, bad in zip(delivered, failed, strict=True)]
    peak = max(attempts)
    if not peak:
        return QUIET
    return Activity(
        delivered=sum(delivered),
        failed=sum(failed),
        attempts_path=step_area(attempts, peak),
        failed_path=step_area(failed, peak),
        peak=peak,
    )


def _summaries(rows: Iterable[Any], now: datetime) -> RecentActivity:
    by_target: dict[int, dict[int, tuple[int, int]]] = {}
    for target_id, minute, delivered, failed in rows:
        by_target.setdefault(target_id, {})[minute] = (delivered, failed)
    last = minute_of(now)
    return RecentActivity(
        {target_id: summarise(minutes, last) for target_id, minutes in by_target.items()}
    )


def _window(now: datetime) -> Any:
    return TargetActivity.minute > minute_of(now) - WINDOW_MINUTES


_COLUMNS = (
    TargetActivity.target_id,
    TargetActivity.minute,
    TargetActivity.delivered,
    TargetActivity.failed,
)


def account_activity(account_id: int, now: datetime) -> RecentActivity:
    """The last hour of every target of the account, in one query over at most
    WINDOW_MINUTES rows per target (the grids show all of an account's targets)."""
    rows = db.session.execute(
        select(*_COLUMNS)
        .join(Target, Target.id == TargetActivity.target_id)
        .where(Target.account_id == account_id, _window(now))
    )
    return _summaries(rows, now)


def target_activity(target_id: int, now: datetime) -> Activity:
    """The last hour of one target (its detail page)."""
    rows = db.session.execute(
        select(*_COLUMNS).where(TargetActivity.target_id == target_id, _window(now))
    )
    return _summaries(rows, now)[target_id]
