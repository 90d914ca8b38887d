"""The Asana integration against a fake Asana on loopback (written from Asana's
OpenAPI file and developers.asana.com): the form and the credential check, then
telemetry in through the ingest API and out as the exact requests Asana receives —
a custom field update of the vehicle's task per attribute, one task per DVIR with
defects — the answers' mapping (402, 400, 403, 404, 429, 5xx), the request budget
against Asana's 150 a minute, and the initial sync."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.errors import ValidationError
from core.extensions import db
from core.times import parse_rfc3339, utcnow
from events.catalogue import CURRENT_STATE as EVENT_CURRENT_STATE
from events.catalogue import DetectedEvent, VehicleSnapshot
from fleet.models import Vehicle
from integrations.asana.provider import CLOCK_MARGIN, PROVIDER
from integrations.lifecycle import create_integration, update_integration
from integrations.models import Integration
from integrations.pacing import forget_budget
from outbox.drain import drain_target
from outbox.fanout import fan_out
from outbox.models import DeliveryAttempt, OutboxMessage, Target, TargetStatus
from tests.conftest import bearer, make_user
from tests.fakes.asana import FREE_REQUESTS_PER_MINUTE, PREMIUM_ONLY, TOKEN, FakeAsana

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
ATTRIBUTE_FIELDS = {
    "odometer": "Odometer (mi)",
    "engine_hours": "Engine hours",
    "fuel_level": "Fuel level (%)",
    "location": "Last location",
    "last_dvir": "Last DVIR",
}


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

    def add_truck_43(self) -> str:
        """A second vehicle, in the project too (its messages are in a lane of their
        own, so neither supersedes the other's); its task's gid."""
        self.add_vehicle("Truck 43", OTHER_VIN)
        return self.asana.add_task(self.project, "Truck 43", OTHER_VIN)

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


def assert_lookup(request: Any, project: str, message: OutboxMessage) -> None:
    """The look-up for a DVIR's task before opening it: the project's tasks modified
    since the message was queued (less the clock margin), with names and notes."""
    assert (request.method, request.path) == ("GET", "/tasks")
    query = {k: v[0] for k, v in request.query.items()}
    since = parse_rfc3339(query.pop("modified_since"))
    assert query == {"project": project, "opt_fields": "name,notes", "limit": "100"}
    assert since is not None
    assert abs((message.created_at - CLOCK_MARGIN - since).total_seconds()) < 1


def errors(message: str) -> dict[str, Any]:
    """Asana's error body ("Errors" on developers.asana.com)."""
    return {"errors": [{"message": message}]}


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
    fleet.post(position(0, odometer_mi=128463.2))
    drain_target(integration.id)
    fleet.post(position(30, odometer_mi=128463.2), position(60, odometer_mi=128463.9))
    (message,) = messages_of(integration)[1:]  # the unchanged reading makes none
    assert message.event_type == "odometer"
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


def test_a_backlog_sends_only_the_newest_value(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(
        position(0, odometer_mi=1.0), position(30, odometer_mi=2.0), position(60, odometer_mi=3.0)
    )
    drain_target(integration.id)
    statuses = [m.status for m in messages_of(integration)]
    assert statuses == ["superseded", "superseded", "delivered"]
    (put,) = asana.received("PUT")
    assert_put(put, fleet.task, {fleet.field("Odometer (mi)"): 3.0})


@pytest.mark.parametrize(
    "attribute, field, report, value",
    [
        ("engine_hours", "Engine hours", position(0, engine_hours=5120.5), 5120.5),
        ("fuel_level", "Fuel level (%)", position(0, fuel_level_pct=61.0), 61.0),
        ("location", "Last location", position(0), "41.525, -88.0817"),
        ("last_dvir", "Last DVIR", dvir(0, []), f"{at(0)} — safe — Dana Whitfield — no defects"),
        ("odometer", "Last location", position(0, odometer_mi=1000.0), "1000"),
    ],
    # Named by attribute alone: the reports hold the clock, and every test process
    # (pytest-xdist) must collect the same names.
    ids=["engine_hours", "fuel_level", "location", "last_dvir", "odometer"],
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
    (message,) = messages_of(integration)
    assert message.event_type == "dvir_task"
    drain_target(integration.id)
    # No listing (the new task needs no vehicle task): the look-up, then the task.
    lookup, request = asana.requests
    assert_lookup(lookup, fleet.project, message)
    assert (request.method, request.path) == ("POST", "/tasks")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.json == {
        "data": {
            "projects": [fleet.project],
            "name": f"DVIR defects: Truck 42 ({VIN}) at {at(0)}",
            "notes": f"Dana Whitfield reported 2 defects on Truck 42 (VIN {VIN}) at {at(0)}.\n"
            "Safety status: unsafe\n\n"
            "- Brakes: Air leak at the rear axle\n"
            "- Lights: Left marker out\n\n"
            "Opened by Fleethook from the driver's vehicle inspection report.\n"
            f"Fleethook DVIR reference: {VIN} {at(0)}",
        }
    }
    assert messages_of(integration)[0].status == "delivered"
    assert len(asana.tasks_named("DVIR defects")) == 1


def test_a_last_dvir_integration_updates_the_field_then_opens_the_task(fleet, asana):
    integration = fleet.connect("last_dvir")
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak at the rear axle"}]))
    drain_target(integration.id)
    assert [(r.method, r.path) for r in asana.requests] == [
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", "/tasks"),
        ("POST", "/tasks"),
    ]
    summary = f"{at(0)} — unsafe — Dana Whitfield — 1 defect: Brakes: Air leak at the rear axle"
    assert_put(asana.requests[1], fleet.task, {fleet.field("Last DVIR"): summary})
    # A failed POST retries the whole message: the PUT again (harmless), the
    # look-up (which finds nothing: the 500 created nothing), then the POST.
    fleet.post(dvir(60, [{"component": "Horn", "description": "Silent"}]))
    asana.requests.clear()
    asana.failing_task_creations = 1
    drain_target(integration.id)
    assert messages_of(integration)[-1].status == "pending"
    retry_now()
    drain_target(integration.id)
    assert [(r.method, r.path) for r in asana.requests] == [
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", "/tasks"),
        ("POST", "/tasks"),
    ]
    assert asana.requests[0].json == asana.requests[3].json
    assert asana.requests[2].json == asana.requests[5].json
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert sorted(t["name"] for t in asana.tasks_named("DVIR defects")) == [
        f"DVIR defects: Truck 42 ({VIN}) at {at(0)}",
        f"DVIR defects: Truck 42 ({VIN}) at {at(60)}",
    ]


def test_a_vehicle_the_project_lacks_still_gets_its_dvir_task(fleet, asana):
    fleet.add_vehicle("Truck 43", OTHER_VIN)  # not in the project
    integration = fleet.connect("last_dvir", attribute_field="Last DVIR")
    fleet.post({**dvir(0, [{"component": "Horn", "description": "Silent"}]), "vin": OTHER_VIN})
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "delivered"
    assert [t["name"] for t in asana.tasks_named("DVIR defects")] == [
        f"DVIR defects: Truck 43 ({OTHER_VIN}) at {at(0)}"
    ]
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.error == (
        f"The task was opened, but not the update: No vehicle with VIN {OTHER_VIN} in Asana; "
        "it is listed on the integration's page."
    )
    assert fresh(integration).unmatched_vins == [OTHER_VIN]


def test_the_vin_map_pages_through_the_project_and_is_cached(fleet, asana):
    for n in range(230):
        asana.add_task(fleet.project, f"Trailer {n}", f"TRAILERVIN{n:07d}")
    asana.add_task(fleet.project, "A note without a VIN")
    late = asana.add_task(fleet.project, "Truck 43", OTHER_VIN)
    fleet.add_vehicle("Truck 43", OTHER_VIN)
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=10.0), position(0, vin=OTHER_VIN, odometer_mi=20.0))
    drain_target(integration.id)
    fleet.post(position(30, odometer_mi=11.0))
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
    fleet.post(position(0, vin=OTHER_VIN, odometer_mi=20.0), position(60, odometer_mi=5.0))
    drain_target(integration.id)
    fleet.post(position(30, vin=OTHER_VIN, odometer_mi=21.0))
    drain_target(integration.id)
    first, third, second = messages_of(integration)
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
    truck_43 = fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
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
    assert asana.value(fleet.task, fleet.field("Odometer (mi)")) == 1.0
    assert asana.value(truck_43, fleet.field("Odometer (mi)")) == 2.0


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
    truck_43 = fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    asana.fail_next(500, path="/tasks/")
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert len(asana.received("PUT")) == 1  # Asana is down: the second is not tried
    assert messages_of(integration)[0].last_error == (
        "Asana answered HTTP 500: Server Error (error phrase: 6 sad squid snuggle softly)"
    )
    retry_now()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    field = fleet.field("Odometer (mi)")
    assert [(r.path, r.json) for r in asana.received("PUT")] == [
        (f"/tasks/{fleet.task}", {"data": {"custom_fields": {field: 1.0}}}),
        (f"/tasks/{fleet.task}", {"data": {"custom_fields": {field: 1.0}}}),
        (f"/tasks/{truck_43}", {"data": {"custom_fields": {field: 2.0}}}),
    ]
    assert fresh(integration).status == "active"


def test_402_needs_attention_with_asanas_words_and_keeps_the_queue(fleet, asana):
    truck_43 = fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    asana.paid = False  # the workspace went back to the free plan
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        f"Needs attention: Asana answered 402 Payment Required: “{PREMIUM_ONLY}”. The "
        "request needs a feature above the workspace's plan (custom fields are a premium "
        "feature): upgrade the workspace in Asana, then save the integration again."
    )
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]
    assert integration.queue_depth == 2
    sent = len(asana.requests)
    drain_target(integration.id)
    assert len(asana.requests) == sent  # not retried: a person must act

    asana.paid = True
    update_integration(integration, {"api_key": TOKEN})
    db.session.commit()
    assert fresh(integration).status == "active"
    retry_now()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert asana.value(fleet.task, fleet.field("Odometer (mi)")) == 1.0
    assert asana.value(truck_43, fleet.field("Odometer (mi)")) == 2.0


