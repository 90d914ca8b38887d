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
from typing import Any

from flask import current_app
from rq import get_current_job
from sqlalchemy import update

from database import utcnow
from extensions import db, redis_client
from outbox.claims import (
    acquire_drain,
    claim_due_messages,
    has_due_messages,
    lease,
    release_drain,
    release_messages,
    rows_changed,
)
from outbox.metrics import record_delivery, record_drain
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, Target, TargetStatus
from outbox.queues import again_key, drain_job_id, nudge, queue_for
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
        # Another drain is at work on this target; have it look again.
        redis_client().set(again_key(target_id), 1, ex=int(lease().total_seconds()) * 3)
        return {"target": target_id, "sent": 0, "skipped": "another drain holds the target"}
    record_drain()
    attempted = 0
    budget_ends = time.monotonic() + TIME_BUDGET_SECONDS
    try:
        while time.monotonic() < budget_ends:
            target = db.session.get(Target, target_id, populate_existing=True)
            if target is None or target.status in (TargetStatus.PAUSED, TargetStatus.DISABLED):
                break
            claimed_at = time.monotonic()
            batch = claim_due_messages(target_id, owner, utcnow(), BATCH_SIZE)
            if not batch:
                if redis_client().getdel(again_key(target_id)):
                    continue
                break
            # Stop sending while the leases still cover the slowest possible request.
            slowest = (
                current_app.config["FLEETHOOK_CONNECT_TIMEOUT"]
                + current_app.config["FLEETHOOK_READ_TIMEOUT"]
            )
            stop_at = min(budget_ends, claimed_at + lease().total_seconds() - slowest - 5)
            results = kind_of(target).send(target, batch, stop_at)
            record_results(target, owner, batch[: len(results)], results)
            release_messages([m.id for m in batch[len(results) :]], owner)
            attempted += len(results)
            acquire_drain(target_id, owner, utcnow())  # renew
            if results and not results[-1].delivered:
                break  # the head must wait for its retry
    finally:
        release_drain(target_id, owner)
    _follow_up(target_id)
    return {"target": target_id, "sent": attempted}


def _follow_up(target_id: int) -> None:
    """Nudge again when work is left or arrived meanwhile, under the other of the
    target's two job ids (this job's own id exists until it ends)."""
    target = db.session.get(Target, target_id, populate_existing=True)
    if target is None or target.status in (TargetStatus.PAUSED, TargetStatus.DISABLED):
        return
    asked_again = redis_client().getdel(again_key(target_id))
    if asked_again or has_due_messages(target_id, utcnow()):
        job = get_current_job()
        i_am_follow_up = job is not None and job.id == drain_job_id(target_id, follow_up=True)
        nudge(target_id, queue_for(target), follow_up=not i_am_follow_up)


def record_results(
    target: Target, owner: str, messages: Sequence[OutboxMessage], results: Sequence[Result]
) -> None:
    """Write each attempt and the message's new state — only while this drain's
    lease on the message holds (fencing) — and keep the target's status and Queue
    Depth in step, all in one transaction."""
    now = utcnow()
    retention = current_app.config["FLEETHOOK_RETENTION"]
    finished = 0
    last_failure: Result | None = None
    for message, result in zip(messages, results, strict=True):
        attempts = message.attempts + 1
        if result.delivered:
            values: dict[str, Any] = {"status": MessageStatus.DELIVERED, "finished_at": now}
            finished += 1
        elif now - message.retain_from > retention:
            values = {"status": MessageStatus.DEAD, "finished_at": now}
            finished += 1
        else:
            values = {
                "status": MessageStatus.PENDING,
                "next_attempt_at": next_attempt_at(attempts, result.retry_after, now),
            }
        fenced = rows_changed(
            db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message.id,
                    OutboxMessage.lease_owner == owner,
                    OutboxMessage.lease_expires_at > now,
                )
                .values(
                    attempts=attempts,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_status_code=result.status_code,
                    last_latency_ms=result.duration_ms,
                    last_error=result.error,
                    **values,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if fenced != 1:
            log.warning("lease lost: not recording %s for target %s", message.message_id, target.id)
            if values["status"] != MessageStatus.PENDING:
                finished -= 1
            continue
        db.session.add(
            DeliveryAttempt(
                message_id=message.id,
                attempted_at=now,
                outcome=values["status"].value if result.delivered else _failure_kind(result),
                status_code=result.status_code,
                duration_ms=result.duration_ms,
                error=result.error,
                request_headers=result.request_headers,
                response_headers=result.response_headers,
                response_body=result.response_body,
            )
        )
        record_delivery(result, target.kind)
        log.info(
            "delivery webhook-id=%s target=%s outcome=%s status=%s ms=%s",
            message.message_id, target.id, "delivered" if result.delivered else "failed",
            result.status_code, result.duration_ms,
        )  # fmt: skip
        if not result.delivered:
            last_failure = result
    _update_target(target, finished, last_failure, results, now)
    db.session.commit()


def _failure_kind(result: Result) -> str:
    if result.gone:
        return "gone"
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
    if last_failure is not None:
        changes["last_failure_at"] = now
        if last_failure.gone:
            changes["status"] = TargetStatus.DISABLED.value
            changes["status_reason"] = "Disabled: the endpoint answered 410 Gone"
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


def _describe(result: Result) -> str:
    if result.status_code is not None:
        return f"Retrying: the last attempt got HTTP {result.status_code}"
    return f"Retrying: {result.error or 'the last attempt failed'}"
