"""A webhook's pull feed (GET /api/v1/webhooks/{id}/feed): the messages its
receiver gets, in the order it gets them, with the same webhook-id, ordering
headers and body, read page by page after a cursor whatever the webhook's status;
reading changes nothing of their delivery.

The receiver is real (tests/receiver.py on loopback) and the drain the one an RQ
worker runs."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select, update

from accounts.tokens import issue_token
from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import MessageStatus, OutboxMessage, Target
from outbox.retention import prune
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook, pause_webhook, resume_webhook
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)


@pytest.fixture
def admin(app):
    user = make_user()
    _, token = issue_token(user, "feed reader")
    db.session.commit()
    return user, {"Authorization": f"Bearer {token}"}


def webhook_to(account_id: int, url: str, **settings: Any) -> Webhook:
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Pulled", "url": url, **settings}
    )
    db.session.commit()
    return webhook


def an_hour_of_positions(account_id: int, vehicles: int, minutes_apart: int = 5) -> None:
    """Each vehicle's positions over an hour, interleaved as a fleet reports them."""
    start = utcnow() - timedelta(hours=1)
    events = []
    for minute in range(0, 60, minutes_apart):
        at = start + timedelta(minutes=minute)
        for vehicle_id in range(1, vehicles + 1):
            vehicle = replace(
                EXAMPLE_VEHICLE, vehicle_id=vehicle_id, odometer_mi=float(minute), fix_time=at
            )
            events.append(DetectedEvent(EVENT_TYPES["location"], at, vehicle))
    fan_out(events, account_targets(account_id))
    db.session.commit()


def read_all(client, headers, webhook_id: int, limit: int = 7) -> tuple[list[dict], str]:
    """The whole feed, page by page; the last cursor."""
    messages: list[dict] = []
    cursor = "0"
    while True:
        page = client.get(
            f"/api/v1/webhooks/{webhook_id}/feed?after={cursor}&limit={limit}", headers=headers
        )
        assert page.status_code == 200, page.json
        messages += page.json["messages"]
        if page.json["next_cursor"] == cursor:
            return messages, cursor
        cursor = page.json["next_cursor"]


def delivery_state(webhook_id: int) -> list[tuple]:
    db.session.rollback()
    return list(
        db.session.execute(
            select(
                OutboxMessage.message_id,
                OutboxMessage.status,
                OutboxMessage.attempts,
                OutboxMessage.next_attempt_at,
            )
            .where(OutboxMessage.target_id == webhook_id)
            .order_by(OutboxMessage.id)
        ).all()
    )


def by_lane(entries: list[tuple[str, int, str]]) -> dict[str, list[tuple[int, str]]]:
    lanes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key, sequence, message_id in entries:
        lanes[key].append((sequence, message_id))
    return dict(lanes)


@pytest.mark.parametrize("ordering", ["vehicle", "webhook"])
def test_a_webhook_paused_for_an_hour_feeds_what_its_receiver_gets_after_resume(
    admin, client, receiver, ordering
):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"), ordering=ordering)
    pause_webhook(webhook)
    db.session.commit()
    an_hour_of_positions(user.account_id, vehicles=4)

    fed, _ = read_all(client, headers, webhook.id)
    assert len(fed) == 4 * 12 and receiver.received == []  # paused: nothing was pushed

    resume_webhook(webhook)
    db.session.commit()
    drain_target(webhook.id)
    pushed = [
        (
            request.headers["fleethook-ordering-key"],
            int(request.headers["fleethook-sequence"]),
            request.headers["webhook-id"],
            json.loads(request.body),
        )
        for request in receiver.received
    ]
    assert len(pushed) == len(fed)
    # The same messages, webhook-id by webhook-id, with the same headers and body …
    assert {m["id"]: (m["ordering_key"], m["sequence"], m["event"]) for m in fed} == {
        message_id: (key, sequence, body) for key, sequence, message_id, body in pushed
    }
    # … in the same order in every lane (with ordering "webhook", one lane: all of it).
    assert by_lane([(m["ordering_key"], m["sequence"], m["id"]) for m in fed]) == by_lane(
        [(key, sequence, message_id) for key, sequence, message_id, _ in pushed]
    )
    if ordering == "webhook":
        assert [m["id"] for m in fed] == [message_id for _, _, message_id, _ in pushed]


def test_reading_the_feed_changes_nothing_of_the_delivery(admin, client, receiver):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"))
    an_hour_of_positions(user.account_id, vehicles=2)
    before = delivery_state(webhook.id)
    read_all(client, headers, webhook.id)
    read_all(client, headers, webhook.id)
    assert delivery_state(webhook.id) == before
    assert receiver.received == []
    drain_target(webhook.id)  # the pushes still go, every one
    assert len(receiver.received) == len(before)


def test_the_cursor_reads_on_from_where_it_stopped_and_waits_when_nothing_is_new(
    admin, client, receiver
):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"), ordering="webhook")
    an_hour_of_positions(user.account_id, vehicles=1)
    first, cursor = read_all(client, headers, webhook.id, limit=5)
    assert [m["sequence"] for m in first] == list(range(1, 13))
    again = client.get(f"/api/v1/webhooks/{webhook.id}/feed?after={cursor}", headers=headers)
    assert again.json == {"messages": [], "next_cursor": cursor}
    an_hour_of_positions(user.account_id, vehicles=1)
    new = client.get(f"/api/v1/webhooks/{webhook.id}/feed?after={cursor}", headers=headers)
    assert [m["sequence"] for m in new.json["messages"]] == list(range(13, 25))


