"""Logging in and out, the failed-login limit, CSRF, and what members may do."""

from __future__ import annotations

import threading

import pytest

from accounts.models import Role
from core.extensions import redis_client
from tests.conftest import NAMESPACE, AuthActions, csrf_token, make_user


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


def wrong_password_answers(app, addresses, email="admin@acme.example.com", forwarded=False):
    """Wrong-password attempts from each of `addresses` in turn, one client each
    (the address as REMOTE_ADDR, or as a proxy's X-Forwarded-For): the status codes."""
    answers = []
    for address in addresses:
        client = app.test_client()
        if forwarded:
            client.environ_base["HTTP_X_FORWARDED_FOR"] = address
        else:
            client.environ_base["REMOTE_ADDR"] = address
        answers.append(AuthActions(client).login(email, "wrong guess").status_code)
    return answers


def test_parallel_attempts_past_the_limit_never_reach_the_password_check(app):
    """12 wrong passwords at once against a limit of 5: 5 are checked (and answered
    "wrong password"), the other 7 are refused before the check."""
    make_user()
    clients = [app.test_client() for _ in range(12)]
    tokens = [csrf_token(client.get("/login").data) for client in clients]
    start = threading.Barrier(len(clients))
    answers: list[int] = []

    def attempt(client, token):
        start.wait()
        response = client.post(
            "/login",
            data={"email": "admin@acme.example.com", "password": "wrong", "csrf_token": token},
        )
        answers.append(response.status_code)

    threads = [
        threading.Thread(target=attempt, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200] * 5 + [429] * 7


@pytest.mark.app_config(LOGIN_FAILURE_LIMIT_PER_EMAIL="8 per 15 minutes")
def test_a_stranger_cannot_lock_the_user_out(app):
    make_user()
    stranger = wrong_password_answers(app, ["203.0.113.9"] * 20)
    assert stranger == [200] * 5 + [429] * 15
    # The stranger's refused attempts counted nowhere else: the user gets in.
    user = app.test_client()
    user.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert AuthActions(user).login("admin@acme.example.com").status_code == 302


@pytest.mark.app_config(LOGIN_FAILURE_LIMIT_PER_EMAIL="8 per 15 minutes")
def test_many_addresses_guessing_one_account_meet_the_per_email_limit(app):
    make_user()
    answers = wrong_password_answers(app, ["203.0.113.1"] * 4 + ["203.0.113.2"] * 4)
    assert answers == [200] * 8
    blocked = wrong_password_answers(app, ["203.0.113.3"])
    assert blocked == [429]


def namespace_keys(app):
    return [key.decode() for key in redis_client().scan_iter(match=f"*{NAMESPACE}*")]


def test_the_email_is_kept_out_of_the_limiter_keys(app):
    make_user()
    longest = "a" * 242 + "@example.com"  # 254 characters: the longest accepted
    assert wrong_password_answers(app, ["203.0.113.9"], email=longest) == [200]
    keys = namespace_keys(app)
    assert keys
    assert all(len(key) < 160 and "example.com" not in key for key in keys), keys


def test_an_overlong_email_is_a_form_error_and_counts_nowhere(app, auth):
    make_user()
    response = auth.login("a" * 400_000 + "@example.com", "wrong guess")
    assert response.status_code == 200
    assert b"At most 254 characters." in response.data
    assert not [key for key in namespace_keys(app) if "login" in key]


def test_ipv6_clients_are_limited_per_64(app):
    make_user()
    one_64 = ["2001:db8:1:2::10", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::30"]
    assert wrong_password_answers(app, one_64 * 2) == [200] * 5 + [429]
    # Another /64 next door, and an IPv4 client, have their own counts.
    assert wrong_password_answers(app, ["2001:db8:1:3::10", "192.0.2.10"]) == [200, 200]


def test_ipv4_clients_are_limited_per_address(app):
    make_user()
    assert wrong_password_answers(app, ["192.0.2.10"] * 5) == [200] * 5
    assert wrong_password_answers(app, ["192.0.2.11", "::ffff:192.0.2.10"]) == [200, 429]


@pytest.mark.app_config(FLEETHOOK_TRUSTED_PROXIES=1)
def test_behind_a_proxy_the_forwarded_address_is_limited(app):
    """ProxyFix gives the client's address: the /64 rule holds on it."""
    make_user()
    one_64 = [f"2001:db8:7:7::{n}" for n in range(1, 7)]
    answers = wrong_password_answers(app, [*one_64, "2001:db8:7:8::1"], forwarded=True)
    assert answers == [200] * 5 + [429, 200]
