"""Recover by vehicle, vehicle group or driver (the API's recover and the portal's
Recover): only the dead or expired messages of what is named are queued again,
with their webhook-ids; a scope of another account, an empty group or two scopes
at once are refused and queue nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from accounts.tokens import issue_token
from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from fleet.records import create_driver, create_vehicle
from outbox.fanout import account_targets, fan_out
from outbox.models import MessageStatus, OutboxMessage
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

VINS = ["1FUJGLDR3CLBP8834", "1FUJGLDR5CLBP8835", "1FUJGLDR7CLBP8836"]
SINCE = (utcnow() - timedelta(hours=2)).isoformat()


@pytest.fixture
def fleet(app):
    """An account with three vehicles (two in group North), two drivers, a webhook,
    and three dead location messages of each vehicle: the first vehicle's about
    driver Dana, the others' about Lee."""
    user = make_user()
    _, token = issue_token(user, "recoverer")
    vehicles = [
        create_vehicle(
            user.account_id,
            {"name": f"Truck {n}", "vin": vin, "group": "North" if n < 2 else "South"},
        )[0]
        for n, vin in enumerate(VINS)
    ]
    dana = create_driver(user.account_id, {"name": "Dana"})
    lee = create_driver(user.account_id, {"name": "Lee"})
    webhook, _ = create_webhook(
        user.account_id, {"event_type": "location", "name": "W", "url": "https://hooks.example.com"}
    )
    db.session.commit()
    events = []
    for vehicle in vehicles:
        driver = dana if vehicle is vehicles[0] else lee
        snapshot = replace(
            EXAMPLE_VEHICLE,
            vehicle_id=vehicle.id,
            driver={"id": driver.id, "name": driver.name},
            fix_time=utcnow(),
        )
        events += [DetectedEvent(EVENT_TYPES["location"], utcnow(), snapshot)] * 3
    fan_out(events, account_targets(user.account_id))
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == webhook.id)
        .values(status=MessageStatus.DEAD.value, finished_at=utcnow())
    )
    db.session.commit()
    return {
        "user": user,
        "headers": {"Authorization": f"Bearer {token}"},
        "vehicles": vehicles,
        "drivers": (dana, lee),
        "webhook": webhook,
    }


def reopened(webhook_id: int) -> set[str]:
    """The lanes of the messages queued again."""
    db.session.rollback()
    return set(
        db.session.scalars(
            select(OutboxMessage.ordering_key).where(
                OutboxMessage.target_id == webhook_id,
                OutboxMessage.status == MessageStatus.PENDING.value,
            )
        )
    )


def recover(client, fleet, **scope):
    return client.post(
        f"/api/v1/webhooks/{fleet['webhook'].id}/recover",
        json={"since": SINCE, **scope},
        headers=fleet["headers"],
    )


def test_recover_by_vehicle_queues_only_its_messages(client, fleet):
    truck = fleet["vehicles"][1]
    answer = recover(client, fleet, vehicle_id=truck.id)
    assert answer.status_code == 202 and answer.json["recovered"] == 3
    assert reopened(fleet["webhook"].id) == {f"vehicle:{truck.id}"}


def test_recover_by_group_queues_its_vehicles_messages(client, fleet):
    answer = recover(client, fleet, vehicle_group="North")
    assert answer.json["recovered"] == 6
    assert reopened(fleet["webhook"].id) == {f"vehicle:{v.id}" for v in fleet["vehicles"][:2]}


def test_recover_by_driver_queues_the_messages_that_name_them(client, fleet):
    dana, lee = fleet["drivers"]
    assert recover(client, fleet, driver_id=dana.id).json["recovered"] == 3
    assert reopened(fleet["webhook"].id) == {f"vehicle:{fleet['vehicles'][0].id}"}
    assert recover(client, fleet, driver_id=lee.id).json["recovered"] == 6


def test_recover_without_a_scope_queues_everything(client, fleet):
    assert recover(client, fleet).json["recovered"] == 9


@pytest.mark.parametrize(
    ("scope", "fields"),
    [
        ({"vehicle_id": 999999}, {"vehicle_id"}),
        ({"vehicle_id": "1"}, {"vehicle_id"}),
        ({"vehicle_id": 0}, {"vehicle_id"}),
        ({"vehicle_group": "Nowhere"}, {"vehicle_group"}),
        ({"vehicle_group": ""}, {"vehicle_group"}),
        ({"driver_id": 999999}, {"driver_id"}),
        ({"driver_id": True}, {"driver_id"}),
        ({"vehicle_group": "North", "driver_id": 1}, {"vehicle_group", "driver_id"}),
        ({"lane": "vehicle:1"}, {"lane"}),
    ],
)
def test_a_bad_scope_is_refused_and_queues_nothing(client, fleet, scope, fields):
    answer = recover(client, fleet, **scope)
    assert answer.status_code == 422 and set(answer.json["errors"]) == fields
    assert reopened(fleet["webhook"].id) == set()


def test_another_accounts_vehicle_is_not_a_scope(client, fleet):
    other = make_user("Other Haulage", "admin@other.example.com")
    theirs = create_vehicle(other.account_id, {"name": "Theirs", "vin": "1FUJGLDR9CLBP8837"})[0]
    db.session.commit()
    answer = recover(client, fleet, vehicle_id=theirs.id)
    assert answer.status_code == 422 and answer.json["errors"] == {
        "vehicle_id": ["No such vehicle in this account."]
    }


def test_the_portals_recover_offers_vehicles_groups_and_drivers(client, auth, fleet):
    webhook = fleet["webhook"]
    auth.login(fleet["user"].email)
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    truck = fleet["vehicles"][2]
    assert f'value="vehicle_id:{truck.id}"' in page and 'value="vehicle_group:North"' in page
    assert re.search(r'<optgroup label="Driver">.*Dana.*Lee', page, re.S)
    since = (utcnow() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    done = auth.post(
        f"/webhooks/{webhook.id}/recover",
        {"since": since, "of": f"vehicle_id:{truck.id}"},
        page=f"/webhooks/{webhook.id}",
    )
    assert done.status_code == 302
    assert "3 dead or expired messages queued again." in client.get(done.location).data.decode()
    assert reopened(webhook.id) == {f"vehicle:{truck.id}"}
    refused = auth.post(
        f"/webhooks/{webhook.id}/recover",
        {"since": since, "of": "driver_id:999999"},
        page=f"/webhooks/{webhook.id}",
    )
    assert "No such driver in this account." in client.get(refused.location).data.decode()
    assert reopened(webhook.id) == {f"vehicle:{truck.id}"}
