"""API tokens: created in the portal and the CLI, shown once, stored hashed,
checked on every API request."""

from __future__ import annotations

import re

from sqlalchemy import text

from accounts.models import ApiToken, Role
from extensions import db
from tests.conftest import bearer, make_user


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


def test_tokens_work_in_every_process(app, make_app):
    """A token issued here is accepted by a second app instance: nothing is process-local."""
    headers = bearer(make_user())
    other = make_app().test_client()
    assert other.get("/api/v1/account", headers=headers).status_code == 200
