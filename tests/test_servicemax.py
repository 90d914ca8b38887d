"""ServiceMax on Salesforce against fake orgs (tests/fakes/salesforce.py) that
follow Salesforce's published OAuth and REST documentation: the sign-in with PKCE
at the integration's own login host (production, sandbox or My Domain), the
callback URL from FLEETHOOK_PUBLIC_URL, tokens encrypted at rest and refusals in
plain words; the technician mapping and the drivers without one; telemetry in
through the ingest API and the exact sObject Collections update out (up to 200
technicians a call, one position each); the token renewal on 401; what each of
Salesforce's answers leads to (Needs attention, throttling, a dead message); the
initial sync; and the revocation on delete."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, text, update

from core.config import ConfigError, parse_public_url
from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from events.catalogue import EventType
from integrations.base import CURRENT_STATE, RELEASE_REASON, ProviderRejected, secrets_of
from integrations.lifecycle import (
    create_integration,
    delete_integration,
    send_current_state,
    sign_release,
    update_integration,
)
from integrations.models import Integration
from integrations.servicemax.provider import (
    CONNECT_ONLY,
    SERVICEMAX,
    connect_integration,
    reconnect_integration,
)
from integrations.servicemax.signin import (
    MY_DOMAIN,
    PRODUCTION,
    SANDBOX,
    LoginHost,
    SignIn,
    authorize_url,
    login_host_from,
    new_code_verifier,
    new_state,
    start_sign_in,
    state_matches,
)
from integrations.servicemax.technicians import set_technicians, technicians_text
from integrations.servicemax.views import OAUTH_STATE
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, TargetStatus
from tests.conftest import bearer, make_user
from tests.fakes.salesforce import (
    CAPTURED_ON,
    CLIENT_ID,
    CLIENT_SECRET,
    INVALID_SESSION,
    LATITUDE,
    FakeSalesforce,
    s256,
)

PUBLIC_URL = "https://portal.example.com"
REDIRECT = f"{PUBLIC_URL}/integrations/servicemax/callback"

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=2,
    FLEETHOOK_READ_TIMEOUT=2,
    FLEETHOOK_SALESFORCE_CLIENT_ID=CLIENT_ID,
    FLEETHOOK_SALESFORCE_CLIENT_SECRET=CLIENT_SECRET,
    FLEETHOOK_PUBLIC_URL=PUBLIC_URL,
)

VIN = "1FUJGLDR3CLBP8834"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
COLLECTIONS = r"/services/data/v60\.0/composite/sobjects"
TOKEN_PATH = "/services/oauth2/token"
TECHNICIAN = "SVMXC__Service_Group_Members__c"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def start_fake(**settings: Any) -> FakeSalesforce:
    """A fake org whose connected app lists our callback and requires PKCE."""
    return FakeSalesforce(callback_urls={REDIRECT}, require_pkce=True, **settings).start()


@pytest.fixture
def salesforce(app) -> Iterator[FakeSalesforce]:
    fake = start_fake()
    # The login URL is the fake's (its port is known only now); read at call time.
    app.config["FLEETHOOK_SALESFORCE_LOGIN_URL"] = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def sandbox(app) -> Iterator[FakeSalesforce]:
    """A second org, the sandbox login host (test.salesforce.com's stand-in)."""
    fake = start_fake()
    app.config["FLEETHOOK_SALESFORCE_SANDBOX_LOGIN_URL"] = fake.url
    yield fake
    fake.stop()


class Account:
    """An account with vehicles, posting telemetry through the API."""

    def __init__(self, client) -> None:
        self.client = client
        self.user = make_user()
        self.account_id = self.user.account_id
        self.user_id = self.user.id
        self.headers = bearer(self.user)
        self.add_vehicle(VIN)

    def add_vehicle(self, vin: str) -> None:
        created = self.client.post(
            "/api/v1/vehicles", headers=self.headers, json={"name": f"Truck {vin[-4:]}", "vin": vin}
        )
        assert created.status_code == 201, created.json

    def post(self, *reports: dict) -> dict:
        response = self.client.post(
            "/api/v1/telemetry", headers=self.headers, json={"reports": list(reports)}
        )
        assert response.status_code == 202, response.json
        return response.json


@pytest.fixture
def account(client) -> Account:
    return Account(client)


def assign(seconds: float, driver: str, vin: str = VIN) -> dict:
    return {"vin": vin, "type": "driver_assignment", "time": at(seconds), "driver": driver}


def position(
    seconds: float, latitude: float = 41.95, longitude: float = -87.80, vin: str = VIN
) -> dict:
    return {
        "vin": vin,
        "type": "position",
        "time": at(seconds),
        "latitude": latitude,
        "longitude": longitude,
        "speed_mph": 30,
        "heading": 90,
        "ignition": True,
    }


def browser(url: str) -> dict[str, str]:
    """What the user's browser does with the authorize URL: Salesforce's login page
    (the fake allows at once) sends it back to the callback; its query."""
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def signed_in(login: LoginHost | None = None) -> tuple[str, SignIn]:
    """A sign-in started as the connect page does, and the code Salesforce sent."""
    sign_in = start_sign_in(login or LoginHost(PRODUCTION), REDIRECT)
    back = browser(authorize_url(sign_in))
    assert back["state"] == sign_in.state, back
    return back["code"], sign_in


def connected(account: Account, login: LoginHost | None = None) -> Integration:
    code, sign_in = signed_in(login)
    integration = connect_integration(account.account_id, code, sign_in)
    db.session.commit()
    return integration


def released(account: Account, technicians: str, login: LoginHost | None = None) -> Integration:
    """Connected, technicians mapped, release signed: active."""
    integration = connected(account, login)
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


def records_of(request: Any) -> list[dict]:
    return request.json["records"]


# --- the OAuth flow with PKCE ------------------------------------------------------


def test_authorize_url_carries_the_pkce_challenge_never_the_verifier(salesforce):
    sign_in = start_sign_in(LoginHost(PRODUCTION), REDIRECT)
    url = urlsplit(authorize_url(sign_in))
    assert f"{url.scheme}://{url.netloc}" == salesforce.url
    assert url.path == "/services/oauth2/authorize"
    assert parse_qs(url.query) == {
        "response_type": ["code"],
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT],
        "state": [sign_in.state],
        "code_challenge": [s256(sign_in.code_verifier)],
        "code_challenge_method": ["S256"],
    }
    assert sign_in.code_verifier not in authorize_url(sign_in)
    assert 43 <= len(sign_in.code_verifier) <= 128 and new_code_verifier() != new_code_verifier()


