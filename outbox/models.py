"""Tables of the outbox: `Target` (the row every webhook and integration is, with
its status, counters, delivery settings and drain lease), `OutboxMessage` (one
event for one target, in one ordering lane), `OutboxLane` (each lane's last
sequence number), `DeliveryAttempt` (one try at sending a message) and
`TargetActivity` (a target's deliveries and failures per minute, for the charts)."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from core.database import UTCDateTime
from core.extensions import db
from core.times import utcnow
from outbox.failures import shorten

ERROR_LENGTH = 500  # what a status reason or a last error holds


def _fits(text: str | None) -> str | None:
    """`text` shortened at a word to what its column holds: a receiver's long
    refusal must not make the drain's write fail on PostgreSQL."""
    return None if text is None else shorten(text, ERROR_LENGTH)


class TargetStatus(StrEnum):
    ACTIVE = "active"  # messages are delivered
    PAUSED = "paused"  # messages queue up, nothing is sent
    FAILING = "failing"  # deliveries fail; retries continue on the schedule
    DISABLED = "disabled"  # stopped by Fleethook (e.g. the endpoint answered 410)
    NEEDS_ATTENTION = "needs_attention"  # an integration needs its credentials fixed


# Statuses in which nothing is sent; messages keep queueing until a person acts.
HELD = (TargetStatus.PAUSED, TargetStatus.DISABLED, TargetStatus.NEEDS_ATTENTION)


class Ordering(StrEnum):
    """Which messages of a target must arrive in the order they were created."""

    VEHICLE = "vehicle"  # each vehicle's (each lane's) messages, in order
    WEBHOOK = "webhook"  # every message of the target: one lane, one request at a time
    NONE = "none"  # no order: any due message may go


# Requests one target may have in flight at once (Target.max_in_flight).
MAX_IN_FLIGHT_RANGE = (1, 64)
DEFAULT_MAX_IN_FLIGHT = 16


class Target(db.Model):  # type: ignore[name-defined]
    """A destination of messages. Webhooks and integrations are kinds of target
    (joined-table inheritance), so they share one id space, the status logic and
    the counters, and every outbox message points here."""

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default=TargetStatus.ACTIVE.value)
    # Why the status is what it is: the cause code asks (outbox/status.py), and the
    # words the grid shows ("Disabled: the endpoint answered 410 Gone").
    status_cause: Mapped[str | None] = mapped_column(String(24))
    status_reason: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))
    # Kept in step with the outbox in the same transactions that change it, so the
    # grid reads two integers instead of counting millions of rows.
    queue_depth: Mapped[int] = mapped_column(default=0)
    total_messages: Mapped[int] = mapped_column(default=0)
    # Events not queued for this target because its account was over its pending
    # messages quota while the target was paused or failing (accounts/quotas.py).
    dropped_by_quota: Mapped[int] = mapped_column(default=0, server_default="0")
    # The drain that may send this target's messages now: one at a time, so a
    # target's messages leave in order however many workers run.
    drain_owner: Mapped[str | None] = mapped_column(String(80))
    drain_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How its messages are ordered and how many requests may be in flight (up to
    # max_in_flight; `send_window` is today's limit, halved when the receiver pushes
    # back and grown again by its successes). `in_flight` is what the grid shows.
    ordering: Mapped[str] = mapped_column(String(8), default=Ordering.VEHICLE.value)
    max_in_flight: Mapped[int] = mapped_column(default=DEFAULT_MAX_IN_FLIGHT)
    send_window: Mapped[int] = mapped_column(default=DEFAULT_MAX_IN_FLIGHT)
    in_flight: Mapped[int] = mapped_column(default=0)
    # At most this many messages a second (None: as fast as the window allows).
    rate_limit: Mapped[float | None]
    # Location and heartbeat only: a lane's older pending messages are superseded
    # by its newest when a backlog forms.
    latest_wins: Mapped[bool] = mapped_column(default=False)
    # Nothing is pushed: its messages are kept for its feed (outbox/feed.py) only.
    pull_only: Mapped[bool] = mapped_column(default=False)
    # A message older than this many minutes ends stale; None: its kind says
    # (a webhook: its event type's TTL; outbox/registry.py, stale_after).
    ttl_minutes: Mapped[int | None]
    # What every event leaves out or blurs before it is sent (events/redaction.py).
    drop_driver_name: Mapped[bool] = mapped_column(default=False, server_default=false())
    coordinate_decimals: Mapped[int | None]
    drop_fields: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # The receiver asked us to wait (Retry-After): nothing is sent before this.
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When this target last failed; recent failures drain from the retries queue.
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the grid shows of the latest results, written with them by the drain:
    # reading them is cheaper than looking for them among millions of attempts.
    # (last_failure_at is cleared when the target recovers; these stay.)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Dead or expired messages created before this were deleted by the retention
    # (outbox/retention.py): a recovery from earlier says they cannot come back.
    pruned_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "target"}

    @property
    def is_held(self) -> bool:
        """Nothing is sent until a person resumes it."""
        return self.status in HELD

    @validates("status_reason", "last_error")
    def _shortened(self, _key: str, text: str | None) -> str | None:
        return _fits(text)


class MessageStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENDING = "sending"  # leased by a drain
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # attempts failed until the retention window ended
    EXPIRED = "expired"  # never sent within the retention window (target paused)
    SUPERSEDED = "superseded"  # a newer message of its lane was sent instead (latest wins)
    KEPT = "kept"  # for a pull-only target's feed; never pushed
    STALE = "stale"  # older than its time to live (TTL) before it was delivered


OPEN_STATUSES = (MessageStatus.PENDING.value, MessageStatus.SENDING.value)
FINISHED_STATUSES = tuple(s.value for s in MessageStatus if s.value not in OPEN_STATUSES)

# The lane of an event that names no vehicle: the target's own.
TARGET_LANE = "target"


MESSAGE_ID_PREFIX = "msg_"


def new_message_id() -> str:
    """A webhook-id: kept by the message for every attempt and redelivery."""
    return MESSAGE_ID_PREFIX + secrets.token_hex(12)


Payload = JSON().with_variant(JSONB(), "postgresql")


class OutboxMessage(db.Model):  # type: ignore[name-defined]
    """One event for one target, written in the transaction that produced it."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True
    )
    target_id: Mapped[int] = mapped_column(ForeignKey("target.id", ondelete="CASCADE"))
    # 1, 2, 3 … per target: the order of the whole target (ordering "webhook").
    sequence: Mapped[int]
    # The lane (vehicle:<id>, or "target") and 1, 2, 3 … within it: the order of
    # ordering "vehicle", and the fleethook-ordering-key / -sequence headers.
    ordering_key: Mapped[str] = mapped_column(String(64), default=TARGET_LANE)
    lane_sequence: Mapped[int] = mapped_column(default=0)
    # The webhook-id: the same on every attempt and redelivery.
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    # JSON, not JSONB, on PostgreSQL too: kept as written, keys in the order fan-out
    # built them, so every attempt sends the bytes the portal's example shows.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_test: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(10), default=MessageStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))
    last_status_code: Mapped[int | None]
    last_latency_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The retention window counts from here: creation, or the last redelivery.
    retain_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempt_records: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="message",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DeliveryAttempt.id",
    )

    __table_args__ = (
        # A target's open messages in order: claims, queue views, FIFO.
        Index("ix_outbox_message_target_status_sequence", "target_id", "status", "sequence"),
        # A target's open messages lane by lane: the heads of its lanes.
        Index(
            "ix_outbox_message_target_status_lane",
            "target_id",
            "status",
            "ordering_key",
            "lane_sequence",
        ),
        # What the sweeper looks for: open messages by due time.
        Index("ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"),
        # The messages list of a target, newest first.
        Index("ix_outbox_message_target_created", "target_id", "created_at"),
        # A webhook's pull feed, after its cursor (outbox/feed.py).
        Index("ix_outbox_message_target_sequence", "target_id", "sequence"),
        # What the retention prunes ended messages by (outbox/retention.py).
        Index("ix_outbox_message_finished_at", "finished_at"),
    )


class OutboxLane(db.Model):  # type: ignore[name-defined]
    """A lane's last sequence number, so the next message of the lane gets the next
    one (contiguous per lane: a receiver sees a gap when it missed a message)."""

    __tablename__ = "outbox_lane"

    target_id: Mapped[int] = mapped_column(
        ForeignKey("target.id", ondelete="CASCADE"), primary_key=True
    )
    ordering_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(default=0)


class DeliveryAttempt(db.Model):  # type: ignore[name-defined]
    """One try at sending a message, with what was sent and what came back."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True
    )
    message_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_message.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    duration_ms: Mapped[int]
    # What went wrong in words (outbox/failures.py), and the technical text of it.
    error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))
    error_detail: Mapped[str | None] = mapped_column(Text)
    # Custom header values are masked before they are stored.
    request_headers: Mapped[dict[str, str]] = mapped_column(Payload)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(Payload)
    response_body: Mapped[str | None] = mapped_column(Text)  # at most 4 KiB

    message: Mapped[OutboxMessage] = relationship(back_populates="attempt_records")


class TargetActivity(db.Model):  # type: ignore[name-defined]
    """A target's attempts in one minute: how many were delivered, how many failed.
    One row per target and minute with any attempt, added to once per drain batch
    (outbox/activity.py), and dropped by the sweeper after a couple of hours."""

    __tablename__ = "target_activity"

    target_id: Mapped[int] = mapped_column(
        ForeignKey("target.id", ondelete="CASCADE"), primary_key=True
    )
    # Whole minutes since the Unix epoch (UTC): an integer compares, groups and
    # conflicts the same way on SQLite and PostgreSQL.
    minute: Mapped[int] = mapped_column(primary_key=True)
    delivered: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)

    # What the sweeper prunes by.
    __table_args__ = (Index("ix_target_activity_minute", "minute"),)
