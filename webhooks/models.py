"""The `webhook` table: a Target that POSTs events of one type to one URL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from core.database import UTCDateTime
from core.encryption import EncryptedText
from core.extensions import db
from core.times import utcnow
from outbox.models import Payload, Target


class Webhook(Target):
    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(ForeignKey("target.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2048))
    content_type: Mapped[str] = mapped_column(String(8))
    threshold_mph: Mapped[int | None]  # speed and posted_speed
    # Speed and posted_speed: an event for every report at or over the threshold, or
    # only when a vehicle first reaches it (events.catalogue.SpeedingEvents).
    speeding_events: Mapped[str] = mapped_column(
        String(16), default="every_report", server_default="every_report"
    )
    idle_minutes: Mapped[int | None]  # idle
    # Only vehicles of this group (Vehicle.group_name); None: every vehicle.
    vehicle_group: Mapped[str | None] = mapped_column(String(60))
    # Only events whose position is inside one of the account's landmarks, or inside
    # this circle or polygon ({"circle": …} or {"polygon": …}, as a landmark stores
    # it); neither: everywhere (webhooks/areas.py). A landmark in use is not deleted.
    area_landmark_id: Mapped[int | None] = mapped_column(
        ForeignKey("landmark.id", ondelete="RESTRICT"), index=True
    )
    area: Mapped[dict[str, Any] | None] = mapped_column(Payload)
    # Location only: a late position (received long after its fix) is not sent.
    skip_late: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Location only: positions sent as tracks (webhooks/tracks.py), one POST per
    # vehicle per window of at most track_points positions or track_seconds; a
    # position under track_min_distance_m from the last one kept is left out.
    # track_points None: every position is its own event.
    track_points: Mapped[int | None]
    track_seconds: Mapped[int | None]
    track_min_distance_m: Mapped[int | None]
    contact_email: Mapped[str | None] = mapped_column(String(254))
    custom_header_name: Mapped[str | None] = mapped_column(String(100))
    custom_header_value: Mapped[str | None] = mapped_column(EncryptedText)
    signing_secret: Mapped[str] = mapped_column(EncryptedText)
    # After a rotation the old secret signs beside the new one until it expires.
    previous_signing_secret: Mapped[str | None] = mapped_column(EncryptedText)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __mapper_args__ = {"polymorphic_identity": "webhook"}


class TrackPoint(db.Model):  # type: ignore[name-defined]
    """A position waiting in its vehicle's open track window (webhooks/tracks.py),
    as the webhook's redaction let it out."""

    __tablename__ = "track_point"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True
    )
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    ordering_key: Mapped[str] = mapped_column(String(64))  # the vehicle's lane
    fix_time: Mapped[datetime] = mapped_column(UTCDateTime)
    latitude: Mapped[float]
    longitude: Mapped[float]
    speed_mph: Mapped[float | None]
    heading: Mapped[int | None]
    # The vehicle ({"id", "name", "vin"}) and its driver as the event showed them.
    vehicle: Mapped[dict[str, Any]] = mapped_column(Payload)
    driver: Mapped[dict[str, Any] | None] = mapped_column(Payload)
    # When it arrived: the window it opens closes track_seconds later by the clock.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_track_point_window", "webhook_id", "ordering_key", "id"),)
