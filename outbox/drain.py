"""The drain job: one RQ job sends a batch of a target's due messages after another
over one keep-alive session, records every attempt under its leases, and stops
when nothing is due or its time budget is spent — re-nudging itself if work is
left. One job per target, never one per message."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from flask import current_app
from rq import get_current_job
from sqlalchemy import bindparam, insert, update

from database import utcnow
from extensions import db, redis_client, redis_key
from outbox.activity import record_activity
from outbox.claims import (
    acquire_drain,
    claim_due_messages,
    has_due_messages,
    lease,
    release_drain,
    release_messages,
    rows_changed,
)
from outbox.http import read_timeout_cap
from outbox.metrics import record_deliveries, record_drain
from outbox.models import (
    HELD,
    DeliveryAttempt,
    MessageStatus,
    OutboxMessage,
    Target,
    TargetStatus,
)
from outbox.queues import RETRIES, again_key, drain_job_id, nudge, queue_for
from outbox.registry import Result, kind_of
from outbox.schedule import next_attempt_at

log = logging.getLogger(__name__)

# Messages claimed at once, and seconds one drain may keep a worker.
BATCH_SIZE = 100
TIME_BUDGET_SECONDS = 5.0


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def drain_target(target_id: int) -> dict[str, Any]:
    """RQ job: send the target's due messages, in order, for a few seconds."""
    owner = _owner()
    if not acquire_drain(target_id, owner, utcnow()):
        db.session.rollback()
        # Another drain is at work on this target; have it look again.
        redis_client().set(again_key(target_id), 1, ex=int(lease().total_seconds()) * 3)
        return {"target": target_id, "sent": 0, "skipped": "another drain holds the target"}
    record_drain()
    attempted = 0
    budget_ends = time.monotonic() + TIME_BUDGET_SECONDS
    try:
        while time.monotonic() < budget_ends:
            target = db.session.get(Target, target_id, populate_existing=True)
            if target is None or target.status in HELD:
                break
            claimed_at = time.monotonic()
            batch = claim_due_messages(target_id, owner, utcnow(), BATCH_SIZE)
            if not batch:
                if redis_client().getdel(again_key(target_id)):
                    continue
                break
            # Start no request the lease would not outlast (config.py keeps the lease
            # longer than the slowest request).
            slowest = (
                current_app.config["FLEETHOOK_CONNECT_TIMEOUT"]
                + current_app.config["FLEETHOOK_READ_TIMEOUT"]
            )
            stop_at = min(budget_ends, claimed_at + lease().total_seconds() - slowest - 1)
            with _patience():
                results = kind_of(target).send(target, batch, stop_at)
            acquire_drain(target_id, owner, utcnow())  # renew, committed with the results
            record_results(target, owner, batch[: len(results)], results)
            release_messages([m.id for m in batch[len(results) :]], owner)
            attempted += len(results)
            if results and not (results[-1].delivered or results[-1].permanent):
                break  # the head must wait for its retry
            if len(batch) < BATCH_SIZE and not redis_client().getdel(again_key(target_id)):
                # Everything due was in this batch, and no nudge came since: no
                # need to claim again to learn that nothing is left.
                break
    finally:
        release_drain(target_id, owner)
    _follow_up(target_id)
    return {"target": target_id, "sent": attempted}


def _patience() -> AbstractContextManager[None]:
    """On the main queues a drain waits FLEETHOOK_MAIN_READ_TIMEOUT at most for an
    answer: a receiver that never answers costs a main worker that long once, then
    its target drains from the retries queue (it failed lately), where drains wait
    the full FLEETHOOK_READ_TIMEOUT on workers of their own."""
    job = get_current_job()
    if job is None or job.origin == redis_key(RETRIES):
        return nullcontext()
    return read_timeout_cap(current_app.config["FLEETHOOK_MAIN_READ_TIMEOUT"])


def _follow_up(target_id: int) -> None:
    """Nudge again when work is left or arrived meanwhile, under the other of the
    target's two job ids (this job's own id exists until it ends)."""
    target = db.session.get(Target, target_id, populate_existing=True)
    if target is None or target.status in HELD:
        return
    asked_again = redis_client().getdel(again_key(target_id))
    if asked_again or has_due_messages(target_id, utcnow()):
        job = get_current_job()
        i_am_follow_up = job is not None and job.id == drain_job_id(target_id, follow_up=True)
        # A job under the other id may be finishing on another worker right now:
        # wait a moment for it rather than replace it (the sweeper replaces leftovers).
        nudge(target_id, queue_for(target), follow_up=not i_am_follow_up, patience=0.5)


