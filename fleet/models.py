"""Tables of an account's fleet: vehicles, drivers and their assignments,
landmarks, the telemetry reports received, and each vehicle's detector state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.database import UTCDateTime
from core.extensions import db
from core.times import utcnow
from outbox.models import Payload


class Vehicle(db.Model):  # type: ignore[name-defined]
    """A vehicle, known by its VIN within its account; it also carries the
    attributes integrations keep in sync."""

    __table_args__ = (UniqueConstraint("account_id", "vin"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    vin: Mapped[str] = mapped_column(String(17))
    plate: Mapped[str | None] = mapped_column(String(20))
    group_name: Mapped[str | None] = mapped_column(String(60))
    odometer_mi: Mapped[float | None]
    engine_hours: Mapped[float | None]
    fuel_level_pct: Mapped[float | None]
    last_latitude: Mapped[float | None]
    last_longitude: Mapped[float | None]
    last_fix_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_dvir: Mapped[dict[str, Any] | None] = mapped_column(Payload)
    # The driver assigned now (history in DriverAssignment).
    driver_id: Mapped[int | None] = mapped_column(
        ForeignKey("driver.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Landmark(db.Model):  # type: ignore[name-defined]
    """A geofence: a circle or a GeoJSON polygon (see fleet/geometry.py)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    # {"circle": {...}} or {"polygon": {GeoJSON}}, as the API takes it.
    shape: Mapped[dict[str, Any]] = mapped_column(Payload)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Driver(db.Model):  # type: ignore[name-defined]
    """A driver of the account, known by name (reports name drivers by name)."""

    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The customer's own reference (employee number, ServiceMax technician id …).
    external_id: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DriverAssignment(db.Model):  # type: ignore[name-defined]
    """One assignment of a driver to a vehicle, from a report or the portal."""

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(
        ForeignKey("vehicle.id", ondelete="CASCADE"), index=True
    )
    # None: the vehicle was left without a driver.
    driver_id: Mapped[int | None] = mapped_column(
        ForeignKey("driver.id", ondelete="SET NULL"), index=True
    )
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # "report", "portal" or "api"


class TelemetryReport(db.Model):  # type: ignore[name-defined]
    """A report as accepted by the ingest. The unique key makes a repeated report
    (same vehicle, type and time) a duplicate, whichever process receives it."""

    __table_args__ = (
        UniqueConstraint("vehicle_id", "type", "time"),
        Index("ix_telemetry_report_received_at", "received_at"),
        # What the retention prunes by (outbox/retention.py).
        Index("ix_telemetry_report_time", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicle.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    fields: Mapped[dict[str, Any]] = mapped_column(Payload)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VehicleState(db.Model):  # type: ignore[name-defined]
    """What the detector knows of a vehicle between reports. Kept in the database
    and changed in the ingest transaction, so a restart or another web process
    carries on exactly where the last report left it."""

    vehicle_id: Mapped[int] = mapped_column(
        ForeignKey("vehicle.id", ondelete="CASCADE"), primary_key=True
    )
    # Time of the newest position; an older one is late and changes no state.
    position_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ignition: Mapped[bool | None]
    speed_mph: Mapped[float | None]
    # mph over the posted limit at the newest position (None: no limit reported),
    # so a posted-speed episode's start can be told from its continuation.
    over_limit_mph: Mapped[float | None]
    heading: Mapped[int | None]
    # Ids of the landmarks the vehicle is inside, as of position_at.
    landmark_ids: Mapped[list[int]] = mapped_column(Payload, default=list)
    # The fault codes of the newest report that carried any ([{"code",
    # "description"}], [] once cleared; None: never reported).
    fault_codes: Mapped[list[dict[str, Any]] | None] = mapped_column(Payload)
    # The idle period in progress: since when and where.
    idle_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idle_latitude: Mapped[float | None]
    idle_longitude: Mapped[float | None]
    # The trip in progress (ignition on): its start and running totals, see detector.
    trip: Mapped[dict[str, Any] | None] = mapped_column(Payload)
    # Time of the newest driver assignment report.
    assignment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
