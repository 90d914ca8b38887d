"""Logging in and out, the failed-login limit, CSRF, and what members may do."""

from __future__ import annotations

from accounts.models import Role
from tests.conftest import AuthActions, csrf_token, make_user


def test_login_with_the_right_password_opens_the_overview(app, client, auth):
    make_user(account_name="Acme Haulage", email="dispatch@acme.example.com")
    response = auth.login("Dispatch@Acme.example.com")  # addresses are case-insensitive
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert b"Acme Haulage" in page.data


def test_wrong_password_shows_an_error_and_logs_nobody_in(app, client, auth):
    make_user()
    response = auth.login("admin@acme.example.com", "not the password")
    assert response.status_code == 200
    assert b"Wrong email address or password." in response.data
    assert client.get("/").status_code == 302


def test_unknown_address_gets_the_same_answer_as_a_wrong_password(app, auth):
    response = auth.login("nobody@acme.example.com", "whatever it is")
    assert b"Wrong email address or password." in response.data


def test_login_redirects_only_to_paths_of_this_site(app, client):
    make_user()
    for target, expected in [
        ("/account/tokens", "/account/tokens"),
        ("https://evil.example.net/", "/"),
        ("//evil.example.net/", "/"),
        ("/\\evil.example.net", "/"),
    ]:
        page = client.get("/login")
        response = client.post(
            "/login",
            query_string={"next": target},
            data={
                "email": "admin@acme.example.com",
                "password": "correct horse battery",
                "csrf_token": csrf_token(page.data),
            },
        )
        assert response.headers["Location"] == expected
        client.post("/logout", data={"csrf_token": csrf_token(client.get("/").data)})


def test_the_attempt_past_the_limit_gets_429_with_retry_after(app, auth):
    make_user()
    for _ in range(5):
        assert auth.login("admin@acme.example.com", "wrong guess").status_code == 200
    blocked = auth.login("admin@acme.example.com", "wrong guess")
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 15 * 60
    assert b"Too many failed attempts" in blocked.data
    # Even the right password is refused until the window passes.
    assert auth.login("admin@acme.example.com").status_code == 429


def test_the_limit_holds_across_processes(app, make_app):
    """Failures counted by one app are seen by another: the counter lives in Redis."""
    make_user()
    first, second = AuthActions(app.test_client()), AuthActions(make_app().test_client())
    for _ in range(3):
        first.login("admin@acme.example.com", "wrong guess")
    for _ in range(2):
        second.login("admin@acme.example.com", "wrong guess")
    assert first.login("admin@acme.example.com", "wrong guess").status_code == 429


def test_a_successful_login_forgets_the_failures_of_that_email(app, auth):
    make_user()
    for _ in range(4):
        auth.login("admin@acme.example.com", "wrong guess")
    assert auth.login("admin@acme.example.com").status_code == 302
    auth.logout()
    for _ in range(5):
        assert auth.login("admin@acme.example.com", "wrong guess").status_code == 200


def test_logout_ends_the_session(app, client, auth):
    make_user()
    auth.login("admin@acme.example.com")
    response = auth.logout()
    assert response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_a_post_without_csrf_token_is_refused(app, client):
    make_user()
    response = client.post(
        "/login", data={"email": "admin@acme.example.com", "password": "correct horse battery"}
    )
    assert response.status_code == 400
    assert b"Form expired" in response.data
    assert client.get("/").status_code == 302


def test_htmx_requests_carry_the_csrf_token_in_a_header(app, client, auth):
    make_user()
    auth.login("admin@acme.example.com")
    page = client.get("/account/tokens")
    token = csrf_token(page.data)
    assert b"hx-headers=" in page.data
    refused = client.post("/account/tokens", data={"name": "CI"})
    assert refused.status_code == 400
    accepted = client.post("/account/tokens", data={"name": "CI"}, headers={"X-CSRFToken": token})
    assert accepted.status_code == 200


def test_session_cookie_flags(app, auth):
    make_user()
    response = auth.login("admin@acme.example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie


def test_member_may_look_but_not_change(app, client, auth):
    admin = make_user()
    make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    assert client.get("/account/tokens").status_code == 200
    assert auth.post("/account/tokens", {"name": "Mine"}).status_code == 403
    assert auth.post("/account/users", {"email": "x@acme.example.com"}).status_code == 403
    assert auth.post(f"/account/users/{admin.id}/remove").status_code == 403


def test_pages_need_a_login(app, client):
    for path in ["/", "/account/tokens", "/account/users", "/webhooks/"]:
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
