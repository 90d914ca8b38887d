"""Event isolation end to end (DESIGN invariants 3 and 7): two accounts whose
trucks carry the SAME VINs, each with webhooks subscribed to the same event types,
each webhook pointing at its own real HTTP receiver on loopback. Telemetry goes
into each account through the ingest API, the outbox is drained as a worker
drains it, and each receiver gets exactly its own account's events — every one
of them, and none of the other account's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.extensions import db
from core.times import utcnow
from outbox.drain import drain_target
from outbox.models import MessageStatus, OutboxMessage
from tests.conftest import bearer, make_user
from tests.receiver import ReceiverServer, start_receiver

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=2,
    FLEETHOOK_READ_TIMEOUT=2,
    FLEETHOOK_DELIVERY_DEADLINE=2,
)

# Both accounts have a truck with each of these VINs.
VINS = ("1FUJGLDR3CLBP8834", "1M8GDM9AXKP042788")
EVENT_TYPES = ("location", "ignition_on", "ignition_off", "speed")
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Account:
    marker: str
    account_id: int
    headers: dict[str, str]
    receiver: ReceiverServer
    vehicle_ids: set[int]
    webhook_ids: set[int]


@pytest.fixture
def other_receiver() -> Iterator[ReceiverServer]:
    """A second real HTTP receiver on loopback, for the second account."""
    server = start_receiver()
    yield server
    server.shutdown()
    server.server_close()


def make_account(client: Any, marker: str, receiver: ReceiverServer) -> Account:
    """An account with a truck for each VIN and a webhook for each event type, all
    pointing at `receiver`; made through the API as a customer would."""
    user = make_user(account_name=f"{marker} Haulage", email=f"admin@{marker.lower()}.example.com")
    headers = bearer(user)
    vehicle_ids, webhook_ids = set(), set()
    for n, vin in enumerate(VINS):
        made = client.post(
            "/api/v1/vehicles", headers=headers, json={"name": f"{marker} Truck {n}", "vin": vin}
        )
        assert made.status_code == 201, made.json
        vehicle_ids.add(made.json["id"])
    for key in EVENT_TYPES:
        body = {"event_type": key, "name": f"{marker} {key}", "url": receiver.url("/ok")}
        if key == "speed":
            body["threshold_mph"] = 70
        made = client.post("/api/v1/webhooks", json=body, headers=headers)
        assert made.status_code == 201, made.json
        webhook_ids.add(made.json["id"])
    return Account(marker, user.account_id, headers, receiver, vehicle_ids, webhook_ids)


def trip(vin: str, start: int, speed: float) -> list[dict[str, Any]]:
    """Ignition on, three positions (one at `speed`), ignition off."""

    def report(seconds: int, mph: float, ignition: bool) -> dict[str, Any]:
        moment = (T0 + timedelta(seconds=start + seconds)).isoformat().replace("+00:00", "Z")
        return {
            "vin": vin,
            "type": "position",
            "time": moment,
            "latitude": 41.9,
            "longitude": -87.7 + seconds / 10_000,
            "speed_mph": mph,
            "heading": 90,
            "ignition": ignition,
        }

    return [
        report(0, 0, False),
        report(60, 30, True),
        report(120, speed, True),
        report(180, 20, True),
        report(240, 0, False),
    ]


def drain_everything(accounts: list[Account]) -> None:
    """Drain every webhook's outbox, as workers would, until nothing is pending."""
    targets = [target for account in accounts for target in sorted(account.webhook_ids)]
    for _ in range(10):
        for target_id in targets:
            drain_target(target_id)
        db.session.rollback()
        pending = db.session.scalar(
            select(OutboxMessage.id).where(
                OutboxMessage.target_id.in_(targets),
                OutboxMessage.status != MessageStatus.DELIVERED,
            )
        )
        if pending is None:
            return
    raise AssertionError("the outbox did not drain")


def own_messages(account: Account) -> dict[str, dict[str, Any]]:
    """The account's webhooks' messages: webhook-id → payload."""
    db.session.rollback()
    rows = db.session.execute(
        select(OutboxMessage.message_id, OutboxMessage.payload).where(
            OutboxMessage.target_id.in_(account.webhook_ids)
        )
    )
    return {message_id: payload for message_id, payload in rows}


def test_each_account_receives_exactly_its_own_events(app, client, receiver, other_receiver):
    acme = make_account(client, "Acme", receiver)
    blue = make_account(client, "Blue", other_receiver)
    # Each account's trucks drive the same VINs at the same times, at speeds of
    # their own (Acme 75 and 80 mph, Blue 90 and 95 mph), so every event carries
    # which account's report made it.
    speeds = {"Acme": (75, 80), "Blue": (90, 95)}
    for account in (acme, blue):
        reports = [
            r
            for vin, mph in zip(VINS, speeds[account.marker], strict=True)
            for r in trip(vin, 0, mph)
        ]
        posted = client.post(
            "/api/v1/telemetry", json={"reports": reports}, headers=account.headers
        )
        assert posted.status_code == 202, posted.json
        assert posted.json["accepted"] == len(reports)

    drain_everything([acme, blue])

    for account, other in ((acme, blue), (blue, acme)):
        received = {r.headers["webhook-id"]: json.loads(r.body) for r in account.receiver.received}
        mine, theirs = own_messages(account), own_messages(other)
        # Every event of the account, each once, and nothing else.
        assert len(account.receiver.received) == len(received) == len(mine)
        assert received.keys() == mine.keys()
        assert not received.keys() & theirs.keys()
        assert {body["data"]["vehicle"]["id"] for body in received.values()} == account.vehicle_ids
        assert {body["data"]["vehicle"]["name"].split()[0] for body in received.values()} == {
            account.marker
        }
        # Every subscribed type arrived, each vehicle's speeding at its own speed.
        assert {body["type"] for body in received.values()} == set(EVENT_TYPES)
        speeding = {
            body["data"]["speed_mph"] for body in received.values() if body["type"] == "speed"
        }
        assert speeding == set(speeds[account.marker])
        # Ten location reports (five per truck) came in, and went out, per account.
        assert sum(body["type"] == "location" for body in received.values()) == 10
