"""The Fleetio integration against the fake Fleetio API (tests/fakes/fleetio.py,
written from Fleetio's documentation and throttled at its documented 20 requests
a minute): its form and credential check; telemetry reports to the exact meter
entries, bulk jobs, fault rules and faults Fleetio receives; odometer pacing; one
open fault per vehicle and code; the initial sync; every answer's mapping (422
dead with Fleetio's reason, 401 needs attention, 429 Retry-After, 500 the
schedule); VIN look-ups. Drains run in this process."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select, update

from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from events.catalogue import CURRENT_STATE, EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from fleet.models import Vehicle
from integrations.fleetio import provider as fleetio_module
from integrations.fleetio import sending as fleetio_sending
from integrations.lifecycle import create_integration
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.fanout import fan_out
from outbox.models import DeliveryAttempt, OutboxMessage, Target
from tests.conftest import bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY, THROTTLED_BODY, FleetioFake

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

VIN = "1FUJGLDR3CLBP8834"
# On an hour: the 15- and 5-minute slots of the odometer interval start here.
T0 = (utcnow() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
FLEETIO_HEADERS = {
    "Authorization": f"Token {API_KEY}",
    "Account-Token": ACCOUNT_TOKEN,
    "X-Api-Version": "2024-03-15",
    "Accept": "application/json",
}
LOOKUP = {"filter[vin][eq]": [VIN], "per_page": ["2"]}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def vin_of(n: int) -> str:
    return f"1HGCM82633A{n:06d}"


@pytest.fixture
def fake(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


class Account:
    """An account with vehicles (Truck 42 by default), posting telemetry through
    the ingest API."""

    def __init__(self, client: Any, vins: tuple[str, ...] = (VIN,)) -> None:
        self.client = client
        user = make_user()
        self.id = user.account_id
        self.headers = bearer(user)
        for n, vin in enumerate(vins):
            name = "Truck 42" if vin == VIN else f"Truck {n}"
            created = client.post(
                "/api/v1/vehicles", headers=self.headers, json={"name": name, "vin": vin}
            )
            assert created.status_code == 201, created.json

    def position(self, seconds: float, vin: str = VIN, **extra: Any) -> None:
        report = {
            "vin": vin,
            "type": "position",
            "time": at(seconds),
            "latitude": 41.88,
            "longitude": -87.63,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
            **extra,
        }
        response = self.client.post("/api/v1/telemetry", json=report, headers=self.headers)
        assert response.status_code == 202, response.json


@pytest.fixture
def account(client):
    return Account(client)


def connect(account_id: int, **values: Any) -> Integration:
    integration = create_integration(
        account_id,
        {
            "provider": "fleetio",
            "api_key": API_KEY,
            "account_id": ACCOUNT_TOKEN,
            "update_odometer": True,
            "update_dtcs": True,
            **values,
        },
    )
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
    """Time passes: every pending message is due and no pause holds the target."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == integration.id)
        .values(next_attempt_at=utcnow())
    )
    db.session.execute(
        update(Target).where(Target.id == integration.id).values(throttled_until=None)
    )
    db.session.commit()


def calls(fake: FleetioFake) -> list[tuple[str, str, Any]]:
    """Every request after the credential check, as (method, path, JSON body)."""
    return [(r.method, r.path, r.json) for r in fake.requests[1:]]


def state_of(integration: Integration) -> dict[str, Any]:
    db.session.refresh(integration)
    return integration.provider_state or {}


# -- the form -------------------------------------------------------------------


def test_missing_api_key_is_refused_without_asking_fleetio(account, fake):
    with pytest.raises(ValidationError) as refused:
        create_integration(account.id, {"provider": "fleetio", "account_id": ACCOUNT_TOKEN})
    assert refused.value.errors == {"api_key": ["Enter the API Key."]}
    assert fake.requests == []
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0


def test_fields_of_the_wrong_type_are_each_named(account, fake):
    with pytest.raises(ValidationError) as refused:
        create_integration(
            account.id,
            {
                "provider": "fleetio",
                "api_key": 1234,
                "account_id": ["acct"],
                "update_odometer": "yes",
                "update_dtcs": 1,
                "odometer_interval_minutes": "often",
                "vehicle_attribute": "odometer",
            },
        )
    assert refused.value.errors == {
        "vehicle_attribute": ["Not a field of this provider."],
        "api_key": ["A string."],
        "account_id": ["A string."],
        "update_odometer": ["true or false."],
        "odometer_interval_minutes": ["A whole number from 1 to 1440."],
        "update_dtcs": ["true or false."],
    }
    assert fake.requests == []


@pytest.mark.parametrize("minutes", [0, 1441, -5, 2.5, True])
def test_an_odometer_interval_out_of_range_is_refused_and_nothing_saved(account, fake, minutes):
    with pytest.raises(ValidationError) as refused:
        connect(account.id, odometer_interval_minutes=minutes)
    assert refused.value.errors == {"odometer_interval_minutes": ["A whole number from 1 to 1440."]}
    assert fake.requests == []
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0


