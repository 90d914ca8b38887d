"""Tables of an account's fleet: vehicles and landmarks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from database import UTCDateTime, utcnow
from extensions import db
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
