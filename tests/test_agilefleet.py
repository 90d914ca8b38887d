"""The Agile Fleet integration against a fake speaking the ASSUMED API (no public
documentation exists; integrations/agilefleet.py): the form and the credential
check, the portal's words that the API is assumed, telemetry in through the ingest
API and out as the exact meter readings the fake receives (the newest per vehicle
when a backlog forms, the current one on connecting), the paged VIN map, and the
answers' mapping."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

import integrations.agilefleet as agilefleet
from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from integrations.agilefleet import PROVIDER
from integrations.lifecycle import create_integration, update_integration
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import HTMX, bearer, make_user
from tests.fakes.agilefleet import API_KEY, FakeAgileFleet

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

VIN = "1FUJGLDR3CLBP8834"
OTHER_VIN = "1HGCM82633A004352"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def position(seconds: float, vin: str = VIN, **extra: Any) -> dict[str, Any]:
    return {
        "vin": vin,
        "type": "position",
        "time": at(seconds),
        "latitude": 41.525,
        "longitude": -88.0817,
        "speed_mph": 58,
        "heading": 225,
        "ignition": True,
        **extra,
    }


@pytest.fixture
def agile(app):
    fake = FakeAgileFleet().start()
    app.config["FLEETHOOK_AGILEFLEET_BASE_URL"] = fake.url
    yield fake
    fake.stop()


class Fleet:
    """An account with one vehicle (Truck 42), which Agile Fleet knows too."""

    def __init__(self, client: Any, agile: FakeAgileFleet) -> None:
        self.client, self.agile = client, agile
        user = make_user()
        self.account_id = user.account_id
        self.headers = bearer(user)
        self.add_vehicle("Truck 42", VIN)
        self.vehicle = agile.add_vehicle(VIN, "Truck 42")

    def add_vehicle(self, name: str, vin: str) -> None:
        response = self.client.post(
            "/api/v1/vehicles", headers=self.headers, json={"name": name, "vin": vin}
        )
        assert response.status_code == 201, response.json

    def add_truck_43(self) -> str:
        """A second vehicle, which Agile Fleet knows too (its messages are in a lane
        of their own, so neither supersedes the other's); its Agile Fleet id."""
        self.add_vehicle("Truck 43", OTHER_VIN)
        return self.agile.add_vehicle(OTHER_VIN, "Truck 43")

    def connect(self, attribute: str = "odometer") -> Integration:
        integration = create_integration(
            self.account_id,
            {"provider": "agilefleet", "api_key": API_KEY, "vehicle_attribute": attribute},
        )
        db.session.commit()
        self.agile.requests.clear()  # the credential check's request
        return integration

    def post(self, *reports: dict[str, Any]) -> None:
        response = self.client.post(
            "/api/v1/telemetry", headers=self.headers, json={"reports": list(reports)}
        )
        assert response.status_code == 202, response.json


@pytest.fixture
def fleet(client, agile):
    return Fleet(client, agile)


def messages_of(integration: Integration) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == integration.id)
            .order_by(OutboxMessage.sequence)
        )
    )


def fresh(integration: Integration) -> Integration:
    db.session.expire_all()
    return db.session.get(Integration, integration.id)


def assert_reading(request: Any, vehicle: str, body: dict[str, Any]) -> None:
    assert (request.method, request.path) == ("POST", f"/v1/vehicles/{vehicle}/readings")
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == body


def odometer(value: float, seconds: float = 0) -> dict[str, Any]:
    return {"type": "odometer", "value": value, "unit": "mi", "recorded_at": at(seconds)}


def retry_now() -> None:
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()


# -- the form, the credential check, the portal's text -------------------------