def test_state_is_random_and_must_match_exactly(app):
    state = new_state()
    assert len(state) >= 40 and new_state() != state
    assert state_matches(state, state)
    assert not state_matches(state, state[:-1] + ("A" if state[-1] != "A" else "B"))
    assert not state_matches(state, None)
    assert not state_matches(None, state)
    assert not state_matches(None, None)
    assert not state_matches("", "")


def test_the_fake_refuses_a_code_exchange_without_the_right_verifier_and_ours_connects(
    salesforce, account
):
    def exchange(code: str, **verifier: str) -> requests.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT,
            **verifier,
        }
        return requests.post(f"{salesforce.url}{TOKEN_PATH}", data=form, timeout=5)

    refused = {"error": "invalid_grant", "error_description": "invalid code verifier"}
    code, _ = signed_in()
    assert exchange(code).json() == refused  # no verifier
    code, _ = signed_in()
    assert exchange(code, code_verifier=new_code_verifier()).json() == refused  # another one
    # An org that requires PKCE refuses a sign-in without a challenge outright.
    plain = authorize_url(start_sign_in(LoginHost(PRODUCTION), REDIRECT)).split("&code_challenge")
    assert browser(plain[0])["error_description"] == "missing required code challenge"
    assert salesforce.refresh_tokens == set()

    # Ours: the verifier this sign-in started with, and the integration is made.
    code, sign_in = signed_in()
    with pytest.raises(ProviderRejected) as wrong:
        connect_integration(
            account.account_id, code, dataclasses.replace(sign_in, code_verifier="x" * 50)
        )
    assert str(wrong.value).startswith(
        "Salesforce refused the sign-in: its proof key (PKCE code verifier) does not match"
    )
    assert not db.session.new and salesforce.refresh_tokens == set()
    code, sign_in = signed_in()
    integration = connect_integration(account.account_id, code, sign_in)
    db.session.commit()
    last = salesforce.received("POST", TOKEN_PATH)[-1]
    assert last.form["code_verifier"] == sign_in.code_verifier
    assert [integration.id] == [i.id for i in db.session.scalars(select(Integration))]


def test_connect_stores_the_tokens_encrypted_and_waits_for_the_release(salesforce, account):
    integration = connected(account)

    [exchange] = salesforce.received("POST", TOKEN_PATH)
    assert exchange.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert exchange.form == {
        "grant_type": "authorization_code",
        "code": exchange.form["code"],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        "code_verifier": exchange.form["code_verifier"],
    }
    [access_token] = salesforce.access_tokens
    [refresh_token] = salesforce.refresh_tokens
    # The one cheap authenticated call that checks the connection.
    [check] = salesforce.received("GET", r"/services/data/.*")
    assert check.path == "/services/data/v60.0/"
    assert check.headers["Authorization"] == f"Bearer {access_token}"

    integration = reload(integration.id)
    assert integration.provider == "servicemax" and integration.account_id == account.account_id
    assert secrets_of(integration) == {"access_token": access_token, "refresh_token": refresh_token}
    assert integration.options == {
        "instance_url": salesforce.url,
        "technicians": {},
        "login_host": "production",
    }
    assert (integration.status, integration.status_reason) == ("paused", RELEASE_REASON)
    assert integration.rate_limit * 60 == pytest.approx(SERVICEMAX.requests_per_minute)
    raw = raw_credentials(integration.id)
    assert access_token not in raw and refresh_token not in raw and "token" not in raw