def test_400_on_one_task_kills_that_message_and_the_next_goes_at_once(fleet, asana):
    truck_43 = fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    asana.fail_next(400, path="/tasks/", body=errors("custom_fields: Value is out of range"))
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, second.status) == ("dead", "delivered")
    assert first.last_error == (
        "Asana refused this update (HTTP 400: custom_fields: Value is out of range); "
        "the message is not retried."
    )
    # One drain: the fields were read again (unchanged), and the next went on.
    assert [(r.method, r.path) for r in asana.requests] == [
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", f"/projects/{fleet.project}/custom_field_settings"),
        ("PUT", f"/tasks/{truck_43}"),
    ]
    assert asana.value(truck_43, fleet.field("Odometer (mi)")) == 2.0
    integration = fresh(integration)
    assert integration.status == "active" and integration.queue_depth == 0


def test_400_on_a_new_dvir_task_kills_that_message_and_the_next_goes_at_once(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(
        dvir(0, [{"component": "Brakes", "description": "Air leak"}]),
        position(30, odometer_mi=2.0),
    )
    asana.refused_task_creations = 1
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, second.status) == ("dead", "delivered")
    assert first.last_error == (
        "Asana refused this new task (HTTP 400: notes: Value is too long); the message is "
        "not retried."
    )
    assert asana.tasks_named("DVIR defects") == []
    assert asana.value(fleet.task, fleet.field("Odometer (mi)")) == 2.0
    assert fresh(integration).status == "active"


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda asana, fleet: asana.remove_field(fleet.project, "Odometer (mi)"),
            'The custom field "Odometer (mi)" is no longer on project {project}: add it '
            "back in Asana (or choose another in the integration's settings), then save "
            "the integration again.",
        ),
        (
            lambda asana, fleet: asana.custom_fields[fleet.field("Odometer (mi)")].update(
                resource_subtype="enum"
            ),
            'The custom field "Odometer (mi)" is now of type enum: change it back in Asana '
            "(or choose another field in the integration's settings), then save the "
            "integration again.",
        ),
    ],
)
def test_400_from_a_changed_field_needs_attention_not_dead_messages(fleet, asana, change, words):
    fleet.add_truck_43()
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), position(30, vin=OTHER_VIN, odometer_mi=2.0))
    change(asana, fleet)
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == "Needs attention: " + words.format(project=fleet.project)
    assert [m.status for m in messages_of(integration)] == ["pending", "pending"]


