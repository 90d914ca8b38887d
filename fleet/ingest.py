"""The ingest: a checked batch of telemetry reports becomes stored reports, updated
vehicle state, events and outbox messages. A batch with any bad report, or over
the account's report quota, writes nothing; a good one is written in chunks, each
report with its state, events and outbox messages in one transaction.

Duplicates (same vehicle, type and time) are found by the reports table's unique
key with INSERT … ON CONFLICT DO NOTHING, so two web processes receiving the same
report store and detect it once. The vehicles' state rows are locked (PostgreSQL
FOR UPDATE; on SQLite the first INSERT already holds the database's write lock),
so two batches for one vehicle are detected one after the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from accounts.quotas import spend_reports
from core.errors import ValidationError
from core.extensions import db
from fleet.detector import detect
from fleet.landmark_index import account_landmarks_index
from fleet.models import TelemetryReport, Vehicle, VehicleState
from fleet.reports import Report, check_batch, error_key
from outbox.fanout import account_targets, fan_out

# A batch is written in transactions of at most this many reports, and of at most
# about this many outbox messages (reports × the account's targets), so that none
# holds SQLite's write lock, or the targets' rows on PostgreSQL, for long: 1,000
# reports to 50 webhooks were one transaction of 50,000 rows, now 25 of 2,000.
CHUNK_REPORTS = 100
CHUNK_MESSAGES = 2000


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    events: int
    messages: int


def _vehicles(account_id: int, reports: Sequence[Report], batched: bool) -> list[Vehicle]:
    """Each report's vehicle, or ValidationError naming the reports whose vehicle
    the account does not have."""
    vins = {r.vin for r in reports if r.vin is not None}
    ids = {r.vehicle_id for r in reports if r.vehicle_id is not None}
    found = list(
        db.session.scalars(
            select(Vehicle).where(
                Vehicle.account_id == account_id, Vehicle.vin.in_(vins) | Vehicle.id.in_(ids)
            )
        )
    )
    by_vin = {vehicle.vin: vehicle for vehicle in found}
    by_id = {vehicle.id: vehicle for vehicle in found}
    vehicles, errors = [], {}
    for index, report in enumerate(reports):
        if report.vin is not None:
            vehicle = by_vin.get(report.vin)
            field = "vin"
        else:
            vehicle = by_id.get(report.vehicle_id or 0)
            field = "vehicle_id"
        if vehicle is None:
            errors[error_key(batched, index, field)] = ["No vehicle of your account has this."]
        else:
            vehicles.append(vehicle)
    if errors:
        raise ValidationError(errors)
    return vehicles


def _store_new(account_rows: list[dict[str, Any]]) -> set[tuple[int, str, datetime]]:
    """Insert the reports; the keys of those that were not there before."""
    insert = (postgresql if db.engine.dialect.name == "postgresql" else sqlite).insert
    statement = (
        insert(TelemetryReport)
        .values(account_rows)
        .on_conflict_do_nothing()
        .returning(TelemetryReport.vehicle_id, TelemetryReport.type, TelemetryReport.time)
    )
    return {
        (row.vehicle_id, row.type, row.time.astimezone(UTC))
        for row in db.session.execute(statement)
    }


def _locked_states(vehicle_ids: set[int]) -> dict[int, VehicleState]:
    insert = (postgresql if db.engine.dialect.name == "postgresql" else sqlite).insert
    db.session.execute(
        insert(VehicleState)
        .values([{"vehicle_id": vid, "landmark_ids": []} for vid in sorted(vehicle_ids)])
        .on_conflict_do_nothing()
    )
    states = db.session.scalars(
        select(VehicleState)
        .where(VehicleState.vehicle_id.in_(vehicle_ids))
        .order_by(VehicleState.vehicle_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {state.vehicle_id: state for state in states}


def chunk_size(target_count: int) -> int:
    """Reports per transaction for an account with `target_count` targets: at most
    CHUNK_REPORTS, and fewer when each report may become a message per target."""
    return max(1, min(CHUNK_REPORTS, CHUNK_MESSAGES // max(1, target_count)))


def ingest(account_id: int, body: Any, now: datetime) -> IngestResult:
    """Check, store and detect a request body of reports, committing as it goes.
    Raises ValidationError if any report is bad, ReportQuotaExceeded if the
    account sent more reports than its quota allows: both before anything is
    written.

    The reports are stored and detected in time order, in chunks of at most
    `chunk_size` reports, each committed on its own with its vehicle state,
    events and outbox messages (so every stored report's events are in the outbox
    in its transaction): a large batch never holds the write lock (SQLite) or the
    targets' rows (PostgreSQL) for long. Should the process die between chunks, the
    client's retry stores the rest, the stored ones being duplicates by key."""
    reports, batched = check_batch(body, now)
    spend_reports(account_id, len(reports))
    vehicle_ids = [vehicle.id for vehicle in _vehicles(account_id, reports, batched)]
    # In time order, so a batch's transitions come out as they happened.
    ordered = sorted(zip(reports, vehicle_ids, strict=True), key=lambda pair: pair[0].time)
    size = chunk_size(len(account_targets(account_id)))
    accepted = events = messages = 0
    for first in range(0, len(ordered), size):
        counts = _ingest_chunk(account_id, ordered[first : first + size], now)
        db.session.commit()
        accepted += counts.accepted
        events += counts.events
        messages += counts.messages
    return IngestResult(accepted, len(reports) - accepted, events, messages)


def _ingest_chunk(
    account_id: int, chunk: list[tuple[Report, int]], received_at: datetime
) -> IngestResult:
    """Store and detect time-ordered (report, vehicle id) pairs in the current
    transaction; the caller commits. A report already stored (by an earlier chunk,
    request or process) is a duplicate."""
    ids = {vehicle_id for _, vehicle_id in chunk}
    # One query (re)loads the chunk's vehicles, expired by the last chunk's commit.
    vehicles = {v.id: v for v in db.session.scalars(select(Vehicle).where(Vehicle.id.in_(ids)))}
    # One row per distinct report; a repeat inside the chunk is a duplicate too.
    rows: dict[tuple[int, str, datetime], dict[str, Any]] = {}
    for report, vehicle_id in chunk:
        key = (vehicle_id, report.type, report.time.astimezone(UTC))
        rows.setdefault(
            key,
            {
                "vehicle_id": vehicle_id,
                "type": report.type,
                "time": report.time,
                "fields": report.fields,
            },
        )
    new = _store_new(list(rows.values()))
    states = _locked_states(ids)
    landmarks = account_landmarks_index(account_id)
    targets = account_targets(account_id)

    accepted = 0
    detected = []
    for report, vehicle_id in chunk:
        key = (vehicle_id, report.type, report.time.astimezone(UTC))
        if key not in new:
            continue
        new.discard(key)  # a second copy in this chunk is a duplicate
        accepted += 1
        found = detect(report, vehicles[vehicle_id], states[vehicle_id], landmarks)
        detected += [replace(event, received_at=received_at) for event in found]
    queued = fan_out(detected, targets)
    events = sum(
        1
        for event, messages in zip(detected, queued, strict=True)
        # An event a webhook takes only past its own setting (a speed threshold) is
        # counted only when some target took it.
        if messages or event.event_type.setting is None
    )
    messages = sum(len(m) for m in queued)
    return IngestResult(accepted, len(chunk) - accepted, events, messages)