def test_connect_adds_to_the_session_without_committing(salesforce, account):
    code, sign_in = signed_in()
    integration = connect_integration(account.account_id, code, sign_in)
    assert integration in db.session  # flushed (for its id), not committed
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
    code, sign_in = signed_in()
    if case == "unknown code":
        code = "aPrxNotACode"
    elif case == "code used twice":
        connect_integration(account.account_id, code, sign_in)
        db.session.rollback()
    elif case == "other redirect_uri":
        sign_in = dataclasses.replace(sign_in, redirect_uri="https://elsewhere.example.com/cb")
    else:
        app.config["FLEETHOOK_SALESFORCE_CLIENT_SECRET"] = "not-the-secret"
    with pytest.raises(ProviderRejected) as refused:
        connect_integration(account.account_id, code, sign_in)
    assert str(refused.value).startswith(words)
    assert "Salesforce said:" in str(refused.value)
    assert not db.session.new
    db.session.commit()
    assert db.session.scalars(select(Integration)).all() == []


def test_a_connection_the_api_refuses_is_not_kept_and_its_token_revoked(salesforce, account):
    disabled = [
        {
            "errorCode": "API_DISABLED_FOR_ORG",
            "message": "API is not enabled for this Organization or Partner",
        }
    ]
    code, sign_in = signed_in()
    salesforce.fail_next(403, body=disabled, path="/services/data/")
    with pytest.raises(ProviderRejected) as refused:
        connect_integration(account.account_id, code, sign_in)
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


# --- the login host ------------------------------------------------------------------


def test_a_sandbox_integration_talks_only_to_its_own_login_host(salesforce, sandbox, account):
    technician = sandbox.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}", LoginHost(SANDBOX))
    assert integration.options["login_host"] == "sandbox"
    account.post(assign(0, "Dana Whitfield"), position(60))
    sandbox.expire_access_tokens()  # the drain must renew: at the sandbox's host
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.DELIVERED]
    delete_integration(reload(integration.id))
    db.session.commit()

    sandbox_host = urlsplit(sandbox.url).netloc
    assert [(r.method, r.path) for r in sandbox.requests] == [
        ("GET", "/services/oauth2/authorize"),
        ("POST", TOKEN_PATH),  # the code, with its verifier
        ("GET", "/services/data/v60.0/"),
        ("PATCH", "/services/data/v60.0/composite/sobjects"),  # 401: expired
        ("POST", TOKEN_PATH),  # renewed
        ("PATCH", "/services/data/v60.0/composite/sobjects"),
        ("POST", "/services/oauth2/revoke"),
    ]
    assert sandbox.hosts() == {sandbox_host}
    assert salesforce.requests == [], "the production login host was called"


def test_the_my_domain_host_is_checked_and_used(salesforce, account):
    login = login_host_from(
        {"login_host": "my_domain", "my_domain": " https://Acme.my.salesforce.com/ "}
    )
    assert login == LoginHost(MY_DOMAIN, "https://acme.my.salesforce.com")
    assert authorize_url(start_sign_in(login, REDIRECT)).startswith(
        "https://acme.my.salesforce.com/services/oauth2/authorize?response_type=code&"
    )
    sandbox_domain = "https://acme--uat.sandbox.my.salesforce.com"
    assert login_host_from({"login_host": "my_domain", "my_domain": sandbox_domain}).url == (
        sandbox_domain
    )
    assert login_host_from({}) == LoginHost(PRODUCTION)
    assert login_host_from({"login_host": "sandbox", "my_domain": "ignored"}) == LoginHost(SANDBOX)


@pytest.mark.parametrize(
    "values, field, words",
    [
        ({"login_host": "staging"}, "login_host", "One of: production, sandbox, my_domain."),
        ({"login_host": "my_domain"}, "my_domain", "Enter your org's My Domain address"),
        (
            {"login_host": "my_domain", "my_domain": "acme.my.salesforce.com"},
            "my_domain",
            "Enter your org's My Domain address starting with https://",
        ),
        (
            {"login_host": "my_domain", "my_domain": "http://acme.my.salesforce.com"},
            "my_domain",
            "Enter your org's My Domain address starting with https://",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://acme.my.salesforce.com.evil.example"},
            "my_domain",
            "acme.my.salesforce.com.evil.example is not a Salesforce address",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://evilsalesforce.com"},
            "my_domain",
            "evilsalesforce.com is not a Salesforce address",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://127.0.0.1"},
            "my_domain",
            "127.0.0.1 is not a Salesforce address",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://acme.my.salesforce.com/login"},
            "my_domain",
            "Only the address itself",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://acme.my.salesforce.com:8443"},
            "my_domain",
            "Only the address itself",
        ),
        (
            {"login_host": "my_domain", "my_domain": "https://user@acme.my.salesforce.com"},
            "my_domain",
            "Only the address itself",
        ),
    ],
)
def test_a_bad_login_host_is_refused_in_words(app, values, field, words):
    with pytest.raises(ValidationError) as refused:
        login_host_from(values)
    [message] = refused.value.errors[field]
    assert message.startswith(words), message


def test_changing_the_login_host_needs_a_new_sign_in_and_saves_nothing(salesforce, account):
    integration = connected(account)
    options, before = dict(integration.options), len(salesforce.requests)
    my_domain = {"login_host": "my_domain", "my_domain": "https://acme.my.salesforce.com"}
    for values in ({"login_host": "sandbox"}, my_domain):
        with pytest.raises(ValidationError) as refused:
            update_integration(integration, values)
        [words] = refused.value.errors["credentials"]
        assert words.startswith(f"This integration signed in at {salesforce.url}; to use ")
        assert "Sign in to Salesforce again" in words
        db.session.rollback()
        assert reload(integration.id).options == options
    with pytest.raises(ValidationError) as refused:
        update_integration(
            integration, {"login_host": "my_domain", "my_domain": "https://x.example"}
        )
    assert "is not a Salesforce address" in refused.value.errors["my_domain"][0]
    db.session.rollback()
    assert reload(integration.id).options == options
    assert len(salesforce.requests) == before  # nothing reached Salesforce


