"""Properties, checked with Hypothesis on generated input:

- the JSON and form bodies of a webhook POST (webhooks.wire) decode back to what
  was encoded, whatever the payload, and the Standard Webhooks signature over the
  encoded bytes verifies with the standardwebhooks package (and fails on any
  other bytes);
- telemetry validation (fleet.reports.check_batch) either accepts or raises a
  ValidationError, never anything else; and POST /api/v1/telemetry with any JSON
  body never answers 5xx, and a refused body writes nothing (invariant 8);
- a receiver's Retry-After header, whatever it holds, never breaks a send.

Examples are derandomized, so a run is reproducible; each property is bounded to
a few seconds."""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.errors import ValidationError
from core.extensions import db
from events.catalogue import EVENT_TYPES
from fleet.models import Driver, DriverAssignment, TelemetryReport, Vehicle, VehicleState
from fleet.reports import check_batch
from outbox.models import DeliveryAttempt, OutboxMessage, new_message_id
from outbox.schedule import parse_retry_after
from tests.conftest import bearer, make_user
from webhooks.lifecycle import create_webhook
from webhooks.wire import ContentType, encode_body, form_fields, new_secret, request_headers

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- payloads --------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_leaves = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=20)


def json_values(keys: st.SearchStrategy[str], leaves: Any = json_leaves) -> Any:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=16,
    )


def events(keys: st.SearchStrategy[str], values: Any) -> Any:
    """A webhook body: {"type", "timestamp", "data": {...}}."""
    return st.fixed_dictionaries(
        {
            "type": st.sampled_from(list(EVENT_TYPES)),
            "timestamp": st.text(max_size=30),
            "data": st.dictionaries(keys, values, max_size=6),
        }
    )


any_events = events(st.text(max_size=8), json_values(st.text(max_size=8)))

# Keys that a dotted path names unambiguously, and no empty containers (a form
# body has no way to say "{}"): such a body's form decodes back to its data.
plain_keys = st.text(string.ascii_lowercase + "_", min_size=1, max_size=6)
plain_events = events(
    plain_keys,
    st.recursive(
        json_leaves,
        lambda children: (
            st.lists(children, min_size=1, max_size=3)
            | st.dictionaries(plain_keys, children, min_size=1, max_size=3)
        ),
        max_leaves=12,
    ),
)


def form_text(value: Any) -> Any:
    """A body's leaves as the form writes them."""
    if isinstance(value, dict):
        return {key: form_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [form_text(item) for item in value]
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The data of a form body: dotted paths back into objects and lists."""
    root: dict[str, Any] = {}
    for path, value in pairs:
        node: Any = root
        keys = path.split(".")
        for key, following in zip(keys, keys[1:], strict=False):
            step: Any = int(key) if isinstance(node, list) else key
            if isinstance(node, list) and step == len(node):
                node.append([] if following.isdigit() else {})
            elif isinstance(node, dict) and step not in node:
                node[step] = [] if following.isdigit() else {}
            node = node[step]
        if isinstance(node, list):
            node.append(value)
        else:
            node[keys[-1]] = value
    return root


@PROPERTY
@given(event=any_events)
def test_a_json_body_decodes_to_the_payload(event: dict[str, Any]) -> None:
    body = encode_body(event, ContentType.JSON)
    assert json.loads(body.decode("utf-8")) == event


@PROPERTY
@given(event=any_events)
def test_a_form_body_decodes_to_its_fields(event: dict[str, Any]) -> None:
    body = encode_body(event, ContentType.FORM)
    assert body.isascii()
    decoded = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    assert decoded == form_fields(event)


@PROPERTY
@given(event=plain_events)
def test_a_form_body_decodes_to_the_payload(event: dict[str, Any]) -> None:
    pairs = parse_qsl(encode_body(event, ContentType.FORM).decode(), keep_blank_values=True)
    assert pairs[:2] == [("type", event["type"]), ("timestamp", event["timestamp"])]
    assert unflatten(pairs[2:]) == form_text(event["data"])


@PROPERTY
@given(
    event=any_events,
    content_type=st.sampled_from(ContentType),
    secrets=st.lists(st.builds(new_secret), min_size=1, max_size=2),
    tamper=st.binary(min_size=1, max_size=4),
)
def test_the_signature_over_the_encoded_body_verifies(
    event: dict[str, Any], content_type: ContentType, secrets: list[str], tamper: bytes
) -> None:
    body = encode_body(event, content_type)
    message_id = new_message_id()
    headers = request_headers(content_type, message_id, int(time.time()), body, secrets)
    assert headers["content-type"] == content_type.media_type
    for secret in secrets:  # during a rotation both secrets sign
        StandardWebhook(secret).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secrets[0]).verify(body + tamper.hex().encode(), headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(new_secret()).verify(body, headers, json_parse=False)


# -- telemetry --------------------------------------------------------------------

VIN = "1FUJGLDR3CLBP8834"
NOW = datetime.now(UTC).replace(microsecond=0)

# Text a client can send that is awkward to store: NUL, unpaired surrogates (JSON
# allows "\ud800"), long and blank strings.
awkward_text = (
    st.text(max_size=30)
    | st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\u2028", "é" * 600])
    | st.text(max_size=10).map(lambda text: text + "\x00")
)
anything = json_values(awkward_text, json_leaves | awkward_text)


def near(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes anything at all."""
    return st.one_of(valid, valid, valid, anything)


recent_times = st.integers(-86_400 * 400, 3600).map(
    lambda seconds: (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
)
# Any moment at any UTC offset, the ends of the calendar included.
odd_times = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
    st.datetimes(),
    st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)).map(
        lambda delta: timedelta(minutes=delta // timedelta(minutes=1))
    ),
)
times = recent_times | odd_times
texts = near(st.text(min_size=1, max_size=12) | awkward_text)
numbers = st.integers(-10, 400) | finite_floats


