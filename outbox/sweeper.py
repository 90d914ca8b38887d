"""The sweeper: every few seconds, from the database alone, nudge every target
with due or lease-expired messages (so a flushed or restarted Redis loses
nothing), close messages older than the retention window, drop per-minute
activity counters the charts no longer show, and delete rows past their
retention (outbox/retention.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, case, func, or_, select, update

from core.extensions import db
from core.times import utcnow
from outbox.activity import prune_activity
from outbox.claims import lock_targets, move_queue_depth, rows_changed
from outbox.models import HELD, OPEN_STATUSES, MessageStatus, OutboxMessage, Target
from outbox.queues import nudge, queue_for
from outbox.registry import kind_of
from outbox.retention import prune


def close_old_messages(now: Any) -> int:
    """Messages past retention end: dead if they were tried, expired if never."""
    cutoff = now - current_app.config["FLEETHOOK_RETENTION"]
    old = and_(
        OutboxMessage.status.in_(OPEN_STATUSES),
        OutboxMessage.retain_from < cutoff,
        or_(OutboxMessage.lease_expires_at.is_(None), OutboxMessage.lease_expires_at < now),
    )
    per_target = db.session.execute(
        select(OutboxMessage.target_id, func.count()).where(old).group_by(OutboxMessage.target_id)
    ).all()
    if not per_target:
        return 0
    lock_targets([target_id for target_id, _ in per_target])
    db.session.execute(
        update(OutboxMessage)
        .where(old)
        .values(
            status=case(
                (OutboxMessage.attempts > 0, MessageStatus.DEAD.value),
                else_=MessageStatus.EXPIRED.value,
            ),
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    for target_id, count in per_target:
        move_queue_depth(target_id, -count)
    db.session.commit()
    return sum(count for _, count in per_target)


# The shortest time to live a target may set (Target.ttl_minutes): younger
# messages are never stale, so the sweep need not look at them.
SHORTEST_TTL = timedelta(minutes=1)


def close_stale_messages(now: Any) -> int:
    """Waiting messages older than their time to live (a paused or failing
    webhook's positions) end stale instead of waiting for their turn: their kind
    says how long each event type stays worth sending (outbox/registry.py)."""
    waiting = and_(
        OutboxMessage.status == MessageStatus.PENDING,
        OutboxMessage.retain_from < now - SHORTEST_TTL,
    )
    pairs = db.session.execute(
        select(OutboxMessage.target_id, OutboxMessage.event_type)
        .where(waiting)
        .group_by(OutboxMessage.target_id, OutboxMessage.event_type)
    ).all()
    ids = {target_id for target_id, _ in pairs}
    targets = {t.id: t for t in db.session.scalars(select(Target).where(Target.id.in_(ids)))}
    cutoffs = []
    for target_id, event_type in pairs:
        target = targets.get(target_id)
        ttl = kind_of(target).stale_after(target, event_type) if target is not None else None
        if ttl is not None:
            cutoffs.append((target_id, event_type, now - ttl))
    if not cutoffs:
        db.session.rollback()
        return 0
    lock_targets(sorted({target_id for target_id, _, _ in cutoffs}))
    closed = 0
    for target_id, event_type, cutoff in cutoffs:
        ended = rows_changed(
            db.session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.target_id == target_id,
                    OutboxMessage.event_type == event_type,
                    OutboxMessage.status == MessageStatus.PENDING,
                    OutboxMessage.retain_from < cutoff,
                )
                .values(status=MessageStatus.STALE.value, finished_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        if ended:
            move_queue_depth(target_id, -ended)
            closed += ended
    db.session.commit()
    return closed


def targets_with_due_work(now: Any) -> list[Target]:
    """Targets with due or lease-expired messages that no live drain holds."""
    due = or_(
        and_(OutboxMessage.status == MessageStatus.PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.lease_expires_at < now),
    )
    target_ids = select(OutboxMessage.target_id).where(due).distinct()
    return list(
        db.session.scalars(
            select(Target).where(
                Target.id.in_(target_ids),
                Target.status.not_in([status.value for status in HELD]),
                or_(Target.drain_owner.is_(None), Target.drain_expires_at < now),
                # A receiver's Retry-After pauses its target until then.
                or_(Target.throttled_until.is_(None), Target.throttled_until <= now),
            )
        )
    )


def release_expired_claims(now: Any) -> int:
    """Claimed messages whose lease ran out (their drain died) are pending again,
    so no message shows as being sent for longer than its lease and one sweep. A
    drain that outlived its lease cannot mark them any more (fencing)."""
    released = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.lease_expires_at < now)
        .values(status=MessageStatus.PENDING, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return rows_changed(released)


# Jobs of the layers above that every sweep runs first, e.g. closing the track
# windows the clock ends (webhooks/tracks.py); registered at start-up.
_EVERY_SWEEP: list[Callable[[datetime], int]] = []


def run_with_every_sweep(job: Callable[[datetime], int]) -> None:
    if job not in _EVERY_SWEEP:
        _EVERY_SWEEP.append(job)


def sweep() -> dict[str, int]:
    """RQ job (run by `rq cron`): close old messages, hand back expired claims,
    drop old activity counters, nudge due targets, then delete rows past their
    retention (outbox/retention.py) for at most FLEETHOOK_PRUNE_SECONDS."""
    now = utcnow()
    for job in _EVERY_SWEEP:
        job(now)
    closed = close_old_messages(now) + close_stale_messages(now)
    release_expired_claims(now)
    prune_activity(now)
    targets = targets_with_due_work(now)
    for target in targets:
        # Still owned though past its expiry: the drain holding it died.
        drain_died = target.drain_owner is not None
        nudge(target.id, queue_for(target), replace_stale=True, drain_died=drain_died)
    # Last, so a long catch-up never delays the nudges.
    pruned = prune(now)
    return {"closed": closed, "nudged": len(targets), "pruned": sum(pruned.values())}