def test_servicemax_cannot_leave_out_drivers_names_it_matches_technicians_by(salesforce, account):
    integration = connected(account)
    before = len(salesforce.requests)
    with pytest.raises(ValidationError) as refused:
        update_integration(integration, {"drop_driver_name": True})
    assert (
        "matches each driver to a technician by name" in refused.value.errors["drop_driver_name"][0]
    )
    db.session.rollback()
    assert reload(integration.id).drop_driver_name is False
    assert len(salesforce.requests) == before
    # Rounding its coordinates is fine.
    update_integration(integration, {"coordinate_decimals": 3})
    db.session.commit()
    assert reload(integration.id).coordinate_decimals == 3


# --- the portal's connect and callback --------------------------------------------------


def portal_sign_in(client, path: str) -> Any:
    """The browser's round trip: our connect page, Salesforce, our callback."""
    start = client.get(path)
    assert start.status_code == 302 and "/services/oauth2/authorize" in start.headers["Location"]
    back = browser(start.headers["Location"])
    return client.get(
        f"/integrations/servicemax/callback?code={back['code']}&state={back['state']}"
    )


def test_the_portal_signs_in_with_pkce_and_the_public_callback_url(admin, client, salesforce):
    # A Host header the client chose does not reach the callback URL.
    cookie = client.get_cookie("fleethook_session")
    client.set_cookie("fleethook_session", cookie.value, domain="evil.example.com")
    start = client.get("/integrations/servicemax/connect", base_url="http://evil.example.com")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    assert query["redirect_uri"] == REDIRECT
    with client.session_transaction(base_url="http://evil.example.com") as session:
        kept = session[OAUTH_STATE]
    # The session (a signed cookie) holds the verifier only encrypted.
    verifier = SignIn.from_session(kept).code_verifier
    assert query["code_challenge"] == s256(verifier) and verifier not in str(kept)
    assert verifier not in start.headers["Location"]

    done = portal_sign_in(client, "/integrations/servicemax/connect")
    assert done.status_code == 302, done.data
    [integration] = db.session.scalars(select(Integration)).all()
    assert done.headers["Location"].endswith(f"/integrations/{integration.id}/release")
    assert salesforce.received("POST", TOKEN_PATH)[-1].form["redirect_uri"] == REDIRECT


def test_the_portal_signs_in_at_the_chosen_login_host(admin, client, salesforce, sandbox):
    done = portal_sign_in(client, "/integrations/servicemax/connect?login_host=sandbox")
    assert done.status_code == 302, done.data
    [integration] = db.session.scalars(select(Integration)).all()
    assert integration.options["login_host"] == "sandbox" and salesforce.requests == []
    # Signing in again keeps the integration's own host unless another is chosen.
    again = portal_sign_in(client, f"/integrations/servicemax/connect?integration={integration.id}")
    assert again.status_code == 302 and salesforce.requests == []
    refused = client.get("/integrations/servicemax/connect?login_host=my_domain&my_domain=http://x")
    assert refused.status_code == 302 and "/services/oauth2" not in refused.headers["Location"]
    with client.session_transaction() as session:
        assert "Enter your org's My Domain address" in str(session.get("_flashes"))


@pytest.mark.app_config(FLEETHOOK_PUBLIC_URL="", FLEETHOOK_ENV="production")
def test_production_refuses_to_start_a_sign_in_without_a_public_url(admin, client, salesforce):
    start = client.get("/integrations/servicemax/connect")
    assert start.status_code == 302
    assert "/services/oauth2" not in start.headers["Location"]
    with client.session_transaction() as session:
        assert "FLEETHOOK_PUBLIC_URL" in str(session.get("_flashes"))
        assert OAUTH_STATE not in session
    assert salesforce.requests == []


@pytest.mark.app_config(FLEETHOOK_PUBLIC_URL="")
def test_development_without_a_public_url_uses_the_request_and_says_so(
    admin, client, salesforce, caplog
):
    start = client.get("/integrations/servicemax/connect")
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    assert query["redirect_uri"] == ["http://localhost/integrations/servicemax/callback"]
    assert "FLEETHOOK_PUBLIC_URL is not set" in caplog.text


def test_the_public_url_setting_is_checked():
    assert parse_public_url(" https://fleethook.example.com/ ", production=True) == (
        "https://fleethook.example.com"
    )
    assert parse_public_url("http://localhost:5000", production=False) == "http://localhost:5000"
    assert parse_public_url("", production=True) == ""
    for bad, production in (
        ("http://fleethook.example.com", True),
        ("fleethook.example.com", False),
        ("https://fleethook.example.com/app", False),
        ("ftp://x.example", False),
        ("https://x.example:port", False),
    ):
        with pytest.raises(ConfigError, match="FLEETHOOK_PUBLIC_URL"):
            parse_public_url(bad, production)