def test_403_of_the_project_needs_attention_with_what_to_do(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    asana.fail_next(403, path="/projects/", body=errors("Forbidden"))
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        "Needs attention: Asana refused access (HTTP 403: “Forbidden”). The token's user "
        f"needs edit access to project {fleet.project} and its custom fields: give it that "
        "access in Asana (or use a project member's token), then save the integration again."
    )
    assert messages_of(integration)[0].status == "pending"


def test_a_deleted_project_needs_attention_with_what_to_do(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    del asana.projects[fleet.project]
    drain_target(integration.id)
    integration = fresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason == (
        f"Needs attention: Asana has no project {fleet.project} that this token can see "
        f"(HTTP 404: “project: Unknown object: {fleet.project}”): it was deleted, or the "
        "token's user left it. Choose the project again in the integration's settings, or "
        "give the user access in Asana, then save the integration again."
    )
    assert messages_of(integration)[0].status == "pending"


def test_a_deleted_task_kills_its_message_and_refreshes_the_map(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    drain_target(integration.id)
    del asana.tasks[fleet.task]  # the vehicle's task was deleted in Asana
    fleet.post(position(30, odometer_mi=2.0))
    asana.requests.clear()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "dead"]
    assert messages_of(integration)[1].last_error == (
        f"No vehicle with VIN {VIN} in Asana; it is listed on the integration's page."
    )
    assert [(r.method, r.path) for r in asana.requests] == [
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", f"/projects/{fleet.project}/tasks"),  # the map, listed again
    ]
    integration = fresh(integration)
    assert integration.vehicle_map == {} and integration.unmatched_vins == [VIN]
    assert integration.status == "active" and integration.queue_depth == 0


def test_a_task_that_answers_404_even_after_a_new_listing_kills_its_message(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0))
    asana.fail_next(404, times=2, path="/tasks/", body=errors("task: Unknown object"))
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "dead"
    assert message.last_error == (
        f"The task of VIN {VIN} is gone from Asana (Asana answered HTTP 404: task: Unknown "
        "object); the message is not retried."
    )
    assert [(r.method, r.path) for r in asana.requests] == [
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
        ("GET", f"/projects/{fleet.project}/tasks"),
        ("PUT", f"/tasks/{fleet.task}"),
    ]
    assert fresh(integration).status == "active"


