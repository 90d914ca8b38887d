"""Recording what a drain's attempts came to: each attempt written, each message
ended, waiting for its retry or handed back, the target's status, window, counters
and activity moved, all in one transaction. Every write is fenced by the claim the
drain holds: a message whose lease another drain took since is left as it is."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, insert, update

from core.extensions import db
from core.times import utcnow
from outbox.activity import record_activity
from outbox.claims import rows_changed
from outbox.failures import shorten
from outbox.metrics import record_deliveries
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, Target
from outbox.registry import Result, kind_of
from outbox.schedule import RETRY_STEPS, next_attempt_at
from outbox.status import after_attempts

log = logging.getLogger(__name__)


@dataclass
class Outcomes:
    """What came of one target's attempts: each message with its result."""

    target: Target
    messages: Sequence[OutboxMessage]
    results: Sequence[Result]


def record_results(owner: str, outcomes: Sequence[Outcomes]) -> None:
    """Write every attempt and each message's new state — only for messages this
    drain's lease still holds (fencing) — and keep each target's status and Queue
    Depth in step: in one transaction, for every target at once."""
    now = utcnow()
    retention = current_app.config["FLEETHOOK_RETENTION"]
    fence = (OutboxMessage.lease_owner == owner, OutboxMessage.lease_expires_at > now)
    released = {"lease_owner": None, "lease_expires_at": None}
    pairs = [
        (m, r)
        for outcome in outcomes
        for m, r in zip(outcome.messages, outcome.results, strict=True)
    ]
    recorded: list[tuple[OutboxMessage, Result, str]] = []
    stale_after = {
        message.id: kind_of(outcome.target).stale_after(outcome.target, message.event_type)
        for outcome in outcomes
        for message in outcome.messages
    }

    delivered = [(m, r) for m, r in pairs if r.delivered]
    if delivered:
        won = set(
            db.session.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([m.id for m, _ in delivered]), *fence)
                .values(
                    status=MessageStatus.DELIVERED,
                    finished_at=now,
                    attempts=OutboxMessage.attempts + 1,
                    last_error=None,
                    **released,
                )
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
        )
        # Status code and latency differ per message; written in one executemany.
        details = [
            {"b_id": m.id, "b_code": r.status_code, "b_ms": r.duration_ms}
            for m, r in delivered
            if m.id in won
        ]
        if details:
            db.session.connection().execute(
                update(OutboxMessage.__table__)
                .where(OutboxMessage.__table__.c.id == bindparam("b_id"))
                .values(last_status_code=bindparam("b_code"), last_latency_ms=bindparam("b_ms")),
                details,
            )
        recorded += [(m, r, "delivered") for m, r in delivered if m.id in won]

    for message, result in pairs:
        if result.delivered:
            continue
        attempts = message.attempts + 1
        # A permanent failure (no retry can mend it) ends the message now.
        if result.permanent or now - message.retain_from > retention:
            values: dict[str, Any] = {"status": MessageStatus.DEAD, "finished_at": now}
        else:
            retry_at = next_attempt_at(attempts, result.retry_after, now)
            ttl = stale_after[message.id]
            if ttl is not None and retry_at - message.retain_from > ttl:
                # By the time it could be tried again it is worth nothing (a
                # position minutes old): it ends, and the lane goes on.
                values = {"status": MessageStatus.STALE, "finished_at": now}
            else:
                values = {"status": MessageStatus.PENDING, "next_attempt_at": retry_at}
        changed = db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id, *fence)
            .values(
                attempts=attempts,
                last_status_code=result.status_code,
                last_latency_ms=result.duration_ms,
                last_error=result.error,
                **released,
                **values,
            )
            .execution_options(synchronize_session=False)
        )
        if rows_changed(changed) == 1:
            recorded.append((message, result, values["status"].value))

    lost = len(pairs) - len(recorded)
    if lost:
        log.warning("lease lost: %s results not recorded", lost)
    if recorded:
        db.session.execute(
            insert(DeliveryAttempt),
            [
                {
                    "message_id": m.id,
                    "attempted_at": now,
                    "outcome": "delivered" if r.delivered else _failure_kind(r),
                    "status_code": r.status_code,
                    "duration_ms": r.duration_ms,
                    "error": r.error,
                    "error_detail": r.error_detail,
                    "request_headers": r.request_headers,
                    "response_headers": r.response_headers,
                    "response_body": r.response_body,
                }
                for m, r, _ in recorded
            ],
        )
    of_target: dict[int, list[tuple[OutboxMessage, Result, str]]] = {}
    for item in recorded:
        of_target.setdefault(item[0].target_id, []).append(item)
    kinds = {}
    for outcome in outcomes:
        target = outcome.target
        kinds[target.id] = target.kind
        mine = of_target.get(target.id, [])
        finished = sum(1 for _, _, status in mine if status != MessageStatus.PENDING)
        retried = [r for _, r, _ in mine if not (r.delivered or r.permanent)]
        last_failure = retried[-1] if retried else None
        _update_target(target, finished, last_failure, [r for _, r, _ in mine], now)
        delivered_count = sum(1 for _, r, _ in mine if r.delivered)
        record_activity(target.id, now, delivered_count, len(mine) - delivered_count)
    # Read what the log lines need now: after the commit every attribute would be
    # loaded again.
    lines = [
        (m.message_id, m.target_id, status, r.status_code, r.duration_ms)
        for m, r, status in recorded
    ]
    db.session.commit()
    for target_id, mine in of_target.items():
        record_deliveries([r for _, r, _ in mine], kinds[target_id])
    # DEBUG: one line per delivery; FLEETHOOK_VERBOSE=1 shows them (app.py).
    for message_id, target_id, status, status_code, duration_ms in lines:
        log.debug(
            "delivery webhook-id=%s target=%s outcome=%s http=%s ms=%s",
            message_id,
            target_id,
            status,
            status_code,
            duration_ms,
        )