# --- the technicians, and the drivers without one ------------------------------------------


def test_technicians_are_read_from_lines(salesforce, account):
    integration = connected(account)
    set_technicians(
        integration,
        "Dana Whitfield = a0B5e00000AbCdEFGH\n\n  Sam   Ortiz=a0B5e00000AbCdE  \r\n",
    )
    assert integration.options["technicians"] == {
        "Dana Whitfield": "a0B5e00000AbCdEFGH",
        "Sam Ortiz": "a0B5e00000AbCdE",
    }
    assert technicians_text(integration) == (
        "Dana Whitfield = a0B5e00000AbCdEFGH\nSam Ortiz = a0B5e00000AbCdE"
    )
    set_technicians(integration, "")
    assert integration.options["technicians"] == {}


def test_bad_technician_lines_are_named_and_change_nothing(salesforce, account):
    integration = connected(account)
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


def test_an_unmapped_driver_is_listed_until_mapped(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"dana  WHITFIELD = {technician}")
    account.post(position(0))  # no driver yet: nothing to list
    account.post(assign(10, "Sam Ortiz"), position(20), position(30))
    assert messages_of(integration.id) == []
    integration = reload(integration.id)
    [sam] = SERVICEMAX.unmapped_drivers(integration)
    assert sam["name"] == "Sam Ortiz" and isinstance(sam["id"], int) and sam["since"] == at(20)
    assert integration.provider_state["unmapped_drivers"] == [sam]

    account.post(assign(40, "Dana Whitfield"), position(50))  # names match loosely
    [message] = messages_of(integration.id)
    assert message.payload["technician_id"] == technician
    set_technicians(integration, f"Dana Whitfield = {technician}\nSam Ortiz = a0B5e00000AbCdEFGH")
    db.session.commit()
    assert SERVICEMAX.unmapped_drivers(reload(integration.id)) == []


# --- from telemetry to Salesforce ------------------------------------------------------


def test_a_position_of_a_mapped_driver_updates_the_technician(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    access_token = secrets_of(integration)["access_token"]
    account.post(assign(0, "Dana Whitfield"), position(60, 41.5250, -88.0817))

    [message] = messages_of(integration.id)
    assert message.event_type == "location"
    assert message.payload == {
        "type": "location",
        "technician_id": technician,
        "driver": "Dana Whitfield",
        "vin": VIN,
        "latitude": 41.525,
        "longitude": -88.0817,
        "captured_on": at(60),
    }
    drain_target(integration.id)

    [patch] = salesforce.received("PATCH")
    assert patch.path == "/services/data/v60.0/composite/sobjects"
    assert patch.headers["Authorization"] == f"Bearer {access_token}"
    assert patch.headers["Content-Type"] == "application/json"
    assert patch.json == {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": TECHNICIAN},
                "id": technician,
                "SVMXC__Latitude__c": 41.525,
                "SVMXC__Longitude__c": -88.0817,
                "SVMXC__Latlong_Captured_On__c": at(60),
            }
        ],
    }
    assert salesforce.technicians[technician][CAPTURED_ON] == at(60)
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.DELIVERED and message.last_status_code == 200
    [attempt] = attempts_of(message)
    assert attempt.outcome == "delivered"
    assert access_token not in str(attempt.request_headers)
    assert attempt.request_headers["authorization"] == "Bearer ••••••••" + access_token[-4:]
    assert reload(integration.id).queue_depth == 0


def test_two_positions_of_a_technician_in_a_batch_send_only_the_newest(salesforce, account):
    dana = salesforce.add_technician("Dana Whitfield")
    sam = salesforce.add_technician("Sam Ortiz")
    account.add_vehicle(VIN_B := "3AKJHHDR7JSJY2214")
    integration = released(account, f"Dana Whitfield = {dana}\nSam Ortiz = {sam}")
    account.post(
        assign(0, "Dana Whitfield"),
        assign(0, "Sam Ortiz", VIN_B),
        position(60, 41.1),
        position(60, 42.1, vin=VIN_B),
        position(120, 41.2),
    )
    drain_target(integration.id)

    [patch] = salesforce.received("PATCH")
    assert [(r["id"], r[LATITUDE]) for r in records_of(patch)] == [(sam, 42.1), (dana, 41.2)]
    older, for_sam, newest = messages_of(integration.id)
    assert (for_sam.status, newest.status) == (MessageStatus.DELIVERED, MessageStatus.DELIVERED)
    # The engine supersedes a backlog itself (latest wins); the call would too.
    assert older.status in (MessageStatus.SUPERSEDED, MessageStatus.DELIVERED)
    assert salesforce.technicians[dana][CAPTURED_ON] == at(120)