# -- one task per DVIR -----------------------------------------------------------


@pytest.mark.parametrize(
    "attributes, opener",
    [
        (("odometer", "last_dvir"), 1),  # the Last DVIR integration opens it
        (("odometer", "engine_hours"), 0),  # else the oldest
    ],
)
def test_two_integrations_on_one_project_open_one_task_per_dvir(fleet, asana, attributes, opener):
    integrations = [
        fleet.connect(attributes[0]),
        fleet.connect(attributes[1], attribute_field=ATTRIBUTE_FIELDS[attributes[1]]),
    ]
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak at the rear axle"}]))
    for integration in integrations:
        drain_target(integration.id)
    assert [t["name"] for t in asana.tasks_named("DVIR defects")] == [
        f"DVIR defects: Truck 42 ({VIN}) at {at(0)}"
    ]
    assert len(asana.received("POST", "/tasks")) == 1
    types = [[m.event_type for m in messages_of(i)] for i in integrations]
    assert types[opener] == ["dvir_task"]
    other = types[1 - opener]
    assert other == (["last_dvir"] if attributes[1 - opener] == "last_dvir" else [])


def test_a_held_integration_leaves_the_dvir_task_to_another(fleet, asana):
    odometer = fleet.connect("odometer")
    last_dvir = fleet.connect("last_dvir", attribute_field="Last DVIR")
    db.session.execute(
        update(Target)
        .where(Target.id == last_dvir.id)
        .values(status=TargetStatus.NEEDS_ATTENTION.value)
    )
    db.session.commit()
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak"}]))
    drain_target(odometer.id)
    assert [m.event_type for m in messages_of(odometer)] == ["dvir_task"]
    assert [m.event_type for m in messages_of(last_dvir)] == ["last_dvir"]
    assert len(asana.tasks_named("DVIR defects")) == 1


