"""Retention of the fleet's rows (the outbox prunes them, outbox/retention.py):
telemetry reports older than FLEETHOOK_KEEP_REPORTS_DAYS, and driver assignments
that ended longer than FLEETHOOK_KEEP_ASSIGNMENTS_DAYS ago.

- a vehicle's current driver assignment (its newest) is never deleted;
- a report older than its window is refused at ingest (fleet/reports.py), by the
  same column and cutoff the pruning uses, so a pruned report cannot come back
  as new."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import aliased

from core.extensions import db
from fleet.models import DriverAssignment, TelemetryReport
from outbox.claims import rows_changed
from outbox.retention import Pruner, register_pruner


def prune_reports(cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` reports timed before `cutoff` (ix_telemetry_report_time)."""
    ids = select(TelemetryReport.id).where(TelemetryReport.time < cutoff).limit(batch)
    deleted = db.session.execute(
        delete(TelemetryReport)
        .where(TelemetryReport.id.in_(ids.scalar_subquery()))
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


def register_pruners() -> None:
    """Called by create_app, so every process's sweeper prunes these too."""
    register_pruner(Pruner("reports", "FLEETHOOK_KEEP_REPORTS", prune_reports))
    register_pruner(Pruner("assignments", "FLEETHOOK_KEEP_ASSIGNMENTS", prune_assignments))
