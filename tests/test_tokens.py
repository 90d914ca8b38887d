"""API tokens: created in the portal and the CLI, shown once, stored hashed,
checked on every API request; their scopes (admin, read, telemetry:write), capped
by the user's role, and their expiry."""

from __future__ import annotations

import re
from datetime import timedelta

import flask_migrate
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from accounts.models import ApiToken, Role, Scope
from accounts.schemas import EXPIRY_FORMAT, EXPIRY_IN_THE_PAST
from accounts.tokens import issue_token
from core.errors import ValidationError
from core.extensions import db, migrate
from core.times import utcnow
from tests.conftest import bearer, make_user
from tests.test_database import empty_database

VIN = "1FUJGLDR3CLBP8834"


def test_a_token_created_in_the_portal_is_shown_once_and_works(app, client, auth):
    make_user()
    auth.login("admin@acme.example.com")
    page = auth.post("/account/tokens", {"name": "Dispatch system"}, page="/account/tokens")
    assert page.status_code == 200
    clear = re.search(rb'id="new-token">(fh_[^<]+)<', page.data).group(1).decode()
    listing = client.get("/account/tokens")
    assert clear.encode() not in listing.data
    assert b"Dispatch system" in listing.data
    response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {clear}"})
    assert response.status_code == 200
    assert response.json["user"]["email"] == "admin@acme.example.com"


def test_a_token_name_is_required_and_nothing_is_saved_without_it(app, auth):
    make_user()
    auth.login("admin@acme.example.com")
    page = auth.post("/account/tokens", {"name": "   "}, page="/account/tokens")
    assert page.status_code == 422
    assert b"Name the token after what will use it." in page.data
    assert db.session.query(ApiToken).count() == 0


def test_no_token_is_stored_in_plaintext(app, client):
    user = make_user()
    clear = bearer(user)["Authorization"].removeprefix("Bearer ")
    rows = db.session.execute(text("SELECT * FROM api_token")).all()
    assert rows
    dump = " ".join(str(value) for row in rows for value in row)
    assert clear not in dump
    assert clear[8:] not in dump  # not even most of it


def test_unknown_missing_and_malformed_tokens_get_401_json(app, client):
    make_user()
    for headers in [{}, {"Authorization": "Bearer fh_unknown"}, {"Authorization": "Basic abc"}]:
        response = client.get("/api/v1/account", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_gets_401(app, client, auth):
    user = make_user()
    headers = bearer(user)
    assert client.get("/api/v1/account", headers=headers).status_code == 200
    token = db.session.query(ApiToken).one()
    auth.login("admin@acme.example.com")
    auth.post(f"/account/tokens/{token.id}/revoke", page="/account/tokens")
    assert client.get("/api/v1/account", headers=headers).status_code == 401


def test_a_members_token_may_read_but_gets_403_on_admin_actions(app, client):
    admin = make_user()
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    headers = bearer(member)
    assert client.get("/api/v1/tokens", headers=headers).status_code == 200
    response = client.post("/api/v1/tokens", json={"name": "More"}, headers=headers)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert client.delete("/api/v1/tokens/1", headers=headers).status_code == 403
    assert db.session.query(ApiToken).count() == 1


def test_an_admin_token_creates_and_revokes_tokens(app, client):
    headers = bearer(make_user())
    created = client.post("/api/v1/tokens", json={"name": "Gateway"}, headers=headers)
    assert created.status_code == 201
    assert created.json["token"].startswith("fh_")
    new_headers = {"Authorization": f"Bearer {created.json['token']}"}
    assert client.get("/api/v1/account", headers=new_headers).status_code == 200
    listed = client.get("/api/v1/tokens", headers=headers).json["tokens"]
    assert {t["name"] for t in listed} == {"test", "Gateway"}
    assert all("token" not in t for t in listed)
    deleted = client.delete(f"/api/v1/tokens/{created.json['id']}", headers=headers)
    assert deleted.status_code == 204
    assert client.get("/api/v1/account", headers=new_headers).status_code == 401


def test_cli_creates_an_account_and_prints_a_token_alone_on_the_last_line(app, client):
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
            "a long enough password",
        ]
    )
    assert created.exit_code == 0, created.output
    issued = runner.invoke(args=["tokens", "create", "--email", "ops@blue.example.com"])
    assert issued.exit_code == 0
    token = issued.output.strip().splitlines()[-1]
    response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {token}"})
    assert response.json["name"] == "Blue Trucks"
    assert response.json["user"]["role"] == "admin"