def test_the_form_says_where_the_keys_are_and_what_the_budget_is(app):
    provider = fleetio_module.Fleetio()
    assert provider.requests_per_minute == 20
    assert "20 requests per minute" in provider.budget_source
    assert provider.latest_value_types == frozenset()
    steps = " ".join(provider.setup_steps)
    assert "Manage API Keys" in steps and "Account Token" in steps and "VIN" in steps
    interval = next(f for f in provider.fields if f.name == "odometer_interval_minutes")
    assert (interval.kind, interval.minimum, interval.maximum) == ("number", 1, 1440)


def test_saving_checks_the_credentials_with_one_page_of_vehicles(account, fake):
    integration = connect(account.id, odometer_interval_minutes="30")
    (check,) = fake.requests
    assert (check.method, check.path, check.query) == (
        "GET",
        "/api/v1/vehicles",
        {"per_page": ["2"]},
    )
    assert {k: check.headers[k] for k in FLEETIO_HEADERS} == FLEETIO_HEADERS
    assert integration.status == "active"
    assert integration.options == {
        "account_id": ACCOUNT_TOKEN,
        "update_odometer": True,
        "odometer_interval_minutes": 30,
        "update_dtcs": True,
    }
    assert API_KEY not in json.dumps(integration.options)
    assert fleetio_module.interval_minutes(integration) == 30
    # Truck 42 has reported nothing: its initial sync has nothing to send.
    assert messages_of(integration) == []


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


# -- the fake follows Fleetio's documentation --------------------------------------


def test_the_fake_accepts_an_equal_meter_value_and_refuses_a_lower_one(fake):
    vehicle_id = fake.add_vehicle(VIN)
    url = f"{fake.base_url}/v1/meter_entries"
    headers = {k: v for k, v in FLEETIO_HEADERS.items() if k != "Accept"}
    first = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"vehicle_id": vehicle_id, "value": 1000.0, "date": at(0)},
    )
    equal = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"vehicle_id": vehicle_id, "value": 1000.0, "date": at(60)},
    )
    lower = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"vehicle_id": vehicle_id, "value": 999.0, "date": at(120)},
    )
    assert (first.status_code, equal.status_code) == (201, 201)
    assert equal.json()["value"] == "1000.0"  # documented: a string
    assert lower.status_code == 422
    assert lower.json() == {"errors": {"value": ["must be greater than or equal to 1,000.0"]}}
    assert fake.values(vehicle_id) == [1000.0, 1000.0]


def test_the_fake_takes_at_most_100_records_of_a_documented_kind_per_bulk_job(fake):
    vehicle_id = fake.add_vehicle(VIN)
    url = f"{fake.base_url}/v1/bulk_api_jobs"
    headers = {k: v for k, v in FLEETIO_HEADERS.items() if k != "Accept"}
    records = [{"vehicle_id": vehicle_id, "value": float(n), "date": at(n)} for n in range(101)]
    too_many = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"resource": "meter_entry", "operation": "create", "records": records},
    )
    updating = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"resource": "meter_entry", "operation": "update", "records": records[:1]},
    )
    unknown = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"resource": "odometer", "operation": "create", "records": records[:1]},
    )
    assert [r.status_code for r in (too_many, updating, unknown)] == [422, 422, 422]
    assert fake.meter_entries == {}
    accepted = requests.post(
        url,
        headers=headers,
        timeout=5,
        json={"resource": "meter_entry", "operation": "create", "records": records[:100]},
    )
    assert accepted.status_code == 201
    assert fake.values(vehicle_id) == [float(n) for n in range(100)]


def test_the_fake_throttles_at_twenty_a_minute_with_fleetios_429(fake):
    answers = [
        requests.get(f"{fake.base_url}/v1/vehicles", headers=FLEETIO_HEADERS, timeout=5)
        for _ in range(21)
    ]
    assert [a.status_code for a in answers] == [200] * 20 + [429]
    assert answers[-1].json() == THROTTLED_BODY
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 61


# -- telemetry → Fleetio ----------------------------------------------------------


