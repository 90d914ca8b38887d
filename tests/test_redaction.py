"""Redaction per target: drivers' names left out, coordinates rounded, fields
dropped by path — in what a webhook's receiver gets (the live example in the
dialog is that body, byte for byte, through a real drain to a real receiver), in
what an integration's provider gets (the Fleetio and ServiceTitan fakes), and the
bad input of the API and the forms."""

from __future__ import annotations

import html
import json

import pytest
from sqlalchemy import select

from core.extensions import db
from events.catalogue import EVENT_TYPES, build_event, example_detected, example_event
from events.redaction import Redaction, path_problems, redact
from outbox.drain import drain_target
from outbox.fanout import fan_out
from tests.conftest import bearer, csrf_token
from tests.test_webhooks_portal import rendered_example
from webhooks.models import Webhook
from webhooks.wire import ContentType

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

REDACTED = {
    "drop_driver_name": "y",
    "coordinate_decimals": "2",
    "drop_fields": "data.odometer_mi, data.heading",
}


def body_of(key: str, redaction: Redaction) -> dict:
    event = redact(example_detected(EVENT_TYPES[key]), redaction)
    return build_event(
        event.event_type, event.occurred_at, event.vehicle, event.details, event.received_at
    )["data"]


def test_dropping_drivers_names_keeps_their_ids_everywhere_an_event_names_one():
    plain = example_event(EVENT_TYPES["driver_assignment"])["data"]
    redacted = body_of("driver_assignment", Redaction(drop_driver_name=True))
    assert redacted["driver"] == {"id": plain["driver"]["id"]}
    assert redacted["previous_driver"] == {"id": plain["previous_driver"]["id"]}
    dvir = body_of("dvir", Redaction(drop_driver_name=True))["dvir"]
    assert "driver" not in dvir and dvir["defects"]  # the rest of the report stays
    assert "Dana" not in json.dumps(body_of("dvir", Redaction(drop_driver_name=True)))


def test_rounding_rounds_every_coordinate_an_event_carries():
    trip = body_of("trip_complete", Redaction(coordinate_decimals=1))
    assert (trip["latitude"], trip["longitude"]) == (41.5, -88.1)
    assert trip["trip"]["start"] == {"latitude": 41.9, "longitude": -87.6}
    assert trip["trip"]["end"] == {"latitude": 41.5, "longitude": -88.1}
    whole = body_of("location", Redaction(coordinate_decimals=0))
    assert (whole["latitude"], whole["longitude"]) == (42, -88)


def test_fields_are_dropped_by_path_through_objects_and_lists():
    redaction = Redaction(
        drop_fields=("data.odometer_mi", "data.trip.start", "data.driver.id", "data.fix_time")
    )
    trip = body_of("trip_complete", redaction)
    assert "odometer_mi" not in trip and "fix_time" not in trip
    assert "start" not in trip["trip"] and trip["trip"]["end"]
    assert trip["driver"] == {"name": "Dana Whitfield"}
    sensors = body_of("temperature", Redaction(drop_fields=("data.temperatures.sensor",)))
    assert sensors["temperatures"] == [{"fahrenheit": 36.5}, {"fahrenheit": 38.1}]
    # Nothing asked, nothing changed: the same event object.
    event = example_detected(EVENT_TYPES["location"])
    assert redact(event, Redaction()) is event


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("data.vehicle.vin", "always sent"),
        ("data.vehicle", "always sent"),
        ("data.received_at", "always sent"),
        ("data.trip.start", "no location event carries it"),  # not a location field
        ("data.odometer", "no location event carries it"),
    ],
)
def test_a_path_an_event_does_not_carry_or_always_sends_is_named(path, words):
    [problem] = path_problems([path], [EVENT_TYPES["location"]])
    assert problem.startswith(path) and words in problem


# A webhook: the dialog's example is the delivered body


