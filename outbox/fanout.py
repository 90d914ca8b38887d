"""Fan-out: one event becomes one outbox message per matching target of the
account, in the caller's transaction, numbered in its target and in its lane
(the event's vehicle); the drains are nudged after it commits. While the account
is over its pending messages quota, its paused and failing targets' events are
counted as dropped (Target.dropped_by_quota) instead."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import with_polymorphic
from sqlalchemy.orm.attributes import set_committed_value

from accounts.quotas import account_limits
from core.extensions import db
from core.times import utcnow
from events.catalogue import DetectedEvent
from outbox.alerts import alert_auto_paused
from outbox.metrics import record_dropped_by_quota
from outbox.models import (
    HELD,
    MessageStatus,
    OutboxLane,
    OutboxMessage,
    Target,
    TargetStatus,
    new_message_id,
)
from outbox.queues import nudge_after_commit
from outbox.registry import kind_of
from outbox.status import pause_at_cap

log = logging.getLogger(__name__)

# Statuses whose new events are dropped while the account is over its pending
# messages quota: nothing drains them now (held) or they fail (a growing backlog).
_QUOTA_STATUSES = (TargetStatus.PAUSED, TargetStatus.FAILING, TargetStatus.NEEDS_ATTENTION)


def account_targets(account_id: int) -> list[Target]:
    """The targets of the account that take messages (not disabled), by id, each
    with its kind's own columns loaded in the same query (not one SELECT per
    target when fan-out first reads them)."""
    targets = with_polymorphic(Target, "*")
    return list(
        db.session.scalars(
            select(targets)
            .where(targets.account_id == account_id, targets.status != TargetStatus.DISABLED)
            .order_by(targets.id)
        )
    )


def fan_out(
    events: Sequence[DetectedEvent], targets: Sequence[Target]
) -> list[list[OutboxMessage]]:
    """Queue each of `events` for each of `targets` that wants it (usually the
    account's `account_targets`, loaded once per batch), numbered after each
    target's last message in event order; returns each event's messages. The caller
    commits; drains are nudged after the commit.

    One counter UPDATE per target and one INSERT for the whole batch, whatever the
    number of events: the transaction holds the database's write lock (SQLite) or
    the targets' rows (PostgreSQL) that drains need, so it must stay short."""
    per_event: list[list[OutboxMessage]] = []
    by_target: dict[int, list[OutboxMessage]] = {}
    over_quota = _over_pending_quota(targets)
    dropped: dict[int, int] = {}
    for event in events:
        messages = []
        for target in targets:
            payload = kind_of(target).payload_for(target, event)
            if payload is None:
                continue
            # A person's test event (Demo) always goes: one message, asked for.
            if target.id in over_quota and not event.is_test:
                dropped[target.id] = dropped.get(target.id, 0) + 1
                continue
            message = OutboxMessage(
                target_id=target.id,
                message_id=new_message_id(),
                event_type=body_event_type(payload),
                payload=payload,
                is_test=event.is_test,
                ordering_key=event.ordering_key,
            )
            messages.append(message)
            by_target.setdefault(target.id, []).append(message)
        per_event.append(messages)
    if dropped:
        _count_dropped(targets, dropped)
    if not by_target:
        return per_event
    cap = current_app.config["FLEETHOOK_QUEUE_DEPTH_CAP"]
    nudged = []
    # In target id order, so concurrent fan-outs lock the targets' rows in one order.
    for target in sorted((t for t in targets if t.id in by_target), key=lambda t: t.id):
        queued = by_target[target.id]
        # A pull-only target's messages are kept for its feed as they are written:
        # nothing waits to be pushed.
        waiting = 0 if target.pull_only else len(queued)
        if target.pull_only:
            for message in queued:
                message.status, message.finished_at = MessageStatus.KEPT.value, utcnow()
        total, depth = db.session.execute(
            update(Target)
            .where(Target.id == target.id)
            .values(
                total_messages=Target.total_messages + len(queued),
                queue_depth=Target.queue_depth + waiting,
            )
            .returning(Target.total_messages, Target.queue_depth)
            # Not "evaluate" against every object in the session: set the two below.
            .execution_options(synchronize_session=False)
        ).one()
        set_committed_value(target, "total_messages", total)
        set_committed_value(target, "queue_depth", depth)
        for n, message in enumerate(queued):
            message.sequence = total - len(queued) + 1 + n
        if depth > cap and target.status in (TargetStatus.ACTIVE, TargetStatus.FAILING):
            pause_at_cap(target, cap)
            alert_auto_paused(target)
        if target.status not in HELD and not target.pull_only:
            nudged.append(target)
    number_lanes(by_target)
    db.session.add_all([message for messages in per_event for message in messages])
    db.session.flush()
    nudge_after_commit(nudged)
    return per_event


def body_event_type(payload: dict[str, Any]) -> str:
    """The event type a message body is of: its `type`, or a GeoJSON Feature's (a
    webhook's track, webhooks/tracks.py) `properties.event_type`."""
    if payload["type"] == "Feature":
        return str(payload["properties"]["event_type"])
    return str(payload["type"])


def _over_pending_quota(targets: Sequence[Target]) -> set[int]:
    """The ids of `targets` whose new events are dropped now: their account has
    as many messages waiting as its quota allows, and they are paused or failing
    (held or failing targets are where a backlog grows without bound). Active
    targets always get their messages. The waiting total is the sum of the
    account's targets' queue_depth counters: one small query."""
    held = [t for t in targets if t.status in _QUOTA_STATUSES]
    if not held:
        return set()
    account_id = held[0].account_id
    pending = db.session.scalar(
        select(func.coalesce(func.sum(Target.queue_depth), 0)).where(
            Target.account_id == account_id
        )
    )
    limit = account_limits(account_id).pending_messages
    if (pending or 0) < limit:
        return set()
    return {target.id for target in held}


def _count_dropped(targets: Sequence[Target], dropped: dict[int, int]) -> None:
    """Add to each target's dropped_by_quota (in the caller's transaction, in target
    id order like the counters below) and to the /metrics counter; warn once."""
    kinds: dict[str, int] = {}
    for target in sorted((t for t in targets if t.id in dropped), key=lambda t: t.id):
        count = dropped[target.id]
        total = db.session.execute(
            update(Target)
            .where(Target.id == target.id)
            .values(dropped_by_quota=Target.dropped_by_quota + count)
            .returning(Target.dropped_by_quota)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        set_committed_value(target, "dropped_by_quota", total)
        kinds[target.kind] = kinds.get(target.kind, 0) + count
    log.warning(
        "account %s is over its pending messages quota: %s events dropped for paused or "
        "failing targets %s",
        targets[0].account_id,
        sum(dropped.values()),
        sorted(dropped),
    )
    record_dropped_by_quota(kinds)


def number_lanes(by_target: dict[int, list[OutboxMessage]]) -> None:
    """Give each message the next sequence number of its lane: one upsert of the
    lanes' counters for the whole batch (each lane once, with how many it gets).
    The target rows locked above serialise concurrent fan-outs to a target."""
    counts: dict[tuple[int, str], int] = {}
    for target_id in sorted(by_target):
        for message in by_target[target_id]:
            lane = (target_id, message.ordering_key)
            counts[lane] = counts.get(lane, 0) + 1
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    upsert = dialect.insert(OutboxLane)
    statement = upsert.on_conflict_do_update(
        index_elements=[OutboxLane.target_id, OutboxLane.ordering_key],
        set_={"last_sequence": OutboxLane.last_sequence + upsert.excluded.last_sequence},
    ).returning(OutboxLane.target_id, OutboxLane.ordering_key, OutboxLane.last_sequence)
    last = {
        (row.target_id, row.ordering_key): row.last_sequence
        for row in db.session.execute(
            statement,
            [
                {"target_id": target_id, "ordering_key": key, "last_sequence": count}
                for (target_id, key), count in counts.items()
            ],
        )
    }
    # Number each lane's messages up to its new last sequence, in event order.
    following = {lane: last[lane] - count for lane, count in counts.items()}
    for target_id, messages in by_target.items():
        for message in messages:
            lane = (target_id, message.ordering_key)
            following[lane] += 1
            message.lane_sequence = following[lane]
