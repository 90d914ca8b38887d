"""The per-message-job baseline: one RQ job per outbox message, sent by the same
sender the drains use — the design DESIGN.md rejects, measured for contrast."""

from __future__ import annotations

import time

from database import utcnow
from extensions import db
from outbox.models import MessageStatus, OutboxMessage, Target
from outbox.registry import kind_of


def deliver_one(message_id: int) -> bool:
    """RQ job: send one message and mark it delivered if the receiver took it."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        return False
    target = db.session.get(Target, message.target_id)
    assert target is not None
    [result] = kind_of(target).send(target, [message], time.monotonic() + 30)
    if result.delivered:
        message.status = MessageStatus.DELIVERED.value
        message.finished_at = utcnow()
    db.session.commit()
    return result.delivered