def test_cli_refuses_bad_input_and_creates_nothing(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "accounts",
            "create",
            "--name",
            "",
            "--email",
            "not-an-address",
            "--password",
            "short",
        ]
    )
    assert result.exit_code == 2
    assert "--password: Use at least 12 characters." in result.output
    assert "--email:" in result.output and "--name:" in result.output
    assert db.session.execute(text("SELECT count(*) FROM account")).scalar() == 0
    unknown = runner.invoke(args=["tokens", "create", "--email", "ghost@acme.example.com"])
    assert unknown.exit_code == 2
    assert db.session.query(ApiToken).count() == 0


def test_cli_creates_a_scoped_expiring_token_and_refuses_bad_ones(app, client):
    user = make_user(email="gw@acme.example.com")
    runner = app.test_cli_runner()
    base = ["tokens", "create", "--email", user.email]
    for args, error in [
        (["--scope", "owner"], "--scope: One of admin, read, telemetry:write."),
        (["--expires-at", "next week"], "--expires-at: An RFC 3339 time"),
        (["--expires-at", "2020-01-01T00:00:00Z"], "--expires-at:"),
    ]:
        refused = runner.invoke(args=base + args)
        assert refused.exit_code == 2 and error in refused.output, refused.output
    assert db.session.query(ApiToken).count() == 0

    later = (utcnow() + timedelta(days=90)).replace(microsecond=0)
    issued = runner.invoke(
        args=base + ["--scope", "telemetry:write", "--expires-at", later.isoformat()]
    )
    assert issued.exit_code == 0, issued.output
    assert f"scope telemetry:write, expires {later.isoformat()}" in issued.output
    headers = {"Authorization": f"Bearer {issued.output.strip().splitlines()[-1]}"}
    assert client.get("/api/v1/account", headers=headers).status_code == 403
    token = db.session.scalar(select(ApiToken))
    assert (token.scope, token.expires_at) == (Scope.TELEMETRY_WRITE, later)


def test_tokens_work_in_every_process(app, make_app):
    """A token issued here is accepted by a second app instance: nothing is process-local."""
    headers = bearer(make_user())
    other = make_app().test_client()
    assert other.get("/api/v1/account", headers=headers).status_code == 200


# --- scopes and expiry --------------------------------------------------------


