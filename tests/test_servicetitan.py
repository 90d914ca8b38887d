"""The ServiceTitan integration against a fake ServiceTitan on loopback that
holds pings to the published schema: the form's rules, its setup steps and the
credential check, then telemetry in through the ingest API and the exact
GPS-ping requests out (drains run in this process), the per-integration GPS
provider, the initial sync, per-ping "Fail" answers under HTTP 200, what a 400,
403 or 404 leads to, the token's cache and its refresh on 401, throttling at
ServiceTitan's documented limit, and server errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select, text, update

from core.errors import ValidationError
from core.extensions import db, redis_client
from core.times import utcnow
from demo.vehicles import demo_vin
from integrations.lifecycle import create_integration, sign_release
from integrations.models import Integration
from integrations.servicetitan import client as servicetitan_client
from integrations.servicetitan.provider import ServiceTitan
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import NAMESPACE, bearer, delete_namespace, make_user, reset_database
from tests.fakes.servicetitan import (
    APP_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    GPS_PROVIDER,
    TENANT,
    FakeServiceTitan,
)

VIN_A = "1FUJGLDR3CLBP8834"
VIN_B = "3AKJHHDR7JSJY2214"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
PINGS = f"/dispatch/v2/tenant/{TENANT}/gps-provider/{GPS_PROVIDER}/gps-pings"
VALUES = {
    "provider": "servicetitan",
    "tenant_id": TENANT,
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
}


@pytest.fixture
def fake() -> Iterator[FakeServiceTitan]:
    server = FakeServiceTitan().start()
    yield server
    server.stop()


@pytest.fixture
def app(make_app: Any, fake: FakeServiceTitan) -> Iterator[Flask]:
    """The app, with ServiceTitan's auth and API hosts both at the fake."""
    app = make_app(
        FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
        FLEETHOOK_CONNECT_TIMEOUT=1,
        FLEETHOOK_READ_TIMEOUT=1,
        FLEETHOOK_SERVICETITAN_AUTH_URL=fake.url,
        FLEETHOOK_SERVICETITAN_BASE_URL=fake.url,
        FLEETHOOK_SERVICETITAN_APP_KEY=APP_KEY,
        FLEETHOOK_SERVICETITAN_GPS_PROVIDER=GPS_PROVIDER,
    )
    with app.app_context():
        yield app
        reset_database()
        delete_namespace(redis_client(), NAMESPACE)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def epoch_ms(seconds: float) -> int:
    return round((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def position(vin: str, seconds: float, **values: Any) -> dict[str, Any]:
    return {
        "vin": vin,
        "type": "position",
        "time": at(seconds),
        "latitude": 41.95,
        "longitude": -87.80,
        "speed_mph": 30.0,
        "heading": 90,
        "ignition": True,
        **values,
    }


class Account:
    """An account with two vehicles and a ServiceTitan integration."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.user = make_user()
        self.headers = bearer(self.user)
        self.vehicles = {}
        for vin, name in ((VIN_A, "Truck 42"), (VIN_B, "Van 7")):
            created = client.post(
                "/api/v1/vehicles", headers=self.headers, json={"name": name, "vin": vin}
            )
            assert created.status_code == 201, created.json
            self.vehicles[vin] = created.json["id"]

    def connect(self, sign: bool = True, **values: Any) -> Integration:
        integration = create_integration(self.user.account_id, {**VALUES, **values})
        db.session.commit()
        if sign:
            sign_release(
                integration,
                {
                    "signer_name": "Dana Whitfield",
                    "signer_title": "Operations Manager",
                    "accept": True,
                },
                self.user.id,
                "203.0.113.9",
            )
            db.session.commit()
        return integration

    def report(self, *reports: dict[str, Any]) -> None:
        response = self.client.post(
            "/api/v1/telemetry", json={"reports": list(reports)}, headers=self.headers
        )
        assert response.status_code == 202, response.json

    def external_id(self, vin: str, seconds: float) -> str:
        return f"fleethook-{self.vehicles[vin]}-{epoch_ms(seconds)}"

    def ping(self, vin: str, seconds: float, is_new: bool, **values: Any) -> dict[str, Any]:
        """The ping our client must send for `position(vin, seconds)`."""
        return {
            "unitId": vin,
            "unitName": "Truck 42" if vin == VIN_A else "Van 7",
            "eventTime": at(seconds),
            "latitude": 41.95,
            "longitude": -87.80,
            "speed": 30.0,
            "street": "",
            "city": "",
            "region": "",
            "postalCode": "",
            "message": "Moving at 30 mph, heading 90°",
            "statusMessage": "Moving",
            "externalId": self.external_id(vin, seconds),
            "isNew": is_new,
            **values,
        }


@pytest.fixture
def account(client: Any) -> Account:
    return Account(client)


def messages_of(integration: Integration) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == integration.id)
            .order_by(OutboxMessage.sequence)
        )
    )


def statuses(integration: Integration) -> list[str]:
    return [message.status for message in messages_of(integration)]


def reloaded(integration: Integration) -> Integration:
    db.session.expire_all()
    found = db.session.get(Integration, integration.id)
    assert found is not None
    return found


def make_due(integration: Integration) -> None:
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == integration.id, OutboxMessage.status == "pending")
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def ping_requests(fake: FakeServiceTitan) -> list[Any]:
    """The gps-pings requests that carried pings (the credential check sends none)."""
    return [r for r in fake.received("POST", PINGS) if r.json]


def token_requests(fake: FakeServiceTitan) -> list[Any]:
    return fake.received("POST", "/connect/token")


# -- the form and the credential check ------------------------------------------


def test_the_form_names_every_missing_field_and_calls_nobody(app, fake):
    user = make_user()
    with pytest.raises(ValidationError) as refused:
        create_integration(user.account_id, {"provider": "servicetitan", "colour": "red"})
    assert refused.value.errors == {
        "colour": ["Not a field of this provider."],
        "tenant_id": ["Enter the Tenant ID."],
        "client_id": ["Enter the Client ID."],
        "client_secret": ["Enter the Client Secret."],
    }
    assert fake.requests == []
    assert db.session.scalars(select(Integration)).all() == []


def test_a_tenant_id_must_be_digits(app, fake):
    user = make_user()
    with pytest.raises(ValidationError) as refused:
        create_integration(user.account_id, {**VALUES, "tenant_id": "acme-plumbing"})
    assert list(refused.value.errors) == ["tenant_id"]
    assert "Digits only" in refused.value.errors["tenant_id"][0]
    assert fake.requests == []


def test_refused_client_credentials_are_said_in_plain_words(app, fake):
    user = make_user()
    with pytest.raises(ValidationError) as refused:
        create_integration(user.account_id, {**VALUES, "client_secret": "cs1.wrong"})
    assert refused.value.errors == {
        "credentials": ["ServiceTitan did not accept this client id and secret."]
    }
    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/connect/token")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": "cs1.wrong",
    }
    db.session.rollback()
    assert db.session.scalars(select(Integration)).all() == []


def test_a_tenant_the_app_cannot_reach_is_refused_after_the_token(app, fake):
    user = make_user()
    with pytest.raises(ValidationError) as refused:
        create_integration(user.account_id, {**VALUES, "tenant_id": "7654321"})
    (message,) = refused.value.errors["credentials"]
    assert message.startswith("ServiceTitan refused access to tenant 7654321")
    assert [r.path for r in fake.requests] == [
        "/connect/token",
        "/dispatch/v2/tenant/7654321/gps-provider/fleethook/gps-pings",
    ]


def test_the_check_is_a_token_and_an_empty_batch_and_the_integration_waits_for_the_release(
    app, fake, account
):
    integration = account.connect(sign=False)
    token, check = fake.requests
    assert (token.method, token.path) == ("POST", "/connect/token")
    assert (check.method, check.path, check.json) == ("POST", PINGS, [])
    issued = next(iter(fake.tokens))
    assert check.headers["Authorization"] == f"Bearer {issued}"
    assert check.headers["ST-App-Key"] == APP_KEY
    assert (integration.status, integration.status_reason) == (
        "paused",
        "Waiting for the release form to be signed.",
    )
    # The GPS provider was left blank: the app's setting is used (PINGS above).
    assert integration.options == {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "gps_provider": None,
    }
    raw = db.session.execute(text("SELECT credentials FROM integration")).scalar_one()
    assert CLIENT_SECRET not in raw and "client_secret" not in raw

    account.report(position(VIN_A, 0))
    drain_target(integration.id)  # paused: nothing leaves
    assert ping_requests(fake) == [] and statuses(integration) == ["pending"]


def test_the_setup_steps_say_what_to_create_in_servicetitan_and_where_each_key_is(app):
    provider = ServiceTitan()
    steps = " ".join(provider.setup_steps)
    for words in (
        "Settings → Integrations → GPS",
        "Activate",
        "API Application Access",
        "Client ID and Client Secret",
        "Tenant ID",
        "release form",
        "Devices tab",
        "technician",
        "VIN",
        "Dispatch map",
    ):
        assert words in steps, words
    (gps_provider,) = [f for f in provider.fields if f.name == "gps_provider"]
    assert not gps_provider.required and "Settings → Integrations → GPS" in gps_provider.help
    assert provider.latest_value_types == frozenset({"location"})
    # 60 calls a second per application per tenant, as the FAQ says.
    assert provider.requests_per_minute == 3600
    assert "faqs-apis-app-keys-client-keys" in provider.budget_source


def test_a_gps_provider_servicetitan_does_not_have_is_refused_with_how_to_create_it(app, fake):
    user = make_user()
    with pytest.raises(ValidationError) as refused:
        create_integration(user.account_id, {**VALUES, "gps_provider": "Samsara"})
    (message,) = refused.value.errors["credentials"]
    assert message.startswith(
        f'ServiceTitan found no GPS provider "Samsara" for tenant {TENANT} '
        "(HTTP 404: GPS provider Samsara was not found)."
    )
    assert "Settings → Integrations → GPS" in message and "API Application Access" in message
    assert fake.received("POST", PINGS) == []
    assert [r.path for r in fake.requests][-1].endswith("/gps-provider/Samsara/gps-pings")
    db.session.rollback()
    assert db.session.scalars(select(Integration)).all() == []


# -- telemetry to pings ----------------------------------------------------------


def test_positions_of_two_vehicles_become_one_batch_of_gps_pings(app, fake, account):
    integration = account.connect()
    assert reloaded(integration).status == "active"
    account.report(
        position(VIN_A, 0), position(VIN_B, 5, speed_mph=0.0, latitude=41.5, longitude=-88.08)
    )
    drain_target(integration.id)

    (request,) = ping_requests(fake)
    assert (request.method, request.path, request.query) == ("POST", PINGS, {})
    assert request.headers["Authorization"] == f"Bearer {next(iter(fake.tokens))}"
    assert request.headers["ST-App-Key"] == APP_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == [
        account.ping(VIN_A, 0, is_new=True),
        account.ping(
            VIN_B,
            5,
            is_new=True,
            speed=0.0,
            latitude=41.5,
            longitude=-88.08,
            message="Stopped",
            statusMessage="Stopped",
        ),
    ]
    assert statuses(integration) == ["delivered", "delivered"]
    assert reloaded(integration).queue_depth == 0
    # The units ServiceTitan now knows are not new in later pings.
    assert reloaded(integration).vehicle_map == {VIN_A: TENANT, VIN_B: TENANT}
    account.report(position(VIN_A, 60))
    drain_target(integration.id)
    assert ping_requests(fake)[-1].json == [account.ping(VIN_A, 60, is_new=False)]
    # What the attempt records show of the credentials is masked.
    for attempt in db.session.scalars(select(DeliveryAttempt)):
        shown = json.dumps(attempt.request_headers)
        assert next(iter(fake.tokens)) not in shown and APP_KEY not in shown
        assert attempt.request_headers["st-app-key"].endswith(APP_KEY[-4:])


def test_the_fake_refuses_a_ping_without_message_or_status_message_and_takes_ours(
    app, fake, account
):
    integration = account.connect()
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    (ours,) = ping_requests(fake)
    assert statuses(integration) == ["delivered"]
    assert ours.json[0]["message"] == "Moving at 30 mph, heading 90°"
    assert ours.json[0]["statusMessage"] == "Moving"

    # The same ping without the two strings, or with a null one, as the schema
    # refuses it: a problem-details 400, and nothing recorded.
    token = requests.post(
        f"{fake.url}/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=5,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "ST-App-Key": APP_KEY}
    recorded = len(fake.pings)
    without = {k: v for k, v in ours.json[0].items() if k not in ("message", "statusMessage")}
    refused = requests.post(fake.url + PINGS, json=[without], headers=headers, timeout=5)
    assert refused.status_code == 400
    problem = refused.json()
    assert set(problem) == {"type", "title", "status", "traceId", "errors", "data"}
    assert problem["status"] == 400
    assert problem["errors"] == {
        "[0].message": ["The message field is required."],
        "[0].statusMessage": ["The statusMessage field is required."],
    }
    nulled = requests.post(
        fake.url + PINGS, json=[{**ours.json[0], "statusMessage": None}], headers=headers, timeout=5
    )
    assert nulled.status_code == 400
    assert list(nulled.json()["errors"]) == ["[0].statusMessage"]
    assert len(fake.pings) == recorded
    again = requests.post(fake.url + PINGS, json=ours.json, headers=headers, timeout=5)
    assert again.status_code == 200 and again.json()[0]["status"] == "Success"


def test_each_integration_sends_to_its_own_gps_provider(app, fake, account):
    fake.gps_providers.add("ClearPath GPS")
    integration = account.connect(gps_provider="ClearPath GPS")
    assert integration.options["gps_provider"] == "ClearPath GPS"
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    # The name is escaped in the path (the fake records it as it came).
    path = f"/dispatch/v2/tenant/{TENANT}/gps-provider/ClearPath%20GPS/gps-pings"
    check, sent = fake.received("POST", r".*/gps-pings")
    assert (check.path, check.json) == (path, [])
    assert (sent.path, sent.json) == (path, [account.ping(VIN_A, 0, is_new=True)])
    assert statuses(integration) == ["delivered"]


def test_a_late_position_makes_no_ping(app, fake, account):
    integration = account.connect()
    account.report(position(VIN_A, 60))
    account.report(position(VIN_A, 30))  # an older fix, reported late
    assert [m.payload["ping"]["externalId"] for m in messages_of(integration)] == [
        account.external_id(VIN_A, 60)
    ]


def test_connecting_sends_each_vehicles_last_position_once(app, fake, account):
    # Truck 42 reported before the integration existed; Van 7 never did.
    account.report(position(VIN_A, 90, speed_mph=0.0, heading=180, ignition=False))
    integration = account.connect(sign=False)
    # One message, for Truck 42: Van 7 has no position to send.
    assert [m.payload["ping"]["unitId"] for m in messages_of(integration)] == [VIN_A]
    drain_target(integration.id)
    assert ping_requests(fake) == []  # nothing leaves before the release is signed

    sign_release(
        integration,
        {"signer_name": "Dana Whitfield", "signer_title": "Owner", "accept": True},
        account.user.id,
        "203.0.113.9",
    )
    db.session.commit()
    drain_target(integration.id)
    (request,) = ping_requests(fake)
    current = "Current position at connection"
    assert request.json == [
        account.ping(VIN_A, 90, is_new=True, speed=0.0, message=current, statusMessage="Stopped")
    ]
    assert statuses(integration) == ["delivered"]


def test_only_location_events_make_pings(app, fake, account):
    integration = account.connect()
    account.report(
        position(VIN_A, 0),
        position(VIN_A, 30, ignition=False, speed_mph=0.0),
        {"vin": VIN_A, "type": "heartbeat", "time": at(40)},
    )
    assert [m.payload["ping"]["externalId"] for m in messages_of(integration)] == [
        account.external_id(VIN_A, 0),
        account.external_id(VIN_A, 30),
    ]


def test_a_customers_own_app_key_replaces_fleethooks(app, fake, account):
    fake.app_key = "ak1.customers-own-app"
    integration = account.connect(api_key="ak1.customers-own-app")
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    (request,) = ping_requests(fake)
    assert request.headers["ST-App-Key"] == "ak1.customers-own-app"
    assert statuses(integration) == ["delivered"]


# -- per-ping answers under HTTP 200 --------------------------------------------


def test_a_ping_that_fails_is_retried_with_servicetitans_words_and_holds_back_its_vehicle(
    app, fake, account
):
    integration = account.connect()
    fake.fail_ping(account.external_id(VIN_A, 0), "GPS unit is temporarily locked")
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    drain_target(integration.id)

    first, second = messages_of(integration)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 200)
    assert first.last_error == (
        "ServiceTitan answered Fail for this ping: GPS unit is temporarily locked"
    )
    assert first.next_attempt_at > utcnow()
    # ServiceTitan took the later ping: delivered, not sent again.
    assert second.status == "delivered"
    assert reloaded(integration).status == "failing"
    attempt = db.session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.message_id == first.id)
    ).one()
    assert attempt.outcome == "failed"
    assert json.loads(attempt.response_body) == {
        "externalId": account.external_id(VIN_A, 0),
        "status": "Fail",
        "message": "GPS unit is temporarily locked",
    }

    # The other vehicle's newer position goes; the same vehicle's waits behind the
    # failed one ...
    account.report(position(VIN_B, 60), position(VIN_A, 30))
    drain_target(integration.id)
    assert ping_requests(fake)[-1].json == [account.ping(VIN_B, 60, is_new=False)]
    # ... and when the retry is due only the vehicle's newest position is sent
    # (latest wins: ServiceTitan shows where the technician is now).
    fake.failing.clear()
    make_due(integration)
    drain_target(integration.id)
    assert ping_requests(fake)[-1].json == [account.ping(VIN_A, 30, is_new=True)]
    assert statuses(integration) == ["superseded", "delivered", "delivered", "delivered"]
    assert reloaded(integration).status == "active"


def test_a_ping_servicetitan_calls_invalid_is_dead_and_the_rest_go_on(app, fake, account):
    integration = account.connect()
    fake.fail_ping(account.external_id(VIN_A, 0), "Latitude is out of range")
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    drain_target(integration.id)
    first, second = messages_of(integration)
    assert (first.status, first.last_error) == (
        "dead",
        "ServiceTitan refused this ping: Latitude is out of range",
    )
    assert second.status == "delivered"
    assert reloaded(integration).status == "active"
    assert reloaded(integration).queue_depth == 0


def test_a_ping_servicetitan_already_has_counts_as_delivered(app, fake, account):
    integration = account.connect()
    fake.fail_ping(account.external_id(VIN_A, 0), "Duplicate externalId")
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    assert statuses(integration) == ["delivered"]


# -- answers that ask a person, and 400s ---------------------------------------


def test_a_gps_provider_removed_in_servicetitan_needs_attention_with_its_words(app, fake, account):
    integration = account.connect()
    fake.gps_providers.clear()  # deactivated in ServiceTitan
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    drain_target(integration.id)
    found = reloaded(integration)
    assert found.status == "needs_attention"
    assert found.status_reason.startswith(
        f'Needs attention: ServiceTitan found no GPS provider "{GPS_PROVIDER}" for tenant '
        f"{TENANT} (HTTP 404: GPS provider {GPS_PROVIDER} was not found). "
        "Create it in ServiceTitan under Settings → Integrations → GPS"
    )
    # Nothing is lost: the positions wait, and nothing more is sent meanwhile.
    assert [(m.status, m.attempts) for m in messages_of(integration)] == [("pending", 1)] * 2
    assert found.queue_depth == 2
    sent = len(fake.received("POST", PINGS))
    drain_target(integration.id)
    assert len(fake.received("POST", PINGS)) == sent


def test_an_app_disconnected_from_the_tenant_needs_attention(app, fake, account):
    integration = account.connect()
    fake.tenant = "7654321"  # the app no longer reaches this tenant
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    found = reloaded(integration)
    assert found.status == "needs_attention"
    assert found.status_reason == (
        f"Needs attention: ServiceTitan refused access to tenant {TENANT} (HTTP 403: The "
        "application has no access to this tenant). Connect the app under Settings → "
        "Integrations → API Application Access, allow its access and select the GPS "
        f'provider "{GPS_PROVIDER}".'
    )
    assert statuses(integration) == ["pending"]


def problem_400(errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "traceId": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "errors": errors,
        "data": {},
    }


def test_a_400_naming_one_pings_data_kills_that_ping_and_sends_the_rest_again(
    app, fake, account, client
):
    vin_c = demo_vin(0)
    created = client.post(
        "/api/v1/vehicles", headers=account.headers, json={"name": "Truck 9", "vin": vin_c}
    )
    assert created.status_code == 201
    integration = account.connect()
    account.report(position(VIN_A, 0), position(VIN_B, 5), position(vin_c, 10))
    latitude = {"[1].latitude": ["The field latitude must be between -90 and 90."]}
    fake.fail_next(400, path="gps-pings", body=problem_400(latitude))
    drain_target(integration.id)

    refused, resent = ping_requests(fake)
    assert [ping["unitId"] for ping in refused.json] == [VIN_A, VIN_B, vin_c]
    assert [ping["unitId"] for ping in resent.json] == [VIN_A, vin_c]
    assert resent.json[0] == account.ping(VIN_A, 0, is_new=True)
    first, second, third = messages_of(integration)
    assert (first.status, third.status) == ("delivered", "delivered")
    assert (second.status, second.last_status_code, second.last_error) == (
        "dead",
        400,
        "ServiceTitan refused this ping: [1].latitude: The field latitude must be between "
        "-90 and 90.",
    )
    assert reloaded(integration).status == "active"
    assert reloaded(integration).queue_depth == 0


@pytest.mark.parametrize(
    "body",
    [
        problem_400(
            {
                "[0].street": ["The street field is required."],
                "[1].street": ["The street field is required."],
            }
        ),
        problem_400({"": ["A non-empty request body is required."]}),
        problem_400({}),
        "Bad Request",
    ],
    ids=["a-field-we-fill-alike", "the-request", "no-errors", "no-json"],
)
def test_a_400_refusing_the_pings_format_needs_attention_and_loses_nothing(
    app, fake, account, body
):
    integration = account.connect()
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    fake.fail_next(400, path="gps-pings", body=body.encode() if isinstance(body, str) else body)
    drain_target(integration.id)
    found = reloaded(integration)
    assert found.status == "needs_attention"
    assert found.status_reason.startswith(
        "Needs attention: ServiceTitan refused the GPS pings' format (HTTP 400: "
    )
    if isinstance(body, dict) and body["errors"].get("[0].street"):
        assert "[0].street: The street field is required." in found.status_reason
    assert "tell Fleethook support" in found.status_reason
    assert [(m.status, m.attempts) for m in messages_of(integration)] == [("pending", 1)] * 2
    assert len(ping_requests(fake)) == 1  # not sent again until a person acts


# -- the token -------------------------------------------------------------------


def test_one_token_serves_the_check_and_two_drains(app, fake, account):
    integration = account.connect()
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    account.report(position(VIN_A, 60))
    drain_target(integration.id)
    assert len(ping_requests(fake)) == 2
    assert len(token_requests(fake)) == 1
    assert statuses(integration) == ["delivered", "delivered"]


def test_a_token_near_its_expiry_is_renewed_before_use(app, fake, account):
    integration = account.connect()
    (key,) = [k for k, (token, _) in servicetitan_client._tokens.items() if token in fake.tokens]
    servicetitan_client._tokens[key] = (servicetitan_client._tokens[key][0], 0.0)  # expired
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    assert len(token_requests(fake)) == 2
    assert statuses(integration) == ["delivered"]


def test_a_401_fetches_a_new_token_once_and_sends_again(app, fake, account):
    integration = account.connect()
    old = next(iter(fake.tokens))
    fake.expire_tokens()
    account.report(position(VIN_A, 0))
    drain_target(integration.id)

    refused, accepted = fake.received("POST", PINGS)[1:]
    new = next(iter(fake.tokens))
    assert refused.headers["Authorization"] == f"Bearer {old}"
    assert accepted.headers["Authorization"] == f"Bearer {new}" and new != old
    assert refused.json == accepted.json == [account.ping(VIN_A, 0, is_new=True)]
    assert len(token_requests(fake)) == 2
    assert statuses(integration) == ["delivered"]


def test_a_second_401_needs_attention_and_keeps_the_queue(app, fake, account):
    integration = account.connect()
    fake.fail_next(401, times=2, path="gps-pings")
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    drain_target(integration.id)

    assert len(fake.received("POST", PINGS)) == 1 + 2  # the check, then two tries
    assert len(token_requests(fake)) == 2
    found = reloaded(integration)
    assert found.status == "needs_attention"
    assert found.status_reason == (
        "Needs attention: ServiceTitan refused the credentials (HTTP 401); update them to resume."
    )
    assert [(m.status, m.attempts) for m in messages_of(integration)] == [("pending", 1)] * 2
    assert found.queue_depth == 2
    drain_target(integration.id)  # held: nothing more is sent
    assert len(fake.received("POST", PINGS)) == 3


def test_client_credentials_revoked_in_servicetitan_need_attention(app, fake, account):
    integration = account.connect()
    fake.client_secret = "cs1.regenerated"
    fake.expire_tokens()
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    found = reloaded(integration)
    assert (found.status, found.status_reason) == (
        "needs_attention",
        "Needs attention: ServiceTitan did not accept this client id and secret.",
    )
    assert statuses(integration) == ["pending"]
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.outcome == "unauthorized" and attempt.status_code == 400
    assert "cs1." not in json.dumps(attempt.request_headers)


# -- throttling and server errors -----------------------------------------------


def test_429_waits_for_retry_after(app, fake, account):
    integration = account.connect()
    fake.fail_next(429, headers={"Retry-After": "120"}, path="gps-pings")
    account.report(position(VIN_A, 0), position(VIN_B, 5))
    drain_target(integration.id)
    now = utcnow()
    for message in messages_of(integration):
        assert (message.status, message.last_status_code) == ("pending", 429)
        wait = (message.next_attempt_at - now).total_seconds()
        assert 118 <= wait <= 121
    assert reloaded(integration).status == "failing"
    outcomes = {a.outcome for a in db.session.scalars(select(DeliveryAttempt))}
    assert outcomes == {"throttled"}


def test_500_is_retried_on_the_schedule_with_the_same_pings(app, fake, account):
    integration = account.connect()
    fake.fail_next(500, path="gps-pings")
    account.report(position(VIN_A, 0))
    drain_target(integration.id)
    (message,) = messages_of(integration)
    assert (message.status, message.attempts, message.last_status_code) == ("pending", 1, 500)
    assert 3 <= (message.next_attempt_at - utcnow()).total_seconds() <= 6
    assert reloaded(integration).status == "failing"

    make_due(integration)
    drain_target(integration.id)
    failed, sent = ping_requests(fake)
    assert failed.json == sent.json == [account.ping(VIN_A, 0, is_new=True)]
    assert statuses(integration) == ["delivered"]
    assert reloaded(integration).status == "active"


def test_the_fake_throttles_at_servicetitans_documented_limit(app, fake):
    """60 calls a second: the 61st within a second is a 429 with Retry-After."""
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    started = time.monotonic()
    with requests.Session() as session:
        answers = [
            session.post(f"{fake.url}/connect/token", data=form, timeout=5) for _ in range(61)
        ]
    codes = [answer.status_code for answer in answers]
    if 429 not in codes and time.monotonic() - started > 1.0:
        pytest.skip("the machine was too slow to send 61 requests within a second")
    assert codes == [200] * 60 + [429]
    throttled = answers[-1]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 2
    assert throttled.json()["statusCode"] == 429
    assert throttled.json()["message"].startswith("Rate limit is exceeded. Try again in ")


def test_a_burst_past_the_limit_is_retried_until_every_ping_is_delivered(
    app, fake, account, client
):
    # A test cannot reliably make 61 drains within one second: the fake's limit
    # is lowered to 3 a second, its 429 and Retry-After the same as at 60.
    vins = [demo_vin(index) for index in range(6)]
    for vin in vins:
        created = client.post(
            "/api/v1/vehicles",
            headers=account.headers,
            json={"name": f"Truck {vin[-3:]}", "vin": vin},
        )
        assert created.status_code == 201
    integration = account.connect()
    fake.throttle(3, 1.0)
    for seconds, vin in enumerate(vins):  # one position each, each drained at once
        account.report(position(vin, seconds))
        drain_target(integration.id)
    assert fake.throttled_count >= 1
    deadline = time.monotonic() + 30
    while "pending" in statuses(integration) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait for Retry-After: the retries are due when it says
        drain_target(integration.id)

    assert statuses(integration) == ["delivered"] * 6
    delivered = sorted(p["externalId"] for p in fake.pings)
    assert delivered == sorted(m.payload["ping"]["externalId"] for m in messages_of(integration))
    throttled = db.session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.status_code == 429)
    ).all()
    assert throttled and {a.outcome for a in throttled} == {"throttled"}
    # Each throttled ping was tried again only after the Retry-After it was given.
    for attempt in throttled:
        (after,) = db.session.scalars(
            select(DeliveryAttempt.attempted_at)
            .where(
                DeliveryAttempt.message_id == attempt.message_id,
                DeliveryAttempt.attempted_at > attempt.attempted_at,
            )
            .order_by(DeliveryAttempt.attempted_at)
            .limit(1)
        )
        waited = (after - attempt.attempted_at).total_seconds()
        assert waited >= float(attempt.response_headers["retry-after"])
    assert reloaded(integration).status == "active" and reloaded(integration).queue_depth == 0


def test_rounded_coordinates_are_what_servicetitan_gets(app, fake, account):
    integration = account.connect(coordinate_decimals=2, drop_driver_name=True)
    account.report(position(VIN_A, 0, latitude=41.95123, longitude=-87.80456))
    drain_target(integration.id)
    (request,) = ping_requests(fake)
    assert request.json == [account.ping(VIN_A, 0, is_new=True, latitude=41.95, longitude=-87.8)]
    answer = account.client.get(f"/api/v1/integrations/{integration.id}", headers=account.headers)
    assert (answer.json["coordinate_decimals"], answer.json["drop_driver_name"]) == (2, True)
