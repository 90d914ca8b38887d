"""Two accounts with identically named objects never see or touch each other's."""

from __future__ import annotations

from accounts.models import ApiToken, Role, User
from extensions import db
from tests.conftest import bearer, make_user


def two_accounts():
    acme = make_user(account_name="Fleet", email="admin@acme.example.com")
    blue = make_user(account_name="Fleet", email="admin@blue.example.com")
    acme_headers, blue_headers = bearer(acme, "Dispatch"), bearer(blue, "Dispatch")
    blue_token = db.session.query(ApiToken).filter_by(user_id=blue.id).one()
    return acme, blue, acme_headers, blue_headers, blue_token


def test_api_another_accounts_token_is_404_and_unchanged(app, client):
    _, _, acme_headers, blue_headers, blue_token = two_accounts()
    response = client.delete(f"/api/v1/tokens/{blue_token.id}", headers=acme_headers)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    db.session.refresh(blue_token)
    assert blue_token.revoked_at is None
    assert client.get("/api/v1/account", headers=blue_headers).status_code == 200


def test_api_listings_hold_only_the_callers_objects(app, client):
    acme, _, acme_headers, _, blue_token = two_accounts()
    tokens = client.get("/api/v1/tokens", headers=acme_headers).json["tokens"]
    assert [t["user"] for t in tokens] == ["admin@acme.example.com"]
    assert blue_token.id not in {t["id"] for t in tokens}
    assert client.get("/api/v1/account", headers=acme_headers).json["id"] == acme.account_id


def test_portal_another_accounts_token_is_404_and_unchanged(app, client, auth):
    _, _, _, _, blue_token = two_accounts()
    auth.login("admin@acme.example.com")
    response = auth.post(f"/account/tokens/{blue_token.id}/revoke", page="/account/tokens")
    assert response.status_code == 404
    db.session.refresh(blue_token)
    assert blue_token.revoked_at is None
    listing = client.get("/account/tokens")
    assert listing.data.count(b"<td>Dispatch</td>") == 1
    assert b"admin@blue.example.com" not in listing.data


def test_portal_another_accounts_user_is_404_and_stays(app, client, auth):
    _, blue, _, _, _ = two_accounts()
    make_user(email="member@blue.example.com", role=Role.MEMBER, admin=blue)
    member = db.session.query(User).filter_by(email="member@blue.example.com").one()
    auth.login("admin@acme.example.com")
    assert auth.post(f"/account/users/{member.id}/remove").status_code == 404
    assert db.session.get(User, member.id) is not None
    assert b"blue.example.com" not in client.get("/account/users").data