def _token_headers(clear: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {clear}"}


def _report(minutes_ago: int = 1) -> dict[str, object]:
    moment = utcnow().replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {
        "vin": VIN,
        "type": "position",
        "time": moment.isoformat().replace("+00:00", "Z"),
        "latitude": 41.88,
        "longitude": -87.63,
        "speed_mph": 30,
        "heading": 90,
        "ignition": True,
    }


def test_the_portal_creates_a_scoped_expiring_token_and_lists_scope_expiry_and_last_use(
    app, client, auth
):
    make_user()
    auth.login("admin@acme.example.com")
    form = client.get("/account/tokens").get_data(as_text=True)
    assert 'type="datetime-local"' in form and 'name="expires_at"' in form
    for scope in ("admin", "read", "telemetry:write"):
        assert f'<option value="{scope}"' in form or f'<option selected value="{scope}"' in form
    expires = (utcnow() + timedelta(days=30)).replace(second=0, microsecond=0)
    page = auth.post(
        "/account/tokens",
        {"name": "Reporting", "scope": "read", "expires_at": expires.strftime("%Y-%m-%dT%H:%M")},
        page="/account/tokens",
    )
    assert page.status_code == 200
    clear = re.search(rb'id="new-token">(fh_[^<]+)<', page.data).group(1).decode()
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == "Reporting"))
    assert (token.scope, token.expires_at) == ("read", expires)  # the form's time is UTC

    assert client.get("/api/v1/vehicles", headers=_token_headers(clear)).status_code == 200
    refused = client.post("/api/v1/drivers", json={"name": "X"}, headers=_token_headers(clear))
    assert refused.status_code == 403 and "read" in refused.json["detail"]

    listing = client.get("/account/tokens").get_data(as_text=True)
    row = listing[listing.index("<td>Reporting</td>") :].split("</tr>")[0]
    assert "<code>read</code>" in row
    assert f'datetime="{expires.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in row  # its expiry
    assert "just now" in row  # last used: the two API calls above
    assert "Active" in row
    assert "Scope" in listing and "Expires" in listing and "Last used" in listing


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        ({"scope": "superuser"}, "scope", "One of admin, read, telemetry:write."),
        ({"expires_at": "2020-01-01T10:00"}, "expires_at", "Pick a time in the future"),
        ({"expires_at": "next tuesday"}, "expires_at", "Give a date and time"),
    ],
)
def test_the_portal_refuses_a_bad_scope_or_expiry_and_creates_nothing(
    app, auth, fields, field_id, message
):
    make_user()
    auth.login("admin@acme.example.com")
    page = auth.post("/account/tokens", {"name": "Gateway", **fields}, page="/account/tokens")
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert message in html
    assert f'id="{field_id}-errors"' in html or f'id="{field_id}"' in html
    assert db.session.query(ApiToken).filter_by(name="Gateway").count() == 0


