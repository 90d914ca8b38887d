"""Who may send what: the drain lease on a target (one drain at a time per target),
and the lease on each claimed message (so a worker whose lease expired cannot mark
anything). What is claimed follows the target's ordering: the due head of each
lane with the messages right behind it (ordering "vehicle"), the head of the whole
target (ordering "webhook"), or any due message (ordering "none"). A lane's head
is never skipped: the heads are found among every open message of the target,
and a lane whose head is in flight or waiting for its retry is left alone whole.

Claims read the committed rows and then take them with a conditional
UPDATE … RETURNING whose result says which rows this worker won (SQLite has no
row locks; on PostgreSQL the UPDATE re-checks each row it waited for)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, and_, case, or_, select, union_all, update

from core.extensions import db
from outbox.models import OPEN_STATUSES, MessageStatus, Ordering, OutboxMessage, Target


def lease() -> timedelta:
    """How long a drain or a claimed message stays ours without renewal
    (FLEETHOOK_LEASE_SECONDS, 60). A killed worker's messages are claimable
    again after it, plus one sweep interval."""
    return timedelta(seconds=current_app.config["FLEETHOOK_LEASE_SECONDS"])


def acquire_drain(target_id: int, owner: str, now: datetime, in_flight: int = 0) -> bool:
    """Take (or renew) the target's drain lease, noting how many requests it has in
    flight (the grid shows it); False if another drain holds it. Not committed
    here: the caller's next write commits it (one transaction fewer per batch)."""
    return target_id in acquire_drains({target_id: in_flight}, owner, now)


def rows_changed(result: Any) -> int:
    """How many rows an UPDATE changed: the answer to "did this worker win?"."""
    return int(cast(CursorResult[Any], result).rowcount)


def acquire_drains(in_flight: dict[int, int], owner: str, now: datetime) -> set[int]:
    """acquire_drain for many targets in one statement (`in_flight`: each target's
    requests in flight); the ids of the targets this drain holds now."""
    if not in_flight:
        return set()
    lock_targets(list(in_flight))
    return set(
        db.session.scalars(
            update(Target)
            .where(
                Target.id.in_(in_flight),
                or_(
                    Target.drain_owner.is_(None),
                    Target.drain_owner == owner,
                    Target.drain_expires_at < now,
                ),
            )
            .values(
                drain_owner=owner,
                drain_expires_at=now + lease(),
                in_flight=case(in_flight, value=Target.id, else_=0),
            )
            .returning(Target.id)
            .execution_options(synchronize_session=False)
        )
    )


def lock_targets(target_ids: list[int]) -> None:
    """Lock these targets' rows in id order, as fan-out does: a statement that
    writes many target rows locks them in whatever order it meets them, and two
    transactions meeting the same rows in different orders deadlock (PostgreSQL;
    SQLite has one writer at a time and no FOR UPDATE)."""
    db.session.execute(
        select(Target.id).where(Target.id.in_(target_ids)).order_by(Target.id).with_for_update()
    )


def move_queue_depth(target_id: int, by: int) -> None:
    """Add `by` to the target's queue depth counter (less than 0: take away), in the
    caller's transaction."""
    db.session.execute(
        update(Target)
        .where(Target.id == target_id)
        .values(queue_depth=Target.queue_depth + by)
        .execution_options(synchronize_session=False)
    )


def release_drain(target_id: int, owner: str) -> None:
    release_drains([target_id], owner)