def test_the_form_offers_only_the_meters_a_fuel_system_takes(app, agile):
    account = make_user().account_id
    with pytest.raises(ValidationError) as refused:
        create_integration(account, {"provider": "agilefleet", "vehicle_attribute": "location"})
    assert refused.value.errors == {
        "api_key": ["Enter the API key."],
        "vehicle_attribute": ["One of: odometer, engine_hours, fuel_level."],
    }
    assert agile.requests == []
    attribute = next(f for f in PROVIDER.fields if f.name == "vehicle_attribute")
    assert attribute.choices == (
        ("odometer", "Odometer (mi)"),
        ("engine_hours", "Engine hours"),
        ("fuel_level", "Fuel level (%)"),
    )


def test_a_key_agile_fleet_refuses_is_said_in_plain_words(app, agile):
    account = make_user().account_id
    with pytest.raises(ValidationError) as refused:
        create_integration(
            account,
            {"provider": "agilefleet", "api_key": "af_wrong", "vehicle_attribute": "odometer"},
        )
    assert refused.value.errors == {"credentials": ["Agile Fleet did not accept this API key."]}
    (request,) = agile.requests
    assert (request.method, request.path, request.query) == (
        "GET",
        "/v1/vehicles",
        {"limit": ["1"]},
    )
    assert request.headers["X-API-Key"] == "af_wrong"
    assert db.session.scalars(select(Integration)).all() == []


def test_an_api_elsewhere_than_assumed_is_said_in_plain_words(app, agile):
    app.config["FLEETHOOK_AGILEFLEET_BASE_URL"] = agile.url + "/elsewhere"
    account = make_user().account_id
    with pytest.raises(ValidationError) as refused:
        create_integration(
            account, {"provider": "agilefleet", "api_key": API_KEY, "vehicle_attribute": "odometer"}
        )
    (message,) = refused.value.errors["credentials"]
    assert "differ from the one Fleethook assumes" in message


def test_the_portal_and_the_module_say_the_api_is_assumed():
    assert (PROVIDER.key, PROVIDER.name, PROVIDER.software_type) == (
        "agilefleet",
        "Agile Fleet",
        "Fuel Management",
    )
    assert "publishes no API documentation" in PROVIDER.requirements
    assert "assumed API" in PROVIDER.requirements
    assert "ASSUMED API" in (agilefleet.__doc__ or "")
    assert PROVIDER.secret_fields == {"api_key"} and PROVIDER.receives_locations is False
    assert PROVIDER.requests_per_minute == 60
    assert PROVIDER.budget_source.startswith("assumed:")
    assert PROVIDER.latest_value_types == {"odometer", "engine_hours", "fuel_level"}


@pytest.mark.parametrize("htmx", [True, False])
def test_the_form_says_the_api_is_assumed_where_the_key_is_asked(admin, client, htmx):
    response = client.get("/integrations/new?provider=agilefleet", headers=HTMX if htmx else {})
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assumed = (
        "Agile Fleet publishes no API documentation: Fleethook speaks an assumed API until "
        "Agile Fleet's documentation is in hand."
    )
    assert f"Fuel Management. An Agile Fleet API key. {assumed}" in page  # the requirements
    assert (  # the API key's help
        "Fleethook sends it in an X-API-Key header: an assumed shape until Agile Fleet's "
        "API documentation is in hand." in page
    )
    for step in PROVIDER.setup_steps:  # the steps before connecting
        assert f"<li>{step}</li>" in page
    assert PROVIDER.setup_steps[0].startswith(assumed)
    assert "an assumed limit" in PROVIDER.setup_steps[-1]


# -- telemetry to Agile Fleet ---------------------------------------------------