def test_the_api_creates_a_token_with_scope_and_expiry(app, client):
    headers = bearer(make_user())
    expires = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    created = client.post(
        "/api/v1/tokens",
        json={
            "name": "Gateway",
            "scope": "telemetry:write",
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
        },
        headers=headers,
    )
    assert created.status_code == 201, created.json
    assert created.json["scope"] == "telemetry:write"
    assert created.json["expires_at"] == expires.isoformat()
    listed = {t["name"]: t for t in client.get("/api/v1/tokens", headers=headers).json["tokens"]}
    assert listed["Gateway"]["scope"] == "telemetry:write"
    assert (listed["test"]["scope"], listed["test"]["expires_at"]) == ("admin", None)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "G", "scope": "write"}, {"scope"}),
        ({"name": "G", "scope": ["read"]}, {"scope"}),
        ({"name": "G", "scope": ""}, {"scope"}),
        ({"name": "G", "expires_at": "2020-01-01T00:00:00Z"}, {"expires_at"}),
        ({"name": "G", "expires_at": "2030-01-01T00:00:00"}, {"expires_at"}),  # no offset
        ({"name": "G", "expires_at": 1893456000}, {"expires_at"}),
        (
            {"name": " ", "scope": "root", "expires_at": "2020-01-01T00:00:00Z"},
            {"name", "scope", "expires_at"},
        ),
    ],
)
def test_the_api_refuses_a_bad_scope_or_expiry_with_422_and_creates_nothing(
    app, client, body, fields
):
    headers = bearer(make_user())
    response = client.post("/api/v1/tokens", json=body, headers=headers)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.json["errors"]) == fields
    assert db.session.query(ApiToken).count() == 1


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "G", "scope": "superuser"}, {"scope": ["One of admin, read, telemetry:write."]}),
        ({"name": "G", "expires_at": "next week"}, {"expires_at": [EXPIRY_FORMAT]}),
        ({"name": "G", "expires_at": 1893456000}, {"expires_at": [EXPIRY_FORMAT]}),
        ({"name": "G", "expires_at": "2020-01-01T00:00:00Z"}, {"expires_at": [EXPIRY_IN_THE_PAST]}),
        # A misspelt field would otherwise make a token that never expires.
        (
            {"name": "G", "expires": "2030-01-01T00:00:00Z"},
            {"expires": ["Not a field of a token."]},
        ),
    ],
)
def test_the_api_says_what_is_wrong_with_each_field_of_a_new_token(app, client, body, errors):
    headers = bearer(make_user())
    response = client.post("/api/v1/tokens", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"] == errors
    assert db.session.query(ApiToken).count() == 1


def test_a_null_scope_and_expiry_are_as_if_left_out(app, client):
    admin = make_user()
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    _, clear = issue_token(admin, "Maker")
    db.session.commit()
    created = client.post(
        "/api/v1/tokens",
        json={"name": "  Gateway  ", "scope": None, "expires_at": None},
        headers=_token_headers(clear),
    )
    assert created.status_code == 201, created.json
    assert set(created.json) == {
        "id",
        "name",
        "hint",
        "user",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "token",
    }
    assert (created.json["name"], created.json["scope"], created.json["expires_at"]) == (
        "Gateway",
        "admin",
        None,
    )
    assert created.json["user"] == admin.email and created.json["revoked_at"] is None
    token, _ = issue_token(member, "Reader", None, None)
    assert token.scope == "read"


def test_the_account_answer_names_the_account_and_the_user(app, client):
    admin = make_user()
    response = client.get("/api/v1/account", headers=bearer(admin))
    assert response.json == {
        "id": admin.account_id,
        "name": "Acme Haulage",
        "user": {"id": admin.id, "email": admin.email, "role": "admin"},
    }


def test_an_expired_token_gets_401_expired_like_a_revoked_one(app, client):
    user = make_user()
    headers = bearer(user)
    expiring, clear = issue_token(user, "Short-lived", expires_at=utcnow() + timedelta(minutes=5))
    db.session.commit()
    expiring_id = expiring.id
    assert client.get("/api/v1/account", headers=_token_headers(clear)).status_code == 200
    db.session.execute(
        text("UPDATE api_token SET expires_at = :past, last_used_at = NULL WHERE id = :id"),
        {"past": utcnow() - timedelta(seconds=1), "id": expiring_id},
    )
    db.session.commit()

    expired = client.get("/api/v1/account", headers=_token_headers(clear))
    revoked_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "test"))
    assert client.delete(f"/api/v1/tokens/{revoked_id}", headers=headers).status_code == 204
    revoked = client.get("/api/v1/account", headers=headers)
    assert expired.status_code == revoked.status_code == 401
    assert expired.mimetype == revoked.mimetype == "application/problem+json"
    assert expired.headers["WWW-Authenticate"] == revoked.headers["WWW-Authenticate"]
    assert set(expired.json) == set(revoked.json) == {"type", "title", "status", "detail"}
    assert expired.json["title"] == revoked.json["title"] == "Unauthorized"
    assert "expired" in expired.json["detail"] and "revoked" in revoked.json["detail"]
    # Nor does an expired token count as used, or post telemetry.
    assert db.session.get(ApiToken, expiring_id).last_used_at is None
    assert (
        client.post("/api/v1/telemetry", json=_report(), headers=_token_headers(clear)).status_code
        == 401
    )


def test_the_token_page_shows_an_expired_token_as_expired(app, client, auth):
    user = make_user()
    issue_token(user, "Old gateway", expires_at=utcnow() + timedelta(minutes=5))
    db.session.commit()
    db.session.execute(
        text("UPDATE api_token SET expires_at = :past"), {"past": utcnow() - timedelta(days=3)}
    )
    db.session.commit()
    auth.login("admin@acme.example.com")
    listing = client.get("/account/tokens").get_data(as_text=True)
    row = listing[listing.index("<td>Old gateway</td>") :].split("</tr>")[0]
    assert "Expired" in row and "Revoke" in row  # an expired token may still be revoked


