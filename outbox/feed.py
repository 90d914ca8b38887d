"""A target's messages as a feed to pull: each message it was given to send, by its
sequence (the order of the whole target, which keeps every lane's order), after a
cursor. A receiver behind a firewall, or one catching up after an outage, reads the
same messages the pushes carry, whatever the target's status; reading changes
nothing of their delivery. A pull-only target pushes nothing: its messages are
kept for the feed (status kept) as they are written, and those waiting when it
became pull-only are kept too."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from core.extensions import db
from core.times import utcnow
from outbox.claims import move_queue_depth
from outbox.models import MessageStatus, OutboxMessage

# A message latest-wins dropped for a newer one of its lane is never pushed: the
# feed leaves it out too. (One read before it was dropped stays read.)
NOT_IN_FEED = (MessageStatus.SUPERSEDED.value,)


def feed_page(target_id: int, after: int, limit: int) -> list[OutboxMessage]:
    """Up to `limit` of the target's messages whose sequence is after `after`, in
    sequence order."""
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.target_id == target_id,
            OutboxMessage.sequence > after,
            OutboxMessage.status.not_in(NOT_IN_FEED),
        )
        .order_by(OutboxMessage.sequence)
        .limit(limit)
    )
    return list(db.session.scalars(query))


def keep_for_feed(target_id: int) -> int:
    """A pull-only target's waiting messages: kept for its feed, never pushed (those
    already on their way end as their push does). Returns how many; the caller
    commits."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.target_id == target_id,
            OutboxMessage.status == MessageStatus.PENDING.value,
        )
        .values(status=MessageStatus.KEPT.value, finished_at=utcnow(), next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    kept = int(cast(CursorResult[Any], result).rowcount)
    if kept:
        move_queue_depth(target_id, -kept)
    return kept
