"""The event catalogue and the wire format (DESIGN.md, "Event catalogue" and "Wire
format"): the bodies a receiver gets, JSON and form, and Standard Webhooks
signatures checked with the reference library, not with our own code."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.encryption import mask
from core.times import format_rfc3339
from events.catalogue import (
    EVENT_TYPES,
    EventType,
    UnknownEventField,
    VehicleSnapshot,
    build_event,
    example_event,
)
from outbox.models import new_message_id
from webhooks.wire import (
    EXAMPLE_ATTEMPT_TIMESTAMP,
    EXAMPLE_MESSAGE_ID,
    PLACEHOLDER_SECRET,
    ContentType,
    encode_body,
    example_request,
    new_secret,
    request_headers,
)

CATALOGUE = [
    ("location", "Location"),
    ("speed", "Speed"),
    ("posted_speed", "Posted Speed"),
    ("heartbeat", "Heartbeat"),
    ("trip_complete", "Trip Complete"),
    ("ignition_on", "Ignition On"),
    ("ignition_off", "Ignition Off"),
    ("landmark_enter", "Landmark Enter"),
    ("landmark_leave", "Landmark Leave"),
    ("landmark_change", "Landmark Change"),
    ("idle", "Idle"),
    ("temperature", "Temperature"),
    ("dvir", "DVIR"),
    ("driver_assignment", "Driver Assignment"),
]
KEYS = [key for key, _ in CATALOGUE]
SETTINGS = {"speed": "threshold_mph", "posted_speed": "threshold_mph", "idle": "idle_minutes"}

OCCURRED = datetime(2026, 5, 14, 15, 42, 7, tzinfo=UTC)
BARE_VEHICLE = VehicleSnapshot(vehicle_id=7, name="Camión 7", vin="3AKJHHDR7JSJV1234")
FULL_VEHICLE = VehicleSnapshot(
    vehicle_id=7,
    name="Camión 7",
    vin="3AKJHHDR7JSJV1234",
    driver={"id": 3, "name": "Zoë Ångström"},
    latitude=41.8781,
    longitude=-87.6298,
    heading=0,
    speed_mph=0.0,
    odometer_mi=1200.5,
    fix_time=OCCURRED - timedelta(seconds=3),
)

CUSTOM_HEADER = ("X-Fleet-Token", "tok-9f3b2c7d1e5a")


def form_dict(body: bytes) -> dict[str, str]:
    pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    fields = dict(pairs)
    assert len(fields) == len(pairs), "a form field appears twice"
    return fields


def now() -> int:
    return int(time.time())


# --- Event catalogue ---------------------------------------------------------


def test_catalogue_has_the_design_keys_in_order() -> None:
    assert list(EVENT_TYPES) == KEYS
    assert len(EVENT_TYPES) == 14


@pytest.mark.parametrize(("key", "name"), CATALOGUE)
def test_catalogue_entry_has_its_key_and_portal_name(key: str, name: str) -> None:
    event_type = EVENT_TYPES[key]
    assert event_type.key == key
    assert event_type.name == name
    assert event_type.description


@pytest.mark.parametrize("key", KEYS)
def test_catalogue_settings(key: str) -> None:
    setting = EVENT_TYPES[key].setting
    if key not in SETTINGS:
        assert setting is None
        return
    assert setting is not None
    assert setting.field == SETTINGS[key]
    assert setting.minimum <= setting.default <= setting.maximum


@pytest.mark.parametrize("key", list(SETTINGS))
def test_example_event_carries_the_webhooks_own_setting(key: str) -> None:
    event_type = EVENT_TYPES[key]
    assert event_type.setting is not None
    value = event_type.setting.default + 7
    assert example_event(event_type, value)["data"][event_type.setting.field] == value


# --- build_event --------------------------------------------------------------


def test_build_event_with_only_the_vehicle_known() -> None:
    event = build_event(EVENT_TYPES["location"], OCCURRED, BARE_VEHICLE, {})
    assert event == {
        "type": "location",
        "timestamp": "2026-05-14T15:42:07Z",
        "data": {
            "vehicle": {"id": 7, "name": "Camión 7", "vin": "3AKJHHDR7JSJV1234"},
            # Made by the platform itself: received as it is made, never late.
            "received_at": "2026-05-14T15:42:07Z",
            "late": False,
        },
    }


def test_build_event_with_everything_known_keeps_zero_values() -> None:
    event = build_event(EVENT_TYPES["ignition_off"], OCCURRED, FULL_VEHICLE, {"ignition": False})
    assert event["data"] == {
        "vehicle": {"id": 7, "name": "Camión 7", "vin": "3AKJHHDR7JSJV1234"},
        "driver": {"id": 3, "name": "Zoë Ångström"},
        "latitude": 41.8781,
        "longitude": -87.6298,
        "heading": 0,
        "speed_mph": 0.0,
        "odometer_mi": 1200.5,
        "fix_time": "2026-05-14T15:42:04Z",
        "received_at": "2026-05-14T15:42:07Z",
        "late": False,
        "ignition": False,
    }


def test_build_event_omits_unknown_snapshot_fields() -> None:
    vehicle = VehicleSnapshot(
        vehicle_id=7, name="Camión 7", vin="3AKJHHDR7JSJV1234", latitude=41.0, longitude=-87.0
    )
    data = build_event(EVENT_TYPES["heartbeat"], OCCURRED, vehicle, {})["data"]
    assert set(data) == {"vehicle", "latitude", "longitude", "received_at", "late"}
    assert None not in data.values()


@pytest.mark.parametrize(
    ("received_after", "late"),
    [
        (timedelta(seconds=2), False),
        (timedelta(minutes=2), False),  # the threshold itself is not late
        (timedelta(minutes=2, seconds=1), True),
        (timedelta(hours=3), True),  # stored through a dead zone
    ],
)
def test_an_event_received_long_after_it_happened_is_late(received_after, late) -> None:
    data = build_event(
        EVENT_TYPES["location"],
        OCCURRED,
        FULL_VEHICLE,
        {},
        received_at=OCCURRED + received_after,
        late_after=timedelta(minutes=2),
    )["data"]
    assert data["late"] is late
    assert data["received_at"] == format_rfc3339(OCCURRED + received_after)
    assert data["fix_time"] == "2026-05-14T15:42:04Z"


@pytest.mark.parametrize(
    ("key", "details"),
    [
        ("location", {"ignition": True}),  # a field of another type
        ("speed", {"threshold_mph": 70, "speed_limit": 55}),
        ("temperature", {"temperature": 36.5}),
    ],
)
def test_build_event_refuses_fields_its_type_does_not_carry(key: str, details: dict) -> None:
    with pytest.raises(UnknownEventField):
        build_event(EVENT_TYPES[key], OCCURRED, BARE_VEHICLE, details)


def test_build_event_timestamps_are_rfc3339_utc() -> None:
    chicago_summer = timezone(timedelta(hours=-5))
    vehicle = VehicleSnapshot(
        vehicle_id=7,
        name="Camión 7",
        vin="3AKJHHDR7JSJV1234",
        fix_time=datetime(2026, 5, 14, 10, 42, 4, tzinfo=chicago_summer),
    )
    occurred = datetime(2026, 5, 14, 10, 42, 7, tzinfo=chicago_summer)
    event = build_event(EVENT_TYPES["location"], occurred, vehicle, {})
    assert event["timestamp"] == "2026-05-14T15:42:07Z"
    assert event["data"]["fix_time"] == "2026-05-14T15:42:04Z"
    assert datetime.fromisoformat(event["timestamp"]) == occurred


@pytest.mark.parametrize("key", KEYS)
def test_example_events_have_the_common_shape(key: str) -> None:
    event = example_event(EVENT_TYPES[key])
    assert set(event) == {"type", "timestamp", "data"}
    assert event["type"] == key
    assert event["timestamp"].endswith("Z")
    assert datetime.fromisoformat(event["timestamp"]).utcoffset() == timedelta(0)
    assert set(event["data"]["vehicle"]) == {"id", "name", "vin"}


# --- JSON body ----------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_json_body_is_compact_and_round_trips(key: str) -> None:
    event = example_event(EVENT_TYPES[key])
    body = encode_body(event, ContentType.JSON)
    assert json.loads(body) == event
    compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    assert body == compact.encode()


def test_json_body_keeps_non_ascii_as_utf8() -> None:
    event = build_event(EVENT_TYPES["location"], OCCURRED, FULL_VEHICLE, {})
    body = encode_body(event, ContentType.JSON)
    assert "Camión 7".encode() in body
    assert "Zoë Ångström".encode() in body
    assert b"\\u" not in body
    assert json.loads(body.decode("utf-8")) == event


# --- Form body ----------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_form_body_has_type_timestamp_and_vehicle(key: str) -> None:
    event = example_event(EVENT_TYPES[key])
    body = encode_body(event, ContentType.FORM)
    pairs = parse_qsl(body.decode("ascii"), strict_parsing=True)
    assert pairs[0] == ("type", key)
    assert pairs[1] == ("timestamp", event["timestamp"])
    fields = form_dict(body)
    vehicle = event["data"]["vehicle"]
    assert fields["vehicle.id"] == str(vehicle["id"])
    assert fields["vehicle.name"] == vehicle["name"]
    assert fields["vehicle.vin"] == vehicle["vin"]
    assert fields["driver.name"] == event["data"]["driver"]["name"]
    assert "vehicle" not in fields
    assert "data" not in fields and not any(name.startswith("data.") for name in fields)


def test_form_body_flattens_lists_by_index() -> None:
    fields = form_dict(encode_body(example_event(EVENT_TYPES["temperature"]), ContentType.FORM))
    assert fields["temperatures.0.sensor"] == "reefer-1"
    assert fields["temperatures.0.fahrenheit"] == "36.5"
    assert fields["temperatures.1.sensor"] == "reefer-2"
    assert fields["temperatures.1.fahrenheit"] == "38.1"
    assert "temperatures.2.sensor" not in fields


def test_form_body_flattens_nested_objects() -> None:
    dvir = form_dict(encode_body(example_event(EVENT_TYPES["dvir"]), ContentType.FORM))
    assert dvir["dvir.defects.0.component"] == "Brakes"
    assert dvir["dvir.defects.0.description"] == "Air leak at the rear axle"
    assert dvir["dvir.safety_status"] == "unsafe"
    trip = form_dict(encode_body(example_event(EVENT_TYPES["trip_complete"]), ContentType.FORM))
    assert trip["trip.start.latitude"] == "41.8781"
    assert trip["trip.end.longitude"] == "-88.0817"
    assert trip["trip.duration_s"] == "2832"


@pytest.mark.parametrize(("key", "expected"), [("ignition_on", "true"), ("ignition_off", "false")])
def test_form_body_writes_booleans_as_json_does(key: str, expected: str) -> None:
    fields = form_dict(encode_body(example_event(EVENT_TYPES[key]), ContentType.FORM))
    assert fields["ignition"] == expected


def test_form_body_keeps_non_ascii_as_utf8() -> None:
    event = build_event(EVENT_TYPES["location"], OCCURRED, FULL_VEHICLE, {})
    body = encode_body(event, ContentType.FORM)
    assert b"Cami%C3%B3n+7" in body
    assert form_dict(body)["vehicle.name"] == "Camión 7"


# --- Signatures, checked with the Standard Webhooks reference library ---------


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("key", KEYS)
def test_signature_verifies_with_standardwebhooks(key: str, content_type: ContentType) -> None:
    secret = new_secret()
    event = example_event(EVENT_TYPES[key])
    body = encode_body(event, content_type)
    headers = request_headers(content_type, new_message_id(), now(), body, [secret])
    if content_type is ContentType.JSON:
        assert Webhook(secret).verify(body, headers) == event
    else:
        assert Webhook(secret).verify(body, headers, json_parse=False) is None


def test_non_ascii_body_signature_verifies() -> None:
    secret = new_secret()
    event = build_event(EVENT_TYPES["location"], OCCURRED, FULL_VEHICLE, {})
    for content_type in ContentType:
        body = encode_body(event, content_type)
        headers = request_headers(content_type, new_message_id(), now(), body, [secret])
        Webhook(secret).verify(body, headers, json_parse=False)


def test_rotation_overlap_signs_with_both_secrets() -> None:
    old, new, unrelated = new_secret(), new_secret(), new_secret()
    body = encode_body(example_event(EVENT_TYPES["speed"]), ContentType.JSON)
    headers = request_headers(ContentType.JSON, new_message_id(), now(), body, [new, old])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    assert signatures[0] != signatures[1]
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(unrelated).verify(body, headers)


@pytest.mark.parametrize("content_type", list(ContentType))
def test_tampered_body_fails_verification(content_type: ContentType) -> None:
    secret = new_secret()
    body = encode_body(example_event(EVENT_TYPES["speed"]), content_type)
    headers = request_headers(content_type, new_message_id(), now(), body, [secret])
    tampered = body.replace(b"Truck 42", b"Truck 43").replace(b"Truck+42", b"Truck+43")
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers, json_parse=False)


def test_signature_covers_message_id_and_timestamp() -> None:
    secret = new_secret()
    body = encode_body(example_event(EVENT_TYPES["location"]), ContentType.JSON)
    timestamp = now()
    headers = request_headers(ContentType.JSON, new_message_id(), timestamp, body, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": new_message_id()})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-timestamp": str(timestamp - 1)})


# --- Headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "media_type"),
    [
        (ContentType.JSON, "application/json"),
        (ContentType.FORM, "application/x-www-form-urlencoded"),
    ],
)
def test_request_headers(content_type: ContentType, media_type: str) -> None:
    secret = new_secret()
    message_id = new_message_id()
    body = encode_body(example_event(EVENT_TYPES["heartbeat"]), content_type)
    headers = request_headers(content_type, message_id, 1778773329, body, [secret])
    assert list(headers) == [
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    ]
    assert headers["content-type"] == media_type
    assert headers["webhook-id"] == message_id
    assert headers["webhook-timestamp"] == "1778773329"
    assert headers["webhook-signature"].startswith("v1,")
    assert " " not in headers["webhook-signature"]
    assert headers["user-agent"].startswith("Fleethook-Webhooks/")
    assert len(headers["user-agent"]) > len("Fleethook-Webhooks/")


def test_request_headers_append_the_custom_header() -> None:
    body = b"{}"
    headers = request_headers(
        ContentType.JSON, new_message_id(), now(), body, [new_secret()], CUSTOM_HEADER
    )
    assert list(headers)[-1] == CUSTOM_HEADER[0]
    assert headers[CUSTOM_HEADER[0]] == CUSTOM_HEADER[1]
    assert len(headers) == 6


def test_new_secret() -> None:
    first, second = new_secret(), new_secret()
    for secret in (first, second):
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(key) == 32
    assert first != second


def test_new_message_id() -> None:
    ids = [new_message_id() for _ in range(200)]
    assert all(message_id.startswith("msg_") for message_id in ids)
    assert all(len(message_id) > len("msg_") + 8 for message_id in ids)
    assert len(set(ids)) == len(ids)


# --- The portal's example -----------------------------------------------------


def example_setting(event_type: EventType) -> int | None:
    return event_type.setting.default + 5 if event_type.setting else None


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("key", KEYS)
def test_example_request_is_what_a_receiver_gets(key: str, content_type: ContentType) -> None:
    event_type = EVENT_TYPES[key]
    setting = example_setting(event_type)
    headers, body = example_request(event_type, content_type, setting, CUSTOM_HEADER)
    assert body == encode_body(example_event(event_type, setting), content_type)
    masked = (CUSTOM_HEADER[0], mask(CUSTOM_HEADER[1]))
    assert headers == request_headers(
        content_type,
        EXAMPLE_MESSAGE_ID,
        EXAMPLE_ATTEMPT_TIMESTAMP,
        body,
        [PLACEHOLDER_SECRET],
        masked,
    )
    assert headers[CUSTOM_HEADER[0]] != CUSTOM_HEADER[1]
    assert all(CUSTOM_HEADER[1] not in value for value in headers.values())
    assert CUSTOM_HEADER[1].encode() not in body


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("key", KEYS)
def test_example_signature_is_a_valid_standard_webhooks_signature(
    key: str, content_type: ContentType
) -> None:
    """Signed with the placeholder secret at the fixed example time, as the
    reference library would sign it."""
    headers, body = example_request(EVENT_TYPES[key], content_type)
    attempt = datetime.fromtimestamp(EXAMPLE_ATTEMPT_TIMESTAMP, UTC)
    expected = Webhook(PLACEHOLDER_SECRET).sign(EXAMPLE_MESSAGE_ID, attempt, body.decode())
    assert headers["webhook-signature"] == expected
    assert headers["webhook-id"] == EXAMPLE_MESSAGE_ID
    assert headers["webhook-timestamp"] == str(EXAMPLE_ATTEMPT_TIMESTAMP)


def test_example_request_without_custom_header_has_only_the_standard_headers() -> None:
    headers, _ = example_request(EVENT_TYPES["location"], ContentType.JSON)
    assert set(headers) == {
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    }


@pytest.mark.parametrize("value", [5, 25, 80, 200])
def test_examples_show_an_event_that_passes_the_webhooks_own_setting(value):
    speed = example_event(EVENT_TYPES["speed"], value)["data"]
    assert speed["threshold_mph"] == value and speed["speed_mph"] >= value
    posted = example_event(EVENT_TYPES["posted_speed"], min(value, 100))["data"]
    assert posted["over_limit_mph"] >= posted["threshold_mph"]
    assert posted["speed_mph"] == pytest.approx(
        posted["posted_speed_mph"] + posted["over_limit_mph"]
    )
    idle = example_event(EVENT_TYPES["idle"], value)["data"]
    assert idle["idle_duration_s"] == value * 60 and idle["speed_mph"] == 0
