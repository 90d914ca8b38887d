"""Late data: every event says when the platform received its report
(`received_at`) and whether that was longer than FLEETHOOK_LATE_AFTER after the
event (`late`: store-and-forward after a dead zone); a location webhook may skip
late positions. Through the real ingest API and fan-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from accounts.tokens import issue_token
from core.extensions import db
from core.times import format_rfc3339, utcnow
from fleet.records import create_vehicle
from outbox.models import OutboxMessage
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook

VIN = "1FUJGLDR3CLBP8834"


@pytest.fixture
def gateway(app):
    user = make_user()
    _, token = issue_token(user, "gateway")
    create_vehicle(user.account_id, {"name": "Truck 42", "vin": VIN})
    db.session.commit()
    return user, {"Authorization": f"Bearer {token}"}


def position(at: datetime, **fields) -> dict:
    return {
        "vin": VIN,
        "type": "position",
        "time": format_rfc3339(at),
        "latitude": 41.88,
        "longitude": -87.63,
        "speed_mph": 30,
        "heading": 90,
        "ignition": True,
        **fields,
    }


def location_webhook(account_id: int, **settings) -> int:
    webhook, _ = create_webhook(
        account_id,
        {"event_type": "location", "name": "Positions", "url": "https://hooks.example.com"}
        | settings,
    )
    db.session.commit()
    return webhook.id


def bodies(webhook_id: int) -> list[dict]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.target_id == webhook_id)
            .order_by(OutboxMessage.sequence)
        )
    )


def test_a_position_received_long_after_its_fix_is_late_and_says_when_it_came(client, gateway):
    user, headers = gateway
    webhook_id = location_webhook(user.account_id)
    now = utcnow()
    stored = now - timedelta(minutes=40)  # kept on the device through a dead zone
    posted = client.post(
        "/api/v1/telemetry",
        json={"reports": [position(stored), position(now - timedelta(seconds=5))]},
        headers=headers,
    )
    assert posted.status_code == 202, posted.json
    old, fresh = bodies(webhook_id)
    assert old["data"]["late"] is True and fresh["data"]["late"] is False
    assert old["data"]["fix_time"] == format_rfc3339(stored)
    for body in (old, fresh):
        received = datetime.fromisoformat(body["data"]["received_at"].replace("Z", "+00:00"))
        assert now - timedelta(seconds=1) <= received.astimezone(UTC) <= utcnow()


@pytest.mark.app_config(FLEETHOOK_LATE_AFTER=timedelta(hours=1))
def test_the_threshold_is_a_setting(client, gateway):
    user, headers = gateway
    webhook_id = location_webhook(user.account_id)
    client.post(
        "/api/v1/telemetry", json=position(utcnow() - timedelta(minutes=40)), headers=headers
    )
    assert [body["data"]["late"] for body in bodies(webhook_id)] == [False]


def test_a_location_webhook_that_skips_late_positions_gets_only_the_present(client, gateway):
    user, headers = gateway
    skipping = location_webhook(user.account_id, skip_late=True)
    everything = location_webhook(user.account_id)
    now = utcnow()
    client.post(
        "/api/v1/telemetry",
        json={
            "reports": [position(now - timedelta(minutes=30)), position(now - timedelta(seconds=3))]
        },
        headers=headers,
    )
    assert [body["data"]["late"] for body in bodies(skipping)] == [False]
    assert [body["data"]["late"] for body in bodies(everything)] == [True, False]


def test_only_location_webhooks_skip_late_events(client, gateway):
    user, _ = gateway
    _, token = issue_token(user, "admin")
    db.session.commit()
    answer = client.post(
        "/api/v1/webhooks",
        json={
            "event_type": "speed",
            "name": "Speeding",
            "url": "https://hooks.example.com",
            "skip_late": True,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 422 and list(answer.json["errors"]) == ["skip_late"]
    bad = client.post(
        "/api/v1/webhooks",
        json={
            "event_type": "location",
            "name": "Positions",
            "url": "https://hooks.example.com",
            "skip_late": "yes",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 422 and bad.json["errors"] == {"skip_late": ["true or false."]}


def test_the_location_dialog_offers_to_skip_late_positions_and_the_speed_dialog_does_not(
    client, auth, gateway
):
    user, _ = gateway
    auth.login(user.email)
    location = client.get("/webhooks/new?event_type=location", headers={"HX-Request": "true"})
    speed = client.get("/webhooks/new?event_type=speed", headers={"HX-Request": "true"})
    assert b"Skip late positions" in location.data
    assert b"Skip late positions" not in speed.data
    saved = auth.post(
        "/webhooks/new",
        {
            "event_type": "location",
            "name": "Live map",
            "url": "https://hooks.example.com/map",
            "content_type": "json",
            "skip_late": "y",
        },
        htmx=True,
    )
    assert saved.status_code in (200, 204)
    detail = client.get(f"/webhooks/{location_id(user.account_id)}").data
    assert b"skipped: a position received long after its fix is not sent" in detail


def location_id(account_id: int) -> int:
    from webhooks.models import Webhook

    return db.session.scalars(
        select(Webhook.id).where(Webhook.account_id == account_id, Webhook.name == "Live map")
    ).one()
