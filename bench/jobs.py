"""The per-message-job baseline: one RQ job per outbox message, sent the way the
drains send it (a webhook through the process's concurrent transport, an
integration through its kind's own send) — the design DESIGN.md rejects, measured
for contrast."""

from __future__ import annotations

import time

from flask import current_app

from core.extensions import db
from core.times import utcnow
from outbox.models import MessageStatus, OutboxMessage, Target
from outbox.registry import ConcurrentKind, Result, kind_of
from outbox.transport import Delivery, transport


def deliver_one(message_id: int) -> bool:
    """RQ job: send one message and mark it delivered if the receiver took it."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        return False
    target = db.session.get(Target, message.target_id)
    assert target is not None
    kind = kind_of(target)
    if isinstance(kind, ConcurrentKind):
        [prepared] = kind.deliveries(target, [message])
        if isinstance(prepared, Delivery):
            deadline = float(current_app.config["FLEETHOOK_DELIVERY_DEADLINE"])
            future = transport().send_run([prepared], deadline, time.monotonic() + deadline)
            [result] = future.result()
        else:
            result = prepared
        assert isinstance(result, Result)
    else:
        [result] = kind.send(target, [message], time.monotonic() + 30)
    if result.delivered:
        message.status = MessageStatus.DELIVERED.value
        message.finished_at = utcnow()
    db.session.commit()
    return result.delivered
