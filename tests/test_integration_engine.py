"""What the outbox does for every integration, whatever its provider: the request
budget (no more requests a minute than it allows; a request it has no room for is
not an attempt), vehicle lanes (one vehicle's retry holds back only that
vehicle), latest values (a backlog of positions sends only the newest) and the
initial sync (connecting sends each vehicle's current state).

The provider here is a test double registered for these tests only: a few lines
that POST each message to a loopback server, so that what is tested is the
engine, not a provider's API (each provider's own suite tests that against a
fake of its published API)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from integrations.base import CURRENT_STATE, Api
from integrations.lifecycle import (
    create_integration,
    pause_integration,
    resume_integration,
    update_integration,
)
from integrations.models import Integration
from integrations.providers import PROVIDERS
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage
from outbox.registry import Result
from tests.conftest import bearer, make_user
from tests.fakes.base import Answer, FakeProvider, Request

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)


class Records(FakeProvider):
    """Takes each record at POST /records; the VINs in `refusing` get a 409 (a
    refusal of that record, retried later, not a failure of the whole service)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing: set[str] = set()
        self.route("POST", r"/records", self._record)

    def _record(self, request: Request) -> Answer:
        if request.json["vin"] in self.refusing:
            return Answer(409, {"error": "record locked"})
        return Answer(201, {"ok": True})

    def posted(self) -> list[dict[str, Any]]:
        return [r.json for r in self.received("POST", "/records")]


class RecordsProvider:
    key = "records"
    name = "Records"
    software_type = "Test"
    requirements = ""
    receives_locations = False
    fields = ()
    secret_fields: frozenset[str] = frozenset()
    requests_per_minute = 600
    budget_source = "a test double"
    latest_value_types = frozenset({"position"})
    setup_steps = ()

    def __init__(self, url: str) -> None:
        self.url = url

    def check_credentials(self, integration: Integration) -> None:
        return None

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        vehicle = event.vehicle
        if event.event_type.key == "location":
            return {"type": "position", "vin": vehicle.vin, "odometer": vehicle.odometer_mi}
        if event.event_type.key == CURRENT_STATE:
            return {
                "type": "state",
                "vin": vehicle.vin,
                "odometer": vehicle.odometer_mi,
                "fault_codes": event.report["fault_codes"],
            }
        return None

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        api = Api(self.url, {}, self.name, integration=integration)
        results: list[Result] = []
        for message in messages:
            if results and time.monotonic() > stop_at:
                break
            _, result = api.call("POST", "/records", json=message.payload)
            results.append(result)
            if not result.delivered:
                break
        return results


@pytest.fixture
def records(app: Any) -> Iterator[Records]:
    server = Records().start()
    PROVIDERS["records"] = RecordsProvider(server.url)  # type: ignore[assignment]
    yield server
    del PROVIDERS["records"]
    server.stop()


class Fleet:
    """An account whose trucks report through the ingest API."""

    def __init__(self, client: Any, trucks: int) -> None:
        self.client = client
        user = make_user()
        self.account_id = user.account_id
        self.headers = bearer(user)
        self.vins = [f"1FUJGLDR3CLBP{8800 + n:04d}" for n in range(trucks)]
        for n, vin in enumerate(self.vins):
            created = client.post(
                "/api/v1/vehicles", headers=self.headers, json={"name": f"Truck {n}", "vin": vin}
            )
            assert created.status_code == 201, created.json

    def position(self, vin: str, seconds: float, odometer: float, **extra: Any) -> None:
        report = {
            "vin": vin,
            "type": "position",
            "time": (T0 + timedelta(seconds=seconds)).isoformat(),
            "latitude": 41.88,
            "longitude": -87.63,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
            "odometer_mi": odometer,
            **extra,
        }
        answer = self.client.post("/api/v1/telemetry", json=report, headers=self.headers)
        assert answer.status_code == 202, answer.json


def connect(fleet: Fleet, **values: Any) -> Integration:
    integration = create_integration(fleet.account_id, {"provider": "records", **values})
    db.session.commit()
    return integration


def messages_of(integration: Integration) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == integration.id)
            .order_by(OutboxMessage.sequence)
        )
    )


def attempts_of(message: OutboxMessage) -> int:
    return (
        db.session.scalar(select(func.count()).where(DeliveryAttempt.message_id == message.id)) or 0
    )


# -- the request budget ---------------------------------------------------------------


def test_the_budget_caps_the_requests_and_a_request_without_room_is_no_attempt(client, records):
    fleet = Fleet(client, trucks=8)
    integration = connect(fleet, requests_per_minute=5)
    for n, vin in enumerate(fleet.vins):
        fleet.position(vin, n, odometer=100 + n)

    assert len(messages_of(integration)) == 16  # 8 current states, 8 positions

    drain_target(integration.id)

    assert len(records.posted()) == 5
    waiting = [m for m in messages_of(integration) if m.status == MessageStatus.PENDING]
    assert len(waiting) == 11
    # Never sent: no attempt recorded, nothing counted, no error shown.
    assert {(m.attempts, attempts_of(m), m.last_error) for m in waiting} == {(0, 0, None)}
    db.session.refresh(integration)
    assert integration.status == "active"
    assert integration.throttled_until is not None
    assert integration.throttled_until > utcnow() + timedelta(seconds=45)
    assert records.throttled_count == 0


