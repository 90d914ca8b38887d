"""Integrations in the Webhook Manager and through the API: the available
providers, a provider's form with its field errors and the credential check's
refusal, the grid, the release form, delete (no orphaned messages), the REST API
(secrets never returned), members and other accounts. Providers are local fakes."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from accounts.models import Role
from core.extensions import db
from integrations.lifecycle import create_integration
from integrations.models import Integration
from integrations.schemas import KEEPS_PROVIDER, NOT_ACCEPTED, SIGNER_PROBLEM
from outbox.models import OutboxMessage
from tests.conftest import HTMX, bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY, FleetioFake
from tests.test_portal_ux import text_of

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

MANAGER = "/webhooks/"
FLEETIO_FORM = {
    "provider": "fleetio",
    "api_key": API_KEY,
    "account_id": ACCOUNT_TOKEN,
    "update_odometer": "y",
    "update_dtcs": "y",
}


@pytest.fixture
def fleetio(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


def integrations() -> list[Integration]:
    db.session.expire_all()
    return list(db.session.scalars(select(Integration).order_by(Integration.id)))


def test_the_manager_lists_the_five_providers_with_a_green_plus(admin, client):
    page = client.get(MANAGER).get_data(as_text=True)
    assert "Available Integrations" in page and "3rd Party Integrations" in page
    for key, name, software in [
        ("servicemax", "ServiceMax", "Field Service Management"),
        ("servicetitan", "ServiceTitan", "Business Management"),
        ("fleetio", "Fleetio", "Fleet Management"),
        ("asana", "Asana", "Task Management"),
        ("agilefleet", "Agile Fleet", "Fuel Management"),
    ]:
        assert f'id="add-{key}"' in page and name in page and software in page
    assert "No integrations yet." in page


def test_members_see_providers_without_plus(app, client, auth):
    admin = make_user()
    make_user(email="m@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("m@acme.example.com")
    page = client.get(MANAGER).get_data(as_text=True)
    assert "Fleetio" in page and 'id="add-fleetio"' not in page
    assert client.get("/integrations/new?provider=fleetio").status_code == 403


def test_the_fleetio_form_connects_after_the_credential_check(admin, client, auth, fleetio):
    dialog = client.get("/integrations/new?provider=fleetio", headers=HTMX).get_data(True)
    for name in ("api_key", "account_id", "update_odometer", "update_dtcs"):
        assert f'name="{name}"' in dialog
    assert 'type="password"' in dialog  # the API key is not shown as typed
    response = auth.post("/integrations/new", FLEETIO_FORM, page=MANAGER, htmx=True)
    assert response.status_code == 200 and "integrations-changed" in response.headers["HX-Trigger"]
    [saved] = integrations()
    confirmation = text_of(response.get_data(as_text=True))
    assert "Fleetio connected" in confirmation
    assert f"Fleetio is connected as integration {saved.id}" in confirmation
    assert saved.provider == "fleetio" and saved.status == "active"
    assert saved.options == {
        "account_id": ACCOUNT_TOKEN,
        "update_odometer": True,
        "update_dtcs": True,
        "odometer_interval_minutes": None,
    }
    assert [r.path for r in fleetio.requests] == ["/api/v1/vehicles"]  # the check
    grid = client.get("/manager/integration/grid", headers=HTMX).get_data(as_text=True)
    row = re.search(rf'<tr id="integration-{saved.id}">(.*?)</tr>', grid, re.S).group(1)
    assert "Fleetio" in row and "Update Odometer, Diagnostic Trouble Codes" in row
    assert "Active" in row and API_KEY not in grid


def test_a_refused_key_is_shown_in_plain_words_and_nothing_saved(admin, auth, fleetio):
    response = auth.post(
        "/integrations/new", {**FLEETIO_FORM, "api_key": "wrong-key-1234"}, page=MANAGER, htmx=True
    )
    assert response.status_code == 422
    assert "Fleetio did not accept this API key and Account Token." in response.get_data(True)
    assert integrations() == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_key", "", "Enter the API Key"),
        ("account_id", "", "Enter the Account Token"),
        ("account_id", "x" * 201, "At most 200 characters"),
    ],
)
def test_each_bad_field_is_shown_and_nothing_saved(admin, auth, fleetio, field, value, message):
    response = auth.post(
        "/integrations/new", {**FLEETIO_FORM, field: value}, page=MANAGER, htmx=True
    )
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert integrations() == [] and fleetio.requests == []


def test_the_form_takes_a_redaction_and_the_edit_dialog_shows_it(admin, client, auth, fleetio):
    dialog = client.get("/integrations/new?provider=fleetio", headers=HTMX).get_data(True)
    for name in ("drop_driver_name", "coordinate_decimals", "drop_fields"):
        assert f'name="{name}"' in dialog
    redaction = {
        "drop_driver_name": "y",
        "coordinate_decimals": "3",
        "drop_fields": "data.odometer_mi, data.heading",
    }
    response = auth.post("/integrations/new", {**FLEETIO_FORM, **redaction}, MANAGER, htmx=True)
    assert response.status_code == 200
    [saved] = integrations()
    assert (saved.drop_driver_name, saved.coordinate_decimals, saved.drop_fields) == (
        True,
        3,
        ["data.odometer_mi", "data.heading"],
    )
    edit = client.get(f"/integrations/{saved.id}/edit", headers=HTMX).get_data(True)
    assert 'value="data.odometer_mi, data.heading"' in edit and 'value="3"' in edit
    page = html.unescape(client.get(f"/integrations/{saved.id}").get_data(True))
    assert "drivers' names left out · coordinates rounded to 3 decimals" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("coordinate_decimals", "9", "A whole number from 0 to 6"),
        ("drop_fields", "odometer", "paths like"),
        ("drop_fields", "data.vehicle.vin", "always sent"),
        ("drop_fields", "data.nowhere", "no event carries it"),
    ],
)
def test_a_bad_redaction_is_shown_and_nothing_saved(admin, auth, fleetio, field, value, message):
    response = auth.post(
        "/integrations/new", {**FLEETIO_FORM, field: value}, page=MANAGER, htmx=True
    )
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert integrations() == [] and fleetio.requests == []


def test_the_form_needs_its_csrf_token(admin, client, fleetio):
    response = client.post("/integrations/new", data=FLEETIO_FORM)
    assert response.status_code in (400, 422) and integrations() == []


def test_an_unknown_provider_is_not_found(admin, client):
    assert client.get("/integrations/new?provider=teleport").status_code == 404


def test_delete_asks_first_and_leaves_no_messages(admin, client, auth, fleetio):
    integration = create_integration(
        admin.account_id,
        {k: v for k, v in {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": True}.items()},
    )
    db.session.flush()
    db.session.add(
        OutboxMessage(
            target_id=integration.id,
            sequence=1,
            message_id="msg_x",
            event_type="location",
            payload={},
            is_test=False,
        )
    )
    db.session.commit()
    dialog = client.get(f"/manager/targets/{integration.id}/delete", headers=HTMX).get_data(True)
    assert "Delete integration" in dialog
    response = auth.post(f"/manager/targets/{integration.id}/delete", {}, page=MANAGER, htmx=True)
    assert response.status_code == 204
    assert integrations() == []
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_the_integration_page_masks_secrets_and_lists_unmatched_vins(admin, client, fleetio):
    integration = create_integration(
        admin.account_id, {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": False}
    )
    integration.unmatched_vins = ["1M8GDM9AXKP042788"]
    db.session.commit()
    page = client.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert API_KEY not in page and API_KEY[-4:] in page
    assert "1M8GDM9AXKP042788" in page and ACCOUNT_TOKEN in page


def test_the_integration_page_lists_messages_with_times_badges_and_links(admin, client, fleetio):
    integration = create_integration(
        admin.account_id, {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": False}
    )
    db.session.flush()
    db.session.add(
        OutboxMessage(
            target_id=integration.id,
            sequence=1,
            message_id="msg_meter",
            event_type="location",
            payload={"odometer_mi": 48210.5},
            is_test=False,
        )
    )
    db.session.commit()
    page = client.get(f"/integrations/{integration.id}").get_data(as_text=True)
    row = re.search(r"<tr><td class=\"when\">(.*?)</tr>", page, re.S).group(1)
    assert "just now" in row and '<span class="badge warn"' in row and ">Pending<" in row
    link = f"/integrations/{integration.id}/messages/msg_meter"
    assert f'href="{link}"' in row
    message = client.get(link).get_data(as_text=True)
    assert "48210.5" in message and "Not attempted yet" in message and "Redeliver" not in message
    assert f'href="/integrations/{integration.id}"' in message
    assert client.get(f"/integrations/{integration.id}/messages/msg_nope").status_code == 404
    # Another account's integration, or another integration's message: not found.
    other = make_user("Other Co", "admin@other.example.com")
    theirs = create_integration(
        other.account_id, {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": True}
    )
    db.session.commit()
    assert client.get(f"/integrations/{theirs.id}/messages/msg_meter").status_code == 404


def test_another_accounts_integration_is_not_found(admin, client, auth, fleetio):
    other = make_user("Other Co", "admin@other.example.com")
    theirs = create_integration(
        other.account_id, {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": True}
    )
    db.session.commit()
    for path in ("", "/edit", "/delete", "/release"):
        assert client.get(f"/integrations/{theirs.id}{path}").status_code == 404
    for path in ("/edit", "/delete", "/pause", "/resume", "/release"):
        assert auth.post(f"/integrations/{theirs.id}{path}", {}, page=MANAGER).status_code == 404
    technicians = f"/integrations/servicemax/{theirs.id}/technicians"
    assert auth.post(technicians, {}, page=MANAGER).status_code == 404
    assert f'id="integration-{theirs.id}"' not in client.get(MANAGER).get_data(as_text=True)
    assert len(integrations()) == 1


def test_the_api_creates_without_returning_secrets(app, client, fleetio):
    headers = bearer(make_user())
    body = {
        "provider": "fleetio",
        "api_key": API_KEY,
        "account_id": ACCOUNT_TOKEN,
        "update_odometer": True,
        "update_dtcs": False,
    }
    created = client.post("/api/v1/integrations", json=body, headers=headers)
    assert created.status_code == 201, created.json
    assert API_KEY not in created.get_data(as_text=True)
    assert created.json["credentials"]["api_key"].endswith(API_KEY[-4:])
    assert created.json["options"]["update_odometer"] is True
    url = f"/api/v1/integrations/{created.json['id']}"
    assert client.get(url, headers=headers).json["status"] == "active"
    changed = client.patch(url, json={"update_dtcs": True}, headers=headers)
    assert changed.status_code == 200 and changed.json["options"]["update_dtcs"] is True
    refused = client.patch(url, json={"api_key": "wrong-key-1234"}, headers=headers)
    assert refused.status_code == 422 and "credentials" in refused.json["errors"]
    assert client.get(url, headers=headers).json["credentials"]["api_key"].endswith(API_KEY[-4:])
    listed = client.get("/api/v1/integrations", headers=headers).json["integrations"]
    assert [i["id"] for i in listed] == [created.json["id"]]
    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404


def test_the_api_refuses_bad_input_and_servicemax(app, client, fleetio):
    headers = bearer(make_user())
    for body, field in [
        ({"provider": "nope"}, "provider"),
        ({"provider": "fleetio", "account_id": ACCOUNT_TOKEN}, "api_key"),
        ({"provider": "fleetio", "api_key": API_KEY, "account_id": 7}, "account_id"),
        ({"provider": "servicemax"}, "provider"),
    ]:
        response = client.post("/api/v1/integrations", json=body, headers=headers)
        assert response.status_code == 422 and field in response.json["errors"], body
    assert integrations() == []


def test_the_api_answers_every_field_and_a_change_keeps_the_provider(app, client, fleetio):
    headers = bearer(make_user())
    body = {"provider": "fleetio", "api_key": API_KEY, "account_id": ACCOUNT_TOKEN}
    created = client.post("/api/v1/integrations", json=body, headers=headers)
    assert created.status_code == 201, created.json
    assert created.headers["Location"].endswith(f"/api/v1/integrations/{created.json['id']}")
    assert set(created.json) == {
        "id",
        "provider",
        "vehicle_attribute",
        "options",
        "credentials",
        "status",
        "status_reason",
        "queue_depth",
        "total_messages",
        "requests_per_minute",
        "unmatched_vins",
        "release_required",
        "release",
        "drop_driver_name",
        "coordinate_decimals",
        "drop_fields",
        "created_at",
    }
    assert created.json["options"]["update_odometer"] is False  # a box left out
    redaction = [
        created.json[k] for k in ("drop_driver_name", "coordinate_decimals", "drop_fields")
    ]
    assert redaction == [False, None, []]  # nothing redacted unless asked
    assert (created.json["release_required"], created.json["release"]) == (False, None)
    url = f"/api/v1/integrations/{created.json['id']}"
    moved = client.patch(url, json={"provider": "asana", "update_dtcs": True}, headers=headers)
    assert moved.status_code == 422
    assert moved.json["errors"] == {"provider": [KEEPS_PROVIDER]}
    assert client.get(url, headers=headers).json["options"]["update_dtcs"] is False
    # Sending back what was read is no change of provider.
    same = client.patch(url, json={"provider": "fleetio", "update_dtcs": True}, headers=headers)
    assert same.status_code == 200 and same.json["options"]["update_dtcs"] is True
    assert same.json["provider"] == "fleetio"


def test_the_api_keeps_accounts_apart_and_members_read_only(app, client, fleetio):
    admin = make_user()
    mine = create_integration(
        admin.account_id, {**FLEETIO_FORM, "update_odometer": True, "update_dtcs": True}
    )
    db.session.commit()
    other = bearer(make_user("Other Co", "admin@other.example.com"))
    url = f"/api/v1/integrations/{mine.id}"
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, json={"update_dtcs": False}, headers=other).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get("/api/v1/integrations", headers=other).json["integrations"] == []
    member = bearer(make_user(email="m@acme.example.com", role=Role.MEMBER, admin=admin))
    assert client.get(url, headers=member).status_code == 200
    assert client.delete(url, headers=member).status_code == 403
    assert len(integrations()) == 1


@pytest.fixture
def servicetitan(app):
    from tests.fakes.servicetitan import APP_KEY, GPS_PROVIDER, FakeServiceTitan

    server = FakeServiceTitan().start()
    app.config.update(
        FLEETHOOK_SERVICETITAN_AUTH_URL=server.url,
        FLEETHOOK_SERVICETITAN_BASE_URL=server.url,
        FLEETHOOK_SERVICETITAN_APP_KEY=APP_KEY,
        FLEETHOOK_SERVICETITAN_GPS_PROVIDER=GPS_PROVIDER,
    )
    yield server
    server.stop()


def test_the_api_refuses_a_bad_release_form_and_signs_a_good_one(app, client, servicetitan):
    from tests.fakes.servicetitan import CLIENT_ID, CLIENT_SECRET, TENANT

    admin = make_user()
    headers = bearer(admin)
    integration = create_integration(
        admin.account_id,
        {
            "provider": "servicetitan",
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    db.session.commit()
    url = f"/api/v1/integrations/{integration.id}"
    refused = client.post(f"{url}/resume", headers=headers)
    assert refused.status_code == 409 and refused.json["detail"] == "Sign the release form first."
    good = {"signer_name": "Dana Whitfield", "signer_title": "Fleet Manager", "accept": True}
    for body, errors in [
        (
            {**good, "signer_name": "n" * 101, "accept": False},
            {"signer_name": [SIGNER_PROBLEM], "accept": [NOT_ACCEPTED]},
        ),
        (
            {"signer_name": " ", "signer_title": 7},
            {
                "signer_name": [SIGNER_PROBLEM],
                "signer_title": [SIGNER_PROBLEM],
                "accept": [NOT_ACCEPTED],
            },
        ),
        ({**good, "accept": "yes"}, {"accept": [NOT_ACCEPTED]}),
        ({**good, "signed_at": "now"}, {"signed_at": ["Not a field of the release form."]}),
    ]:
        response = client.post(f"{url}/release", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json["errors"] == errors
    assert integrations()[0].release_signed_at is None
    signed = client.post(f"{url}/release", json=good, headers=headers)
    assert signed.status_code == 200 and signed.json["status"] == "active"
    release = signed.json["release"]
    assert (release["signer_name"], release["signer_title"]) == ("Dana Whitfield", "Fleet Manager")
    assert release["client_address"] == "127.0.0.1" and release["signed_at"]


def test_servicetitan_waits_for_the_release_form(admin, client, auth, servicetitan):
    from tests.fakes.servicetitan import CLIENT_ID, CLIENT_SECRET, TENANT

    form = {
        "provider": "servicetitan",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    response = auth.post("/integrations/new", form, page=MANAGER, htmx=True)
    assert response.status_code == 200 and "Release form" in response.get_data(as_text=True)
    [integration] = integrations()
    assert integration.status == "paused" and integration.release_signed_at is None
    release = f"/integrations/{integration.id}/release"
    # Resuming before the release is signed opens the release form instead.
    resumed = auth.post(f"/manager/targets/{integration.id}/resume", {}, page=MANAGER, htmx=True)
    assert "Sign and activate" in resumed.get_data(as_text=True)
    assert integrations()[0].status == "paused"
    refused = auth.post(
        release, {"signer_name": "Dana Whitfield", "signer_title": ""}, page=MANAGER, htmx=True
    )
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "Required, at most 100 characters." in page and "Accept the release" in page
    assert integrations()[0].release_signed_at is None
    signed = auth.post(
        release,
        {"signer_name": "Dana Whitfield", "signer_title": "Fleet Manager", "accept": "y"},
        page=MANAGER,
        htmx=True,
    )
    assert signed.status_code == 204
    [integration] = integrations()
    assert integration.status == "active" and integration.release_user_id == admin.id
    assert (integration.release_signer_name, integration.release_signer_title) == (
        "Dana Whitfield",
        "Fleet Manager",
    )
    assert integration.release_client_address == "127.0.0.1"
    assert "Dana Whitfield (Fleet Manager)" in client.get(
        f"/integrations/{integration.id}"
    ).get_data(as_text=True)


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


def test_connect_with_salesforce_checks_the_state(admin, client, salesforce):
    from urllib.parse import parse_qs, urlsplit

    dialog = client.get("/integrations/new?provider=servicemax", headers=HTMX).get_data(True)
    assert "Connect with Salesforce" in dialog
    start = client.get("/integrations/servicemax/connect")
    assert start.status_code == 302
    target = urlsplit(start.headers["Location"])
    assert f"{target.scheme}://{target.netloc}" == salesforce.url
    assert target.path == "/services/oauth2/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code" and query["state"]
    callback = "/integrations/servicemax/callback"
    code = salesforce.issue_code(query["redirect_uri"])
    forged = client.get(f"{callback}?code={code}&state=not-the-state")
    assert forged.status_code == 400 and integrations() == []
    # The state was used up by the refused attempt: sign in again.
    start = client.get("/integrations/servicemax/connect")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    code = salesforce.issue_code(query["redirect_uri"])
    done = client.get(f"{callback}?code={code}&state={query['state']}")
    assert done.status_code == 302
    [integration] = integrations()
    assert done.headers["Location"].endswith(f"/integrations/{integration.id}/release")
    assert integration.provider == "servicemax" and integration.status == "paused"
    # Salesforce sends the browser to a page, not a dialog: its form posts as a page.
    release = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Sign and activate" in release and "hx-post" not in release
    # Neither token reaches a page or the API.
    from integrations.base import secrets_of

    tokens = [v for v in secrets_of(integration).values() if isinstance(v, str) and len(v) > 8]
    page = client.get(f"/integrations/{integration.id}").get_data(as_text=True)
    api = client.get(f"/api/v1/integrations/{integration.id}", headers=bearer(admin)).get_data(
        as_text=True
    )
    assert tokens and not any(token in page or token in api for token in tokens)


def test_salesforce_sign_in_is_refused_past_the_integrations_quota(admin, client, salesforce):
    from urllib.parse import parse_qs, urlsplit

    from accounts.models import AccountQuota

    start = client.get("/integrations/servicemax/connect")  # sent to Salesforce: room left
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    # Meanwhile the operator sets the account's limit to what it has: none.
    db.session.add(AccountQuota(account_id=admin.account_id, integrations=0))
    db.session.commit()
    code = salesforce.issue_code(query["redirect_uri"])
    done = client.get(f"/integrations/servicemax/callback?code={code}&state={query['state']}")
    assert done.status_code == 302 and integrations() == []
    refused = client.get("/integrations/servicemax/connect")  # not sent to Salesforce at all
    assert refused.headers["Location"].endswith("/webhooks/")
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "Your account may have 0 integrations, and has 0" in page


def test_signing_in_to_salesforce_again_renews_the_tokens(admin, client, salesforce):
    from urllib.parse import parse_qs, urlsplit

    from integrations.base import secrets_of

    def sign_in(path: str):
        start = client.get(path)
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
        code = salesforce.issue_code(query["redirect_uri"])
        return client.get(f"/integrations/servicemax/callback?code={code}&state={query['state']}")

    sign_in("/integrations/servicemax/connect")
    [integration] = integrations()
    before = secrets_of(integration)
    integration.status, integration.status_reason = "needs_attention", "Needs attention: 401"
    db.session.commit()
    page = client.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "Sign in to Salesforce again" in page
    again = sign_in(f"/integrations/servicemax/connect?integration={integration.id}")
    assert again.headers["Location"].endswith(f"/integrations/{integration.id}")
    [renewed] = integrations()  # the same integration, not a new one
    assert renewed.status == "active" and secrets_of(renewed) != before