def test_an_odometer_that_advanced_becomes_a_reading(fleet, agile):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=128463.2))
    drain_target(integration.id)
    fleet.post(position(30, odometer_mi=128463.2), position(60, odometer_mi=128463.9))
    (message,) = messages_of(integration)[1:]  # the unchanged reading makes none
    assert message.event_type == "odometer"
    drain_target(integration.id)

    listing, first, second = agile.requests
    assert (listing.method, listing.path, listing.query) == (
        "GET",
        "/v1/vehicles",
        {"limit": ["100"]},
    )
    assert listing.headers["X-API-Key"] == API_KEY
    assert_reading(first, fleet.vehicle, odometer(128463.2, 0))
    assert_reading(second, fleet.vehicle, odometer(128463.9, 60))
    assert [r["value"] for r in agile.readings] == [128463.2, 128463.9]
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    integration = fresh(integration)
    assert integration.vehicle_map == {VIN: fleet.vehicle} and integration.queue_depth == 0
    shown = db.session.scalars(select(DeliveryAttempt)).first().request_headers
    assert shown == {
        "method": "POST",
        "path": f"/v1/vehicles/{fleet.vehicle}/readings",
        "x-api-key": "••••••••" + API_KEY[-4:],
    }


@pytest.mark.parametrize(
    "attribute, extra, reading",
    [
        (
            "engine_hours",
            {"engine_hours": 5120.5},
            {"type": "engine_hours", "value": 5120.5, "unit": "h"},
        ),
        ("fuel_level", {"fuel_level_pct": 61}, {"type": "fuel_level", "value": 61.0, "unit": "%"}),
    ],
)
def test_engine_hours_and_fuel_level_become_readings(fleet, agile, attribute, extra, reading):
    integration = fleet.connect(attribute)
    fleet.post(position(0, odometer_mi=10.0), position(30, **extra))
    drain_target(integration.id)
    (message,) = messages_of(integration)  # the position without the meter makes none
    assert message.status == "delivered"
    assert_reading(agile.received("POST")[0], fleet.vehicle, {**reading, "recorded_at": at(30)})


def test_a_backlog_sends_only_the_newest_reading(fleet, agile):
    integration = fleet.connect("odometer")
    fleet.post(
        position(0, odometer_mi=1.0), position(30, odometer_mi=2.0), position(60, odometer_mi=3.0)
    )
    drain_target(integration.id)
    statuses = [m.status for m in messages_of(integration)]
    assert statuses == ["superseded", "superseded", "delivered"]
    (post,) = agile.received("POST")
    assert_reading(post, fleet.vehicle, odometer(3.0, 60))


def test_a_late_report_makes_no_reading(fleet, agile):
    integration = fleet.connect("fuel_level")
    fleet.post(position(60, fuel_level_pct=40.0))
    fleet.post(position(0, fuel_level_pct=90.0))  # older than the one before
    drain_target(integration.id)
    assert [m.payload["reading"]["value"] for m in messages_of(integration)] == [40.0]


@pytest.mark.parametrize(
    "attribute, reading",
    [
        ("odometer", {"type": "odometer", "value": 128463.2, "unit": "mi"}),
        ("engine_hours", {"type": "engine_hours", "value": 5120.5, "unit": "h"}),
        ("fuel_level", {"type": "fuel_level", "value": 61.0, "unit": "%"}),
    ],
)
def test_connecting_sends_the_current_reading(fleet, agile, attribute, reading):
    fleet.post(position(0, odometer_mi=128463.2, engine_hours=5120.5, fuel_level_pct=61.0))
    integration = fleet.connect(attribute)
    (message,) = messages_of(integration)  # the initial sync, queued on connecting
    assert message.event_type == attribute
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "delivered"
    (post,) = agile.received("POST")
    assert_reading(post, fleet.vehicle, {**reading, "recorded_at": at(0)})


def test_connecting_with_no_reading_known_sends_nothing(fleet, agile):
    integration = fleet.connect("engine_hours")
    assert messages_of(integration) == []


