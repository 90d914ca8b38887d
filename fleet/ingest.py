"""The ingest: a checked batch of telemetry reports becomes stored reports, updated
vehicle state, events and outbox messages — all in one transaction, or nothing.

Duplicates (same vehicle, type and time) are found by the reports table's unique
key with INSERT … ON CONFLICT DO NOTHING, so two web processes receiving the same
report store and detect it once. The vehicles' state rows are locked (PostgreSQL
FOR UPDATE; on SQLite the first INSERT already holds the database's write lock),
so two batches for one vehicle are detected one after the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from errors import ValidationError
from extensions import db
from fleet.detector import detect
from fleet.landmark_index import account_landmarks_index
from fleet.models import TelemetryReport, Vehicle, VehicleState
from fleet.reports import Report, check_batch, error_key
from outbox.fanout import account_targets, fan_out

# Events a webhook takes only past its own threshold: counted as events only when
# some target took them.
_CANDIDATES = frozenset({"speed", "posted_speed", "idle"})


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


def ingest(account_id: int, body: Any, now: datetime) -> IngestResult:
    """Check, store and detect a request body of reports; the caller commits.
    Raises ValidationError (nothing written) if any report is bad."""
    reports, batched = check_batch(body, now)
    vehicles = _vehicles(account_id, reports, batched)

    # One row per distinct report; a repeat inside the batch is a duplicate too.
    rows: dict[tuple[int, str, datetime], dict[str, Any]] = {}
    for report, vehicle in zip(reports, vehicles, strict=True):
        key = (vehicle.id, report.type, report.time.astimezone(UTC))
        rows.setdefault(key, {"vehicle_id": vehicle.id, "type": report.type,
                              "time": report.time, "fields": report.fields})  # fmt: skip
    new = _store_new(list(rows.values()))
    states = _locked_states({vehicle.id for vehicle in vehicles})
    landmarks = account_landmarks_index(account_id)
    targets = account_targets(account_id)

    accepted = 0
    detected = []
    # In time order, so a batch's transitions come out as they happened.
    ordered = sorted(zip(reports, vehicles, strict=True), key=lambda pair: pair[0].time)
    for report, vehicle in ordered:
        key = (vehicle.id, report.type, report.time.astimezone(UTC))
        if key not in new:
            continue
        new.discard(key)  # a second copy in this batch is a duplicate
        accepted += 1
        detected += detect(report, vehicle, states[vehicle.id], landmarks)
    queued = fan_out(detected, targets)
    events = sum(
        1
        for event, messages in zip(detected, queued, strict=True)
        if messages or event.event_type.key not in _CANDIDATES
    )
    messages = sum(len(m) for m in queued)
    return IngestResult(accepted, len(reports) - accepted, events, messages)
