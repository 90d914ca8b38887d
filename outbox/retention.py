"""Retention: the rows that would otherwise grow without end are deleted once older
than their window (FLEETHOOK_KEEP_*_DAYS, core/config.py). The outbox prunes its
ended messages with their delivery attempts; the layers above register what else
grows (fleet/retention.py: telemetry reports, ended driver assignments) with
`register_pruner`. The sweeper calls `prune` on every sweep.

Each statement deletes at most FLEETHOOK_PRUNE_BATCH rows chosen by primary key
(`DELETE … WHERE id IN (SELECT id … LIMIT n)`, the same on SQLite and
PostgreSQL) on an indexed predicate, and commits at once: a transaction is a
few milliseconds, so the SQLite write lock and PostgreSQL's row locks are never
held long, and a sweep stops after FLEETHOOK_PRUNE_SECONDS whatever is left (the
next sweep goes on). Between two batches the pruner waits as long as the last
one took, so a writer waiting for SQLite's lock gets it at least half the time.

What stays true while rows go:
- a target's Total Messages and Queue Depth are counters on the target, not
  counts over messages, so they do not move;
- open (pending, sending) messages are never deleted, whatever their age;
- a target remembers the newest creation time of the dead or expired messages
  deleted (Target.pruned_before), so a recovery from before it says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, delete, or_, select, update

from core.extensions import db
from outbox.claims import rows_changed
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, Target

# Ended messages a person may recover (outbox/recovery.py); the target keeps the
# time up to which they were deleted.
RECOVERABLE = (MessageStatus.DEAD.value, MessageStatus.EXPIRED.value)
ENDED = (*RECOVERABLE, MessageStatus.SUPERSEDED.value, MessageStatus.STALE.value)


@dataclass(frozen=True)
class Pruner:
    """One kind of row retention deletes: the setting that holds its window, and how
    to delete a batch of rows older than a cutoff."""

    name: str
    window_setting: str  # an app setting holding a timedelta
    delete: Callable[[datetime, int], int]  # (cutoff, batch) -> rows deleted


_PRUNERS: dict[str, Pruner] = {}


def register_pruner(pruner: Pruner) -> None:
    _PRUNERS[pruner.name] = pruner


def _ended_before(statuses: tuple[str, ...], cutoff: datetime) -> ColumnElement[bool]:
    # finished_at is NULL while a message is open; the status test says it again,
    # so an open message is never pruned whatever its columns hold.
    return and_(OutboxMessage.finished_at < cutoff, OutboxMessage.status.in_(statuses))


def prune_messages(statuses: tuple[str, ...], cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` messages of `statuses` that ended before `cutoff`, their
    delivery attempts first (the foreign key), and note on each target the newest
    recoverable message deleted."""
    ended = _ended_before(statuses, cutoff)
    # PostgreSQL: locked until commit, so a recovery cannot reopen a message between
    # its attempts going and it going; rows a recovery holds are left for next time.
    rows = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.target_id, OutboxMessage.created_at)
        .where(ended)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    ids = [row.id for row in rows]
    db.session.execute(
        delete(DeliveryAttempt)
        .where(DeliveryAttempt.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    deleted = db.session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), ended)
        .execution_options(synchronize_session=False)
    )
    if set(statuses) & set(RECOVERABLE):
        newest: dict[int, datetime] = {}
        for row in rows:
            if row.target_id not in newest or newest[row.target_id] < row.created_at:
                newest[row.target_id] = row.created_at
        for target_id, created_at in sorted(newest.items()):
            db.session.execute(
                update(Target)
                .where(Target.id == target_id)
                .values(
                    pruned_before=case(
                        (
                            or_(Target.pruned_before.is_(None), Target.pruned_before < created_at),
                            created_at,
                        ),
                        else_=Target.pruned_before,
                    )
                )
                .execution_options(synchronize_session=False)
            )
    return rows_changed(deleted)


register_pruner(
    Pruner(
        "delivered",
        "FLEETHOOK_KEEP_DELIVERED",
        # A pull-only target's feed keeps its messages as long as pushes delivered.
        lambda cutoff, batch: prune_messages(
            (MessageStatus.DELIVERED.value, MessageStatus.KEPT.value), cutoff, batch
        ),
    )
)
register_pruner(
    Pruner(
        "ended",
        "FLEETHOOK_KEEP_ENDED",
        lambda cutoff, batch: prune_messages(ENDED, cutoff, batch),
    )
)


def prune(
    now: datetime, batch: int | None = None, budget_seconds: float | None = None
) -> dict[str, int]:
    """Delete what is past its window, a batch of each kind in turn, each batch its
    own transaction, until nothing is left or the time budget is spent. Returns
    the rows deleted by kind."""
    config = current_app.config
    batch = batch or config["FLEETHOOK_PRUNE_BATCH"]
    budget = config["FLEETHOOK_PRUNE_SECONDS"] if budget_seconds is None else budget_seconds
    cutoffs = {name: now - config[pruner.window_setting] for name, pruner in _PRUNERS.items()}
    deleted = dict.fromkeys(_PRUNERS, 0)
    pending = list(_PRUNERS)
    deadline = time.monotonic() + budget
    while pending:
        for name in list(pending):
            started = time.monotonic()
            count = _PRUNERS[name].delete(cutoffs[name], batch)
            db.session.commit()
            deleted[name] += count
            if count < batch:
                pending.remove(name)  # caught up
            took = time.monotonic() - started
            if count and time.monotonic() + took >= deadline:
                return deleted  # (a kind with nothing to delete took no turn)
            # Let waiting writers in: SQLite's busy handler polls with back-off,
            # and a pruner that takes the lock straight back would starve it.
            time.sleep(took)
    return deleted