@pytest.mark.parametrize("content_type", list(ContentType))
def test_the_live_example_shows_the_redaction_and_is_the_delivered_body(
    admin, client, receiver, content_type
):
    page = client.get("/webhooks/new?event_type=location").data
    saved = client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf_token(page),
            "event_type": "location",
            "url": receiver.url("/ok"),
            "name": "Redacted",
            "content_type": content_type.value,
            **REDACTED,
        },
    )
    assert saved.status_code == 200
    webhook = db.session.scalars(select(Webhook)).one()
    assert (webhook.drop_driver_name, webhook.coordinate_decimals, webhook.drop_fields) == (
        True,
        2,
        ["data.odometer_mi", "data.heading"],
    )
    _, shown = rendered_example(client, "location", content_type.value, **REDACTED)
    # The example shows the redaction …
    text = shown.decode()
    assert "Dana" not in text and "odometer" not in text and "heading" not in text
    assert ("41.52" in text and "-88.08" in text) and "41.525" not in text
    # … and the example event, sent through the webhook, arrives as exactly that body.
    fan_out([example_detected(EVENT_TYPES["location"])], [webhook])
    db.session.commit()
    drain_target(webhook.id)
    [request] = receiver.received
    assert request.body == shown


def test_the_edit_dialog_shows_the_stored_redaction(admin, client):
    headers = bearer(admin)
    created = client.post(
        "/api/v1/webhooks",
        json={
            "event_type": "trip_complete",
            "name": "Trips",
            "url": "https://hooks.example.com/t",
            "drop_driver_name": True,
            "coordinate_decimals": 3,
            "drop_fields": ["data.trip.start", "data.odometer_mi"],
        },
        headers=headers,
    )
    assert created.status_code == 201, created.json
    dialog = client.get(f"/webhooks/{created.json['id']}/edit").get_data(as_text=True)
    assert 'value="data.trip.start, data.odometer_mi"' in dialog
    assert 'id="coordinate_decimals"' in dialog and 'value="3"' in dialog
    assert "Dana" not in dialog.split('id="example-body"')[1]
    detail = html.unescape(client.get(f"/webhooks/{created.json['id']}").get_data(as_text=True))
    assert "drivers' names left out" in detail and "3 decimals" in detail


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({"coordinate_decimals": 7}, "coordinate_decimals", "from 0 to 6"),
        ({"coordinate_decimals": "3"}, "coordinate_decimals", "from 0 to 6"),
        ({"drop_driver_name": "yes"}, "drop_driver_name", "true or false"),
        ({"drop_fields": "data.odometer_mi"}, "drop_fields", "A list of"),
        ({"drop_fields": ["odometer_mi"]}, "drop_fields", "A list of"),
        ({"drop_fields": ["data.vehicle.id"]}, "drop_fields", "always sent"),
        ({"drop_fields": ["data.trip"]}, "drop_fields", "no location event carries it"),
        ({"drop_fields": [f"data.f{n}" for n in range(21)]}, "drop_fields", "A list of"),
    ],
)
def test_the_api_refuses_a_bad_redaction_by_name_and_changes_nothing(
    admin, client, fields, key, words
):
    headers = bearer(admin)
    body = {"event_type": "location", "name": "L", "url": "https://hooks.example.com/l"}
    answer = client.post("/api/v1/webhooks", json={**body, **fields}, headers=headers)
    assert answer.status_code == 422
    assert words in " ".join(answer.json["errors"][key]), answer.json
    assert db.session.scalars(select(Webhook)).all() == []


def test_the_form_shows_a_bad_path_beside_its_field(admin, client):
    page = client.get("/webhooks/new?event_type=location").data
    answer = client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf_token(page),
            "event_type": "location",
            "url": "https://hooks.example.com/l",
            "name": "L",
            "content_type": "json",
            "drop_fields": "data.odometer_mi, data.trip.start",
        },
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert (
        'id="drop_fields-errors"' in text
        and "data.trip.start: no location event carries it" in text
    )
    assert db.session.scalars(select(Webhook)).all() == []