def test_a_message_latest_wins_dropped_is_left_out_like_its_push(admin, client, receiver):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"), latest_wins=True)
    an_hour_of_positions(user.account_id, vehicles=1)
    dropped = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.target_id == webhook.id).limit(3)
    ).all()
    for message in dropped:
        message.status = MessageStatus.SUPERSEDED.value
    db.session.commit()
    fed, _ = read_all(client, headers, webhook.id)
    assert {m["id"] for m in fed}.isdisjoint({m.message_id for m in dropped})
    assert len(fed) == 12 - 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        (f"after={2**63}", "after"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
    ],
)
def test_a_bad_cursor_or_limit_is_refused_and_names_itself(admin, client, receiver, query, field):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"))
    answer = client.get(f"/api/v1/webhooks/{webhook.id}/feed?{query}", headers=headers)
    assert answer.status_code == 422 and list(answer.json["errors"]) == [field]


def test_another_accounts_feed_is_not_found(admin, client, receiver):
    user, _ = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"))
    an_hour_of_positions(user.account_id, vehicles=1)
    stranger = make_user("Other Haulage", "admin@other.example.com")
    _, token = issue_token(stranger, "stranger")
    db.session.commit()
    answer = client.get(
        f"/api/v1/webhooks/{webhook.id}/feed", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 404 and "messages" not in answer.json


# --- pull only ----------------------------------------------------------------------


def statuses(webhook_id: int) -> dict[str, int]:
    db.session.rollback()
    counted: dict[str, int] = defaultdict(int)
    for (status,) in db.session.execute(
        select(OutboxMessage.status).where(OutboxMessage.target_id == webhook_id)
    ):
        counted[status] += 1
    return dict(counted)


def test_a_pull_only_webhook_pushes_nothing_and_feeds_everything(admin, client, receiver):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"), pull_only=True)
    an_hour_of_positions(user.account_id, vehicles=3)
    drain_target(webhook.id)
    assert receiver.received == []
    assert statuses(webhook.id) == {"kept": 36}
    db.session.refresh(webhook)
    assert (webhook.queue_depth, webhook.total_messages) == (0, 36)
    fed, _ = read_all(client, headers, webhook.id)
    assert len(fed) == 36 and {m["status"] for m in fed} == {"kept"}
    assert by_lane([(m["ordering_key"], m["sequence"], m["id"]) for m in fed]) == {
        f"vehicle:{v}": [(n, m["id"]) for n, m in enumerate(fed_of(fed, v), 1)] for v in (1, 2, 3)
    }


def fed_of(fed: list[dict], vehicle: int) -> list[dict]:
    return [m for m in fed if m["event"]["data"]["vehicle"]["id"] == vehicle]


def test_turned_on_it_keeps_the_backlog_for_the_feed_turned_off_it_pushes_again(
    admin, client, receiver
):
    user, headers = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"))
    pause_webhook(webhook)
    db.session.commit()
    an_hour_of_positions(user.account_id, vehicles=2)
    path = f"/api/v1/webhooks/{webhook.id}"
    on = client.patch(path, json={"pull_only": True}, headers=headers)
    assert on.status_code == 200 and on.json["pull_only"] is True
    assert on.json["queue_depth"] == 0 and statuses(webhook.id) == {"kept": 24}
    client.post(f"{path}/resume", headers=headers)
    drain_target(webhook.id)
    assert receiver.received == []

    off = client.patch(path, json={"pull_only": False}, headers=headers)
    assert off.status_code == 200 and off.json["pull_only"] is False
    an_hour_of_positions(user.account_id, vehicles=2)
    drain_target(webhook.id)
    assert len(receiver.received) == 24  # only the new ones: the kept stay the feed's
    assert statuses(webhook.id) == {"kept": 24, "delivered": 24}
    fed, _ = read_all(client, headers, webhook.id)
    assert len(fed) == 48


def test_a_message_left_waiting_on_a_pull_only_webhook_is_kept_not_pushed(admin, client, receiver):
    """A fan-out that read the webhook just before it became pull-only queued its
    messages to be pushed: the drain keeps them for the feed instead."""
    user, _ = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"))
    an_hour_of_positions(user.account_id, vehicles=1)
    db.session.execute(update(Target).where(Target.id == webhook.id).values(pull_only=True))
    db.session.commit()
    drain_target(webhook.id)
    assert receiver.received == [] and statuses(webhook.id) == {"kept": 12}
    db.session.refresh(webhook)
    assert webhook.queue_depth == 0


def test_kept_messages_go_with_the_delivered_window(admin, client, receiver):
    user, _ = admin
    webhook = webhook_to(user.account_id, receiver.url("/ok"), pull_only=True)
    an_hour_of_positions(user.account_id, vehicles=1)
    now = utcnow()
    window = current_app.config["FLEETHOOK_KEEP_DELIVERED"]
    assert prune(now)["delivered"] == 0
    assert prune(now + window + timedelta(hours=2))["delivered"] == 12
    assert statuses(webhook.id) == {}


def test_pull_only_is_a_checkbox_of_the_webhook_dialog(auth, app, client):
    """The portal's form: ticked, the webhook is pull only; unticked, it pushes."""
    user = make_user()
    auth.login(user.email)
    form = client.get("/webhooks/new?event_type=location", headers={"HX-Request": "true"})
    assert b'name="pull_only"' in form.data
    posted = auth.post(
        "/webhooks/new",
        {
            "event_type": "location",
            "name": "Behind the firewall",
            "url": "https://hooks.example.com/in",
            "content_type": "json",
            "pull_only": "y",
        },
        htmx=True,
    )
    assert posted.status_code in (200, 204), posted.data[:300]
    webhook = db.session.scalars(select(Webhook).where(Webhook.account_id == user.account_id)).one()
    assert webhook.pull_only is True
    assert b"pull only" in client.get("/webhooks/").data
