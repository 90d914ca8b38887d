"""Tables of the outbox: `Target`, the row every webhook and integration is, holding
the status and counters the grids show."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from database import UTCDateTime, utcnow
from extensions import db


class TargetStatus(StrEnum):
    ACTIVE = "active"  # messages are delivered
    PAUSED = "paused"  # messages queue up, nothing is sent
    FAILING = "failing"  # deliveries fail; retries continue on the schedule
    DISABLED = "disabled"  # stopped by Fleethook (e.g. the endpoint answered 410)
    NEEDS_ATTENTION = "needs_attention"  # an integration needs its credentials fixed


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
    # Why the status is what it is, in words for the grid ("Endpoint answered 410").
    status_reason: Mapped[str | None] = mapped_column(String(500))
    # Kept in step with the outbox in the same transactions that change it, so the
    # grid reads two integers instead of counting millions of rows.
    queue_depth: Mapped[int] = mapped_column(default=0)
    total_messages: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "target"}
