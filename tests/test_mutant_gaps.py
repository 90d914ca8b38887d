"""Guarantees of the delivery engine that `make mutants` found no test for: each test
here kills a mutant that survived the rest of the suite (see the mutant's name in
the test's docstring)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from database import utcnow
from extensions import db
from outbox.claims import claim_due_messages, release_messages
from outbox.fanout import account_targets, fan_out
from outbox.models import OutboxMessage
from tests.conftest import make_user
from webhooks.events import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from webhooks.lifecycle import create_webhook
from webhooks.url_safety import is_plain_http

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)


def one_claimed_message(receiver) -> OutboxMessage:
    """A webhook with one message, claimed by worker-a."""
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Receiver", "url": receiver.url("/ok")}
    )
    db.session.commit()
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)],
        account_targets(account_id),
    )
    db.session.commit()
    (claimed,) = claim_due_messages(webhook.id, "worker-a", utcnow(), 10)
    return claimed


def message_of(target_id: int) -> OutboxMessage:
    db.session.expire_all()
    return db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    ).one()


def test_a_drain_that_lost_its_claim_cannot_hand_the_message_back(app, receiver):
    """release_messages' fence (outbox.claims.x_release_messages__mutmut_11): a drain
    whose lease ran out and was taken over must not put the new owner's message back
    to pending, or a third drain would send it while the second still is."""
    claimed = one_claimed_message(receiver)
    taken_over_until = utcnow() + timedelta(minutes=1)
    db.session.execute(
        update(OutboxMessage).values(lease_owner="worker-b", lease_expires_at=taken_over_until)
    )
    db.session.commit()

    release_messages([claimed.id], "worker-a")

    message = message_of(claimed.target_id)
    assert (message.status, message.lease_owner) == ("sending", "worker-b")
    assert message.lease_expires_at == taken_over_until


def test_a_message_handed_back_holds_no_lease(app, receiver):
    """release_messages clears the lease (x_release_messages__mutmut_6 and _7): a
    message handed back is pending and nobody's, so the drain that handed it back
    could not mark it later through a lease it no longer has."""
    claimed = one_claimed_message(receiver)

    release_messages([claimed.id], "worker-a")

    message = message_of(claimed.target_id)
    assert (message.status, message.lease_owner, message.lease_expires_at) == (
        "pending",
        None,
        None,
    )


@pytest.mark.parametrize("url", ["http://[::1/hook", "http://[not-an-address]/hook"])
def test_an_unparsable_plain_http_url_gets_the_warning(url: str) -> None:
    """is_plain_http on a URL urlsplit refuses (x_is_plain_http__mutmut_11): when in
    doubt the form warns that events would cross networks unencrypted."""
    assert is_plain_http(url) is True