def test_a_call_sends_one_position_per_technician_the_newest(salesforce, account):
    integration = connected(account)
    dana, sam = salesforce.add_technician("Dana"), salesforce.add_technician("Sam")
    batch = [
        outbox_message(1, dana, 120),
        outbox_message(2, sam, 60),
        outbox_message(3, dana, 60),
        outbox_message(4, dana, 180),
    ]
    before = len(salesforce.received("PATCH"))
    results = SERVICEMAX.send(integration, batch, 1e18)

    [call] = salesforce.received("PATCH")[before:]
    assert [(r["id"], r[CAPTURED_ON]) for r in records_of(call)] == [(sam, at(60)), (dana, at(180))]
    assert [r.delivered for r in results] == [True] * 4
    note = (
        '{"superseded_by": "msg_0004", "reason": "A newer position of this technician '
        'went in the same call."}'
    )
    assert [r.response_body == note for r in results] == [True, False, True, False]
    # A deleted technician: its older positions end with the newest one.
    salesforce.delete_technician(dana)
    results = SERVICEMAX.send(integration, batch, 1e18)
    assert [(r.delivered, r.permanent) for r in results] == [
        (False, True),
        (True, False),
        (False, True),
        (False, True),
    ]


def test_a_late_position_is_not_sent(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(120, 41.2))
    account.post(position(60, 41.1))  # older than the fix already reported
    assert [m.payload["captured_on"] for m in messages_of(integration.id)] == [at(120)]


def outbox_message(sequence: int, technician_id: str, seconds: float) -> OutboxMessage:
    payload = {
        "type": "location",
        "technician_id": technician_id,
        "driver": "Driver",
        "vin": VIN,
        "latitude": 41.0,
        "longitude": -87.0,
        "captured_on": at(seconds),
    }
    return OutboxMessage(
        message_id=f"msg_{sequence:04d}", sequence=sequence, event_type="location", payload=payload
    )


def test_150_technicians_go_in_one_collections_call_and_201_in_two(salesforce, account):
    integration = connected(account)
    technicians = [salesforce.add_technician(f"Tech {n}") for n in range(201)]
    before = len(salesforce.received("PATCH"))

    results = SERVICEMAX.send(
        integration, [outbox_message(n, t, n) for n, t in enumerate(technicians[:150])], 1e18
    )
    assert len(results) == 150 and all(r.delivered for r in results)
    [call] = salesforce.received("PATCH")[before:]
    assert [r["id"] for r in records_of(call)] == technicians[:150]

    results = SERVICEMAX.send(
        integration, [outbox_message(n, t, n) for n, t in enumerate(technicians)], 1e18
    )
    assert len(results) == 201 and all(r.delivered for r in results)
    first, second = salesforce.received("PATCH")[before + 1 :]
    assert (len(records_of(first)), len(records_of(second))) == (200, 1)


