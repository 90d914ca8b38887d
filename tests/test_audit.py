"""The audit trail: every change to webhooks, integrations, API tokens and users is
recorded with who made it, what, when and from which address — through the portal,
the API and the command line — never with a secret in it; admins read it on the
Audit log page and at GET /api/v1/audit-events, members do not, and no account sees
another's. Providers are local fakes."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from accounts.audit import HIDDEN, AuditEvent
from accounts.models import ApiToken, Role, User
from accounts.tokens import issue_token
from core.extensions import db
from integrations.base import secrets_of
from integrations.lifecycle import create_integration
from integrations.models import Integration
from tests.conftest import PASSWORD, AuthActions, bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY, FleetioFake
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

ADMIN = "admin@acme.example.com"
MANAGER = "/webhooks/"
LOG = "/account/audit"
API_LOG = "/api/v1/audit-events"
HEADER_VALUE = "Bearer s3cr3t-header-4242"
NEW_WEBHOOK = {"event_type": "speed", "name": "Dispatch", "url": "https://hooks.example.com/in"}
FLEETIO = {
    "provider": "fleetio",
    "api_key": API_KEY,
    "account_id": ACCOUNT_TOKEN,
    "update_odometer": True,
    "update_dtcs": False,
}


@pytest.fixture
def fleetio(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


def events(action: str | None = None) -> list[AuditEvent]:
    """The recorded events, oldest first; of one action if given."""
    db.session.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


def only(action: str) -> AuditEvent:
    [event] = events(action)
    return event


def log_text() -> str:
    """Every column of every audit row, as one string to look for secrets in."""
    rows = db.session.execute(text("SELECT * FROM audit_event")).all()
    return " ".join(str(value) for row in rows for value in row)


def assert_no_secret(*secrets: str) -> None:
    dump = log_text()
    for secret in secrets:
        assert secret and secret not in dump


def api_create_webhook(client, headers, **fields):
    response = client.post("/api/v1/webhooks", json={**NEW_WEBHOOK, **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def token_actor(email: str = ADMIN, name: str = "test") -> str:
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    return f'API token "{name}" ({token.hint}…) of {email}'


# --- webhooks ---------------------------------------------------------------------


def test_creating_a_webhook_in_the_portal_records_who_what_and_from_where(admin, auth):
    form = {
        "event_type": "speed",
        "url": "https://hooks.example.com/fleet",
        "name": "Dispatch",
        "content_type": "json",
        "threshold_mph": "75",
        "custom_header_name": "Authorization",
        "custom_header_value": HEADER_VALUE,
    }
    response = auth.post("/webhooks/new", form, page=MANAGER, htmx=True)
    assert response.status_code == 200
    secret = re.search(r'id="signing-secret">(whsec_[^<]+)<', response.get_data(True)).group(1)
    [webhook] = db.session.scalars(select(Webhook)).all()
    event = only("webhook.created")
    assert (event.account_id, event.actor, event.actor_user_id) == (
        admin.account_id,
        ADMIN,
        admin.id,
    )
    assert (event.object_type, event.object_id, event.object_name) == (
        "webhook",
        webhook.id,
        "Dispatch",
    )
    assert event.client_address == "127.0.0.1"
    assert event.details["url"] == "https://hooks.example.com/fleet"
    assert event.details["threshold_mph"] == 75
    assert event.details["custom_header"] == {"name": "Authorization", "value": HIDDEN}
    assert_no_secret(secret, HEADER_VALUE, "s3cr3t")


def test_changing_a_webhook_through_the_api_records_only_the_changed_fields(app, client):
    headers = bearer(make_user())
    created = api_create_webhook(
        client, headers, custom_header={"name": "X-Key", "value": HEADER_VALUE}
    )
    changed = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={
            "name": "Renamed",
            "url": NEW_WEBHOOK["url"],
            "custom_header": {"name": "X-Key", "value": "Bearer n3w-header-value"},
        },
        headers=headers,
    )
    assert changed.status_code == 200
    event = only("webhook.updated")
    assert event.actor == token_actor() and event.object_name == "Renamed"
    assert event.details == {"name": "Renamed", "custom_header": {"name": "X-Key", "value": HIDDEN}}
    assert event.client_address == "127.0.0.1"
    # The same values again change nothing, and record nothing.
    client.patch(f"/api/v1/webhooks/{created['id']}", json={"name": "Renamed"}, headers=headers)
    assert len(events("webhook.updated")) == 1
    assert_no_secret(created["secret"], HEADER_VALUE, "n3w-header-value")


def test_pausing_and_resuming_a_webhook_are_recorded(app, client):
    headers = bearer(make_user())
    created = api_create_webhook(client, headers)
    for action in ("pause", "resume"):
        response = client.post(f"/api/v1/webhooks/{created['id']}/{action}", headers=headers)
        assert response.status_code == 200
    paused, resumed = only("webhook.paused"), only("webhook.resumed")
    assert paused.id < resumed.id and paused.object_id == resumed.object_id == created["id"]
    assert paused.actor == resumed.actor == token_actor()
    assert paused.details is None and resumed.client_address == "127.0.0.1"


def test_rotating_a_webhook_secret_is_recorded_without_either_secret(admin, auth, client):
    headers = bearer(admin)
    created = api_create_webhook(client, headers)
    response = auth.post(f"/webhooks/{created['id']}/rotate-secret", page=MANAGER, htmx=True)
    new = re.search(r'id="signing-secret">(whsec_[^<]+)<', response.get_data(True)).group(1)
    event = only("webhook.secret_rotated")
    assert (event.actor, event.object_id, event.details) == (ADMIN, created["id"], None)
    assert_no_secret(created["secret"], new, new.removeprefix("whsec_"))


def test_deleting_a_webhook_keeps_its_name_in_the_log(admin, auth, client):
    created = api_create_webhook(client, bearer(admin), name="Old dispatch board")
    response = auth.post(f"/manager/targets/{created['id']}/delete", page=MANAGER, htmx=True)
    assert response.status_code == 204
    event = only("webhook.deleted")
    assert (event.actor, event.object_id, event.object_name) == (
        ADMIN,
        created["id"],
        "Old dispatch board",
    )
    page = client.get(LOG).get_data(as_text=True)
    assert "Deleted a webhook" in page and "Old dispatch board" in page


# --- integrations -----------------------------------------------------------------


def test_connecting_an_integration_records_its_settings_not_its_key(admin, auth, fleetio):
    form = {**FLEETIO, "update_odometer": "y", "update_dtcs": ""}
    response = auth.post("/integrations/new", form, page=MANAGER, htmx=True)
    assert response.status_code == 200  # the "connected" confirmation
    [integration] = db.session.scalars(select(Integration)).all()
    event = only("integration.created")
    assert (event.actor, event.object_type, event.object_id) == (
        ADMIN,
        "integration",
        integration.id,
    )
    assert event.object_name == "fleetio" and event.client_address == "127.0.0.1"
    assert event.details == {
        "provider": "fleetio",
        "account_id": ACCOUNT_TOKEN,
        "update_odometer": True,
        "update_dtcs": False,
        "api_key": HIDDEN,
    }
    assert_no_secret(API_KEY)


def test_changing_an_integration_through_the_api_records_the_changed_fields(app, client, fleetio):
    headers = bearer(make_user())
    created = client.post("/api/v1/integrations", json=FLEETIO, headers=headers).json
    url = f"/api/v1/integrations/{created['id']}"
    # The same key again is no change; only the toggle is.
    changed = client.patch(url, json={"update_dtcs": True, "api_key": API_KEY}, headers=headers)
    assert changed.status_code == 200
    event = only("integration.updated")
    assert event.actor == token_actor() and event.object_id == created["id"]
    assert event.details == {"update_dtcs": True}
    assert_no_secret(API_KEY)


def test_signing_the_release_form_is_recorded(admin, auth, app):
    from tests.fakes.servicetitan import (
        APP_KEY,
        CLIENT_ID,
        CLIENT_SECRET,
        GPS_PROVIDER,
        TENANT,
        FakeServiceTitan,
    )

    server = FakeServiceTitan().start()
    try:
        app.config.update(
            FLEETHOOK_SERVICETITAN_AUTH_URL=server.url,
            FLEETHOOK_SERVICETITAN_BASE_URL=server.url,
            FLEETHOOK_SERVICETITAN_APP_KEY=APP_KEY,
            FLEETHOOK_SERVICETITAN_GPS_PROVIDER=GPS_PROVIDER,
        )
        form = {
            "provider": "servicetitan",
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        assert auth.post("/integrations/new", form, page=MANAGER, htmx=True).status_code == 200
        [integration] = db.session.scalars(select(Integration)).all()
        signed = auth.post(
            f"/integrations/{integration.id}/release",
            {"signer_name": "Dana Whitfield", "signer_title": "Fleet Manager", "accept": "y"},
            page=MANAGER,
            htmx=True,
        )
        assert signed.status_code == 204
    finally:
        server.stop()
    created = only("integration.created")
    assert created.details["client_secret"] == HIDDEN and created.details["tenant_id"] == TENANT
    event = only("integration.release_signed")
    assert (event.actor, event.object_id, event.client_address) == (
        ADMIN,
        integration.id,
        "127.0.0.1",
    )
    assert event.details == {"signer_name": "Dana Whitfield", "signer_title": "Fleet Manager"}
    assert_no_secret(CLIENT_SECRET, APP_KEY)


def test_pausing_resuming_and_deleting_an_integration_are_recorded(app, client, fleetio):
    headers = bearer(make_user())
    created = client.post("/api/v1/integrations", json=FLEETIO, headers=headers).json
    url = f"/api/v1/integrations/{created['id']}"
    assert client.post(f"{url}/pause", headers=headers).status_code == 200
    assert client.post(f"{url}/resume", headers=headers).status_code == 200
    assert client.delete(url, headers=headers).status_code == 204
    actions = [e.action for e in events() if e.object_type == "integration"]
    assert actions == [
        "integration.created",
        "integration.paused",
        "integration.resumed",
        "integration.deleted",
    ]
    deleted = only("integration.deleted")
    assert (deleted.actor, deleted.object_id, deleted.object_name) == (
        token_actor(),
        created["id"],
        "fleetio",
    )
    assert deleted.client_address == "127.0.0.1"
    assert_no_secret(API_KEY)


@pytest.fixture
def salesforce(app):
    from tests.fakes.salesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce

    server = FakeSalesforce().start()
    app.config.update(
        FLEETHOOK_SALESFORCE_LOGIN_URL=server.url,
        FLEETHOOK_SALESFORCE_CLIENT_ID=CLIENT_ID,
        FLEETHOOK_SALESFORCE_CLIENT_SECRET=CLIENT_SECRET,
    )
    yield server
    server.stop()


def test_connecting_reconnecting_and_mapping_servicemax_are_recorded(
    admin, client, auth, salesforce
):
    def sign_in(path: str):
        start = client.get(path)
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
        code = salesforce.issue_code(query["redirect_uri"])
        return client.get(f"/integrations/servicemax/callback?code={code}&state={query['state']}")

    assert sign_in("/integrations/servicemax/connect").status_code == 302
    [integration] = db.session.scalars(select(Integration)).all()
    first_tokens = list(secrets_of(integration).values())
    created = only("integration.created")
    assert (created.actor, created.object_id, created.client_address) == (
        ADMIN,
        integration.id,
        "127.0.0.1",
    )
    assert created.details == {
        "provider": "servicemax",
        "login_host": "production",
        "instance_url": salesforce.url,
        "technicians": {},
    }
    integration.status = "needs_attention"
    db.session.commit()
    sign_in(f"/integrations/servicemax/connect?integration={integration.id}")
    reconnected = only("integration.reconnected")
    assert (reconnected.actor, reconnected.object_id) == (ADMIN, integration.id)
    record_id = salesforce.add_technician("Dana Whitfield")
    detail = f"/integrations/{integration.id}"
    auth.post(
        f"/integrations/servicemax/{integration.id}/technicians",
        {"technicians": f"Dana Whitfield = {record_id}"},
        page=detail,
    )
    mapped = only("integration.updated")
    assert mapped.details == {"technicians": 1} and mapped.actor == ADMIN
    db.session.expire_all()
    assert_no_secret(
        *first_tokens, *secrets_of(db.session.get(Integration, integration.id)).values()
    )


# --- API tokens -------------------------------------------------------------------


def test_creating_a_token_in_the_portal_is_recorded_without_the_token(admin, auth):
    page = auth.post("/account/tokens", {"name": "Dispatch system"}, page="/account/tokens")
    clear = re.search(rb'id="new-token">(fh_[^<]+)<', page.data).group(1).decode()
    event = only("token.created")
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == "Dispatch system"))
    assert (event.actor, event.actor_user_id, event.client_address) == (
        ADMIN,
        admin.id,
        "127.0.0.1",
    )
    assert (event.object_type, event.object_id, event.object_name) == (
        "token",
        token.id,
        "Dispatch system",
    )
    assert event.details == {"name": "Dispatch system", "user": ADMIN}
    assert_no_secret(clear, clear[8:])


def test_revoking_a_token_through_the_api_is_recorded_once(app, client):
    headers = bearer(make_user())
    created = client.post("/api/v1/tokens", json={"name": "Gateway"}, headers=headers).json
    for _ in range(2):  # revoking twice changes nothing the second time
        assert client.delete(f"/api/v1/tokens/{created['id']}", headers=headers).status_code == 204
    event = only("token.revoked")
    assert (event.actor, event.object_id, event.object_name) == (
        token_actor(),
        created["id"],
        "Gateway",
    )
    assert event.client_address == "127.0.0.1" and event.details is None
    fixtures, through_the_api = events("token.created")
    assert (fixtures.actor, through_the_api.actor) == ("command line", token_actor())
    assert_no_secret(created["token"], headers["Authorization"].removeprefix("Bearer "))


def test_the_command_line_is_recorded_as_such_without_an_address(app):
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=[
            "accounts",
            "create",
            "--name",
            "Blue Trucks",
            "--email",
            "ops@blue.example.com",
            "--password",
            PASSWORD,
        ]
    )
    assert created.exit_code == 0, created.output
    issued = runner.invoke(args=["tokens", "create", "--email", "ops@blue.example.com"])
    clear = issued.output.strip().splitlines()[-1]
    user = db.session.scalar(select(User).where(User.email == "ops@blue.example.com"))
    for event in events():
        assert (event.actor, event.actor_user_id, event.client_address) == (
            "command line",
            None,
            None,
        )
        assert event.account_id == user.account_id
    assert [e.action for e in events()] == ["user.created", "token.created"]
    assert only("user.created").details == {"email": "ops@blue.example.com", "role": "admin"}
    assert_no_secret(clear, PASSWORD)


# --- users ------------------------------------------------------------------------


def test_adding_a_user_records_email_and_role_never_the_password(admin, auth):
    form = {"email": "Desk@acme.example.com", "role": "member", "password": "another long password"}
    assert auth.post("/account/users", form, page="/account/users").status_code == 302
    added = db.session.scalar(select(User).where(User.email == "desk@acme.example.com"))
    event = events("user.created")[-1]
    assert (event.actor, event.object_type, event.object_id, event.object_name) == (
        ADMIN,
        "user",
        added.id,
        "desk@acme.example.com",
    )
    assert event.details == {"email": "desk@acme.example.com", "role": "member"}
    assert event.client_address == "127.0.0.1"
    assert_no_secret("another long password", added.password_hash)


def test_removing_a_user_is_recorded_and_outlives_its_actor(app, client):
    admin = make_user()
    second = make_user(email="second@acme.example.com", admin=admin)
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    member_id, second_id = member.id, second.id
    auth = AuthActions(client)
    auth.login("second@acme.example.com")
    assert auth.post(f"/account/users/{member_id}/remove", page="/account/users").status_code == 302
    # An admin may remove themselves while another admin remains.
    assert auth.post(f"/account/users/{second_id}/remove", page="/account/users").status_code == 302
    removed_member, removed_self = events("user.removed")
    assert (removed_member.object_id, removed_member.object_name) == (
        member_id,
        "viewer@acme.example.com",
    )
    assert removed_member.details == {"email": "viewer@acme.example.com", "role": "member"}
    assert removed_self.object_id == second_id
    for event in (removed_member, removed_self):
        # The actor's row is gone; who it was stays readable.
        assert (event.actor, event.actor_user_id) == ("second@acme.example.com", None)
        assert event.client_address == "127.0.0.1"


# --- refusals record nothing ------------------------------------------------------


def test_a_change_that_fails_validation_records_nothing(admin, auth, client, fleetio):
    headers = bearer(admin)
    before = len(events())
    bad_webhook = client.post(
        "/api/v1/webhooks", json={**NEW_WEBHOOK, "name": " "}, headers=headers
    )
    assert bad_webhook.status_code == 422
    refused_key = client.post(
        "/api/v1/integrations", json={**FLEETIO, "api_key": "wrong-1234"}, headers=headers
    )
    assert refused_key.status_code == 422
    assert client.post("/api/v1/tokens", json={"name": " "}, headers=headers).status_code == 422
    bad_user = auth.post(
        "/account/users",
        {"email": ADMIN, "role": "owner", "password": "short"},
        page="/account/users",
    )
    assert bad_user.status_code == 422
    last_admin = auth.post(f"/account/users/{admin.id}/remove", page="/account/users")
    assert last_admin.status_code == 302 and db.session.get(User, admin.id) is not None
    assert len(events()) == before
    # A change refused by the provider after the fields passed is rolled back, with its event.
    integration = create_integration(admin.account_id, FLEETIO)
    db.session.commit()
    before = len(events())
    refused = client.patch(
        f"/api/v1/integrations/{integration.id}",
        json={"update_dtcs": True, "api_key": "wrong-1234"},
        headers=headers,
    )
    assert refused.status_code == 422
    assert len(events()) == before


# --- who sees the log -------------------------------------------------------------


def test_the_audit_log_page_shows_the_changes_to_an_admin_newest_first(admin, client):
    headers = bearer(admin, "Dispatch system")
    created = api_create_webhook(client, headers, name="Yard gate")
    client.post(f"/api/v1/webhooks/{created['id']}/pause", headers=headers)
    menu = client.get("/").get_data(as_text=True)
    assert f'<a href="{LOG}">Audit log</a>' in menu
    response = client.get(LOG)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert " style=" not in page and not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    rows = re.findall(r'<tr id="audit-event-(\d+)">(.*?)</tr>', page, re.S)
    assert [int(event_id) for event_id, _ in rows] == [e.id for e in reversed(events())]
    paused = only("webhook.paused")
    cells = [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td>(.*?)</td>", rows[0][1], re.S)
    ]
    # Relative to now, the exact time on hover.
    assert cells[0] == "just now"
    assert f'title="{paused.at.strftime("%Y-%m-%d %H:%M:%S UTC")}"' in rows[0][1]
    assert html.unescape(cells[1]) == paused.actor == token_actor(name="Dispatch system")
    assert cells[2:5] == ["127.0.0.1", "Paused a webhook", f"Webhook {created['id']} · Yard gate"]
    assert "Created a webhook" in page and "custom_header" not in page


def test_the_audit_log_pages_fifty_at_a_time(admin, client):
    for n in range(55):
        issue_token(admin, f"Token {n}")
    db.session.commit()
    first = client.get(LOG).get_data(as_text=True)
    assert first.count('<tr id="audit-event-') == 50 and "Token 54" in first
    older = re.search(r'href="(/account/audit\?cursor=\d+)"', first).group(1)
    second = client.get(older).get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'<tr id="audit-event-(\d+)">', second)]
    assert len(ids) == len(events()) - 50 and "Token 0" in second
    assert "Older changes" not in second and "Newest changes" in second


def test_members_may_not_read_the_audit_log(app, client, auth):
    admin = make_user()
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    assert client.get(LOG).status_code == 403
    assert "Audit log" not in client.get("/").get_data(as_text=True)
    response = client.get(API_LOG, headers=bearer(member))
    assert response.status_code == 403 and response.mimetype == "application/problem+json"


def test_another_accounts_changes_never_show(admin, client):
    other = make_user("Other Co", "admin@other.example.com")
    other_headers = bearer(other, "Other system")
    api_create_webhook(client, other_headers, name="Their secret project")
    mine = api_create_webhook(client, bearer(admin), name="Ours")
    page = client.get(LOG).get_data(as_text=True)
    assert "Ours" in page
    assert "Their secret project" not in page and "admin@other.example.com" not in page
    listed = client.get(API_LOG, headers=bearer(admin)).json["audit_events"]
    assert {e["object_name"] for e in listed} >= {"Ours"}
    assert all(
        "Other" not in json.dumps(e) and "other.example" not in json.dumps(e) for e in listed
    )
    theirs = client.get(API_LOG, headers=other_headers).json["audit_events"]
    assert mine["id"] not in [e["object_id"] for e in theirs if e["object_type"] == "webhook"]
    assert "Their secret project" in [e["object_name"] for e in theirs]


def test_the_api_lists_the_log_newest_first_a_page_at_a_time(app, client):
    headers = bearer(make_user())
    ids = [api_create_webhook(client, headers, name=f"Hook {n}")["id"] for n in range(3)]
    first = client.get(f"{API_LOG}?limit=2", headers=headers).json
    assert [e["object_id"] for e in first["audit_events"]] == [ids[2], ids[1]]
    newest = first["audit_events"][0]
    assert set(newest) == {
        "id",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "object_name",
        "details",
        "client_address",
    }
    assert (newest["action"], newest["actor"], newest["client_address"]) == (
        "webhook.created",
        token_actor(),
        "127.0.0.1",
    )
    assert newest["at"].endswith("+00:00") and newest["details"]["name"] == "Hook 2"
    second = client.get(f"{API_LOG}?limit=2&cursor={first['next_cursor']}", headers=headers).json
    assert [e["action"] for e in second["audit_events"]] == ["webhook.created", "token.created"]
    last = client.get(f"{API_LOG}?limit=2&cursor={second['next_cursor']}", headers=headers).json
    assert [e["action"] for e in last["audit_events"]] == ["user.created"]
    assert last["next_cursor"] is None
    for query in ("limit=0", "limit=201", "cursor=abc"):
        assert client.get(f"{API_LOG}?{query}", headers=headers).status_code == 422


# --- the client address -----------------------------------------------------------


@pytest.mark.app_config(FLEETHOOK_TRUSTED_PROXIES=1)
def test_behind_a_trusted_proxy_the_forwarded_address_is_recorded(app, client):
    headers = {**bearer(make_user()), "X-Forwarded-For": "203.0.113.9"}
    api_create_webhook(client, headers)
    assert only("webhook.created").client_address == "203.0.113.9"


def test_without_a_trusted_proxy_a_forwarded_address_is_not_believed(app, client):
    headers = {**bearer(make_user()), "X-Forwarded-For": "203.0.113.9"}
    api_create_webhook(client, headers)
    assert only("webhook.created").client_address == "127.0.0.1"