def release_drains(target_ids: list[int], owner: str) -> None:
    lock_targets(target_ids)
    db.session.execute(
        update(Target)
        .where(Target.id.in_(target_ids), Target.drain_owner == owner)
        .values(drain_owner=None, drain_expires_at=None, in_flight=0)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _claimable(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        OutboxMessage.status == MessageStatus.PENDING,
        and_(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.lease_expires_at < now),
    )


def claim_due_messages(
    target_id: int, owner: str, now: datetime, limit: int
) -> list[OutboxMessage]:
    """Lease the target's next due messages, in sequence order: one lane for the
    whole target. A message waiting for its retry holds back every later one."""
    runs = _take([_due_head_run(target_id, now, limit)], owner, now)
    return runs[0] if runs else []


def claim_due_in_lanes(
    target_id: int, owner: str, now: datetime, limit: int, latest_types: Collection[str] = ()
) -> list[OutboxMessage]:
    """Lease up to `limit` due messages for a kind that sends a batch itself: each
    lane's due head and the due messages right behind it, in sequence order across
    the lanes. A lane whose head waits for its retry holds back its own messages
    only, not every other vehicle's. Messages of `latest_types` are superseded by
    their lane's newest of the same type first."""
    if latest_types:
        supersede_backlogs(target_id, now, latest_types)
    rows = sorted(
        (row for run in _due_lane_runs(target_id, limit, limit, now) for row in run),
        key=lambda row: row.sequence,
    )[:limit]  # a lane's messages rise in sequence: the cut keeps each lane's first
    lanes: dict[str, list[int]] = {}
    for row in rows:
        lanes.setdefault(row.ordering_key, []).append(row.id)
    taken = [message for run in _take(list(lanes.values()), owner, now) for message in run]
    return sorted(taken, key=lambda message: message.sequence)


def _due_head_run(target_id: int, now: datetime, limit: int) -> list[int]:
    """The target's first open messages in sequence order, up to the first that is
    not due."""
    due = []
    for row in _open_in_order(target_id, limit, set()):
        if not _is_due(row, now):
            break
        due.append(row.id)
    return due


# Open messages a lane claim reads per page, at least (_due_lane_runs).
PAGE = 200


@dataclass(frozen=True)
class Room:
    """What a drain may take of one target now: up to `lanes` more runs of up to
    `run_length` messages each (a run is sent one message after another, in one
    of the target's request slots)."""

    target: Target
    lanes: int
    run_length: int


def claim_lane_runs(
    rooms: Sequence[Room], owner: str, now: datetime
) -> dict[int, list[list[OutboxMessage]]]:
    """Lease work for more requests in flight, for many targets at once: per lane,
    its due head and up to `run_length` - 1 messages right behind it. Oldest heads
    first, so no lane waits behind a busier one. Each target's runs by its id;
    one UPDATE takes them all. Commits."""
    wanted: list[list[int]] = []
    for room in rooms:
        target = room.target
        if room.lanes <= 0:
            continue
        if target.ordering == Ordering.WEBHOOK:
            wanted.append(_due_head_run(target.id, now, room.run_length))
        elif target.ordering == Ordering.NONE:
            rows = db.session.execute(
                select(OutboxMessage.id)
                .where(OutboxMessage.target_id == target.id, _claimable(now), _due(now))
                .order_by(OutboxMessage.sequence)
                .limit(room.lanes)
            )
            wanted += [[row.id] for row in rows]
        else:
            if target.latest_wins:
                supersede_backlogs(target.id, now)
            runs = _due_lane_runs(target.id, room.lanes, room.run_length, now)
            wanted += [[row.id for row in run] for run in runs]
    claimed: dict[int, list[list[OutboxMessage]]] = {}
    for run in _take(wanted, owner, now):
        claimed.setdefault(run[0].target_id, []).append(run)
    return claimed


def _due_lane_runs(target_id: int, lanes: int, run_length: int, now: datetime) -> list[list[Any]]:
    """Up to `lanes` runs: each the due head of a lane and up to `run_length` - 1
    due messages right behind it, oldest heads first.

    The target's open messages are read in sequence order, a page at a time: the
    first message of a lane met on a page is its head (every earlier one of the
    target was on an earlier page), and a lane once met is left out of the pages
    after. So a claim reads about what it takes, not the whole backlog, even when
    the oldest lanes are in flight or waiting for their retry."""
    page = max(PAGE, lanes)
    runs: dict[str, list[Any]] = {}
    met: set[str] = set()  # lanes whose head was seen: in `runs`, or not due
    ended: set[str] = set()  # lanes whose run can grow no longer
    while True:
        rows = _open_in_order(target_id, page, met)
        for row in rows:
            key = row.ordering_key
            if key not in met:
                met.add(key)
                if len(runs) < lanes and _is_due(row, now):
                    runs[key] = [row]
                else:
                    ended.add(key)
            elif key not in ended:
                if len(runs[key]) < run_length and _is_due(row, now):
                    runs[key].append(row)
                else:
                    ended.add(key)
        if len(rows) < page or len(runs) >= lanes:
            return list(runs.values())  # in the order their heads were met: oldest first


def _open_in_order(target_id: int, limit: int, left_out: set[str]) -> list[Any]:
    """The target's first `limit` open messages in sequence order, but for the lanes
    `left_out`. Pending and sending ones each read along the index on (target,
    status, sequence) and merged: one ORDER BY over both statuses would sort every
    open message of the target."""
    parts = []
    for status in OPEN_STATUSES:
        part = select(
            OutboxMessage.id,
            OutboxMessage.ordering_key,
            OutboxMessage.sequence,
            OutboxMessage.status,
            OutboxMessage.next_attempt_at,
            OutboxMessage.lease_expires_at,
        ).where(OutboxMessage.target_id == target_id, OutboxMessage.status == status)
        if left_out:
            part = part.where(OutboxMessage.ordering_key.not_in(left_out))
        parts.append(select(part.order_by(OutboxMessage.sequence).limit(limit).subquery()))
    merged = union_all(*parts).subquery()
    return list(db.session.execute(select(merged).order_by(merged.c.sequence).limit(limit)))


def _is_due(row: Any, now: datetime) -> bool:
    if row.status == MessageStatus.SENDING:
        return bool(row.lease_expires_at < now)  # its drain died: due again
    return bool(row.next_attempt_at <= now)


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return or_(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.next_attempt_at <= now)


def _take(runs: list[list[int]], owner: str, now: datetime) -> list[list[OutboxMessage]]:
    """Lease the messages of `runs`; of each run keep the unbroken part from its
    head (a gap would send out of order) and hand back the rest. Commits."""
    wanted = [message_id for run in runs for message_id in run]
    if not wanted:
        db.session.commit()
        return []
    won = set(
        db.session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(wanted), _claimable(now))
            .values(status=MessageStatus.SENDING, lease_owner=owner, lease_expires_at=now + lease())
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    kept: list[list[int]] = []
    for run in runs:
        unbroken = []
        for message_id in run:
            if message_id not in won:
                break
            unbroken.append(message_id)
        if unbroken:
            kept.append(unbroken)
    stray = won - {message_id for run in kept for message_id in run}
    if stray:
        release_messages(sorted(stray), owner)
    if not kept:
        return []
    loaded = {
        message.id: message
        for message in db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_([m for run in kept for m in run]))
            .execution_options(populate_existing=True)
        )
    }
    # The claimed messages are what the drain sends, as claimed: out of the session,
    # so that its commits while they are in flight do not expire (and reload) them.
    for message in loaded.values():
        db.session.expunge(message)
    return [[loaded[message_id] for message_id in run] for run in kept]


