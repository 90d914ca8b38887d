"""Getting messages out again: redeliver one message, or recover every dead or
expired message of a target since a time. Both keep the message's webhook-id, so
receivers can de-duplicate; the caller commits (drains are nudged after)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select, update

from core.extensions import db
from core.times import utcnow
from outbox.claims import move_queue_depth
from outbox.models import OPEN_STATUSES, DeliveryAttempt, MessageStatus, OutboxMessage, Target
from outbox.queues import nudge_after_commit

FINISHED = (MessageStatus.DELIVERED.value, MessageStatus.DEAD.value, MessageStatus.EXPIRED.value)


def redeliver(target: Target, message: OutboxMessage) -> bool:
    """Send a finished message again; False if it is still on its way."""
    if message.status in OPEN_STATUSES:
        return False
    _reopen(target, [message.id])
    return True


def recover_since(
    target: Target,
    since: datetime,
    lanes: Collection[str] | None = None,
    driver_id: int | None = None,
) -> int:
    """Send again every dead or expired message created since `since`; with `lanes`,
    only those of these lanes (vehicles); with `driver_id`, only those whose event
    names this driver (its body's data.driver.id)."""
    query = select(OutboxMessage.id).where(
        OutboxMessage.target_id == target.id,
        OutboxMessage.status.in_((MessageStatus.DEAD.value, MessageStatus.EXPIRED.value)),
        OutboxMessage.created_at >= since,
    )
    if lanes is not None:
        query = query.where(OutboxMessage.ordering_key.in_(lanes))
    if driver_id is not None:
        driver = OutboxMessage.payload["data"]["driver"]["id"].as_integer()
        query = query.where(driver == driver_id)
    ids = list(db.session.scalars(query))
    _reopen(target, ids)
    return len(ids)


def pruned_since(target: Target, since: datetime) -> datetime | None:
    """Up to when the target's dead or expired messages created since `since` were
    deleted by the retention (outbox/retention.py), if any were: a recovery from
    `since` cannot bring those back and must say so."""
    pruned_before = target.pruned_before
    if pruned_before is None or pruned_before < since:
        return None
    return pruned_before


def _reopen(target: Target, message_ids: list[int]) -> None:
    if not message_ids:
        return
    now = utcnow()
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids))
        .values(
            status=MessageStatus.PENDING,
            next_attempt_at=now,
            finished_at=None,
            # A fresh retention window: recovered messages are not closed at once.
            retain_from=now,
        )
        .execution_options(synchronize_session=False)
    )
    move_queue_depth(target.id, len(message_ids))
    nudge_after_commit([target])


def target_messages(
    target_id: int, status: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[OutboxMessage]:
    """A target's messages, newest first, optionally of one status."""
    query = select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    if status:
        query = query.where(OutboxMessage.status == status)
    if before_id is not None:
        query = query.where(OutboxMessage.id < before_id)
    return list(db.session.scalars(query.order_by(OutboxMessage.id.desc()).limit(limit)))


def last_error_details(message_ids: list[int]) -> dict[int, str]:
    """The technical detail of each message's latest attempt, where it has one."""
    if not message_ids:
        return {}
    latest = (
        select(func.max(DeliveryAttempt.id))
        .where(DeliveryAttempt.message_id.in_(message_ids))
        .group_by(DeliveryAttempt.message_id)
    )
    rows = db.session.execute(
        select(DeliveryAttempt.message_id, DeliveryAttempt.error_detail).where(
            DeliveryAttempt.id.in_(latest), DeliveryAttempt.error_detail.is_not(None)
        )
    )
    return {message_id: detail or "" for message_id, detail in rows}


def find_message(target_id: int, message_id: str) -> OutboxMessage | None:
    """The target's message with this webhook-id; another target's finds nothing."""
    return db.session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.message_id == message_id, OutboxMessage.target_id == target_id
        )
    )


def status_counts(target_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.target_id == target_id)
        .group_by(OutboxMessage.status)
    ).all()
    return {status: count for status, count in rows}