def test_a_dvir_task_retried_after_a_lost_answer_is_opened_once(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak"}]))
    # Asana opens the task; its answer comes after the client stopped waiting (1 s).
    asana.lost_creation_answers = 1
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert message.status == "pending" and message.last_status_code is None
    assert len(asana.tasks_named("DVIR defects")) == 1

    retry_now()
    asana.requests.clear()
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "delivered"
    (lookup,) = asana.requests  # found: no second POST
    assert_lookup(lookup, fleet.project, message)
    assert len(asana.tasks_named("DVIR defects")) == 1
    attempt = db.session.scalars(
        select(DeliveryAttempt).order_by(DeliveryAttempt.id.desc())
    ).first()
    assert attempt.outcome == "delivered" and attempt.request_headers["path"] == "/tasks"


def test_a_dvir_task_found_by_its_reference_after_it_was_renamed(fleet, asana):
    integration = fleet.connect("odometer")
    fleet.post(dvir(0, [{"component": "Brakes", "description": "Air leak"}]))
    asana.lost_creation_answers = 1
    drain_target(integration.id)
    (task,) = asana.tasks_named("DVIR defects")
    task["name"] = "Brakes on Truck 42 — booked for Tuesday"  # a person renamed it
    retry_now()
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "delivered"
    assert len(asana.received("POST", "/tasks")) == 1


# -- latest values, the request budget ----------------------------------------


def test_attribute_values_are_latest_values_and_dvir_tasks_are_not(fleet, asana):
    assert PROVIDER.latest_value_types == {
        "odometer",
        "engine_hours",
        "fuel_level",
        "location",
        "last_dvir",
    }
    assert "dvir_task" not in PROVIDER.latest_value_types
    integration = fleet.connect("last_dvir", attribute_field="Last DVIR")
    fleet.post(
        dvir(0, [{"component": "Brakes", "description": "Air leak"}]),
        dvir(60, []),
        dvir(120, [{"component": "Horn", "description": "Silent"}]),
        dvir(180, []),
    )
    assert [m.event_type for m in messages_of(integration)] == [
        "dvir_task",
        "last_dvir",
        "dvir_task",
        "last_dvir",
    ]
    drain_target(integration.id)  # a backlog: the older Last DVIR value is superseded
    statuses = {m.payload["occurred_at"]: m.status for m in messages_of(integration)}
    assert statuses == {
        at(0): "delivered",
        at(60): "superseded",
        at(120): "delivered",
        at(180): "delivered",
    }
    assert len(asana.tasks_named("DVIR defects")) == 2  # every DVIR task is opened
    assert asana.value(fleet.task, fleet.field("Last DVIR")) == (
        f"{at(180)} — safe — Dana Whitfield — no defects"
    )


def test_the_integrations_page_names_each_message_by_what_it_does(fleet, asana, auth, client):
    integration = fleet.connect("odometer")
    fleet.post(position(0, odometer_mi=1.0), dvir(30, [{"component": "Horn", "description": "X"}]))
    drain_target(integration.id)
    auth.login("admin@acme.example.com")
    page = client.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "<td>odometer</td>" in page and "<td>dvir_task</td>" in page


def a_minute_passes(asana: FakeAsana, integration: Integration) -> None:
    """Asana's minute and the integration's budget both start afresh, and whatever
    waited for them is due."""
    asana.throttle(FREE_REQUESTS_PER_MINUTE, 60)
    forget_budget(fresh(integration))
    db.session.execute(update(Target).values(throttled_until=None))
    retry_now()


def drain_everything(asana: FakeAsana, integration: Integration) -> int:
    """Drain until nothing is pending, a minute passing between drains; how many
    minutes it took."""
    for minutes in range(6):
        drain_target(integration.id)
        if all(m.status == "delivered" for m in messages_of(integration)):
            return minutes
        a_minute_passes(asana, integration)
    raise AssertionError("still pending after 5 minutes")


def burst(fleet: Fleet, asana: FakeAsana, integration: Integration) -> dict[str, str]:
    """60 trucks whose odometers advance in 3 rounds, each round drained before the
    next (so no backlog is superseded): 180 updates and a listing, past 150."""
    tasks = {}
    for n in range(60):
        vin = f"BRSTVN{n:011d}"
        fleet.add_vehicle(f"Truck {100 + n}", vin)
        tasks[vin] = asana.add_task(fleet.project, f"Truck {100 + n}", vin)
    for round_ in range(3):
        fleet.post(*(position(round_ * 30, vin=vin, odometer_mi=1000.0 + round_) for vin in tasks))
        drain_target(integration.id)
    return tasks


def test_the_budget_keeps_a_burst_within_asanas_150_a_minute(fleet, asana):
    integration = fleet.connect("odometer")
    assert fresh(integration).rate_limit * 60 == pytest.approx(150)
    # Right after connecting: the credential check's requests count in the same
    # minute as the burst's, on both sides.
    tasks = burst(fleet, asana, integration)
    assert asana.throttled_count == 0  # Asana never had to refuse one
    # The budget's minute is spent: the check's few requests and the burst's …
    assert 0 < FREE_REQUESTS_PER_MINUTE - len(asana.requests) <= 3
    assert "pending" in {m.status for m in messages_of(integration)}
    assert drain_everything(asana, integration) == 1  # … and the rest went a minute later
    assert asana.throttled_count == 0
    assert len(messages_of(integration)) == 180
    field = fleet.field("Odometer (mi)")
    assert {asana.value(task, field) for task in tasks.values()} == {1002.0}
    outcomes = set(db.session.scalars(select(DeliveryAttempt.outcome)))
    assert outcomes == {"delivered"}


def test_asanas_429_past_its_limit_is_waited_out_and_nothing_is_lost(fleet, asana):
    # The budget set as a paid plan allows (1,500), against a free workspace's 150.
    integration = fleet.connect("odometer", requests_per_minute=1500)
    tasks = burst(fleet, asana, integration)
    assert asana.throttled_count >= 1
    throttled = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.last_status_code == 429)
    ).all()
    assert throttled
    for message in throttled:  # Retry-After honoured: not before Asana's minute ends
        assert message.status == "pending"
        assert message.next_attempt_at > utcnow() + timedelta(seconds=30)
    assert drain_everything(asana, integration) >= 1
    field = fleet.field("Odometer (mi)")
    assert {asana.value(task, field) for task in tasks.values()} == {1002.0}
    assert {m.status for m in messages_of(integration)} == {"delivered"}