def supersede_backlogs(
    target_id: int, now: datetime, event_types: Collection[str] | None = None
) -> int:
    """Latest wins: in each lane whose head may go now and that has more than one
    open message, every pending message but the newest is superseded. The newest
    takes over the lane's retry count, so a receiver that stays down is retried on
    the schedule, not at once. With `event_types`, only messages of those types,
    each type on its own (an integration's positions, not its fault reports). Not
    committed here: the claim that follows commits."""
    query = select(
        OutboxMessage.id,
        OutboxMessage.ordering_key,
        OutboxMessage.event_type,
        OutboxMessage.lane_sequence,
        OutboxMessage.status,
        OutboxMessage.attempts,
        OutboxMessage.next_attempt_at,
        OutboxMessage.lease_expires_at,
    ).where(OutboxMessage.target_id == target_id, OutboxMessage.status.in_(OPEN_STATUSES))
    if event_types is not None:
        query = query.where(OutboxMessage.event_type.in_(sorted(event_types)))
    rows = db.session.execute(
        query.order_by(OutboxMessage.ordering_key, OutboxMessage.lane_sequence)
    ).all()
    lanes: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        key = (row.ordering_key, row.event_type if event_types is not None else "")
        lanes.setdefault(key, []).append(row)
    superseded: list[int] = []
    for lane in lanes.values():
        if len(lane) < 2 or not _is_due(lane[0], now):
            continue
        *older, newest = lane
        superseded += [row.id for row in older]
        carried = max(row.attempts for row in lane)
        if carried > newest.attempts:
            db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == newest.id)
                .values(attempts=carried)
                .execution_options(synchronize_session=False)
            )
    if not superseded:
        return 0
    changed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(superseded), _claimable(now))
        .values(
            status=MessageStatus.SUPERSEDED,
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    count = rows_changed(changed)
    move_queue_depth(target_id, -count)
    return count


def release_messages(message_ids: list[int], owner: str) -> None:
    """Hand back claimed messages that were not attempted."""
    if not message_ids:
        return
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids), OutboxMessage.lease_owner == owner)
        .values(status=MessageStatus.PENDING, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def has_due_messages(target: Target, now: datetime, ordering: str | None = None) -> bool:
    """Whether a claim would find work now: a lane whose head is due (ordering
    "vehicle"), the target's head (ordering "webhook"), or any due message.
    `ordering` overrides the target's (serial kinds send in target order)."""
    ordering = ordering or target.ordering
    if ordering == Ordering.VEHICLE:
        return bool(_due_lane_runs(target.id, 1, 1, now))
    if ordering == Ordering.NONE:
        query = select(OutboxMessage.id).where(
            OutboxMessage.target_id == target.id, _claimable(now), _due(now)
        )
        return db.session.execute(query.limit(1)).first() is not None
    return bool(_due_head_run(target.id, now, 1))
