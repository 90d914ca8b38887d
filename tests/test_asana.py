"""The Asana integration against a fake Asana on loopback: the form and the
credential check, then telemetry in through the ingest API and out as the exact
requests Asana receives — a custom field update of the vehicle's task per
attribute, a new task for a DVIR with defects — and the answers' mapping."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from database import utcnow
from errors import ValidationError
from extensions import db
from integrations.asana import PROVIDER
from integrations.lifecycle import create_integration, update_integration
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import bearer, make_user
from tests.fakes.asana import TOKEN, FakeAsana

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

VIN = "1FUJGLDR3CLBP8834"
OTHER_VIN = "1HGCM82633A004352"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
FIELDS = {
    "VIN": "text",
    "Odometer (mi)": "number",
    "Engine hours": "number",
    "Fuel level (%)": "number",
    "Last location": "text",
    "Last DVIR": "text",
    "Status": "enum",
}
LISTING = {"opt_fields": ["custom_fields,name"], "limit": ["100"]}


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


def dvir(seconds: float, defects: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "vin": VIN,
        "type": "dvir",
        "time": at(seconds),
        "driver": "Dana Whitfield",
        "defects": defects,
        "safety_status": "unsafe" if defects else "safe",
    }


@pytest.fixture
def asana(app):
    fake = FakeAsana().start()
    app.config["FLEETHOOK_ASANA_BASE_URL"] = fake.url
    yield fake
    fake.stop()


class Fleet:
    """An account with one vehicle (Truck 42) and an Asana project holding it."""

    def __init__(self, client: Any, asana: FakeAsana) -> None:
        self.client, self.asana = client, asana
        user = make_user()
        self.account_id = user.account_id
        self.headers = bearer(user)
        self.add_vehicle("Truck 42", VIN)
        self.project = asana.add_project("Fleet", FIELDS)
        self.task = asana.add_task(self.project, "Truck 42", VIN)

    def add_vehicle(self, name: str, vin: str) -> None:
        response = self.client.post(
            "/api/v1/vehicles", headers=self.headers, json={"name": name, "vin": vin}
        )
        assert response.status_code == 201, response.json

    def field(self, name: str) -> str:
        return self.asana.field_gid(self.project, name)

    def connect(self, attribute: str = "odometer", **values: Any) -> Integration:
        integration = create_integration(
            self.account_id,
            {
                "provider": "asana",
                "api_key": TOKEN,
                "vehicle_attribute": attribute,
                "project_gid": self.project,
                **values,
            },
        )
        db.session.commit()
        self.asana.requests.clear()  # the credential check's requests
        return integration

    def post(self, *reports: dict[str, Any]) -> None:
        response = self.client.post(
            "/api/v1/telemetry", headers=self.headers, json={"reports": list(reports)}
        )
        assert response.status_code == 202, response.json


@pytest.fixture
def fleet(client, asana):
    return Fleet(client, asana)


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


def assert_put(request: Any, task: str, custom_fields: dict[str, Any]) -> None:
    assert (request.method, request.path) == ("PUT", f"/tasks/{task}")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {"data": {"custom_fields": custom_fields}}


def retry_now() -> None:
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()


# -- the form and the credential check ------------------------------------------


def test_the_form_names_every_missing_or_wrong_field(app, asana):
    account = make_user().account_id
    with pytest.raises(ValidationError) as refused:
        create_integration(
            account,
            {
                "provider": "asana",
                "vehicle_attribute": "speed",
                "project_gid": " ",
                "colour": "red",
            },
        )
    assert refused.value.errors == {
        "api_key": ["Enter the Personal access token."],
        "vehicle_attribute": ["One of: odometer, engine_hours, fuel_level, location, last_dvir."],
        "project_gid": ["Enter the Project."],
        "colour": ["Not a field of this provider."],
    }
    assert asana.requests == []
    assert db.session.scalars(select(Integration)).all() == []


def test_a_token_asana_refuses_is_said_in_plain_words(fleet, asana):
    with pytest.raises(ValidationError) as refused:
        create_integration(
            fleet.account_id,
            {
                "provider": "asana",
                "api_key": "2/not-mine",
                "vehicle_attribute": "odometer",
                "project_gid": fleet.project,
            },
        )
    assert refused.value.errors == {
        "credentials": ["Asana did not accept this personal access token."]
    }
    (request,) = asana.requests
    assert (request.method, request.path) == ("GET", "/users/me")
    assert request.headers["Authorization"] == "Bearer 2/not-mine"


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"project_gid": "1208999999999999"},
            "Asana has no project 1208999999999999 that this token can see.",
        ),
        (
            {"project_gid": "my fleet"},
            "The project is the number in its Asana address (or paste the address).",
        ),
        (  # "²" and "٣" are digits to str.isdigit(), not to Asana
            {"project_gid": "\u00b2\u0663"},
            "The project is the number in its Asana address (or paste the address).",
        ),
        (
            {"project_gid": "https://app.asana.com/0/\u0663\u0663/list"},
            "The project is the number in its Asana address (or paste the address).",
        ),
        ({"vin_field": "Serial"}, 'The project has no text custom field "Serial" for the VINs.'),
        (
            {"vin_field": "Odometer (mi)"},
            'The project has no text custom field "Odometer (mi)" for the VINs.',
        ),
        ({"attribute_field": "Mileage"}, 'The project has no custom field "Mileage".'),
        (
            {"attribute_field": "Status"},
            'The custom field "Status" is of type enum; '
            "Odometer (mi) needs a number or text field.",
        ),
        (
            {"vehicle_attribute": "location", "attribute_field": "Odometer (mi)"},
            'The custom field "Odometer (mi)" is of type number; Last location needs a text field.',
        ),
    ],
)
def test_a_project_or_field_asana_lacks_is_named(fleet, asana, values, message):
    with pytest.raises(ValidationError) as refused:
        create_integration(
            fleet.account_id,
            {
                "provider": "asana",
                "api_key": TOKEN,
                "vehicle_attribute": "odometer",
                "project_gid": fleet.project,
                **values,
            },
        )
    assert refused.value.errors == {"credentials": [message]}


def test_the_check_finds_the_project_by_address_and_fields_by_name_or_gid(fleet, asana):
    integration = create_integration(
        fleet.account_id,
        {
            "provider": "asana",
            "api_key": TOKEN,
            "vehicle_attribute": "engine_hours",
            "project_gid": f"https://app.asana.com/0/{fleet.project}/list",
            "vin_field": "vin",
            "attribute_field": fleet.field("Engine hours"),
        },
    )
    db.session.commit()
    assert fresh(integration).options == {
        "project_gid": fleet.project,
        "vin_field": "vin",
        "attribute_field": fleet.field("Engine hours"),
        "vin_field_gid": fleet.field("VIN"),
        "attribute_field_gid": fleet.field("Engine hours"),
        "attribute_field_type": "number",
    }
    assert [(r.method, r.path) for r in asana.requests] == [
        ("GET", "/users/me"),
        ("GET", f"/projects/{fleet.project}"),
        ("GET", f"/projects/{fleet.project}/custom_field_settings"),
    ]
    assert asana.requests[2].query == {
        "opt_fields": ["custom_field.name,custom_field.resource_subtype"],
        "limit": ["100"],
    }
    assert "api_key" not in json.dumps(fresh(integration).options)


# -- telemetry to Asana ---------------------------------------------------------


def test_an_odometer_that_advanced_updates_the_vehicle_task(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(
        position(0, odometer_mi=128463.2),
        position(30, odometer_mi=128463.2),
        position(60, odometer_mi=128463.9),
    )
    assert len(messages_of(integration)) == 2  # the unchanged reading makes none
    drain_target(integration.id)

    listing, first, second = asana.requests
    assert (listing.method, listing.path) == ("GET", f"/projects/{fleet.project}/tasks")
    assert listing.query == LISTING
    assert listing.headers["Authorization"] == f"Bearer {TOKEN}"
    assert_put(first, fleet.task, {fleet.field("Odometer (mi)"): 128463.2})
    assert_put(second, fleet.task, {fleet.field("Odometer (mi)"): 128463.9})
    assert asana.value(fleet.task, fleet.field("Odometer (mi)")) == 128463.9
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    integration = fresh(integration)
    assert integration.vehicle_map == {VIN: fleet.task} and integration.queue_depth == 0
    shown = db.session.scalars(select(DeliveryAttempt)).first().request_headers
    assert shown == {
        "method": "PUT",
        "path": f"/tasks/{fleet.task}",
        "authorization": "Bearer ••••••••" + TOKEN[-4:],
    }


@pytest.mark.parametrize(
    "attribute, field, report, value",
    [
        ("engine_hours", "Engine hours", position(0, engine_hours=5120.5), 5120.5),
        ("fuel_level", "Fuel level (%)", position(0, fuel_level_pct=61.0), 61.0),
        ("location", "Last location", position(0), "41.525, -88.0817"),
        ("last_dvir", "Last DVIR", dvir(0, []), f"{at(0)} — safe — Dana Whitfield — no defects"),
        ("odometer", "Last location", position(0, odometer_mi=1000.0), "1000"),
    ],
)
def test_each_attribute_sends_its_value(fleet, asana, attribute, field, report, value):
    integration = fleet.connect(attribute, attribute_field=field)
    fleet.post(position(-60, odometer_mi=999.0, latitude=41.0, longitude=-88.0), report)
    drain_target(integration.id)
    puts = asana.received("PUT")
    assert_put(puts[-1], fleet.task, {fleet.field(field): value})
    assert asana.value(fleet.task, fleet.field(field)) == value
    assert asana.received("POST") == []


def test_a_dvir_with_defects_opens_a_task_whatever_the_attribute(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(
        dvir(
            0,
            [
                {"component": "Brakes", "description": "Air leak at the rear axle"},
                {"component": "Lights", "description": "Left marker out"},
            ],
        )
    )
    drain_target(integration.id)
    (request,) = asana.requests  # no listing: the new task needs no vehicle task
    assert (request.method, request.path) == ("POST", "/tasks")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.json == {
        "data": {
            "projects": [fleet.project],
            "name": f"DVIR defects: Truck 42 ({VIN})",
            "notes": f"Dana Whitfield reported 2 defects on Truck 42 (VIN {VIN}) at {at(0)}.\n"
            "Safety status: unsafe\n\n"
            "- Brakes: Air leak at the rear axle\n"
            "- Lights: Left marker out\n\n"
            "Opened by Fleethook from the driver's vehicle inspection report.",
        }
    }
    assert messages_of(integration)[0].status == "delivered"


def test_a_last_dvir_integration_updates_the_field_then_opens_the_task(fleet, asana):
    integration = fleet.connect("last_dvir")
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak at the rear axle"}]))
    drain_target(integration.id)
    assert [(r.method, r.path) for r in asana.requests] == [
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("POST", "/tasks"),
    ]
    assert_put(
        asana.requests[1],
        fleet.task,
        {
            fleet.field(
                "Last DVIR"
            ): f"{at(0)} — unsafe — Dana Whitfield — 1 defect: Brakes: Air leak at the rear axle"
        },
    )
    # A failed POST retries the whole message: the PUT again (harmless), then the POST.
    fleet.post(dvir(60, [{"component": "Horn", "description": "Silent"}]))
    asana.requests.clear()
    asana.failing_task_creations = 1
    drain_target(integration.id)
    assert messages_of(integration)[-1].status == "pending"
    retry_now()
    drain_target(integration.id)
    assert [(r.method, r.path) for r in asana.requests] == [
        ("PUT", f"/tasks/{fleet.task}"),
        ("POST", "/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("POST", "/tasks"),
    ]
    assert asana.requests[0].json == asana.requests[2].json
    assert asana.requests[1].json == asana.requests[3].json
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    opened = [t["name"] for t in asana.tasks.values() if t["name"].startswith("DVIR")]
    assert opened == [f"DVIR defects: Truck 42 ({VIN})"] * 2


def test_the_vin_map_pages_through_the_project_and_is_cached(fleet, asana):
    for n in range(230):
        asana.add_task(fleet.project, f"Trailer {n}", f"TRAILERVIN{n:07d}")
    asana.add_task(fleet.project, "A note without a VIN")
    late = asana.add_task(fleet.project, "Truck 43", OTHER_VIN)
    fleet.add_vehicle("Truck 43", OTHER_VIN)
    integration = fleet.connect("odometer")
    fleet.post(
        position(0, odometer_mi=10.0),
        position(0, vin=OTHER_VIN, odometer_mi=20.0),
        position(30, odometer_mi=11.0),
    )
    drain_target(integration.id)

    listings = asana.received("GET")
    assert [r.path for r in listings] == [f"/projects/{fleet.project}/tasks"] * 3
    assert listings[0].query == LISTING
    assert len(asana.issued_offsets) == 2
    for listing, offset in zip(listings[1:], asana.issued_offsets, strict=True):
        assert listing.query == {**LISTING, "offset": [offset]}
    assert [r.path for r in asana.received("PUT")] == [
        f"/tasks/{fleet.task}",
        f"/tasks/{late}",
        f"/tasks/{fleet.task}",
    ]
    vehicle_map = fresh(integration).vehicle_map
    assert len(vehicle_map) == 232 and vehicle_map[OTHER_VIN] == late


def test_an_unknown_vin_is_listed_and_its_message_dead(fleet, asana):
    fleet.add_vehicle("Truck 43", OTHER_VIN)  # not in the project
    integration = fleet.connect("odometer")
    fleet.post(
        position(0, vin=OTHER_VIN, odometer_mi=20.0),
        position(30, vin=OTHER_VIN, odometer_mi=21.0),
        position(60, odometer_mi=5.0),
    )
    drain_target(integration.id)
    first, second, third = messages_of(integration)
    assert (first.status, second.status, third.status) == ("dead", "dead", "delivered")
    assert first.last_error == (
        f"No vehicle with VIN {OTHER_VIN} in Asana; it is listed on the integration's page."
    )
    integration = fresh(integration)
    assert integration.unmatched_vins == [OTHER_VIN]
    assert integration.queue_depth == 0 and integration.status == "active"
    # One listing: the second message of the missing vehicle did not list again.
    assert len(asana.received("GET")) == 1
    assert_put(asana.received("PUT")[0], fleet.task, {fleet.field("Odometer (mi)"): 5.0})


def test_a_task_deleted_since_the_listing_is_found_again(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    drain_target(integration.id)
    del asana.tasks[fleet.task]
    moved = asana.add_task(fleet.project, "Truck 42 (new card)", VIN)
    fleet.post(position(30, odometer_mi=2.0))
    asana.requests.clear()
    drain_target(integration.id)
    assert [(r.method, r.path) for r in asana.requests] == [
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{moved}"),
    ]
    assert_put(asana.requests[2], moved, {fleet.field("Odometer (mi)"): 2.0})
    assert fresh(integration).vehicle_map == {VIN: moved}


# -- Asana's answers ------------------------------------------------------------


@pytest.mark.parametrize("failing_path", ["/tasks/", "/projects/"])
def test_a_refused_token_needs_attention_and_keeps_the_queue(fleet, asana, failing_path):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, odometer_mi=2.0))
    asana.fail_next(401, path=failing_path, body={"errors": [{"message": "Not Authorized"}]})
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        "Needs attention: Asana refused the credentials (HTTP 401); update them to resume."
    )
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert integration.queue_depth == 2
    sent = len(asana.requests)
    drain_target(integration.id)
    assert len(asana.requests) == sent  # nothing goes out until a person acts

    update_integration(integration, {"api_key": TOKEN})
    db.session.commit()
    retry_now()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert [r.json for r in asana.received("PUT")][-2:] == [
        {"data": {"custom_fields": {fleet.field("Odometer (mi)"): 1.0}}},
        {"data": {"custom_fields": {fleet.field("Odometer (mi)"): 2.0}}},
    ]


def test_429_waits_for_retry_after(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    asana.fail_next(429, path="/tasks/", headers={"Retry-After": "30"})
    before = utcnow()
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "pending" and message.last_status_code == 429
    assert 29 <= (message.next_attempt_at - before).total_seconds() <= 32
    assert fresh(integration).status == "failing"


def test_500_is_retried_on_the_schedule(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, odometer_mi=2.0))
    asana.fail_next(500, path="/tasks/")
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert len(asana.received("PUT")) == 1  # the head waits; the second is not tried
    retry_now()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    puts = asana.received("PUT")
    assert [r.json for r in puts] == [
        {"data": {"custom_fields": {fleet.field("Odometer (mi)"): 1.0}}},
        {"data": {"custom_fields": {fleet.field("Odometer (mi)"): 1.0}}},
        {"data": {"custom_fields": {fleet.field("Odometer (mi)"): 2.0}}},
    ]
    assert fresh(integration).status == "active"


def test_the_provider_describes_itself():
    assert (PROVIDER.key, PROVIDER.name, PROVIDER.software_type) == (
        "asana",
        "Asana",
        "Task Management",
    )
    assert PROVIDER.secret_fields == {"api_key"} and PROVIDER.receives_locations is False
