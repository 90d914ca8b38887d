"""The Fleetio integration against the fake Fleetio API (tests/fakes/fleetio.py):
its form and credential check, telemetry reports to the exact meter entries,
fault rules and faults Fleetio receives, and every answer's mapping (422 dead
with Fleetio's reason, 401 needs attention, 429 Retry-After, 500 the schedule),
vehicle pages and unknown VINs. Drains run in this process."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, update

from database import utcnow
from errors import ValidationError
from extensions import db
from integrations import fleetio as fleetio_module
from integrations.lifecycle import create_integration
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY, FleetioFake
from webhooks.events import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

VIN = "1FUJGLDR3CLBP8834"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=2)
FLEETIO_HEADERS = {
    "Authorization": f"Token {API_KEY}",
    "Account-Token": ACCOUNT_TOKEN,
    "X-Api-Version": "2024-03-15",
    "Accept": "application/json",
}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def fake(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


class Account:
    """An account with one vehicle, posting telemetry through the ingest API."""

    def __init__(self, client: Any) -> None:
        self.client = client
        user = make_user()
        self.id = user.account_id
        self.headers = bearer(user)
        created = client.post("/api/v1/vehicles", headers=self.headers,
                              json={"name": "Truck 42", "vin": VIN})  # fmt: skip
        assert created.status_code == 201, created.json

    def position(self, seconds: float, **extra: Any) -> None:
        report = {"vin": VIN, "type": "position", "time": at(seconds), "latitude": 41.88,
                  "longitude": -87.63, "speed_mph": 30, "heading": 90, "ignition": True,
                  **extra}  # fmt: skip
        response = self.client.post("/api/v1/telemetry", json=report, headers=self.headers)
        assert response.status_code == 202, response.json


@pytest.fixture
def account(client):
    return Account(client)


def connect(account_id: int, **values: Any) -> Integration:
    integration = create_integration(account_id, {
        "provider": "fleetio", "api_key": API_KEY, "account_id": ACCOUNT_TOKEN,
        "update_odometer": True, "update_dtcs": True, **values})  # fmt: skip
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


def make_due(integration: Integration) -> None:
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == integration.id)
        .values(next_attempt_at=utcnow())
    )
    db.session.commit()


def calls(fake: FleetioFake) -> list[tuple[str, str, Any]]:
    """Every request after the credential check, as (method, path, JSON body)."""
    return [(r.method, r.path, r.json) for r in fake.requests[1:]]


# -- the form -------------------------------------------------------------------


def test_missing_api_key_is_refused_without_asking_fleetio(account, fake):
    with pytest.raises(ValidationError) as refused:
        create_integration(account.id, {"provider": "fleetio", "account_id": ACCOUNT_TOKEN})
    assert refused.value.errors == {"api_key": ["Enter the API Key."]}
    assert fake.requests == []
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0


def test_fields_of_the_wrong_type_are_each_named(account, fake):
    with pytest.raises(ValidationError) as refused:
        create_integration(account.id, {
            "provider": "fleetio", "api_key": 1234, "account_id": ["acct"],
            "update_odometer": "yes", "update_dtcs": 1,
            "vehicle_attribute": "odometer"})  # fmt: skip
    assert refused.value.errors == {
        "vehicle_attribute": ["Not a field of this provider."],
        "api_key": ["A string."],
        "account_id": ["A string."],
        "update_odometer": ["true or false."],
        "update_dtcs": ["true or false."],
    }
    assert fake.requests == []


def test_saving_checks_the_credentials_with_one_page_of_vehicles(account, fake):
    integration = connect(account.id)
    (check,) = fake.requests
    assert (check.method, check.path, check.query) == ("GET", "/api/v1/vehicles",
                                                       {"per_page": ["2"]})  # fmt: skip
    assert {k: check.headers[k] for k in FLEETIO_HEADERS} == FLEETIO_HEADERS
    assert integration.status == "active"
    assert integration.options == {"account_id": ACCOUNT_TOKEN, "update_odometer": True,
                                   "update_dtcs": True}  # fmt: skip
    assert API_KEY not in json.dumps(integration.options)


def test_refused_credentials_are_said_in_plain_words(account, fake):
    with pytest.raises(ValidationError) as refused:
        connect(account.id, api_key="not-the-key")
    assert refused.value.errors == {
        "credentials": ["Fleetio did not accept this API key and Account Token."]
    }
    assert fake.received("GET", "/api/v1/vehicles")[0].headers["Authorization"] == (
        "Token not-the-key"
    )


def test_an_unreachable_fleetio_is_said_too(account, fake, app):
    fake.stop()
    with pytest.raises(ValidationError) as refused:
        connect(account.id)
    where = urlsplit(fake.base_url).netloc
    assert refused.value.errors == {
        "credentials": [f"Could not reach Fleetio (Connection refused by {where}); try again."]
    }


# -- telemetry → Fleetio ----------------------------------------------------------


def test_a_report_becomes_a_meter_entry_and_faults_with_a_missing_rule_created(account, fake):
    vehicle_id = fake.add_vehicle(VIN, "Truck 42")
    fake.add_fault_rule("P0171", "System too lean")
    integration = connect(account.id)
    account.position(0, odometer_mi=128463.2, fault_codes=[
        {"code": "P0420", "description": "Catalyst efficiency low"},
        {"code": "P0171", "description": "System too lean (bank 1)"}])  # fmt: skip

    drain_target(integration.id)

    date = at(0)
    p0420 = {"vehicle_id": vehicle_id, "code": "P0420", "name": "Catalyst efficiency low",
             "description": "Catalyst efficiency low", "count": 1,
             "external_id": f"{VIN}:P0420:{date}", "last_occurred_at": date,
             "status": "open", "source": "Fleethook"}  # fmt: skip
    p0171 = {**p0420, "code": "P0171", "name": "System too lean (bank 1)",
             "description": "System too lean (bank 1)",
             "external_id": f"{VIN}:P0171:{date}"}  # fmt: skip
    assert calls(fake) == [
        ("GET", "/api/v1/vehicles", None),
        (
            "POST",
            "/api/v1/meter_entries",
            {"vehicle_id": vehicle_id, "value": 128463.2, "date": date},
        ),  # fmt: skip
        ("POST", "/api/v1/faults", p0420),  # refused: no rule for P0420 yet
        (
            "POST",
            "/api/v1/fault_rules",
            {
                "code": "P0420",
                "name": "Catalyst efficiency low",
                "description": "Catalyst efficiency low",
            },
        ),  # fmt: skip
        ("POST", "/api/v1/faults", p0420),
        ("POST", "/api/v1/faults", p0171),  # its rule exists: straight in
    ]
    assert fake.requests[1].query == {"per_page": ["100"]}
    for request in fake.requests[1:]:
        assert {k: request.headers[k] for k in FLEETIO_HEADERS} == FLEETIO_HEADERS
    for request in fake.received("POST"):
        assert request.headers["Content-Type"] == "application/json"
    assert [f["code"] for f in fake.faults] == ["P0420", "P0171"]
    assert set(fake.fault_rules) == {"P0171", "P0420"}
    (message,) = messages_of(integration)
    assert (message.status, message.attempts, message.last_status_code) == ("delivered", 1, 201)
    db.session.refresh(integration)
    assert integration.vehicle_map == {VIN: {"id": vehicle_id, "meter_unit": "mi"}}
    assert integration.queue_depth == 0


def test_attempts_show_the_credentials_masked(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    drain_target(integration.id)
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    shown = json.dumps(attempt.request_headers)
    assert API_KEY not in shown and ACCOUNT_TOKEN not in shown
    assert attempt.request_headers["Authorization"] == "Token ••••••••" + API_KEY[-4:]
    assert attempt.request_headers["path"] == "/v1/meter_entries"


def test_a_fault_refused_while_its_rule_exists_stays_refused(account, fake):
    fake.add_vehicle(VIN)
    fake.add_fault_rule("P0420")
    integration = connect(account.id, update_odometer=False)
    account.position(
        0, odometer_mi=10.0, fault_codes=[{"code": "P0420", "description": "Catalyst"}]
    )
    fake.fail_next(422, body={"errors": {"last_occurred_at": ["is invalid"]}},
                   path="/faults")  # fmt: skip
    drain_target(integration.id)
    assert [r.path for r in fake.received("POST")] == ["/api/v1/faults", "/api/v1/fault_rules"]
    (message,) = messages_of(integration)
    assert message.status == "dead"
    assert message.last_error == (
        'Fault P0420: Fleetio answered HTTP 422: {"last_occurred_at": ["is invalid"]}'
    )
    assert list(fake.fault_rules) == ["P0420"] and fake.faults == []


def test_a_rule_that_cannot_be_created_now_is_retried(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id, update_odometer=False)
    account.position(0, fault_codes=[{"code": "P0420", "description": "Catalyst"}])
    fake.fail_next(503, path="/fault_rules")
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert (message.status, message.last_status_code) == ("pending", 503)
    assert message.last_error == "Fault rule P0420: Fleetio answered HTTP 503: HTTP 503"
    make_due(integration)
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "delivered"
    assert [f["code"] for f in fake.faults] == ["P0420"]


def test_only_an_advanced_odometer_makes_a_message(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=1000.0)  # the first reading: nothing before it
    account.position(60, odometer_mi=1000.0)  # not advanced
    account.position(120)  # no odometer in the report
    account.position(30, odometer_mi=999.0)  # late and lower
    account.position(180, odometer_mi=1000.4)
    assert [m.payload["operations"] for m in messages_of(integration)] == [
        [{"op": "meter_entry", "value": 1000.0, "date": at(0)}],
        [{"op": "meter_entry", "value": 1000.4, "date": at(180)}],
    ]
    assert messages_of(integration)[0].payload == {
        "type": "location", "vin": VIN, "vehicle_name": "Truck 42",
        "operations": [{"op": "meter_entry", "value": 1000.0, "date": at(0)}]}  # fmt: skip


def event(odometer: float | None, previous: float | None, faults: list | None = None,
          key: str = "location") -> DetectedEvent:  # fmt: skip
    report: dict[str, Any] = {"previous_odometer_mi": previous}
    if faults is not None:
        report["fault_codes"] = faults
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=odometer)
    return DetectedEvent(EVENT_TYPES[key], T0, vehicle, report=report)


FAULT = [{"code": "P0300", "description": "Random misfire"}]
METER_OP = {"op": "meter_entry", "value": 12.5, "date": at(0)}
FAULT_OP = {"op": "fault", "code": "P0300", "description": "Random misfire", "occurred_at": at(0)}


@pytest.mark.parametrize(
    ("options", "evt", "operations"),
    [
        ({"update_odometer": True, "update_dtcs": True}, event(12.5, 12.0, FAULT),
         [METER_OP, FAULT_OP]),
        ({"update_odometer": False, "update_dtcs": True}, event(12.5, 12.0, FAULT), [FAULT_OP]),
        ({"update_odometer": True, "update_dtcs": False}, event(12.5, 12.0, FAULT), [METER_OP]),
        ({"update_odometer": True, "update_dtcs": False}, event(12.0, 12.0, FAULT), None),
        ({"update_odometer": True, "update_dtcs": True}, event(None, 12.0, []), None),
        ({"update_odometer": True, "update_dtcs": True}, event(12.5, 12.0, FAULT, "speed"), None),
    ],
)  # fmt: skip
def test_which_events_make_which_operations(app, options, evt, operations):
    integration = Integration(provider="fleetio", options=options)
    payload = fleetio_module.Fleetio().payload_for(integration, evt)
    assert (payload["operations"] if payload else None) == operations


# -- Fleetio's answers ------------------------------------------------------------


def test_a_non_monotonic_meter_entry_is_dead_with_fleetios_reason_and_the_next_goes(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    fake.add_meter_entry(vehicle_id, 200000.0, at(-3600))
    integration = connect(account.id)
    account.position(0, odometer_mi=150000.0)
    account.position(60, odometer_mi=200100.0)
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, first.last_status_code) == ("dead", 422)
    assert first.last_error == (
        'Meter entry: Fleetio answered HTTP 422: {"value": ["must be greater than 200,000.0"]}'
    )
    assert second.status == "delivered"
    assert [e["value"] for e in fake.meter_entries[vehicle_id]] == [200000.0, 200100.0]
    db.session.refresh(integration)
    assert integration.status == "active" and integration.queue_depth == 0


def test_a_refused_operation_does_not_hold_back_the_others(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    fake.add_meter_entry(vehicle_id, 200000.0, at(-3600))
    integration = connect(account.id)
    account.position(
        0, odometer_mi=150000.0, fault_codes=[{"code": "P0420", "description": "Catalyst"}]
    )
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "dead"
    assert message.last_error.startswith("Meter entry: Fleetio answered HTTP 422")
    assert [f["code"] for f in fake.faults] == ["P0420"]


@pytest.mark.parametrize("path", ["/vehicles", "/meter_entries"])
def test_refused_credentials_need_attention_and_keep_the_queue(account, fake, path):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(60, odometer_mi=11.0)
    fake.fail_next(401, path=path)
    drain_target(integration.id)
    db.session.refresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        "Needs attention: Fleetio refused the credentials (HTTP 401); update them to resume."
    )
    assert [(m.status, m.attempts) for m in messages_of(integration)] == [
        ("pending", 1), ("pending", 0)]  # fmt: skip
    assert integration.queue_depth == 2
    sent = len(fake.requests)
    make_due(integration)
    drain_target(integration.id)  # held: nothing is sent until someone fixes it
    assert len(fake.requests) == sent


def test_throttling_waits_for_retry_after(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    fake.fail_next(429, headers={"Retry-After": "120"}, path="/meter_entries")
    before = utcnow()
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert (message.status, message.last_status_code) == ("pending", 429)
    delay = (message.next_attempt_at - before).total_seconds()
    assert 120 <= delay <= 121.5, delay


def test_a_server_error_is_retried_on_the_schedule(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(60, odometer_mi=11.0)
    fake.fail_next(500, path="/meter_entries")
    before = utcnow()
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert second.attempts == 0  # FIFO: it waits behind the first
    delay = (first.next_attempt_at - before).total_seconds()
    assert 4 <= delay <= 6 + 1.5, delay  # the schedule's first step: 5 s ± 20 %
    db.session.refresh(integration)
    assert integration.status == "failing"
    make_due(integration)
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert [e["value"] for e in fake.meter_entries[vehicle_id]] == [10.0, 11.0]


def test_vehicles_are_listed_page_by_page_and_the_map_is_kept(account, fake):
    for n in range(149):
        fake.add_vehicle(f"1HGCM82633A{n:06d}")
    vehicle_id = fake.add_vehicle(VIN)  # the 150th, on the second page
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    drain_target(integration.id)
    pages = fake.received("GET", "/api/v1/vehicles")[1:]
    assert [p.query for p in pages] == [{"per_page": ["100"]},
                                        {"per_page": ["100"], "start_cursor": ["100"]}]  # fmt: skip
    assert fake.received("POST")[0].json["vehicle_id"] == vehicle_id
    db.session.refresh(integration)
    assert len(integration.vehicle_map) == 150
    account.position(60, odometer_mi=11.0)
    drain_target(integration.id)
    assert len(fake.received("GET", "/api/v1/vehicles")) == 3  # the map served
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]


def test_an_unknown_vin_is_listed_and_its_message_dead(account, fake):
    fake.add_vehicle("1HGCM82633A004352")
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(60, odometer_mi=11.0)
    drain_target(integration.id)
    assert [(m.status, m.last_error) for m in messages_of(integration)] == [
        ("dead", f"No vehicle with VIN {VIN} in Fleetio; it is listed on the integration's page.")
    ] * 2
    assert len(fake.received("GET", "/api/v1/vehicles")) == 2  # listed once for the batch
    assert fake.received("POST") == []
    db.session.refresh(integration)
    assert integration.unmatched_vins == [VIN]
    # Added in Fleetio later: the next miss lists again, finds it, and forgets the VIN.
    vehicle_id = fake.add_vehicle(VIN)
    account.position(120, odometer_mi=12.0)
    drain_target(integration.id)
    assert messages_of(integration)[-1].status == "delivered"
    assert fake.received("POST")[0].json["vehicle_id"] == vehicle_id
    db.session.refresh(integration)
    assert integration.unmatched_vins == []


def test_kilometre_meters_get_kilometres_and_hour_meters_no_odometer(account, fake):
    vehicle_id = fake.add_vehicle(VIN, meter_unit="km")
    integration = connect(account.id)
    account.position(0, odometer_mi=100.0)
    drain_target(integration.id)
    assert fake.received("POST")[0].json == {"vehicle_id": vehicle_id, "value": 160.9,
                                             "date": at(0)}  # fmt: skip
    fake.vehicles[0]["meter_unit"] = "hr"
    db.session.execute(update(Integration).values(vehicle_map_at=None))  # list again
    db.session.commit()
    account.position(60, odometer_mi=101.0)
    drain_target(integration.id)
    message = messages_of(integration)[-1]
    assert message.status == "dead"
    assert message.last_error == ("Meter entry: Truck 42's primary meter in Fleetio counts "
                                  "hours, so its odometer is not sent.")  # fmt: skip
    assert len(fake.received("POST")) == 1


def test_a_batch_stops_at_its_time_budget_after_one_message(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(60, odometer_mi=11.0)
    results = fleetio_module.Fleetio().send(integration, messages_of(integration), stop_at=0.0)
    assert [r.delivered for r in results] == [True]
    assert len(fake.received("POST")) == 1