def test_a_report_becomes_a_meter_entry_and_faults_with_a_missing_rule_created(account, fake):
    vehicle_id = fake.add_vehicle(VIN, "Truck 42")
    fake.add_fault_rule("P0171", "System too lean")
    integration = connect(account.id)
    account.position(
        0,
        odometer_mi=128463.2,
        fault_codes=[
            {"code": "P0420", "description": "Catalyst efficiency low"},
            {"code": "P0171", "description": "System too lean (bank 1)"},
        ],
    )

    drain_target(integration.id)

    date = at(0)
    p0420 = {
        "vehicle_id": vehicle_id,
        "code": "P0420",
        "name": "Catalyst efficiency low",
        "description": "Catalyst efficiency low",
        "count": 1,
        "external_id": f"{VIN}:P0420:{date}",
        "last_occurred_at": date,
        "status": "open",
        "source": "Fleethook",
    }
    p0171 = {
        **p0420,
        "code": "P0171",
        "name": "System too lean (bank 1)",
        "description": "System too lean (bank 1)",
        "external_id": f"{VIN}:P0171:{date}",
    }
    rule = {
        "code": "P0420",
        "name": "Catalyst efficiency low",
        "description": "Catalyst efficiency low",
    }
    meter = {"vehicle_id": vehicle_id, "value": 128463.2, "date": date}
    assert calls(fake) == [
        ("GET", "/api/v1/vehicles", None),  # the one VIN, by filter
        ("POST", "/api/v1/meter_entries", meter),
        ("POST", "/api/v1/faults", p0420),  # refused: no rule for P0420 yet
        ("POST", "/api/v1/fault_rules", rule),
        ("POST", "/api/v1/faults", p0420),
        ("POST", "/api/v1/faults", p0171),  # its rule exists: straight in
    ]
    assert fake.requests[1].query == LOOKUP
    for request in fake.requests[1:]:
        assert {k: request.headers[k] for k in FLEETIO_HEADERS} == FLEETIO_HEADERS
    for request in fake.received("POST"):
        assert request.headers["Content-Type"] == "application/json"
    assert [f["code"] for f in fake.open_faults(vehicle_id)] == ["P0420", "P0171"]
    (message,) = messages_of(integration)
    assert (message.status, message.attempts, message.last_status_code) == ("delivered", 1, 201)
    db.session.refresh(integration)
    assert integration.vehicle_map[VIN]["id"] == vehicle_id
    assert integration.queue_depth == 0
    open_faults = state_of(integration)["open_faults"]
    assert {k: v["id"] for k, v in open_faults.items()} == {
        f"{VIN}|{f['code']}": f["id"] for f in fake.faults
    }


