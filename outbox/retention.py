"""Retention: the rows that would otherwise grow without end — telemetry reports,
ended outbox messages with their delivery attempts, and ended driver
assignments — are deleted once older than their window (FLEETHOOK_KEEP_*_DAYS,
config.py). The sweeper calls `prune` on every sweep.

Each statement deletes at most FLEETHOOK_PRUNE_BATCH rows chosen by primary key
(`DELETE … WHERE id IN (SELECT id … LIMIT n)`, the same on SQLite and
PostgreSQL) on an indexed predicate, and commits at once: a transaction is a
few milliseconds, so the SQLite write lock and PostgreSQL's row locks are never
held long, and a sweep stops after FLEETHOOK_PRUNE_SECONDS whatever is left (the
next sweep goes on). Between two batches the pruner waits as long as the last
one took, so a writer waiting for SQLite's lock gets it at least half the time.

What stays true while rows go:
- a target's Total Messages and Queue Depth are counters on the target, not
  counts over messages, so they do not move;
- open (pending, sending) messages are never deleted, whatever their age;
- the vehicle's current driver assignment (its newest) is never deleted;
- a report older than its window is refused at ingest (fleet/reports.py), by the
  same column and cutoff the pruning uses, so a pruned report cannot come back
  as new;
- a target remembers the newest creation time of the dead or expired messages
  deleted (Target.pruned_before), so a recovery from before it says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from extensions import db
from fleet.models import DriverAssignment, TelemetryReport
from outbox.claims import rows_changed
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, Target

# Ended messages a person may recover (outbox/recovery.py); the target keeps the
# time up to which they were deleted.
RECOVERABLE = (MessageStatus.DEAD.value, MessageStatus.EXPIRED.value)
ENDED = (*RECOVERABLE, MessageStatus.SUPERSEDED.value)


@dataclass(frozen=True)
class Windows:
    """How long each kind of row is kept, read from the app's settings."""

    reports: timedelta
    delivered: timedelta
    ended: timedelta
    assignments: timedelta

    @classmethod
    def from_config(cls, config: Any) -> Windows:
        return cls(
            reports=config["FLEETHOOK_KEEP_REPORTS"],
            delivered=config["FLEETHOOK_KEEP_DELIVERED"],
            ended=config["FLEETHOOK_KEEP_ENDED"],
            assignments=config["FLEETHOOK_KEEP_ASSIGNMENTS"],
        )


def oldest_report_time(now: datetime) -> datetime:
    """Reports timed before this are pruned, and refused at ingest."""
    return now - current_app.config["FLEETHOOK_KEEP_REPORTS"]


def prune_reports(cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` reports timed before `cutoff` (ix_telemetry_report_time)."""
    ids = select(TelemetryReport.id).where(TelemetryReport.time < cutoff).limit(batch)
    deleted = db.session.execute(
        delete(TelemetryReport)
        .where(TelemetryReport.id.in_(ids.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return rows_changed(deleted)


def _ended_before(statuses: tuple[str, ...], cutoff: datetime) -> ColumnElement[bool]:
    # finished_at is NULL while a message is open; the status test says it again,
    # so an open message is never pruned whatever its columns hold.
    return and_(OutboxMessage.finished_at < cutoff, OutboxMessage.status.in_(statuses))


def prune_messages(statuses: tuple[str, ...], cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` messages of `statuses` that ended before `cutoff`, their
    delivery attempts first (the foreign key), and note on each target the newest
    recoverable message deleted."""
    ended = _ended_before(statuses, cutoff)
    # PostgreSQL: locked until commit, so a recovery cannot reopen a message between
    # its attempts going and it going; rows a recovery holds are left for next time.
    rows = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.target_id, OutboxMessage.created_at)
        .where(ended)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    ids = [row.id for row in rows]
    db.session.execute(
        delete(DeliveryAttempt)
        .where(DeliveryAttempt.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    deleted = db.session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), ended)
        .execution_options(synchronize_session=False)
    )
    if set(statuses) & set(RECOVERABLE):
        newest: dict[int, datetime] = {}
        for row in rows:
            if row.target_id not in newest or newest[row.target_id] < row.created_at:
                newest[row.target_id] = row.created_at
        for target_id, created_at in sorted(newest.items()):
            db.session.execute(
                update(Target)
                .where(Target.id == target_id)
                .values(
                    pruned_before=case(
                        (
                            or_(Target.pruned_before.is_(None), Target.pruned_before < created_at),
                            created_at,
                        ),
                        else_=Target.pruned_before,
                    )
                )
                .execution_options(synchronize_session=False)
            )
    return rows_changed(deleted)


def prune_assignments(cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` driver assignments that ended before `cutoff`: a later
    assignment of the same vehicle began before it. The newest one of a vehicle
    (its current driver) has none later, so it stays."""
    later = aliased(DriverAssignment)
    ended = exists().where(
        later.vehicle_id == DriverAssignment.vehicle_id,
        later.assigned_at < cutoff,
        or_(
            later.assigned_at > DriverAssignment.assigned_at,
            and_(later.assigned_at == DriverAssignment.assigned_at, later.id > DriverAssignment.id),
        ),
    )
    ids = (
        select(DriverAssignment.id)
        .where(DriverAssignment.assigned_at < cutoff, ended)
        .limit(batch)
        .scalar_subquery()
    )
    deleted = db.session.execute(
        delete(DriverAssignment)
        .where(DriverAssignment.id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    return rows_changed(deleted)


def prune(
    now: datetime, batch: int | None = None, budget_seconds: float | None = None
) -> dict[str, int]:
    """Delete what is past its window, a batch of each kind in turn, each batch its
    own transaction, until nothing is left or the time budget is spent. Returns
    the rows deleted by kind."""
    config = current_app.config
    batch = batch or config["FLEETHOOK_PRUNE_BATCH"]
    budget = config["FLEETHOOK_PRUNE_SECONDS"] if budget_seconds is None else budget_seconds
    windows = Windows.from_config(config)
    steps: dict[str, Callable[[], int]] = {
        "reports": lambda: prune_reports(now - windows.reports, batch),
        "delivered": lambda: prune_messages(
            (MessageStatus.DELIVERED.value,), now - windows.delivered, batch
        ),
        "ended": lambda: prune_messages(ENDED, now - windows.ended, batch),
        "assignments": lambda: prune_assignments(now - windows.assignments, batch),
    }
    deleted = dict.fromkeys(steps, 0)
    pending = list(steps)
    deadline = time.monotonic() + budget
    while pending:
        for kind in list(pending):
            started = time.monotonic()
            count = steps[kind]()
            db.session.commit()
            deleted[kind] += count
            if count < batch:
                pending.remove(kind)  # caught up
            took = time.monotonic() - started
            if time.monotonic() + took >= deadline:
                return deleted
            # Let waiting writers in: SQLite's busy handler polls with back-off,
            # and a pruner that takes the lock straight back would starve it.
            time.sleep(took)
    return deleted


def count_older(now: datetime) -> dict[str, int]:
    """Rows past their window (what the next sweeps will delete), by kind."""
    windows = Windows.from_config(current_app.config)

    def count(model: Any, *where: Any) -> int:
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    return {
        "reports": count(TelemetryReport, TelemetryReport.time < now - windows.reports),
        "delivered": count(
            OutboxMessage,
            _ended_before((MessageStatus.DELIVERED.value,), now - windows.delivered),
        ),
        "ended": count(OutboxMessage, _ended_before(ENDED, now - windows.ended)),
    }