def report(vehicle_id: int) -> st.SearchStrategy[dict[str, Any]]:
    ids = st.just(vehicle_id) | st.integers(min_value=1) | st.integers(2**63 - 2, 2**70)
    names = {"vin": near(st.just(VIN)), "vehicle_id": near(ids)}
    base = st.one_of(
        st.fixed_dictionaries({"vin": names["vin"]}),
        st.fixed_dictionaries({"vehicle_id": names["vehicle_id"]}),
    )
    position = st.fixed_dictionaries(
        {
            "type": st.just("position"),
            "time": near(times),
            "latitude": near(st.floats(-90, 90)),
            "longitude": near(st.floats(-180, 180)),
            "speed_mph": near(st.integers(0, 120)),
            "heading": near(st.integers(0, 359)),
            "ignition": near(st.booleans()),
        },
        optional={
            "odometer_mi": near(st.floats(0, 1e6)),
            "temperatures": near(
                st.lists(
                    st.fixed_dictionaries({"sensor": texts, "fahrenheit": numbers}), max_size=3
                )
            ),
            "fault_codes": near(
                st.lists(st.fixed_dictionaries({"code": texts, "description": texts}), max_size=3)
            ),
        },
    )
    others = st.fixed_dictionaries(
        {"type": st.sampled_from(["heartbeat", "dvir", "driver_assignment"]), "time": near(times)},
        optional={
            "driver": texts,
            "safety_status": near(st.sampled_from(["safe", "unsafe"])),
            "defects": near(
                st.lists(
                    st.fixed_dictionaries({"component": texts, "description": texts}), max_size=2
                )
            ),
        },
    )
    # An unknown field refuses the report: one in three has one, so both sides of
    # the check are reached.
    extra = st.just({}) | st.just({}) | st.dictionaries(awkward_text, anything, max_size=1)
    return st.tuples(base, position | others, extra).map(
        lambda parts: {**parts[0], **parts[1], **parts[2]}
    )


def bodies(vehicle_id: int) -> st.SearchStrategy[Any]:
    one = report(vehicle_id)
    return st.one_of(
        one,
        st.fixed_dictionaries({"reports": st.lists(one, min_size=1, max_size=4)}),
        st.dictionaries(awkward_text, anything, max_size=4),
        anything,
    )


@PROPERTY
@given(body=bodies(1), now=st.just(NOW))
def test_check_batch_accepts_or_says_what_is_wrong(body: Any, now: datetime) -> None:
    try:
        reports, batched = check_batch(body, now)
    except ValidationError as refused:
        assert refused.errors
        for field, messages in refused.errors.items():
            assert isinstance(field, str)
            assert messages and all(isinstance(m, str) and m for m in messages)
        return
    assert batched == (isinstance(body, dict) and "reports" in body)
    assert len(reports) == (len(body["reports"]) if batched else 1)


COUNTED: tuple[Any, ...] = (
    TelemetryReport,
    VehicleState,
    OutboxMessage,
    DeliveryAttempt,
    Driver,
    DriverAssignment,
    Vehicle,
)


def row_counts() -> dict[str, int]:
    db.session.rollback()
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in COUNTED
    }