def test_the_fake_holds_collections_to_200_records(salesforce, account):
    integration = connected(account)
    record = {"attributes": {"type": TECHNICIAN}, "id": "a0B5e0000000000001", LATITUDE: 1.0}
    answer = requests.patch(
        f"{salesforce.url}/services/data/v60.0/composite/sobjects",
        json={"allOrNone": False, "records": [record] * 201},
        headers={"Authorization": f"Bearer {secrets_of(integration)['access_token']}"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# --- the initial sync ------------------------------------------------------------


def test_the_current_state_sends_each_mapped_drivers_position(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    account.post(assign(0, "Dana Whitfield"), position(60, 41.3))
    integration = connected(account)  # connecting queues each vehicle's state
    assert messages_of(integration.id) == []  # nobody is mapped yet: listed instead
    assert [d["name"] for d in SERVICEMAX.unmapped_drivers(reload(integration.id))] == [
        "Dana Whitfield"
    ]
    set_technicians(integration, f"Dana Whitfield = {technician}")
    assert send_current_state(integration) == 1
    sign_release(
        integration,
        {"signer_name": "Pat Reyes", "signer_title": "Fleet Manager", "accept": True},
        account.user_id,
        "203.0.113.9",
    )
    db.session.commit()
    drain_target(integration.id)
    [patch] = salesforce.received("PATCH")
    assert [(r["id"], r[LATITUDE], r[CAPTURED_ON]) for r in records_of(patch)] == [
        (technician, 41.3, at(60))
    ]
    assert SERVICEMAX.unmapped_drivers(reload(integration.id)) == []


def test_the_current_state_of_a_vehicle_without_a_driver_or_fix_is_nothing(salesforce, account):
    integration = connected(account)
    event_type = EventType(CURRENT_STATE, "Current state", "")
    vehicle = SimpleNamespace(vin=VIN, driver=None, latitude=41.0, longitude=-87.0, fix_time=None)
    event = SimpleNamespace(event_type=event_type, vehicle=vehicle, report={}, occurred_at=utcnow())
    assert SERVICEMAX.payload_for(integration, event) is None
    event.vehicle = SimpleNamespace(
        vin=VIN, driver={"id": 1, "name": "X"}, latitude=None, longitude=None, fix_time=None
    )
    assert SERVICEMAX.payload_for(integration, event) is None


def test_locations_queue_until_the_release_is_signed(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = connected(account)
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


def test_an_expired_access_token_is_renewed_once_and_the_call_repeated(salesforce, account, caplog):
    caplog.set_level(logging.DEBUG)
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    old = secrets_of(integration)
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.expire_access_tokens()
    before = len(salesforce.requests)

    drain_target(integration.id)

    first, renewal, second = salesforce.requests[before:]
    assert (first.method, first.headers["Authorization"]) == (
        "PATCH",
        f"Bearer {old['access_token']}",
    )
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
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    old_refresh_token = secrets_of(integration)["refresh_token"]
    salesforce.revoke_refresh_tokens()
    before = len(salesforce.requests)

    drain_target(integration.id)

    assert [(r.method, r.path) for r in salesforce.requests[before:]] == [
        ("PATCH", "/services/data/v60.0/composite/sobjects"),
        ("POST", TOKEN_PATH),
    ]
    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert integration.status_reason == (
        "Needs attention: Salesforce refused to renew the access; connect with Salesforce "
        "again. (Salesforce said: invalid_grant: expired access/refresh token)"
    )
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.PENDING and integration.queue_depth == 1
    [attempt] = attempts_of(message)
    assert attempt.outcome == "unauthorized"
    drain_target(integration.id)  # held: nothing is sent
    assert len(salesforce.requests) == before + 2

    # Signing in again mends it, and the queue goes out.
    code, sign_in = signed_in()
    reconnect_integration(integration, code, sign_in)
    db.session.commit()
    assert reload(integration.id).status == TargetStatus.ACTIVE
    [revoked] = salesforce.received("POST", "/services/oauth2/revoke")  # the old one, for good
    assert revoked.form == {"token": old_refresh_token}
    # The message waits for its scheduled retry (seconds after one attempt); let it pass.
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    drain_target(integration.id)
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.DELIVERED]


def test_a_reconnection_the_api_refuses_keeps_the_old_tokens(salesforce, account):
    integration = connected(account)
    stored, options = secrets_of(integration), dict(integration.options)
    code, sign_in = signed_in()
    salesforce.fail_next(403, path="/services/data/")
    with pytest.raises(ProviderRejected):
        reconnect_integration(integration, code, sign_in)
    assert (secrets_of(integration), integration.options) == (stored, options)
    [revoked] = salesforce.received("POST", "/services/oauth2/revoke")
    assert revoked.form["token"] != stored["refresh_token"]
    assert salesforce.refresh_tokens == {stored["refresh_token"]}


def test_a_second_401_after_renewing_needs_attention(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.fail_next(401, times=2, body=INVALID_SESSION, path="/composite/")
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
    integration = released(account, f"Dana Whitfield = {technician}")
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
        "login_host": "production",
        "my_domain": None,
    }
    [new_token] = salesforce.access_tokens
    assert secrets_of(integration)["access_token"] == new_token


# --- Salesforce's other answers ---------------------------------------------------------


def test_a_field_that_is_not_writable_needs_attention_not_dead_messages(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    salesforce.field_security(LATITUDE, editable=False)
    account.post(assign(0, "Dana Whitfield"), position(60), position(120))
    drain_target(integration.id)

    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert integration.status_reason == (
        f"Needs attention: Salesforce refused technician {technician} "
        "(INVALID_FIELD_FOR_INSERT_UPDATE: Unable to create/update fields: SVMXC__Latitude__c. "
        "Please check the security settings of this field and verify that it is read/write "
        "for your profile or permission set.). In Salesforce Setup, give the connected user's "
        "profile or permission set Edit access (field-level security) to the Technician fields "
        "SVMXC__Latitude__c, SVMXC__Longitude__c and SVMXC__Latlong_Captured_On__c."
    )
    statuses = [m.status for m in messages_of(integration.id)]
    assert MessageStatus.DEAD not in statuses and MessageStatus.PENDING in statuses
    assert CAPTURED_ON not in salesforce.technicians[technician]

    # Once the field is writable and a person resumes, the newest position goes.
    salesforce.field_security(LATITUDE, editable=True)
    update_integration(integration, {})
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    drain_target(integration.id)
    assert salesforce.technicians[technician][CAPTURED_ON] == at(120)
    assert MessageStatus.DEAD not in [m.status for m in messages_of(integration.id)]


@pytest.mark.parametrize(
    "code, message, advice",
    [
        (
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
            "The connected user may not edit this technician",
        ),
        (
            "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
            "insufficient access rights on cross-reference id",
            "The connected user lacks access to a record this technician refers to",
        ),
        (
            "INVALID_FIELD",
            "No such column 'SVMXC__Latitude__c' on entity",
            "This org's Technician object (SVMXC__Service_Group_Members__c) lacks a field",
        ),
    ],
)
def test_permission_refusals_of_a_record_need_attention(salesforce, account, code, message, advice):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    refusal = [
        {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}
    ]
    salesforce.fail_next(200, body=refusal, path="/composite/")
    drain_target(integration.id)
    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert f"({code}: {message}). {advice}" in integration.status_reason
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.PENDING]


@pytest.mark.parametrize(
    "status, code, message",
    [
        (400, "INVALID_TYPE", "sObject type 'SVMXC__Service_Group_Members__c' is not supported."),
        (404, "NOT_FOUND", "The requested resource does not exist"),
    ],
)
def test_an_org_without_the_technician_object_needs_attention(
    salesforce, account, status, code, message
):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.fail_next(status, body=[{"errorCode": code, "message": message}], path="/composite/")
    drain_target(integration.id)
    integration = reload(integration.id)
    assert integration.status == TargetStatus.NEEDS_ATTENTION
    assert integration.status_reason == (
        f"Needs attention: Salesforce refused the update ({code}: {message}). This org has no "
        "Technician object (SVMXC__Service_Group_Members__c) the connected user can use: check "
        "ServiceMax is installed and the user's profile has access to it."
    )
    assert [m.status for m in messages_of(integration.id)] == [MessageStatus.PENDING]


def test_the_daily_request_limit_is_throttling_not_attention(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.throttle(1, 24 * 60 * 60)  # the org used up its day (one request left)
    requests.get(f"{salesforce.url}/services/data/v60.0/", timeout=5)
    started = utcnow()
    drain_target(integration.id)

    [refused] = salesforce.received("PATCH")
    assert salesforce.throttled_count == 1
    integration = reload(integration.id)
    assert integration.status == TargetStatus.FAILING
    assert integration.throttled_until is not None
    [message] = messages_of(integration.id)
    assert message.status == MessageStatus.PENDING
    assert 590 <= (message.next_attempt_at - started).total_seconds() <= 610
    assert message.last_error == (
        "Salesforce's daily API request limit of this org is used up (REQUEST_LIMIT_EXCEEDED: "
        "TotalRequests Limit exceeded.); retrying in 10 minutes."
    )
    [attempt] = attempts_of(message)
    assert attempt.outcome == "throttled" and attempt.status_code == 403


@pytest.mark.parametrize(
    "status, body, headers, wait",
    [
        (429, {"error": "slow down"}, {"Retry-After": "120"}, (120, 120)),
        (
            503,
            [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}],
            {"Retry-After": "60"},
            (60, 60),
        ),
        (
            500,
            [{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred"}],
            {},
            (4, 6),
        ),
    ],
)
def test_server_errors_are_retried(salesforce, account, status, body, headers, wait):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
    account.post(assign(0, "Dana Whitfield"), position(60))
    salesforce.fail_next(status, body=body, headers=headers, path="/composite/")
    started = utcnow()
    drain_target(integration.id)

    assert len(salesforce.received("PATCH")) == 1
    [message] = messages_of(integration.id)
    assert (message.status, message.attempts) == (MessageStatus.PENDING, 1)
    delay = (message.next_attempt_at - started).total_seconds()
    assert wait[0] - 1 <= delay <= wait[1] + 1
    integration = reload(integration.id)
    assert integration.status == TargetStatus.FAILING
    assert integration.status_reason == f"Retrying: the last attempt got HTTP {status}"
    [attempt] = attempts_of(message)
    assert attempt.outcome == ("throttled" if "Retry-After" in headers else "failed")


def test_a_deleted_technician_kills_only_its_message(salesforce, account):
    gone = salesforce.add_technician("Dana Whitfield")
    sam = salesforce.add_technician("Sam Ortiz")
    account.add_vehicle(VIN_B := "3AKJHHDR7JSJY2214")
    integration = released(account, f"Dana Whitfield = {gone}\nSam Ortiz = {sam}")
    salesforce.delete_technician(gone)
    account.post(
        assign(0, "Dana Whitfield"),
        assign(0, "Sam Ortiz", VIN_B),
        position(60),
        position(60, vin=VIN_B),
    )
    drain_target(integration.id)

    [patch] = salesforce.received("PATCH")
    assert [r["id"] for r in records_of(patch)] == [gone, sam]
    dead, delivered = messages_of(integration.id)
    assert dead.status == MessageStatus.DEAD
    assert dead.last_error == (
        f"Technician {gone} cannot be updated: Salesforce says ENTITY_IS_DELETED: entity is "
        "deleted. Map the driver to an existing technician on the integration's page."
    )
    assert delivered.status == MessageStatus.DELIVERED
    assert salesforce.technicians[sam][CAPTURED_ON] == at(60)
    integration = reload(integration.id)
    assert (integration.status, integration.queue_depth) == (TargetStatus.ACTIVE, 0)


# --- the provider's settings ---------------------------------------------------------


def test_budget_latest_values_and_setup_steps_are_stated(app):
    assert SERVICEMAX.requests_per_minute == 10
    assert "API Request Limits and Allocations" in SERVICEMAX.budget_source
    assert SERVICEMAX.latest_value_types == frozenset({"location"})
    steps = " ".join(SERVICEMAX.setup_steps)
    for needed in (
        "/integrations/servicemax/callback",
        "refresh_token",
        "api",
        "Require Proof Key for Code Exchange (PKCE)",
        "Connected Apps OAuth Usage",
        "Approve Uninstalled Connected Apps",
        "September 2025",
        TECHNICIAN,
        "release form",
    ):
        assert needed in steps, needed
    with app.test_request_context():
        assert SERVICEMAX.callback_url_for_setup() == REDIRECT


# --- delete -----------------------------------------------------------------------------


def test_delete_revokes_the_token_at_salesforce(salesforce, account):
    technician = salesforce.add_technician("Dana Whitfield")
    integration = released(account, f"Dana Whitfield = {technician}")
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
    integration = connected(account)
    refresh_token = secrets_of(integration)["refresh_token"]
    salesforce.fail_next(500, path="/services/oauth2/revoke")

    delete_integration(integration)
    db.session.commit()

    assert db.session.scalars(select(Integration)).all() == []
    assert f"Salesforce did not revoke the token of integration {integration.id}" in caplog.text
    assert "HTTP 500" in caplog.text and refresh_token not in caplog.text