def test_the_budget_is_the_providers_unless_the_integration_sets_its_own(client, records):
    fleet = Fleet(client, trucks=1)
    default = connect(fleet)
    assert round(default.rate_limit * 60) == RecordsProvider.requests_per_minute
    shown = client.get(f"/api/v1/integrations/{default.id}", headers=fleet.headers).json
    assert shown["requests_per_minute"] == RecordsProvider.requests_per_minute

    update_integration(default, {"requests_per_minute": "90"})
    db.session.commit()
    shown = client.get(f"/api/v1/integrations/{default.id}", headers=fleet.headers).json
    assert shown["requests_per_minute"] == 90


@pytest.mark.parametrize("bad", ["lots", 0, -3, 6001, 2.5, True, "12abc"])
def test_a_bad_budget_is_refused_by_name_and_nothing_is_saved(client, records, bad):
    fleet = Fleet(client, trucks=1)
    with pytest.raises(ValidationError) as refused:
        connect(fleet, requests_per_minute=bad)
    db.session.rollback()
    assert refused.value.errors == {"requests_per_minute": ["A whole number from 1 to 6000."]}
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0


def test_the_api_refuses_a_bad_budget_with_the_field_named(client, records):
    fleet = Fleet(client, trucks=1)
    answer = client.post(
        "/api/v1/integrations",
        headers=fleet.headers,
        json={"provider": "records", "requests_per_minute": "many"},
    )
    assert answer.status_code == 422
    assert "requests_per_minute" in answer.json["errors"]
    assert client.get("/api/v1/integrations", headers=fleet.headers).json["integrations"] == []


# -- lanes and latest values ------------------------------------------------------------


def test_one_vehicles_retry_holds_back_only_that_vehicle(client, records, monkeypatch):
    # Every position matters here (none superseded), so that the order shows.
    monkeypatch.setattr(PROVIDERS["records"], "latest_value_types", frozenset())
    fleet = Fleet(client, trucks=3)
    integration = connect(fleet)
    drain_target(integration.id)  # the current states
    a, b, c = fleet.vins
    for n, vin in enumerate([a, b, a, b, c]):
        fleet.position(vin, 10 + n, odometer=200 + n)
    records.refusing.add(a)

    drain_target(integration.id)

    positions = [p for p in records.posted() if p["type"] == "position"]
    assert [(p["vin"], p["odometer"]) for p in positions] == [
        (a, 200),
        (b, 201),
        (b, 203),
        (c, 204),
    ]
    by_odometer = {
        m.payload.get("odometer"): m for m in messages_of(integration) if m.event_type == "position"
    }
    assert by_odometer[200].status == MessageStatus.PENDING and by_odometer[200].attempts == 1
    assert by_odometer[202].status == MessageStatus.PENDING and by_odometer[202].attempts == 0
    assert {by_odometer[k].status for k in (201, 203, 204)} == {MessageStatus.DELIVERED}


def test_a_backlog_sends_each_vehicles_newest_position_and_every_other_message(client, records):
    fleet = Fleet(client, trucks=2)
    integration = connect(fleet)
    pause_integration(integration)
    db.session.commit()
    a, b = fleet.vins
    for n in range(4):
        fleet.position(a, 20 + n, odometer=300 + n)
    fleet.position(b, 30, odometer=400)

    resume_integration(integration)
    db.session.commit()
    drain_target(integration.id)

    posted = records.posted()
    assert sorted((p["type"], p["vin"], p["odometer"]) for p in posted) == sorted(
        [
            # The two current states of connecting: every one of them goes.
            ("state", a, None),
            ("state", b, None),
            ("position", a, 303),
            ("position", b, 400),
        ]
    )
    superseded = [
        m.payload["odometer"]
        for m in messages_of(integration)
        if m.status == MessageStatus.SUPERSEDED
    ]
    assert superseded == [300, 301, 302]
    db.session.refresh(integration)
    assert integration.queue_depth == 0


# -- the initial sync --------------------------------------------------------------------


def test_connecting_sends_each_vehicles_current_state_once(client, records):
    fleet = Fleet(client, trucks=3)
    a, b, _ = fleet.vins
    fleet.position(
        a,
        40,
        odometer=512.5,
        fault_codes=[{"code": "P0420", "description": "Catalyst below threshold"}],
    )
    fleet.position(b, 41, odometer=88.0, fault_codes=[{"code": "P0300", "description": "Misfire"}])
    fleet.position(b, 42, odometer=89.0, fault_codes=[])  # b's fault cleared

    integration = connect(fleet)
    drain_target(integration.id)

    states = {p["vin"]: p for p in records.posted() if p["type"] == "state"}
    assert states[a]["odometer"] == 512.5
    assert states[a]["fault_codes"] == [
        {"code": "P0420", "description": "Catalyst below threshold"}
    ]
    assert states[b]["odometer"] == 89.0 and states[b]["fault_codes"] == []
    # The third truck never reported: its state says what is known (nothing).
    assert len(states) == 3
    assert [p["type"] for p in records.posted()].count("state") == 3


@pytest.mark.parametrize(
    ("outage", "states_again"),
    [
        (timedelta(minutes=30), 0),  # its queue kept everything: nothing to catch up
        (timedelta(hours=80), 2),  # longer than the 72-hour retention: messages expired
    ],
)
def test_resuming_after_an_outage_longer_than_the_retention_sends_the_current_state(
    client, records, outage, states_again
):
    fleet = Fleet(client, trucks=2)
    integration = connect(fleet)
    drain_target(integration.id)
    assert [p["type"] for p in records.posted()] == ["state", "state"]
    pause_integration(integration)
    integration.last_delivered_at = utcnow() - outage
    db.session.commit()

    resume_integration(integration)
    db.session.commit()
    drain_target(integration.id)

    assert [p["type"] for p in records.posted()] == ["state"] * (2 + states_again)
