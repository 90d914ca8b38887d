"""ServiceMax on Salesforce against the fake org (tests/fakes/salesforce.py): the
OAuth connection (authorize URL, state, code exchange, tokens encrypted at rest,
refusals in plain words), the technician mapping, the way from a telemetry
report to the exact PATCH of a Technician record, the token renewal on 401, the
mapping of Salesforce's other answers, and the revocation on delete."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text, update

from database import utcnow
from errors import ValidationError
from extensions import db
from integrations.base import ProviderRejected, secrets_of
from integrations.lifecycle import (
    create_integration,
    delete_integration,
    sign_release,
    update_integration,
)
from integrations.models import Integration
from integrations.servicemax import (
    CONNECT_ONLY,
    RELEASE_REASON,
    SERVICEMAX,
    authorize_url,
    connect,
    new_state,
    reconnect,
    set_technicians,
    state_matches,
    technicians_text,
)
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, TargetStatus
from tests.conftest import bearer, make_user
from tests.fakes.salesforce import CLIENT_ID, CLIENT_SECRET, INVALID_SESSION, FakeSalesforce

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=2,
    FLEETHOOK_READ_TIMEOUT=2,
    FLEETHOOK_SALESFORCE_CLIENT_ID=CLIENT_ID,
    FLEETHOOK_SALESFORCE_CLIENT_SECRET=CLIENT_SECRET,
)

REDIRECT = "https://portal.example.com/integrations/servicemax/callback"
VIN = "1FUJGLDR3CLBP8834"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
PATCH_PATH = r"/services/data/v60\.0/sobjects/SVMXC__Service_Group_Members__c/\w+"
TOKEN_PATH = "/services/oauth2/token"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def salesforce(app):
    fake = FakeSalesforce().start()
    # The login URL is the fake's (its port is known only now); read at call time.
    app.config["FLEETHOOK_SALESFORCE_LOGIN_URL"] = fake.url
    yield fake
    fake.stop()


class Account:
    """An account with one vehicle, posting telemetry through the API."""

    def __init__(self, client) -> None:
        self.client = client
        self.user = make_user()
        self.account_id = self.user.account_id
        self.user_id = self.user.id
        self.headers = bearer(self.user)
        created = client.post("/api/v1/vehicles", headers=self.headers,
                              json={"name": "Truck 42", "vin": VIN})  # fmt: skip
        assert created.status_code == 201, created.json

    def post(self, *reports: dict) -> dict:
        response = self.client.post(
            "/api/v1/telemetry", headers=self.headers, json={"reports": list(reports)}
        )
        assert response.status_code == 202, response.json
        return response.json


@pytest.fixture
def account(client):
    return Account(client)


def assign(seconds: float, driver: str) -> dict:
    return {"vin": VIN, "type": "driver_assignment", "time": at(seconds), "driver": driver}


def position(seconds: float, latitude: float = 41.95, longitude: float = -87.80) -> dict:
    return {"vin": VIN, "type": "position", "time": at(seconds), "latitude": latitude,
            "longitude": longitude, "speed_mph": 30, "heading": 90, "ignition": True}  # fmt: skip


def connected(salesforce: FakeSalesforce, account: Account) -> Integration:
    integration = connect(account.account_id, salesforce.issue_code(REDIRECT), REDIRECT)
    db.session.commit()
    return integration


def released(salesforce: FakeSalesforce, account: Account, technicians: str) -> Integration:
    """Connected, technicians mapped, release signed: active."""
    integration = connected(salesforce, account)
    set_technicians(integration, technicians)
    sign_release(
        integration,
        {"signer_name": "Pat Reyes", "signer_title": "Fleet Manager", "accept": True},
        account.user_id,
        "203.0.113.9",
    )
    db.session.commit()
    assert integration.status == TargetStatus.ACTIVE
    return integration


def messages_of(integration_id: int) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == integration_id)
            .order_by(OutboxMessage.sequence)
        )
    )


def attempts_of(message: OutboxMessage) -> list[DeliveryAttempt]:
    return list(
        db.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message.id)
            .order_by(DeliveryAttempt.id)
        )
    )


def raw_credentials(integration_id: int) -> str:
    return db.session.execute(
        text("SELECT credentials FROM integration WHERE id = :id"), {"id": integration_id}
    ).scalar_one()


def reload(integration_id: int) -> Integration:
    db.session.expire_all()
    integration = db.session.get(Integration, integration_id)
    assert integration is not None
    return integration


# --- the OAuth flow ------------------------------------------------------------


def test_authorize_url_sends_the_user_to_the_login_url_with_our_app_and_state(salesforce):
    url = urlsplit(authorize_url("the-state", REDIRECT))
    assert f"{url.scheme}://{url.netloc}" == salesforce.url
    assert url.path == "/services/oauth2/authorize"
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "state": ["the-state"],
    }


@pytest.mark.app_config(FLEETHOOK_SALESFORCE_LOGIN_URL="https://test.salesforce.com/")
def test_a_sandbox_login_url_is_a_setting(app):
    assert authorize_url("s", REDIRECT).startswith(
        "https://test.salesforce.com/services/oauth2/authorize?response_type=code&"
    )


def test_state_is_random_and_must_match_exactly(app):
    state = new_state()
    assert len(state) >= 40 and new_state() != state
    assert state_matches(state, state)
    assert not state_matches(state, state[:-1] + ("A" if state[-1] != "A" else "B"))
    assert not state_matches(state, None)
    assert not state_matches(None, state)
    assert not state_matches(None, None)
    assert not state_matches("", "")


def test_connect_stores_the_tokens_encrypted_and_waits_for_the_release(salesforce, account):
    integration = connected(salesforce, account)

    [exchange] = salesforce.received("POST", TOKEN_PATH)
    assert exchange.headers["Content-Type"] == "application/x-www-form-urlencoded"
    code = exchange.form["code"]
    assert exchange.form == {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT,
    }
    [access_token] = salesforce.access_tokens
    [refresh_token] = salesforce.refresh_tokens
    # The one cheap authenticated call that checks the connection.
    [check] = salesforce.received("GET")
    assert check.path == "/services/data/v60.0/"
    assert check.headers["Authorization"] == f"Bearer {access_token}"

    integration = reload(integration.id)
    assert integration.provider == "servicemax" and integration.account_id == account.account_id
    assert secrets_of(integration) == {"access_token": access_token, "refresh_token": refresh_token}
    assert integration.options == {"instance_url": salesforce.url, "technicians": {}}
    assert (integration.status, integration.status_reason) == ("paused", RELEASE_REASON)
    assert SERVICEMAX.receives_locations
    raw = raw_credentials(integration.id)
    assert access_token not in raw and refresh_token not in raw and "token" not in raw


def test_connect_adds_to_the_session_without_committing(salesforce, account):
    integration = connect(account.account_id, salesforce.issue_code(REDIRECT), REDIRECT)
    assert integration in db.session.new
    db.session.rollback()
    assert db.session.scalars(select(Integration)).all() == []


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown code", "Salesforce refused the sign-in code: it expired or was used already"),
        ("code used twice", "Salesforce refused the sign-in code: it expired or was used already"),
        ("other redirect_uri", "This portal's address is not a Callback URL"),
        ("wrong client secret", "Salesforce does not accept Fleethook's connected app"),
    ],
)
def test_a_refused_code_is_explained_in_plain_words(app, salesforce, account, case, words):
    code = salesforce.issue_code(REDIRECT)
    redirect_uri = REDIRECT
    if case == "unknown code":
        code = "aPrxNotACode"
    elif case == "code used twice":
        connect(account.account_id, code, REDIRECT)
        db.session.rollback()
    elif case == "other redirect_uri":
        redirect_uri = "https://elsewhere.example.com/callback"
    else:
        app.config["FLEETHOOK_SALESFORCE_CLIENT_SECRET"] = "not-the-secret"
    with pytest.raises(ProviderRejected) as refused:
        connect(account.account_id, code, redirect_uri)
    assert str(refused.value).startswith(words)
    assert "Salesforce said:" in str(refused.value)
    assert not db.session.new
    db.session.commit()
    assert db.session.scalars(select(Integration)).all() == []


def test_a_connection_the_api_refuses_is_not_kept_and_its_token_revoked(salesforce, account):
    disabled = [{"errorCode": "API_DISABLED_FOR_ORG",
                 "message": "API is not enabled for this Organization or Partner"}]  # fmt: skip
    salesforce.fail_next(403, body=disabled, path="/services/data/")
    with pytest.raises(ProviderRejected) as refused:
        connect(account.account_id, salesforce.issue_code(REDIRECT), REDIRECT)
    assert str(refused.value) == (
        "Salesforce did not accept the connection: Salesforce refused the request (HTTP 403: "
        "API_DISABLED_FOR_ORG: API is not enabled for this Organization or Partner); check "
        "the connected user's access to ServiceMax technicians."
    )
    [revoked] = salesforce.received("POST", "/services/oauth2/revoke")
    assert salesforce.refresh_tokens == set() and not db.session.new


def test_the_create_form_cannot_make_a_servicemax_integration(salesforce, account):
    with pytest.raises(ValidationError) as refused:
        create_integration(account.account_id, {"provider": "servicemax"})
    assert refused.value.errors == {"credentials": [CONNECT_ONLY]}
    with pytest.raises(ValidationError) as refused:
        create_integration(account.account_id, {"provider": "servicemax", "access_token": "x"})
    assert refused.value.errors == {"access_token": ["Not a field of this provider."]}
    assert salesforce.requests == [] and not db.session.new


# --- the technicians -------------------------------------------------------------


def test_technicians_are_read_from_lines(salesforce, account):
    integration = connected(salesforce, account)
    set_technicians(
        integration,
        "Dana Whitfield = a0B5e00000AbCdEFGH\n\n  Sam   Ortiz=a0B5e00000AbCdE  \r\n",
    )
    assert integration.options == {
        "instance_url": salesforce.url,
        "technicians": {"Dana Whitfield": "a0B5e00000AbCdEFGH", "Sam Ortiz": "a0B5e00000AbCdE"},
    }
    assert technicians_text(integration) == (
        "Dana Whitfield = a0B5e00000AbCdEFGH\nSam Ortiz = a0B5e00000AbCdE"
    )
    set_technicians(integration, "")
    assert integration.options["technicians"] == {}


def test_bad_technician_lines_are_named_and_change_nothing(salesforce, account):
    integration = connected(salesforce, account)
    set_technicians(integration, "Dana Whitfield = a0B5e00000AbCdEFGH")
    with pytest.raises(ValidationError) as refused:
        set_technicians(
            integration,
            "Dana Whitfield a0B5e00000AbCdEFGH\n"
            "Sam Ortiz = a0B-not-an-id\n"
            "= a0B5e00000AbCdEFGH\n"
            "Lee Park = a0B5e00000AbCdEFGH\n"
            "lee  park = a0B5e00000AbCdEFGX\n"
            f"{'N' * 101} = a0B5e00000AbCdEFGH\n",
        )
    assert refused.value.errors == {
        "technicians": [
            'Line 1: write it as "Driver Name = Technician record Id".',
            'Line 2: "a0B-not-an-id" is not a Salesforce record Id (15 or 18 letters and '
            "digits, like a0B5e00000AbCdEFGH).",
            'Line 3: write it as "Driver Name = Technician record Id".',
            "Line 5: lee park is already on line 4; a driver is one technician.",
            "Line 6: a driver name has at most 100 characters.",
        ]
    }
    assert integration.options["technicians"] == {"Dana Whitfield": "a0B5e00000AbCdEFGH"}


# --- from telemetry to Salesforce ------------------------------------------------------


def test_a_position_of_a_mapped_driver_patches_the_technician(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    access_token = secrets_of(integration)["access_token"]
    account.post(assign(0, "Dana Whitfield"), position(60, 41.5250, -88.0817))

    [message] = messages_of(integration.id)
    assert message.event_type == "location"
    assert message.payload == {
        "type": "location", "technician_id": technician, "driver": "Dana Whitfield",
        "vin": VIN, "latitude": 41.525, "longitude": -88.0817, "captured_on": at(60),
    }  # fmt: skip
    drain_target(integration.id)

    [patch] = salesforce.received("PATCH")
    assert (
        patch.path == f"/services/data/v60.0/sobjects/SVMXC__Service_Group_Members__c/{technician}"
    )
    assert patch.headers["Authorization"] == f"Bearer {access_token}"
    assert patch.headers["Content-Type"] == "application/json"
    assert patch.headers["Accept"] == "application/json"
    assert patch.json == {
        "SVMXC__Latitude__c": 41.525,
        "SVMXC__Longitude__c": -88.0817,
        "SVMXC__Latlong_Captured_On__c": at(60),
    }
    assert salesforce.technicians[technician]["SVMXC__Latlong_Captured_On__c"] == at(60)
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.DELIVERED and message.last_status_code == 204
    [attempt] = attempts_of(message)
    assert attempt.outcome == "delivered"
    assert access_token not in str(attempt.request_headers)
    assert attempt.request_headers["Authorization"].endswith(access_token[-4:])
    assert reload(integration.id).queue_depth == 0


def test_vehicles_without_a_mapped_driver_send_nothing(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"dana  WHITFIELD = {technician}")
    account.post(position(0))  # no driver yet
    account.post(assign(10, "Sam Ortiz"), position(20))  # a driver with no technician
    assert messages_of(integration.id) == []
    account.post(assign(30, "Dana Whitfield"), position(40))  # names match loosely
    [message] = messages_of(integration.id)
    assert message.payload["technician_id"] == technician


def test_locations_queue_until_the_release_is_signed(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = connected(salesforce, account)
    set_technicians(integration, f"Dana Whitfield = {technician}")
    db.session.commit()
    account.post(assign(0, "Dana Whitfield"), position(60))
    drain_target(integration.id)
    assert salesforce.received("PATCH") == []
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.PENDING]
    sign_release(
        reload(integration.id),
        {"signer_name": "Pat Reyes", "signer_title": "Fleet Manager", "accept": True},
        account.user_id,
        "203.0.113.9",
    )
    db.session.commit()
    drain_target(integration.id)
    assert len(salesforce.received("PATCH")) == 1
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.DELIVERED]


# --- the token renewal --------------------------------------------------------------


def test_an_expired_access_token_is_renewed_once_and_the_patch_repeated(
    salesforce, account, caplog
):
    caplog.set_level(logging.DEBUG)
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    old = secrets_of(integration)
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.expire_access_tokens()
    before = len(salesforce.requests)

    drain_target(integration.id)

    first, renewal, second = salesforce.requests[before:]
    assert (first.method, first.headers["Authorization"]) == (
        "PATCH", f"Bearer {old['access_token']}")  # fmt: skip
    assert (renewal.method, renewal.path) == ("POST", TOKEN_PATH)
    assert renewal.form == {
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    [new_token] = salesforce.access_tokens
    assert new_token != old["access_token"]
    assert (second.method, second.path) == ("PATCH", first.path)
    assert second.headers["Authorization"] == f"Bearer {new_token}"
    assert second.json == first.json

    integration = reload(integration.id)
    assert secrets_of(integration) == {**old, "access_token": new_token}
    assert new_token not in raw_credentials(integration.id)
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.DELIVERED and message.attempts == 1
    assert integration.status == TargetStatus.ACTIVE
    for token in (new_token, old["access_token"], old["refresh_token"]):
        assert token not in caplog.text


def test_a_refused_renewal_needs_attention_and_keeps_the_queue(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60), position(120))
    old_refresh_token = secrets_of(integration)["refresh_token"]
    salesforce.revoke_refresh_tokens()
    before = len(salesforce.requests)

    drain_target(integration.id)

    assert [(r.method, r.path) for r in salesforce.requests[before:]] == [
        ("PATCH", f"/services/data/v60.0/sobjects/SVMXC__Service_Group_Members__c/{technician}"),
        ("POST", TOKEN_PATH),
    ]
    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert integration.status_reason == (
        "Needs attention: Salesforce refused to renew the access; connect with Salesforce "
        "again. (Salesforce said: invalid_grant: expired access/refresh token)"
    )
    first, second = messages_of(integration.id)
    assert (first.status, second.status) == (MessageStatus.PENDING, MessageStatus.PENDING)
    assert integration.queue_depth == 2
    [attempt] = attempts_of(first)
    assert attempt.outcome == "unauthorized"
    drain_target(integration.id)  # held: nothing is sent
    assert len(salesforce.requests) == before + 2

    # Connecting again mends it, and the queue goes out in order.
    reconnect(integration, salesforce.issue_code(REDIRECT), REDIRECT)
    db.session.commit()
    assert reload(integration.id).status == TargetStatus.ACTIVE
    [revoked] = salesforce.received("POST", "/services/oauth2/revoke")  # the old one, for good
    assert revoked.form == {"token": old_refresh_token}
    # The head waits for its scheduled retry (seconds after one attempt); let it pass.
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    drain_target(integration.id)
    patches = salesforce.received("PATCH")[1:]
    assert [p.json["SVMXC__Latlong_Captured_On__c"] for p in patches] == [at(60), at(120)]
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.DELIVERED] * 2


def test_a_reconnection_the_api_refuses_keeps_the_old_tokens(salesforce, account):
    integration = connected(salesforce, account)
    stored, options = secrets_of(integration), dict(integration.options)
    salesforce.fail_next(403, path="/services/data/")
    with pytest.raises(ProviderRejected):
        reconnect(integration, salesforce.issue_code(REDIRECT), REDIRECT)
    assert (secrets_of(integration), integration.options) == (stored, options)
    [revoked] = salesforce.received("POST", "/services/oauth2/revoke")
    assert revoked.form["token"] != stored["refresh_token"]
    assert salesforce.refresh_tokens == {stored["refresh_token"]}


def test_a_second_401_after_renewing_needs_attention(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.fail_next(401, times=2, body=INVALID_SESSION, path="/sobjects/")
    drain_target(integration.id)

    assert len(salesforce.received("PATCH")) == 2
    assert len(salesforce.received("POST", TOKEN_PATH)) == 2  # the connection's and one renewal
    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert integration.status_reason == (
        "Needs attention: Salesforce refused the access token even after renewing it "
        "(HTTP 401); connect with Salesforce again."
    )
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.PENDING
    assert message.last_error == (
        "Salesforce answered HTTP 401: INVALID_SESSION_ID: Session expired or invalid"
    )


def test_updating_the_integration_checks_it_again_and_keeps_its_options(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    integration.status = TargetStatus.NEEDS_ATTENTION.value
    db.session.commit()
    salesforce.expire_access_tokens()
    before = len(salesforce.requests)

    update_integration(integration, {})
    db.session.commit()

    assert [(r.method, r.path) for r in salesforce.requests[before:]] == [
        ("GET", "/services/data/v60.0/"),
        ("POST", TOKEN_PATH),
        ("GET", "/services/data/v60.0/"),
    ]
    integration = reload(integration.id)
    assert integration.status == TargetStatus.ACTIVE
    assert integration.options == {
        "instance_url": salesforce.url,
        "technicians": {"Dana Whitfield": technician},
    }
    [new_token] = salesforce.access_tokens
    assert secrets_of(integration)["access_token"] == new_token


# --- Salesforce's other answers ---------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, headers, wait",
    [
        (429, {"error": "slow down"}, {"Retry-After": "120"}, (120, 120)),
        (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], {"Retry-After": "60"},
         (60, 60)),
        (500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred"}], {},
         (4, 6)),
        (403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
         {}, (4, 6)),
    ],
)  # fmt: skip
def test_throttling_and_server_errors_are_retried_in_order(
    salesforce, account, status, body, headers, wait
):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60), position(120))
    salesforce.fail_next(status, body=body, headers=headers, path="/sobjects/")
    started = utcnow()
    drain_target(integration.id)

    assert len(salesforce.received("PATCH")) == 1  # the second waits behind the first
    first, second = messages_of(integration.id)
    assert (first.status, second.status) == (MessageStatus.PENDING, MessageStatus.PENDING)
    assert (first.attempts, second.attempts) == (1, 0)
    delay = (first.next_attempt_at - started).total_seconds()
    assert wait[0] - 1 <= delay <= wait[1] + 1
    integration = reload(integration.id)
    assert integration.status == TargetStatus.FAILING
    assert integration.status_reason == f"Retrying: the last attempt got HTTP {status}"
    [attempt] = attempts_of(first)
    assert attempt.outcome == ("throttled" if "Retry-After" in headers else "failed")


def test_an_unknown_technician_kills_only_its_message(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, "Dana Whitfield = a0B5e0000099999999")
    account.post(assign(0, "Dana Whitfield"), position(60))
    set_technicians(integration, f"Dana Whitfield = {technician}")
    db.session.commit()
    account.post(position(120))
    drain_target(integration.id)

    assert [p.path.rsplit("/", 1)[1] for p in salesforce.received("PATCH")] == [
        "a0B5e0000099999999", technician]  # fmt: skip
    dead, delivered = messages_of(integration.id)
    assert dead.status == MessageStatus.DEAD
    assert dead.last_error == (
        "Salesforce answered HTTP 404: NOT_FOUND: The requested resource does not exist"
    )
    assert delivered.status == MessageStatus.DELIVERED
    integration = reload(integration.id)
    assert (integration.status, integration.queue_depth) == (TargetStatus.ACTIVE, 0)


# --- delete -----------------------------------------------------------------------------


def test_delete_revokes_the_token_at_salesforce(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(salesforce, account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    refresh_token = secrets_of(integration)["refresh_token"]

    delete_integration(integration)
    db.session.commit()

    [revoke] = salesforce.received("POST", "/services/oauth2/revoke")
    assert revoke.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert revoke.form == {"token": refresh_token}
    assert salesforce.refresh_tokens == set() and salesforce.access_tokens == {}
    assert db.session.scalars(select(Integration)).all() == []
    assert db.session.scalars(select(OutboxMessage)).all() == []


def test_a_failed_revocation_is_logged_without_the_token(salesforce, account, caplog):
    integration = connected(salesforce, account)
    refresh_token = secrets_of(integration)["refresh_token"]
    salesforce.fail_next(500, path="/services/oauth2/revoke")

    delete_integration(integration)
    db.session.commit()

    assert db.session.scalars(select(Integration)).all() == []
    assert f"Salesforce did not revoke the token of integration {integration.id}" in caplog.text
    assert "HTTP 500" in caplog.text and refresh_token not in caplog.text
