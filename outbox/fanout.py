"""Fan-out: one event becomes one outbox message per matching target of the
account, in the caller's transaction; the drains are nudged after it commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from extensions import db
from outbox.alerts import alert_auto_paused
from outbox.models import HELD, OutboxMessage, Target, TargetStatus, new_message_id
from outbox.queues import nudge_after_commit
from outbox.registry import kind_of


def enqueue_message(
    target: Target, event_type: str, payload: dict[str, Any], is_test: bool
) -> OutboxMessage:
    """Add one message for `target`, numbered after its last, and count it."""
    sequence = db.session.execute(
        update(Target)
        .where(Target.id == target.id)
        .values(
            total_messages=Target.total_messages + 1,
            queue_depth=Target.queue_depth + 1,
        )
        .returning(Target.total_messages, Target.queue_depth)
    ).one()
    total, depth = sequence
    message = OutboxMessage(
        target_id=target.id,
        sequence=total,
        message_id=new_message_id(),
        event_type=event_type,
        payload=payload,
        is_test=is_test,
    )
    db.session.add(message)
    cap = current_app.config["FLEETHOOK_QUEUE_DEPTH_CAP"]
    if depth > cap and target.status in (TargetStatus.ACTIVE, TargetStatus.FAILING):
        target.status = TargetStatus.PAUSED.value
        target.status_reason = (
            f"Paused automatically: Queue Depth passed {cap:,}. Fix the receiver, then Resume "
            "to deliver the backlog."
        )
        alert_auto_paused(target)
    return message


def account_targets(account_id: int) -> list[Target]:
    """The targets of the account that take messages (not disabled), by id."""
    return list(
        db.session.scalars(
            select(Target)
            .where(Target.account_id == account_id, Target.status != TargetStatus.DISABLED)
            .order_by(Target.id)
        )
    )


def fan_out(event: Any, targets: Sequence[Target]) -> list[OutboxMessage]:
    """Queue `event` for each of `targets` that wants it (usually the account's
    `account_targets`, loaded once per batch of events). The caller commits; drains
    are nudged after the commit."""
    messages = []
    nudged = []
    for target in targets:
        payload = kind_of(target).payload_for(target, event)
        if payload is None:
            continue
        messages.append(
            enqueue_message(
                target, payload["type"], payload, bool(getattr(event, "is_test", False))
            )
        )
        if target.status not in HELD:
            nudged.append(target)
    if messages:
        db.session.flush()
        nudge_after_commit(nudged)
    return messages
