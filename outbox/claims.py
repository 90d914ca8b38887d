"""Who may send what: the drain lease on a target (one drain at a time, so a
target's messages leave in order), and the lease on each claimed message (so a
worker whose lease expired cannot mark anything).

PostgreSQL locks the candidate rows with FOR UPDATE SKIP LOCKED; SQLite, which has
no row locks (SQLAlchemy silently drops with_for_update there), relies on the
conditional UPDATE … RETURNING whose result says which rows this worker won."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, and_, or_, select, update

from extensions import db
from outbox.models import OPEN_STATUSES, MessageStatus, OutboxMessage, Target


def lease() -> timedelta:
    """How long a drain or a claimed message stays ours without renewal
    (FLEETHOOK_LEASE_SECONDS, 60). A killed worker's messages are claimable
    again after it, plus one sweep interval."""
    return timedelta(seconds=current_app.config["FLEETHOOK_LEASE_SECONDS"])


def acquire_drain(target_id: int, owner: str, now: datetime) -> bool:
    """Take (or renew) the target's drain lease; False if another drain holds it.
    Not committed here: the caller's next write commits it (one transaction fewer
    per batch)."""
    result = db.session.execute(
        update(Target)
        .where(
            Target.id == target_id,
            or_(
                Target.drain_owner.is_(None),
                Target.drain_owner == owner,
                Target.drain_expires_at < now,
            ),
        )
        .values(drain_owner=owner, drain_expires_at=now + lease())
        .execution_options(synchronize_session=False)
    )
    return rows_changed(result) == 1


def rows_changed(result: Any) -> int:
    """How many rows an UPDATE changed: the answer to "did this worker win?"."""
    return int(cast(CursorResult[Any], result).rowcount)


def release_drain(target_id: int, owner: str) -> None:
    db.session.execute(
        update(Target)
        .where(Target.id == target_id, Target.drain_owner == owner)
        .values(drain_owner=None, drain_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _claimable(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        OutboxMessage.status == MessageStatus.PENDING,
        and_(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.lease_expires_at < now),
    )


def claim_due_messages(
    target_id: int, owner: str, now: datetime, limit: int
) -> list[OutboxMessage]:
    """Lease the target's next due messages, in sequence order. A message waiting
    for its retry holds back every later one (per-target FIFO)."""
    candidates = (
        select(
            OutboxMessage.id,
            OutboxMessage.status,
            OutboxMessage.next_attempt_at,
            OutboxMessage.lease_expires_at,
        )
        .where(OutboxMessage.target_id == target_id, OutboxMessage.status.in_(OPEN_STATUSES))
        .order_by(OutboxMessage.sequence)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    due = []
    for row in db.session.execute(candidates):
        leased_by_another = row.status == MessageStatus.SENDING and row.lease_expires_at >= now
        if leased_by_another or row.next_attempt_at > now:
            break
        due.append(row.id)
    if not due:
        db.session.commit()
        return []
    won = set(
        db.session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due), _claimable(now))
            .values(status=MessageStatus.SENDING, lease_owner=owner, lease_expires_at=now + lease())
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    # Keep the unbroken run from the head: a gap would send out of order.
    claimed = []
    for message_id in due:
        if message_id not in won:
            break
        claimed.append(message_id)
    stray = won - set(claimed)
    if stray:
        release_messages(sorted(stray), owner)
    if not claimed:
        return []
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(claimed))
            .order_by(OutboxMessage.sequence)
            .execution_options(populate_existing=True)
        )
    )


def release_messages(message_ids: list[int], owner: str) -> None:
    """Hand back claimed messages that were not attempted."""
    if not message_ids:
        return
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids), OutboxMessage.lease_owner == owner)
        .values(status=MessageStatus.PENDING, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def has_due_messages(target_id: int, now: datetime) -> bool:
    head = db.session.execute(
        select(OutboxMessage.status, OutboxMessage.next_attempt_at, OutboxMessage.lease_expires_at)
        .where(OutboxMessage.target_id == target_id, OutboxMessage.status.in_(OPEN_STATUSES))
        .order_by(OutboxMessage.sequence)
        .limit(1)
    ).first()
    if head is None:
        return False
    if head.status == MessageStatus.SENDING:
        return bool(head.lease_expires_at < now)
    return bool(head.next_attempt_at <= now)