def _failure_kind(result: Result) -> str:
    if result.gone:
        return "gone"
    if result.permanent:
        return "rejected"
    if result.needs_attention:
        return "unauthorized"
    if result.retry_after is not None:
        return "throttled"
    return "failed"


def _update_target(
    target: Target,
    finished: int,
    last_failure: Result | None,
    results: Sequence[Result],
    now: Any,
) -> None:
    changes: dict[str, Any] = {}
    if finished:
        changes["queue_depth"] = Target.queue_depth - finished
    if any(result.delivered for result in results):
        changes["last_delivered_at"] = now
    failures = [result for result in results if not result.delivered]
    if failures:
        # Permanent refusals too: the grid shows the latest error of any kind.
        changes["last_error"] = _error_text(failures[-1])
        changes["last_error_at"] = now
    changes.update(after_attempts(target, last_failure, results, now))
    changes.update(_back_pressure(target, results, now))
    if changes:
        db.session.execute(
            update(Target)
            .where(Target.id == target.id)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )


def _back_pressure(target: Target, results: Sequence[Result], now: Any) -> dict[str, Any]:
    """The target's window: halved when the receiver pushes back (429/502/503/504,
    or no answer by the deadline), one more after a batch of successes without,
    up to max_in_flight. A Retry-After pauses the whole target until then."""
    changes: dict[str, Any] = {}
    if any(result.throttled for result in results):
        changes["send_window"] = max(1, target.send_window // 2)
        waits = [result.retry_after for result in results if result.retry_after is not None]
        if waits:
            pause = min(max(waits), RETRY_STEPS[-1])
            changes["throttled_until"] = now + timedelta(seconds=pause)
    elif any(result.delivered for result in results):
        if target.send_window < target.max_in_flight:
            changes["send_window"] = target.send_window + 1
        elif target.send_window > target.max_in_flight:  # max_in_flight was lowered
            changes["send_window"] = target.max_in_flight
    return changes


def _error_text(result: Result) -> str:
    """What went wrong, in a few words for the grid (Target.last_error)."""
    if result.error:
        text = result.error
    elif result.status_code is not None:
        text = f"HTTP {result.status_code}"
    else:
        text = "The attempt failed"
    return shorten(text, 500)