def test_telemetry_never_fails_with_5xx_and_a_refused_body_writes_nothing(
    app: Any, client: Any
) -> None:
    user = make_user()
    headers = bearer(user)
    created = client.post(
        "/api/v1/vehicles", json={"name": "Truck 42", "vin": VIN}, headers=headers
    )
    assert created.status_code == 201, created.json
    for key in ("location", "heartbeat", "dvir", "driver_assignment", "temperature"):
        create_webhook(
            user.account_id, {"event_type": key, "name": key, "url": "https://hooks.example.com/in"}
        )
    db.session.commit()
    answers: dict[int, int] = {}
    vehicle_id = int(created.json["id"])
    recent = (NOW - timedelta(minutes=1)).isoformat()

    @PROPERTY
    @given(body=bodies(vehicle_id))
    # Found by this property, kept as explicit examples:
    @example(
        body={"vehicle_id": vehicle_id, "type": "heartbeat", "time": "0001-01-01T00:00:00+05:00"}
    )  # before year 1 in UTC
    @example(
        body={"vehicle_id": vehicle_id, "type": "heartbeat", "time": "9999-12-31T23:59:59-05:00"}
    )  # after year 9999 in UTC
    @example(body={"vehicle_id": 2**63, "type": "heartbeat", "time": recent})
    @example(body={"reports": [{"vehicle_id": 2**64, "type": "heartbeat", "time": recent}]})
    @example(body={"vin": VIN, "type": "driver_assignment", "time": recent, "driver": "\ud800"})
    @example(
        body={
            "vin": VIN,
            "type": "dvir",
            "time": recent,
            "driver": "a\x00b",
            "safety_status": "safe",
        }
    )
    @example(body={"vin": VIN, "type": "heartbeat", "time": recent, "\x00": 1})
    def post(body: Any) -> None:
        before = row_counts()
        # json.dumps escapes what JSON must (NUL, unpaired surrogates) as \uXXXX.
        response = client.post(
            "/api/v1/telemetry",
            data=json.dumps(body),
            headers=headers,
            content_type="application/json",
        )
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.data[:500])
        if response.status_code == 202:
            assert row_counts()["TelemetryReport"] >= before["TelemetryReport"]
            return
        assert response.status_code in (400, 422), response.status_code
        assert response.mimetype == "application/problem+json"
        assert response.json["status"] == response.status_code
        assert row_counts() == before

    post()
    # The bodies reach both sides of the check.
    assert answers.get(202, 0) > 5 and answers.get(422, 0) > 5, answers


def test_a_refused_batch_writes_nothing_even_when_most_of_it_is_good(app: Any, client: Any) -> None:
    """The sharpest case of the property above: valid reports and one bad one."""
    user = make_user()
    headers = bearer(user)
    created = client.post("/api/v1/vehicles", json={"name": "T", "vin": VIN}, headers=headers)
    vehicle_id = int(created.json["id"])
    create_webhook(
        user.account_id,
        {"event_type": "location", "name": "all", "url": "https://hooks.example.com/in"},
    )
    db.session.commit()

    def position(seconds: int, **values: Any) -> dict[str, Any]:
        moment = (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        return {
            "vehicle_id": vehicle_id,
            "type": "position",
            "time": moment,
            "latitude": 41.9,
            "longitude": -87.6,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
            **values,
        }

    spoilers: list[Callable[[dict[str, Any]], Mapping[str, Any]]] = [
        lambda r: {**r, "latitude": 91},
        lambda r: {**r, "time": "yesterday"},
        lambda r: {**r, "vehicle_id": vehicle_id + 1000},
        lambda r: {**r, "colour": "red"},
        lambda r: {**r, "fault_codes": [{"code": "P0300", "description": "x\x00"}]},
        lambda r: {**r, "temperatures": [{"sensor": "\ud800", "fahrenheit": 30}]},
    ]

    @PROPERTY
    @given(
        count=st.integers(2, 20),
        spoiler=st.sampled_from(spoilers),
        where=st.integers(0, 19),
        start=st.integers(0, 10_000),
    )
    def post(count: int, spoiler: Callable[..., Any], where: int, start: int) -> None:
        reports = [position(start + 30 * index) for index in range(count)]
        reports[where % count] = dict(spoiler(reports[where % count]))
        before = row_counts()
        response = client.post(
            "/api/v1/telemetry",
            data=json.dumps({"reports": reports}),
            headers=headers,
            content_type="application/json",
        )
        assert response.status_code in (400, 422), (reports, response.json)
        assert row_counts() == before

    post()


def test_a_body_nested_too_deep_to_parse_is_a_400(app: Any, client: Any) -> None:
    headers = bearer(make_user())
    deep = '{"reports": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(
        "/api/v1/telemetry", data=deep, headers=headers, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["detail"] == "The body is not valid JSON."


# -- what a receiver answers ------------------------------------------------------


@PROPERTY
@given(value=st.text(st.characters(max_codepoint=255), max_size=40) | st.none())
@example(value="\u00b2")  # "²": str.isdigit() says yes, float() says no
@example(value="9" * 400)
def test_any_retry_after_header_is_read_or_ignored(value: str | None) -> None:
    """Retry-After comes from the receiver (a header is Latin-1 text): whatever it
    holds, reading it gives seconds to wait or nothing, never an error."""
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0