def test_the_vin_map_pages_through_the_vehicles_and_is_cached(fleet, agile):
    for n in range(230):
        agile.add_vehicle(f"TRAILERVIN{n:07d}")
    late = agile.add_vehicle(OTHER_VIN, "Truck 43")
    fleet.add_vehicle("Truck 43", OTHER_VIN)
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=10.0), position(0, vin=OTHER_VIN, odometer_mi=20.0))
    drain_target(integration.id)
    fleet.post(position(30, odometer_mi=11.0))
    drain_target(integration.id)

    listings = agile.received("GET")
    first, second = agile.issued_cursors[-2:]  # (the credential check's page had one too)
    assert [r.query.get("cursor") for r in listings] == [None, [first], [second]]
    assert all(r.query["limit"] == ["100"] for r in listings)
    assert [r.path for r in agile.received("POST")] == [
        f"/v1/vehicles/{fleet.vehicle}/readings",
        f"/v1/vehicles/{late}/readings",
        f"/v1/vehicles/{fleet.vehicle}/readings",
    ]
    vehicle_map = fresh(integration).vehicle_map
    assert len(vehicle_map) == 232 and vehicle_map[OTHER_VIN] == late


def test_an_unknown_vin_is_listed_and_its_message_dead(fleet, agile):
    fleet.add_vehicle("Truck 43", OTHER_VIN)  # Agile Fleet lacks it
    integration = fleet.connect("odometer")
    fleet.post(position(0, vin=OTHER_VIN, odometer_mi=20.0), position(60, odometer_mi=5.0))
    drain_target(integration.id)
    fleet.post(position(30, vin=OTHER_VIN, odometer_mi=21.0))
    drain_target(integration.id)
    first, third, second = messages_of(integration)
    assert (first.status, second.status, third.status) == ("dead", "dead", "delivered")
    assert first.last_error == (
        f"No vehicle with VIN {OTHER_VIN} in Agile Fleet; it is listed on the integration's page."
    )
    integration = fresh(integration)
    assert integration.unmatched_vins == [OTHER_VIN] and integration.queue_depth == 0
    assert len(agile.received("GET")) == 1  # the second message did not list again
    assert_reading(agile.received("POST")[0], fleet.vehicle, odometer(5.0, 60))


# -- Agile Fleet's answers (as assumed) -----------------------------------------


@pytest.mark.parametrize("failing_path", ["/readings", "/v1/vehicles"])
def test_a_refused_key_needs_attention_and_keeps_the_queue(fleet, agile, failing_path):
    truck_43 = fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    agile.fail_next(401, path=failing_path, body={"error": "Invalid API key"})
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        "Needs attention: Agile Fleet refused the credentials (HTTP 401); update them to resume."
    )
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert integration.queue_depth == 2
    sent = len(agile.requests)
    drain_target(integration.id)
    assert len(agile.requests) == sent  # nothing goes out until a person acts

    update_integration(integration, {"api_key": API_KEY})
    db.session.commit()
    assert fresh(integration).vehicle_attribute == "odometer"
    retry_now()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert [(r.path, r.json) for r in agile.received("POST")][-2:] == [
        (f"/v1/vehicles/{fleet.vehicle}/readings", odometer(1.0, 0)),
        (f"/v1/vehicles/{truck_43}/readings", odometer(2.0, 30)),
    ]


def test_429_waits_for_retry_after(fleet, agile):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    agile.fail_next(429, path="/readings", headers={"Retry-After": "45"})
    before = utcnow()
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "pending" and message.last_status_code == 429
    assert 44 <= (message.next_attempt_at - before).total_seconds() <= 47
    assert fresh(integration).status == "failing"


def test_500_is_retried_on_the_schedule(fleet, agile):
    fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    agile.fail_next(500, path="/readings")
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert len(agile.received("POST")) == 1  # Agile Fleet is down: the second is not tried
    retry_now()
    drain_target(integration.id)
    assert [r.json for r in agile.received("POST")] == [
        odometer(1.0, 0),
        odometer(1.0, 0),
        odometer(2.0, 30),
    ]
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert fresh(integration).status == "active"


def test_422_kills_that_reading_with_the_reason_and_the_next_goes_on(fleet, agile):
    fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    agile.fail_next(422, path="/readings", body={"errors": {"value": "is lower than before"}})
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, second.status) == ("dead", "delivered")
    assert first.last_error == ('Agile Fleet answered HTTP 422: {"value": "is lower than before"}')
    assert fresh(integration).status == "active"