def test_attempts_show_the_credentials_masked(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    drain_target(integration.id)
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    shown = json.dumps(attempt.request_headers)
    assert API_KEY not in shown and ACCOUNT_TOKEN not in shown
    assert attempt.request_headers["authorization"] == "Token ••••••••" + API_KEY[-4:]
    assert attempt.request_headers["path"] == "/v1/meter_entries"


def test_a_fault_refused_while_its_rule_exists_stays_refused(account, fake):
    fake.add_vehicle(VIN)
    fake.add_fault_rule("P0420")
    integration = connect(account.id, update_odometer=False)
    account.position(
        0, odometer_mi=10.0, fault_codes=[{"code": "P0420", "description": "Catalyst"}]
    )
    fake.fail_next(422, body={"errors": {"last_occurred_at": ["is invalid"]}}, path="/faults")
    drain_target(integration.id)
    assert [r.path for r in fake.received("POST")] == ["/api/v1/faults", "/api/v1/fault_rules"]
    (message,) = messages_of(integration)
    assert message.status == "dead"
    assert message.last_error == (
        'Fault P0420: Fleetio answered HTTP 422: {"last_occurred_at": ["is invalid"]}'
    )
    assert list(fake.fault_rules) == ["P0420"] and fake.faults == []
    assert state_of(integration)["open_faults"] == {}


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


# -- odometer pacing -------------------------------------------------------------


def test_only_an_advanced_odometer_crossing_the_interval_makes_a_message(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)  # every 15 minutes
    account.position(0, odometer_mi=1000.0)  # the first reading: nothing before it
    account.position(60, odometer_mi=1000.4)  # advanced, same 15 minutes
    account.position(900, odometer_mi=1000.4)  # the next 15 minutes, not advanced
    account.position(960)  # no odometer in the report
    account.position(30, odometer_mi=999.0)  # late
    account.position(1800, odometer_mi=1012.0)  # advanced, the next 15 minutes
    assert [m.payload["operations"] for m in messages_of(integration)] == [
        [{"op": "meter_entry", "value": 1000.0, "date": at(0)}],
        [{"op": "meter_entry", "value": 1012.0, "date": at(1800)}],
    ]
    assert messages_of(integration)[0].payload == {
        "type": "location",
        "vin": VIN,
        "vehicle_name": "Truck 42",
        "operations": [{"op": "meter_entry", "value": 1000.0, "date": at(0)}],
    }


@pytest.mark.parametrize("minutes", [15, 5])
def test_thirty_positions_in_fifteen_minutes_make_one_entry_an_interval_and_one_at_trip_end(
    account, fake, minutes
):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id, odometer_interval_minutes=minutes)
    account.position(0)  # the truck wakes up: no odometer yet
    for n in range(1, 31):  # every 30 s for 15 minutes, 0.2 mi each
        account.position(30 * n, odometer_mi=round(5000 + 0.2 * n, 1))
    account.position(930, odometer_mi=5006.2, ignition=False)  # trip end
    drain_target(integration.id)

    slots = math.ceil(15 / minutes)
    entries = fake.meter_entries[vehicle_id]
    assert len(entries) <= slots + 1
    ends = [t for t in range(minutes * 60, 901, minutes * 60)]
    assert [(e["date"], e["value"]) for e in entries] == [
        *[(at(t), round(5000 + 0.2 * (t // 30), 1)) for t in ends],
        (at(930), 5006.2),  # the trip end carries every mile driven
    ]
    assert all(m.status == "delivered" for m in messages_of(integration))


def test_a_late_report_sends_nothing(app):
    integration = Integration(
        provider="fleetio", options={"update_odometer": True, "update_dtcs": True}
    )
    late = event(12.5, 12.0, FAULT, previous_fix=T0 + timedelta(minutes=20))
    assert fleetio_module.Fleetio().payload_for(integration, late) is None


def test_a_trip_end_sends_the_odometer_and_a_repeat_of_it_is_not_stored_twice(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=100.0)
    account.position(900, odometer_mi=104.0, ignition=False)  # a new interval and trip end
    payloads = [m.payload for m in messages_of(integration)]
    assert [p["type"] for p in payloads] == ["location", "location", "ignition_off"]
    assert payloads[1]["operations"] == payloads[2]["operations"]
    drain_target(integration.id)
    assert fake.values(vehicle_id) == [100.0, 104.0]  # Fleetio would take the repeat
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 3


def event(
    odometer: float | None,
    previous: float | None,
    faults: list | None = None,
    key: str = "location",
    previous_faults: list | None = None,
    previous_fix: Any = None,
    when: Any = T0,
) -> DetectedEvent:
    report: dict[str, Any] = {
        "previous_odometer_mi": previous,
        "previous_fix_time": previous_fix,
        "previous_fault_codes": previous_faults,
    }
    if faults is not None:
        report["fault_codes"] = faults
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=odometer, fix_time=when)
    event_type = CURRENT_STATE if key == CURRENT_STATE.key else EVENT_TYPES[key]
    return DetectedEvent(event_type, when, vehicle, report=report)


FAULT = [{"code": "P0300", "description": "Random misfire"}]
METER_OP = {"op": "meter_entry", "value": 12.5, "date": at(0)}
OPEN_OP = {
    "op": "fault_open",
    "code": "P0300",
    "description": "Random misfire",
    "occurred_at": at(0),
}
UPDATE_OP = {**OPEN_OP, "op": "fault_update"}
RESOLVE_OP = {"op": "fault_resolve", "code": "P0300", "resolved_at": at(0)}
BOTH = {"update_odometer": True, "update_dtcs": True}
EARLIER = T0 - timedelta(minutes=20)  # another 15 minutes


@pytest.mark.parametrize(
    ("options", "evt", "operations"),
    [
        (BOTH, event(12.5, 12.0, FAULT), [METER_OP, OPEN_OP]),
        ({"update_odometer": False, "update_dtcs": True}, event(12.5, 12.0, FAULT), [OPEN_OP]),
        ({"update_odometer": True, "update_dtcs": False}, event(12.5, 12.0, FAULT), [METER_OP]),
        ({"update_odometer": True, "update_dtcs": False}, event(12.0, 12.0, FAULT), None),
        (BOTH, event(None, 12.0, []), None),
        (BOTH, event(12.5, 12.0, FAULT, "speed"), None),
        # A code still reported: updated once an interval, not on every report.
        (
            BOTH,
            event(12.5, 12.0, FAULT, previous_faults=FAULT, previous_fix=EARLIER),
            [METER_OP, UPDATE_OP],
        ),
        (BOTH, event(12.5, 12.0, FAULT, previous_faults=FAULT, previous_fix=T0), None),
        # Cleared: reported before, absent now. A report without fault_codes says nothing.
        (BOTH, event(12.0, 12.0, [], previous_faults=FAULT, previous_fix=EARLIER), [RESOLVE_OP]),
        (BOTH, event(12.0, 12.0, None, previous_faults=FAULT, previous_fix=EARLIER), None),
        # Trip end: the odometer, whatever the interval.
        (BOTH, event(12.5, 12.5, key="ignition_off"), [METER_OP]),
        # Initial sync: the odometer and the codes open now.
        (
            BOTH,
            event(12.5, None, FAULT, key=CURRENT_STATE.key),
            [
                METER_OP,
                {
                    "op": "fault_sync",
                    "occurred_at": at(0),
                    "codes": [{"code": "P0300", "description": "Random misfire"}],
                },
            ],
        ),
        (BOTH, event(12.5, None, [], key=CURRENT_STATE.key), [METER_OP]),
    ],
)
def test_which_events_make_which_operations(app, options, evt, operations):
    integration = Integration(provider="fleetio", options=options)
    payload = fleetio_module.Fleetio().payload_for(integration, evt)
    assert (payload["operations"] if payload else None) == operations


def test_the_interval_is_counted_in_slots_of_the_clock():
    crosses = fleetio_module.crosses_interval
    assert crosses(T0, None, 15)
    assert not crosses(T0 + timedelta(minutes=14, seconds=59), T0, 15)
    assert crosses(T0 + timedelta(minutes=15), T0 + timedelta(minutes=14, seconds=59), 15)
    assert crosses(T0 + timedelta(minutes=5), T0 + timedelta(minutes=4), 5)


# -- one open fault per vehicle and code -------------------------------------------


def test_six_reports_of_a_code_make_one_open_fault_and_its_clearing_resolves_it(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id, update_odometer=False)
    code = [{"code": "P0420", "description": "Catalyst efficiency low"}]
    for n in range(6):  # within one 15-minute interval
        account.position(60 * n, fault_codes=code)
    drain_target(integration.id)
    (fault,) = fake.faults
    assert (fault["code"], fault["status"], fault["count"]) == ("P0420", "open", 1)
    assert len(fake.received("POST", "/api/v1/faults")) == 2  # before and after its rule

    account.position(900, fault_codes=code)  # still reported, the next interval
    drain_target(integration.id)
    assert len(fake.faults) == 1
    assert (fault["count"], fault["last_occurred_at"]) == (2, at(900))

    account.position(960)  # says nothing about faults
    account.position(1020, fault_codes=[])  # cleared
    drain_target(integration.id)
    assert (len(fake.faults), fault["status"]) == (1, "resolved")
    assert fake.received("PATCH")[-1].json == {"status": "resolved"}
    assert state_of(integration)["open_faults"] == {}

    account.position(1080, fault_codes=code)  # back again: a new occurrence
    drain_target(integration.id)
    assert [(f["code"], f["status"]) for f in fake.faults] == [
        ("P0420", "resolved"),
        ("P0420", "open"),
    ]
    assert [f["id"] for f in fake.open_faults(vehicle_id)] == [
        v["id"] for v in state_of(integration)["open_faults"].values()
    ]
    assert all(m.status == "delivered" for m in messages_of(integration))


def test_a_fault_deleted_in_fleetio_is_opened_again_and_one_gone_needs_no_resolving(account, fake):
    fake.add_vehicle(VIN)
    fake.add_fault_rule("P0420")
    integration = connect(account.id, update_odometer=False)
    code = [{"code": "P0420", "description": "Catalyst"}]
    account.position(0, fault_codes=code)
    drain_target(integration.id)
    fake.faults.clear()  # someone deletes it in Fleetio
    account.position(900, fault_codes=code)
    drain_target(integration.id)
    assert [(f["code"], f["count"]) for f in fake.faults] == [("P0420", 1)]
    fake.faults.clear()
    account.position(1000, fault_codes=[])
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 3
    assert state_of(integration)["open_faults"] == {}


def test_a_retried_fault_message_does_not_open_a_second_fault(account, fake):
    fake.add_vehicle(VIN)
    fake.add_fault_rule("P0420")
    integration = connect(account.id, update_odometer=False)
    account.position(
        0,
        fault_codes=[
            {"code": "P0420", "description": "Catalyst"},
            {"code": "P0171", "description": "Lean"},
        ],
    )
    fake.fail_next(503, path="/fault_rules")  # P0420 goes in, P0171 waits for its rule
    drain_target(integration.id)
    assert [f["code"] for f in fake.faults] == ["P0420"]
    assert messages_of(integration)[0].status == "pending"
    make_due(integration)
    drain_target(integration.id)
    assert [f["code"] for f in fake.faults] == ["P0420", "P0171"]
    assert [r.json["code"] for r in fake.received("POST", "/api/v1/faults")] == [
        "P0420",
        "P0171",
        "P0171",
        "P0171",
    ]
    assert messages_of(integration)[0].status == "delivered"


# -- bulk jobs ------------------------------------------------------------------------


def twenty_trucks(client: Any, fake: FleetioFake) -> tuple[Account, dict[str, int]]:
    vins = tuple(vin_of(n) for n in range(20))
    ids = {vin: fake.add_vehicle(vin) for vin in vins}
    return Account(client, vins), ids


def test_a_batch_of_twenty_readings_goes_as_one_bulk_job(client, fake):
    account, ids = twenty_trucks(client, fake)
    integration = connect(account.id)
    for n, vin in enumerate(ids):
        account.position(n, vin=vin, odometer_mi=1000.0 + n)
    drain_target(integration.id)

    (job,) = fake.received("POST", "/api/v1/bulk_api_jobs")
    assert job.json == {
        "resource": "meter_entry",
        "operation": "create",
        "records": [
            {"vehicle_id": ids[vin], "value": 1000.0 + n, "date": at(n)}
            for n, vin in enumerate(ids)
        ],
    }
    assert fake.received("POST", "/api/v1/meter_entries") == []
    assert len(fake.received("GET", r"/api/v1/bulk_api_jobs/\d+")) == 1  # its outcome
    # 20 VINs unknown at once: one listing, not 20 look-ups.
    assert [r.query for r in fake.received("GET", "/api/v1/vehicles")[1:]] == [
        {"per_page": ["100"]}
    ]
    assert {vin: fake.values(i) for vin, i in ids.items()} == {
        vin: [1000.0 + n] for n, vin in enumerate(ids)
    }
    messages = messages_of(integration)
    assert [m.status for m in messages] == ["delivered"] * 20
    assert len(fake.requests) == 4  # the check, the listing, the job, its status


def test_a_record_refused_in_a_bulk_job_is_dead_with_fleetios_words(client, fake):
    account, ids = twenty_trucks(client, fake)
    first = next(iter(ids))
    fake.add_meter_entry(ids[first], 9000.0, at(-3600))  # higher than what comes
    integration = connect(account.id)
    for n, vin in enumerate(list(ids)[:5]):
        account.position(n, vin=vin, odometer_mi=1000.0 + n)
    drain_target(integration.id)
    assert len(fake.received("POST", "/api/v1/bulk_api_jobs")) == 1
    refused, *others = messages_of(integration)
    assert refused.status == "dead"
    assert refused.last_error == (
        "Meter entry: Fleetio refused it in bulk job "
        f"{next(iter(fake.bulk_jobs))}: value must be greater than or equal to 9,000.0"
    )
    assert [m.status for m in others] == ["delivered"] * 4


def test_a_bulk_job_still_running_at_the_end_of_the_drain_counts_on_acceptance(client, fake):
    account, ids = twenty_trucks(client, fake)
    integration = connect(account.id)
    for n, vin in enumerate(list(ids)[:4]):
        account.position(n, vin=vin, odometer_mi=1000.0 + n)
    fake.fail_next(503, path="/bulk_api_jobs/")  # its status cannot be read now
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 4


def test_a_bulk_job_fleetio_did_not_answer_is_checked_before_a_reading_goes_again(client, fake):
    account, ids = twenty_trucks(client, fake)
    integration = connect(account.id)
    vins = list(ids)[:4]
    for n, vin in enumerate(vins):
        account.position(n, vin=vin, odometer_mi=1000.0 + n)
    # Fleetio stores the job's records but its answer is lost (a 502 from a proxy).
    fake.fail_next(502, path="/api/v1/bulk_api_jobs")
    for n, vin in enumerate(vins):
        fake.add_meter_entry(ids[vin], 1000.0 + n, at(n))
    drain_target(integration.id)
    assert state_of(integration)["unsure"] == {
        vin: [[at(n), 1000.0 + n]] for n, vin in enumerate(vins)
    }
    make_due(integration)
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 4
    assert {vin: fake.values(ids[vin]) for vin in vins} == {
        vin: [1000.0 + n] for n, vin in enumerate(vins)
    }
    assert fake.received("POST", "/api/v1/meter_entries") == []
    assert len(fake.received("GET", r"/api/v1/vehicles/\d+/meter_entries")) == 4


# -- a retried meter entry ------------------------------------------------------------


def test_a_reading_stored_without_an_answer_is_not_stored_twice(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=500.0)
    fake.fail_next(500, path="/meter_entries")
    fake.add_meter_entry(vehicle_id, 500.0, at(0))  # Fleetio stored it, then answered 500
    drain_target(integration.id)
    assert messages_of(integration)[0].status == "pending"
    make_due(integration)
    drain_target(integration.id)
    check = fake.received("GET", rf"/api/v1/vehicles/{vehicle_id}/meter_entries")[-1]
    assert check.query == {"filter[date][gte]": [at(0)], "per_page": ["100"]}
    assert len(fake.received("POST", "/api/v1/meter_entries")) == 1  # the lost one only
    assert fake.values(vehicle_id) == [500.0]
    assert messages_of(integration)[0].status == "delivered"


def test_a_reading_lost_with_its_answer_is_sent_again(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=500.0)
    fake.fail_next(504, path="/meter_entries")  # not stored
    drain_target(integration.id)
    make_due(integration)
    drain_target(integration.id)
    assert fake.values(vehicle_id) == [500.0]
    assert messages_of(integration)[0].status == "delivered"
    assert state_of(integration)["unsure"] == {}


# -- Fleetio's answers ------------------------------------------------------------


def test_a_lower_meter_value_is_dead_with_fleetios_reason_and_the_next_goes(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    fake.add_meter_entry(vehicle_id, 200000.0, at(-3600))
    integration = connect(account.id)
    account.position(0, odometer_mi=150000.0)
    account.position(900, odometer_mi=200100.0)
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, first.last_status_code) == ("dead", 422)
    assert first.last_error == (
        "Meter entry: Fleetio answered HTTP 422: "
        '{"value": ["must be greater than or equal to 200,000.0"]}'
    )
    assert second.status == "delivered"
    assert fake.values(vehicle_id) == [200000.0, 200100.0]
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
    account.position(900, odometer_mi=11.0)
    fake.fail_next(401, path=path)
    drain_target(integration.id)
    db.session.refresh(integration)
    assert integration.status == "needs_attention"
    assert integration.status_reason.startswith(
        "Needs attention: Fleetio refused the credentials (HTTP 401)"
    )
    assert [(m.status, m.attempts) for m in messages_of(integration)] == [
        ("pending", 1),
        ("pending", 0),
    ]
    assert integration.queue_depth == 2
    sent = len(fake.requests)
    make_due(integration)
    drain_target(integration.id)  # held: nothing is sent until someone fixes it
    assert len(fake.requests) == sent


def test_throttling_waits_for_retry_after(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    fake.fail_next(429, body=THROTTLED_BODY, headers={"Retry-After": "42"}, path="/meter_entries")
    before = utcnow()
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert (message.status, message.last_status_code) == ("pending", 429)
    delay = (message.next_attempt_at - before).total_seconds()
    assert 42 <= delay <= 43.5, delay


def test_a_server_error_is_retried_on_the_schedule(account, fake):
    vehicle_id = fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(900, odometer_mi=11.0)
    fake.fail_next(500, path="/meter_entries")
    before = utcnow()
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert second.attempts == 0  # its vehicle's messages wait behind it
    delay = (first.next_attempt_at - before).total_seconds()
    assert 4 <= delay <= 6 + 1.5, delay  # the schedule's first step: 5 s ± 20 %
    db.session.refresh(integration)
    assert integration.status == "failing"
    make_due(integration)
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration)] == ["delivered", "delivered"]
    assert fake.values(vehicle_id) == [10.0, 11.0]


# -- vehicles ------------------------------------------------------------------------


def test_an_unknown_vin_is_looked_up_by_filter_and_remembered(account, fake):
    for n in range(150):
        fake.add_vehicle(vin_of(n))
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(900, odometer_mi=11.0)
    drain_target(integration.id)
    assert [(m.status, m.last_error) for m in messages_of(integration)] == [
        ("dead", f"No vehicle with VIN {VIN} in Fleetio; it is listed on the integration's page.")
    ] * 2
    lookups = fake.received("GET", "/api/v1/vehicles")[1:]
    assert [r.query for r in lookups] == [LOOKUP]  # one look-up, no listing of 150
    assert fake.received("POST") == []
    db.session.refresh(integration)
    assert integration.unmatched_vins == [VIN]
    # Added in Fleetio later: once the miss is old, the VIN is looked up again.
    vehicle_id = fake.add_vehicle(VIN)
    account.position(1800, odometer_mi=12.0)
    drain_target(integration.id)
    assert messages_of(integration)[-1].status == "dead"  # the miss is fresh
    assert len(fake.received("GET", "/api/v1/vehicles")) == 2
    old = (utcnow() - fleetio_sending.MISS_REMEMBERED_FOR - timedelta(seconds=1)).isoformat()
    integration.provider_state = {**integration.provider_state, "vin_misses": {VIN: old}}
    db.session.commit()
    account.position(2700, odometer_mi=13.0)
    drain_target(integration.id)
    assert messages_of(integration)[-1].status == "delivered"
    assert fake.received("POST")[0].json["vehicle_id"] == vehicle_id
    db.session.refresh(integration)
    assert integration.unmatched_vins == []
    account.position(3600, odometer_mi=14.0)
    drain_target(integration.id)
    assert len(fake.received("GET", "/api/v1/vehicles")) == 3  # the map served


def test_many_unknown_vins_are_listed_page_by_page(client, fake):
    for n in range(145):
        fake.add_vehicle(vin_of(100 + n))
    vins = tuple(vin_of(n) for n in range(5))
    ids = {vin: fake.add_vehicle(vin) for vin in vins}
    account = Account(client, vins)
    integration = connect(account.id)
    for n, vin in enumerate(vins):
        account.position(n, vin=vin, odometer_mi=10.0 + n)
    drain_target(integration.id)
    pages = fake.received("GET", "/api/v1/vehicles")[1:]
    assert [p.query for p in pages] == [
        {"per_page": ["100"]},
        {"per_page": ["100"], "start_cursor": ["100"]},
    ]
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 5
    db.session.refresh(integration)
    assert len(integration.vehicle_map) == 150
    assert {vin: integration.vehicle_map[vin]["id"] for vin in vins} == ids


def test_kilometre_meters_get_kilometres_and_hour_meters_no_odometer(account, fake):
    vehicle_id = fake.add_vehicle(VIN, meter_unit="km")
    integration = connect(account.id)
    account.position(0, odometer_mi=100.0)
    drain_target(integration.id)
    assert fake.received("POST")[0].json == {
        "vehicle_id": vehicle_id,
        "value": 160.9,
        "date": at(0),
    }
    fake.vehicles[0]["meter_unit"] = "hr"
    db.session.refresh(integration)
    stale = (utcnow() - fleetio_sending.VIN_TRUSTED_FOR - timedelta(minutes=1)).isoformat()
    integration.vehicle_map = {VIN: {**integration.vehicle_map[VIN], "at": stale}}
    db.session.commit()
    account.position(900, odometer_mi=101.0)
    drain_target(integration.id)
    message = messages_of(integration)[-1]
    assert message.status == "dead"
    assert message.last_error == (
        "Meter entry: Truck 42's primary meter in Fleetio counts "
        "hours, so its odometer is not sent."
    )
    assert len(fake.received("POST")) == 1


def test_a_batch_stops_at_its_time_budget_after_one_message(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id)
    account.position(0, odometer_mi=10.0)
    account.position(900, odometer_mi=11.0)
    results = fleetio_module.Fleetio().send(integration, messages_of(integration), stop_at=0.0)
    assert [r.delivered for r in results] == [True]
    assert len(fake.received("POST")) == 1


# -- the initial sync -------------------------------------------------------------


def test_connecting_sends_the_parked_trucks_odometers_and_open_faults(client, fake):
    vins = tuple(vin_of(n) for n in range(3))
    ids = {vin: fake.add_vehicle(vin) for vin in vins}
    fake.add_fault_rule("P0171")
    account = Account(client, vins)
    for n, vin in enumerate(vins):  # each drove, then parked, before Fleetio was connected
        account.position(0, vin=vin, odometer_mi=4000.0 + n)
        faults = [{"code": "P0171", "description": "Lean"}] if n == 0 else []
        account.position(600, vin=vin, odometer_mi=4010.0 + n, ignition=False, fault_codes=faults)
    integration = connect(account.id)
    assert [m.payload["type"] for m in messages_of(integration)] == ["current_state"] * 3

    drain_target(integration.id)

    assert {vin: fake.values(i) for vin, i in ids.items()} == {
        vin: [4010.0 + n] for n, vin in enumerate(vins)
    }
    assert [(f["vehicle_id"], f["code"]) for f in fake.open_faults()] == [(ids[vins[0]], "P0171")]
    assert [m.status for m in messages_of(integration)] == ["delivered"] * 3
    # The first report afterwards that still carries the code does not open another.
    account.position(
        1200,
        vin=vins[0],
        odometer_mi=4010.0,
        fault_codes=[{"code": "P0171", "description": "Lean"}],
    )
    drain_target(integration.id)
    assert len(fake.faults) == 1


def test_a_catch_up_resolves_faults_no_longer_open(account, fake):
    fake.add_vehicle(VIN)
    fake.add_fault_rule("P0420")
    integration = connect(account.id, update_odometer=False)
    account.position(0, fault_codes=[{"code": "P0420", "description": "Catalyst"}])
    drain_target(integration.id)
    assert list(state_of(integration)["open_faults"]) == [f"{VIN}|P0420"]
    vehicle = db.session.scalars(select(Vehicle).where(Vehicle.vin == VIN)).one()
    now = event(None, None, [], key=CURRENT_STATE.key, when=T0 + timedelta(hours=1))
    now = replace(now, vehicle=replace(now.vehicle, vin=VIN, vehicle_id=vehicle.id))
    fan_out([now], [integration])
    db.session.commit()
    assert messages_of(integration)[-1].payload["operations"] == [
        {"op": "fault_sync", "occurred_at": at(3600), "codes": []}
    ]
    drain_target(integration.id)
    assert [(f["code"], f["status"]) for f in fake.faults] == [("P0420", "resolved")]
    assert state_of(integration)["open_faults"] == {}


# -- a fleet at the documented limit ------------------------------------------------


def test_fifty_trucks_against_the_throttled_fake_all_arrive(client, fake):
    vins = tuple(vin_of(n) for n in range(50))
    ids = {vin: fake.add_vehicle(vin) for vin in vins}
    account = Account(client, vins)
    integration = connect(account.id)
    # Another program on the same account token has used 19 of the minute's 20.
    for _ in range(19):
        requests.get(f"{fake.base_url}/v1/vehicles", headers=FLEETIO_HEADERS, timeout=5)
    for vin in vins:
        account.position(0, vin=vin, odometer_mi=100.0)
        account.position(300, vin=vin, odometer_mi=103.0)  # same interval: nothing
        account.position(960, vin=vin, odometer_mi=110.0)  # the next interval
        account.position(1200, vin=vin, odometer_mi=112.0, ignition=False)  # trip end

    drain_target(integration.id)
    assert fake.throttled_count >= 1  # Fleetio pushed back ...
    for _ in range(10):  # ... and the drains wait as it asked, then go on
        if all(m.status == "delivered" for m in messages_of(integration)):
            break
        fake.throttle(fleetio_module.REQUESTS_PER_MINUTE, 60)  # a minute later
        make_due(integration)
        drain_target(integration.id)

    messages = messages_of(integration)
    assert len(messages) == 150
    assert [m.status for m in messages] == ["delivered"] * 150
    assert {vin: fake.values(i) for vin, i in ids.items()} == {
        vin: [100.0, 110.0, 112.0] for vin in vins
    }
    throttled = db.session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.status_code == 429)
    ).all()
    assert throttled and all(a.outcome == "throttled" for a in throttled)
    ours = [r for r in fake.requests[1:] if r.path != "/api/v1/vehicles" or r.query]
    assert len(ours) <= 12  # a listing and a few bulk jobs, not 150 POSTs


def test_an_integration_leaving_out_the_odometer_sends_fleetio_no_meter_entry(account, fake):
    fake.add_vehicle(VIN)
    integration = connect(account.id, drop_fields=["data.odometer_mi"])
    account.position(0, odometer_mi=1000.0)
    account.position(1800, odometer_mi=1012.0)
    assert messages_of(integration) == []
    # Without the redaction the same reports are meter entries (the control).
    db.session.delete(integration)
    db.session.commit()
    kept = connect(account.id)
    account.position(3600, odometer_mi=1030.0)
    assert {op["op"] for m in messages_of(kept) for op in m.payload["operations"]} == {
        "meter_entry"
    }
