"""Admins add and remove the account's users; every form error shows next to its
field and saves nothing."""

from __future__ import annotations

from accounts.models import Role, User
from core.extensions import db
from tests.conftest import AuthActions, make_user


def users_in_db() -> int:
    return db.session.query(User).count()


def test_an_admin_adds_a_member_who_can_then_log_in(app, client, auth):
    make_user()
    auth.login("admin@acme.example.com")
    response = auth.post(
        "/account/users",
        {
            "email": "Driver.Desk@acme.example.com",
            "role": "member",
            "password": "another long password",
        },
    )
    assert response.status_code == 302
    page = client.get("/account/users")
    assert b"driver.desk@acme.example.com can now log in as member." in page.data
    other = AuthActions(app.test_client())
    assert other.login("driver.desk@acme.example.com", "another long password").status_code == 302


def test_bad_user_input_is_shown_by_field_and_nothing_saved(app, auth):
    make_user()
    auth.login("admin@acme.example.com")
    response = auth.post(
        "/account/users", {"email": "admin@acme.example.com", "role": "owner", "password": "short"}
    )
    assert response.status_code == 422
    assert b"A user with this email address already exists." in response.data
    assert b"Use at least 12 characters." in response.data
    assert b'aria-invalid="true"' in response.data
    assert users_in_db() == 1


def test_the_last_admin_cannot_be_removed(app, client, auth):
    admin = make_user()
    auth.login("admin@acme.example.com")
    response = auth.post(f"/account/users/{admin.id}/remove")
    assert response.status_code == 302
    assert b"last admin cannot be removed" in client.get("/account/users").data
    assert users_in_db() == 1


def test_an_admin_removes_a_member(app, client, auth):
    admin = make_user()
    member_id = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin).id
    auth.login("admin@acme.example.com")
    auth.post(f"/account/users/{member_id}/remove")
    assert db.session.get(User, member_id) is None
    assert b"viewer@acme.example.com removed." in client.get("/account/users").data