def record_results(
    target: Target, owner: str, messages: Sequence[OutboxMessage], results: Sequence[Result]
) -> None:
    """Write every attempt and each message's new state — only for messages this
    drain's lease still holds (fencing) — and keep the target's status and Queue
    Depth in step, in one transaction with one statement per kind of change."""
    now = utcnow()
    retention = current_app.config["FLEETHOOK_RETENTION"]
    fence = (OutboxMessage.lease_owner == owner, OutboxMessage.lease_expires_at > now)
    released = {"lease_owner": None, "lease_expires_at": None}
    pairs = list(zip(messages, results, strict=True))
    recorded: list[tuple[OutboxMessage, Result, str]] = []

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

    last_failure: Result | None = None
    for message, result in pairs:
        if result.delivered:
            continue
        attempts = message.attempts + 1
        # A permanent failure (no retry can mend it) ends the message now.
        if result.permanent or now - message.retain_from > retention:
            values: dict[str, Any] = {"status": MessageStatus.DEAD, "finished_at": now}
        else:
            values = {
                "status": MessageStatus.PENDING,
                "next_attempt_at": next_attempt_at(attempts, result.retry_after, now),
            }
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
            if not result.permanent:
                last_failure = result

    lost = len(pairs) - len(recorded)
    if lost:
        log.warning("lease lost: %s results not recorded for target %s", lost, target.id)
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
                    "request_headers": r.request_headers,
                    "response_headers": r.response_headers,
                    "response_body": r.response_body,
                }
                for m, r, _ in recorded
            ],
        )
    finished = sum(1 for _, _, status in recorded if status != MessageStatus.PENDING)
    _update_target(target, finished, last_failure, [r for _, r, _ in recorded], now)
    delivered_count = sum(1 for _, r, _ in recorded if r.delivered)
    record_activity(target.id, now, delivered_count, len(recorded) - delivered_count)
    # Read what the log lines need now: after the commit every attribute would be
    # loaded again, one SELECT per message.
    target_id, kind = target.id, target.kind
    lines = [(m.message_id, status, r.status_code, r.duration_ms) for m, r, status in recorded]
    db.session.commit()
    record_deliveries([r for _, r, _ in recorded], kind)
    for message_id, status, status_code, duration_ms in lines:
        log.info(
            "delivery webhook-id=%s target=%s outcome=%s http=%s ms=%s",
            message_id, target_id, status, status_code, duration_ms,
        )  # fmt: skip


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
    if last_failure is not None:
        changes["last_failure_at"] = now
        if last_failure.gone:
            changes["status"] = TargetStatus.DISABLED.value
            changes["status_reason"] = "Disabled: the endpoint answered 410 Gone"
        elif last_failure.needs_attention:
            changes["status"] = TargetStatus.NEEDS_ATTENTION.value
            changes["status_reason"] = f"Needs attention: {last_failure.needs_attention}"
        elif target.status == TargetStatus.ACTIVE or target.status == TargetStatus.FAILING:
            changes["status"] = TargetStatus.FAILING.value
            changes["status_reason"] = _describe(last_failure)
    elif results and target.status == TargetStatus.FAILING:
        changes["status"] = TargetStatus.ACTIVE.value
        changes["status_reason"] = None
        changes["last_failure_at"] = None
    if changes:
        db.session.execute(
            update(Target)
            .where(Target.id == target.id)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )


def _error_text(result: Result) -> str:
    """What went wrong, in a few words for the grid (Target.last_error)."""
    if result.error:
        text = result.error
    elif result.status_code is not None:
        text = f"HTTP {result.status_code}"
    else:
        text = "The attempt failed"
    return text[:500]


def _describe(result: Result) -> str:
    if result.status_code is not None:
        return f"Retrying: the last attempt got HTTP {result.status_code}"
    return f"Retrying: {result.error or 'the last attempt failed'}"