def test_a_telemetry_token_posts_telemetry_and_a_read_token_cannot(app, client):
    admin = make_user()
    headers = bearer(admin)
    made = client.post("/api/v1/vehicles", json={"name": "Truck 42", "vin": VIN}, headers=headers)
    assert made.status_code == 201
    _, gateway = issue_token(admin, "Gateway", Scope.TELEMETRY_WRITE)
    _, reader = issue_token(admin, "Reader", Scope.READ)
    db.session.commit()
    posted = client.post("/api/v1/telemetry", json=_report(2), headers=_token_headers(gateway))
    assert posted.status_code == 202 and posted.json["accepted"] == 1
    refused = client.post("/api/v1/telemetry", json=_report(1), headers=_token_headers(reader))
    assert refused.status_code == 403
    assert (
        refused.json["detail"] == "The token's scope is read; this needs the scope telemetry:write."
    )
    # An admin token keeps ingesting, as before scopes.
    assert client.post("/api/v1/telemetry", json=_report(1), headers=headers).status_code == 202
    vehicle = client.get("/api/v1/vehicles", headers=headers).json["vehicles"][0]
    assert vehicle["last_location"] is not None


def test_a_members_token_is_never_more_than_read(app, client):
    admin = make_user()
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    for scope in (Scope.ADMIN, Scope.TELEMETRY_WRITE):
        with pytest.raises(ValidationError) as refused:
            issue_token(member, "Too much", scope)
        assert refused.value.errors == {"scope": ["A member's token may only have the scope read."]}
    db.session.rollback()
    token, clear = issue_token(member, "Default")  # the CLI's way: no scope given
    db.session.commit()
    assert token.scope == "read"
    assert db.session.query(ApiToken).count() == 1

    # A member's token stored as admin (every token made before scopes) is capped.
    db.session.execute(text("UPDATE api_token SET scope = 'admin'"))
    db.session.commit()
    headers = _token_headers(clear)
    assert client.get("/api/v1/webhooks", headers=headers).status_code == 200
    for method, path, body in (
        ("POST", "/api/v1/drivers", {"name": "X"}),
        ("POST", "/api/v1/telemetry", _report()),
        ("GET", "/api/v1/audit-events", None),
    ):
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert "member" in response.json["detail"]


def test_an_admins_read_token_may_not_read_the_audit_log(app, client):
    admin = make_user()
    _, reader = issue_token(admin, "Reader", Scope.READ)
    db.session.commit()
    response = client.get("/api/v1/audit-events", headers=_token_headers(reader))
    assert response.status_code == 403
    assert client.get("/api/v1/audit-events", headers=bearer(admin)).status_code == 200


def test_the_migration_gives_existing_tokens_the_admin_scope_and_no_expiry(
    make_app, environment, tmp_path
):
    with empty_database(environment["DATABASE_URL"], tmp_path) as url:
        app = make_app(SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            script = ScriptDirectory.from_config(migrate.get_config())
            revision = script.get_revision("a9c3e5f7b2d1")
            flask_migrate.upgrade(revision=revision.down_revision)
            db.session.execute(
                text(
                    "INSERT INTO account (id, name, created_at, landmarks_version) "
                    "VALUES (1, 'Old', CURRENT_TIMESTAMP, 0)"
                )
            )
            db.session.execute(
                text(
                    'INSERT INTO "user" (id, account_id, email, password_hash, role, created_at) '
                    "VALUES (1, 1, 'old@example.com', 'x', 'admin', CURRENT_TIMESTAMP)"
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO api_token"
                    " (account_id, user_id, name, token_hash, hint, created_at)"
                    " VALUES (1, 1, 'Old', 'h', 'fh_old', CURRENT_TIMESTAMP)"
                )
            )
            db.session.commit()
            flask_migrate.upgrade(revision="a9c3e5f7b2d1")
            row = db.session.execute(text("SELECT scope, expires_at FROM api_token")).one()
            assert tuple(row) == ("admin", None)
            db.session.remove()
            flask_migrate.downgrade(revision="base")
            db.engine.dispose()