# -- the initial sync ------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute, value",
    [
        ("odometer", 128463.2),
        ("engine_hours", 5120.5),
        ("fuel_level", 61.0),
        ("location", "41.525, -88.0817"),
    ],
)
def test_connecting_sets_the_field_from_the_vehicles_current_state(fleet, asana, attribute, value):
    fleet.post(position(0, odometer_mi=128463.2, engine_hours=5120.5, fuel_level_pct=61.0))
    integration = fleet.connect(attribute, attribute_field=ATTRIBUTE_FIELDS[attribute])
    (message,) = messages_of(integration)  # the initial sync, queued on connecting
    assert message.event_type == attribute
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "delivered"
    assert asana.value(fleet.task, fleet.field(ATTRIBUTE_FIELDS[attribute])) == value
    assert asana.received("POST") == []


def test_connecting_with_nothing_known_sends_nothing(fleet, asana):
    integration = fleet.connect("engine_hours", attribute_field="Engine hours")
    assert messages_of(integration) == []


def test_the_current_state_sets_the_last_dvir_and_opens_no_task(fleet, asana):
    """The initial-sync event with the vehicle's last DVIR in `report["last_dvir"]`
    (the vehicle's own shape)."""
    integration = fleet.connect("last_dvir", attribute_field="Last DVIR")
    vehicle = db.session.scalars(select(Vehicle).where(Vehicle.vin == VIN)).one()
    last_dvir = {
        "time": "2026-05-14T15:42:07Z",
        "driver": "Dana Whitfield",
        "defects": [{"component": "Brakes", "description": "Air leak"}],
        "safety_status": "unsafe",
    }
    snapshot = VehicleSnapshot(vehicle.id, "Truck 42", VIN)
    event = DetectedEvent(EVENT_CURRENT_STATE, T0, snapshot, report={"last_dvir": last_dvir})
    fan_out([event], [integration])
    db.session.commit()
    (message,) = messages_of(integration)
    assert message.event_type == "last_dvir"
    drain_target(integration.id)
    assert asana.value(fleet.task, fleet.field("Last DVIR")) == (
        "2026-05-14T15:42:07Z — unsafe — Dana Whitfield — 1 defect: Brakes: Air leak"
    )
    assert asana.received("POST") == []


def test_a_late_report_does_not_overwrite_a_newer_value(fleet, asana):
    integration = fleet.connect("fuel_level", attribute_field="Fuel level (%)")
    fleet.post(position(60, fuel_level_pct=40.0))
    fleet.post(position(0, fuel_level_pct=90.0))  # older than the one before
    drain_target(integration.id)
    assert [m.payload["value"] for m in messages_of(integration)] == [40.0]
    assert asana.value(fleet.task, fleet.field("Fuel level (%)")) == 40.0


def test_the_provider_describes_itself():
    assert (PROVIDER.key, PROVIDER.name, PROVIDER.software_type) == (
        "asana",
        "Asana",
        "Task Management",
    )
    assert PROVIDER.secret_fields == {"api_key"} and PROVIDER.receives_locations is False
    assert PROVIDER.requests_per_minute == 150
    assert "developers.asana.com/docs/rate-limits" in PROVIDER.budget_source
    steps = " ".join(PROVIDER.setup_steps)
    for words in ("View developer console", "Create new token", '"VIN"', "paid", "gid"):
        assert words in steps
