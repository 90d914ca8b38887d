"""Time to live per event type (issue 19, item 5): a webhook's message older than
its type's TTL — location and heartbeat 15 minutes, speed and posted speed 2 hours,
every other type the retention — or than its webhook's own `ttl_minutes`, ends
stale instead of being tried again: when a retry would come too late, and when it
waited too long on a paused or failing webhook (the sweeper). Against a real
receiver on loopback; the drain and sweeper an RQ worker runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from accounts.tokens import issue_token
from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import MessageStatus, OutboxMessage, Target
from outbox.recovery import redeliver
from outbox.sweeper import close_stale_messages
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook, pause_webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)


@pytest.fixture
def account(app):
    return make_user().account_id


def webhook_to(account_id: int, url: str, event_type: str = "location", **values):
    webhook, _ = create_webhook(
        account_id, {"event_type": event_type, "name": event_type, "url": url, **values}
    )
    db.session.commit()
    return webhook


def emit(account_id: int, *keys: str) -> None:
    vehicle = replace(EXAMPLE_VEHICLE, fix_time=utcnow())
    dvir = {"dvir": {"driver": "Dana", "defects": [], "safety_status": "safe"}}
    events = [
        DetectedEvent(EVENT_TYPES[key], utcnow(), vehicle, dvir if key == "dvir" else {})
        for key in keys
    ]
    fan_out(events, account_targets(account_id))
    db.session.commit()


def message_of(target_id: int) -> OutboxMessage:
    db.session.expire_all()
    return db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    ).one()


def age(target_id: int, minutes: float) -> None:
    """The target's messages were queued `minutes` ago, and are due now."""
    then = utcnow() - timedelta(minutes=minutes)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == target_id)
        .values(created_at=then, retain_from=then, next_attempt_at=utcnow())
    )
    db.session.commit()


def test_a_position_whose_next_try_would_come_too_late_ends_stale(account, receiver):
    positions = webhook_to(account, receiver.url("/status/500/a"))
    inspections = webhook_to(account, receiver.url("/status/500/b"), "dvir")
    emit(account, "location", "dvir")
    # Tried at 0 and 5 s: the next try (5 min after the second) is within 15 minutes.
    for _ in range(2):
        drain_target(positions.id)
        drain_target(inspections.id)
        age(positions.id, 0.2)
        age(inspections.id, 0.2)
    assert message_of(positions.id).status == MessageStatus.PENDING
    # 11 minutes old when it fails a third time: the next try, 30 minutes on, is past
    # its 15.
    age(positions.id, 11)
    age(inspections.id, 11)
    drain_target(positions.id)
    drain_target(inspections.id)
    stale = message_of(positions.id)
    assert (stale.status, stale.attempts) == (MessageStatus.STALE, 3)
    assert stale.finished_at is not None
    assert message_of(inspections.id).status == MessageStatus.PENDING  # a DVIR must arrive
    db.session.refresh(positions)
    assert positions.queue_depth == 0


def test_a_paused_webhooks_old_positions_end_stale_at_the_sweep(account, receiver):
    paused = webhook_to(account, receiver.url("/ok/a"))
    longer = webhook_to(account, receiver.url("/ok/b"), ttl_minutes=60)
    speeding = webhook_to(account, receiver.url("/ok/c"), "speed", threshold_mph=10)
    inspections = webhook_to(account, receiver.url("/ok/d"), "dvir")
    for webhook in (paused, longer, speeding, inspections):
        pause_webhook(webhook)
    db.session.commit()
    emit(account, "location", "speed", "dvir")
    for webhook in (paused, longer, speeding, inspections):
        age(webhook.id, 20)
    assert close_stale_messages(utcnow()) == 1
    assert message_of(paused.id).status == MessageStatus.STALE
    assert message_of(longer.id).status == MessageStatus.PENDING  # its own 60 minutes
    assert message_of(speeding.id).status == MessageStatus.PENDING  # speeding lives 2 h
    assert message_of(inspections.id).status == MessageStatus.PENDING
    age(speeding.id, 121)
    assert close_stale_messages(utcnow()) == 1
    assert message_of(speeding.id).status == MessageStatus.STALE
    db.session.refresh(paused)
    assert paused.queue_depth == 0


def test_a_stale_message_can_still_be_redelivered_by_hand(account, receiver):
    webhook = webhook_to(account, receiver.url("/ok"))
    emit(account, "location")
    age(webhook.id, 20)
    close_stale_messages(utcnow())
    message = message_of(webhook.id)
    assert message.status == MessageStatus.STALE
    assert redeliver(db.session.get(Target, webhook.id), message)
    db.session.commit()
    drain_target(webhook.id)
    assert message_of(webhook.id).status == MessageStatus.DELIVERED
    assert len(receiver.requests_to("/ok")) == 1


@pytest.mark.parametrize("bad", [0, 72 * 60 + 1, "15", True, 1.5])
def test_a_bad_time_to_live_is_refused_and_changes_nothing(client, account, bad):
    admin = make_user("Other Haulage", "admin@other.example.com")
    _, token = issue_token(admin, "ttl")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post(
        "/api/v1/webhooks",
        json={"event_type": "location", "name": "Map", "url": "https://hooks.example.com"},
        headers=headers,
    ).json
    assert created["ttl_minutes"] is None
    path = f"/api/v1/webhooks/{created['id']}"
    refused = client.patch(path, json={"ttl_minutes": bad}, headers=headers)
    assert refused.status_code == 422 and list(refused.json["errors"]) == ["ttl_minutes"]
    assert client.get(path, headers=headers).json["ttl_minutes"] is None
    kept = client.patch(path, json={"ttl_minutes": 30}, headers=headers)
    assert kept.status_code == 200 and kept.json["ttl_minutes"] == 30
    cleared = client.patch(path, json={"ttl_minutes": None}, headers=headers)
    assert cleared.json["ttl_minutes"] is None


def test_the_dialog_takes_a_time_to_live_and_says_when_it_is_wrong(client, auth):
    user = make_user()
    auth.login(user.email)
    dialog = client.get("/webhooks/new?event_type=location", headers={"HX-Request": "true"})
    assert b'name="ttl_minutes"' in dialog.data
    form = {
        "event_type": "location",
        "name": "Map",
        "url": "https://hooks.example.com/map",
        "content_type": "json",
    }
    refused = auth.post("/webhooks/new", {**form, "ttl_minutes": "soon"}, htmx=True)
    assert refused.status_code == 422
    assert b"A whole number of minutes from 1 to 4320" in refused.data
    saved = auth.post("/webhooks/new", {**form, "ttl_minutes": "45"}, htmx=True)
    assert saved.status_code in (200, 204)
    ttl = db.session.scalars(select(Target.ttl_minutes).where(Target.account_id == user.account_id))
    assert list(ttl) == [45]
