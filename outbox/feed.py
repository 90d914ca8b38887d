"""A target's messages as a feed to pull: each message it was given to send, by its
sequence (the order of the whole target, which keeps every lane's order), after a
cursor. A receiver behind a firewall, or one catching up after an outage, reads the
same messages the pushes carry, whatever the target's status; reading changes
nothing of their delivery."""

from __future__ import annotations

from sqlalchemy import select

from core.extensions import db
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
