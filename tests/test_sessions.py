"""Portal sessions end: at logout (a copied cookie with them), after the idle and the
absolute timeout, and a login starts a fresh one. API tokens are not sessions."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from flask_login.utils import encode_cookie

from core.config import ConfigError, load_config
from tests.conftest import AuthActions, bearer, make_user

COOKIE = "fleethook_session"
EMAIL = "admin@acme.example.com"
KEY = Fernet.generate_key().decode()
# What htmx sends when the webhooks grid polls (it replaces itself: trigger = target).
GRID_POLL = {
    "HX-Request": "true",
    "HX-Trigger": "webhooks-grid",
    "HX-Target": "webhooks-grid",
    "HX-Current-URL": "http://localhost/webhooks/",
}


def copy_of_cookie(app, client):
    """A second browser holding a copy of `client`'s session cookie."""
    other = app.test_client()
    other.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return other


def test_a_cookie_copied_before_logout_is_refused_after_it(app, client, auth):
    make_user()
    auth.login(EMAIL)
    thief = copy_of_cookie(app, client)
    assert thief.get("/").status_code == 200

    auth.logout()

    refused = thief.get("/")
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/login")
    assert client.get("/").status_code == 302


def test_logging_out_on_one_device_leaves_the_others_signed_in(app, auth):
    make_user()
    laptop = AuthActions(app.test_client())
    phone = AuthActions(app.test_client())
    laptop.login(EMAIL)
    phone.login(EMAIL)

    laptop.logout()

    assert laptop.client.get("/").status_code == 302
    assert phone.client.get("/").status_code == 200


def test_a_value_set_before_login_does_not_survive_it(app, client, auth):
    make_user()
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "set by someone before the login"
        before = dict(session)
    auth.login(EMAIL)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"]
        assert session.get("_fleethook_session") != before.get("_fleethook_session")
    assert client.get("/").status_code == 200


def test_each_login_gets_a_session_of_its_own(app, client, auth):
    make_user()
    auth.login(EMAIL)
    first = copy_of_cookie(app, client)
    auth.logout()
    auth.login(EMAIL)
    # The new login does not bring the session ended by the logout back.
    assert first.get("/").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.app_config(
    FLEETHOOK_SESSION_IDLE_TIMEOUT=timedelta(seconds=2),
    FLEETHOOK_SESSION_MAX_AGE=timedelta(hours=1),
)
def test_the_idle_timeout_counts_people_not_polls(app, client, auth):
    make_user()
    auth.login(EMAIL)
    time.sleep(1.2)
    assert client.get("/").status_code == 200  # a person: the idle clock restarts
    time.sleep(1.2)  # 2.4 s after login, 1.2 s after the person
    assert client.get("/manager/webhook/grid", headers=GRID_POLL).status_code == 200
    time.sleep(1.2)  # 2.4 s after the person, 1.2 s after the poll
    assert client.get("/").status_code == 302


@pytest.mark.app_config(
    FLEETHOOK_SESSION_IDLE_TIMEOUT=timedelta(hours=1),
    FLEETHOOK_SESSION_MAX_AGE=timedelta(seconds=2),
)
def test_the_absolute_timeout_ends_even_a_busy_session(app, client, auth):
    make_user()
    auth.login(EMAIL)
    time.sleep(1.2)
    assert client.get("/").status_code == 200
    time.sleep(1.2)
    assert client.get("/").status_code == 302


def test_a_poll_after_the_session_ended_sends_the_page_to_the_login(app, client, auth):
    """htmx would swap a redirected login page into the grid; HX-Redirect makes the
    browser load the login page, and come back to the manager after it."""
    make_user()
    auth.login(EMAIL)
    thief = copy_of_cookie(app, client)
    auth.logout()
    response = thief.get("/manager/webhook/grid", headers=GRID_POLL)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=%2Fwebhooks%2F"


def test_a_remember_cookie_signs_nobody_in(app, client, auth):
    """The portal issues none; one made with the app's key still opens nothing."""
    user = make_user()
    client.set_cookie("remember_token", encode_cookie(str(user.id)))
    assert client.get("/").status_code == 302
    auth.login(EMAIL)
    auth.logout()
    assert client.get("/").status_code == 302


def test_api_tokens_are_not_touched_by_portal_sessions(app, client, auth):
    user = make_user()
    headers = bearer(user)
    auth.login(EMAIL)
    auth.logout()
    assert client.get("/api/v1/webhooks", headers=headers).status_code == 200
    # A portal cookie is no API credential, logged in or not.
    auth.login(EMAIL)
    assert client.get("/api/v1/webhooks").status_code == 401


def test_the_timeouts_are_settings_and_bad_values_are_refused(tmp_path):
    environ = {"FLEETHOOK_ENV": "testing", "SECRET_KEY": "k", "FLEETHOOK_ENCRYPTION_KEYS": KEY}
    config = load_config(
        {**environ, "FLEETHOOK_SESSION_IDLE_MINUTES": "45", "FLEETHOOK_SESSION_MAX_HOURS": "8"},
        str(tmp_path),
    )
    assert config["FLEETHOOK_SESSION_IDLE_TIMEOUT"] == timedelta(minutes=45)
    assert config["FLEETHOOK_SESSION_MAX_AGE"] == timedelta(hours=8)
    defaults = load_config(environ, str(tmp_path))
    assert defaults["FLEETHOOK_SESSION_IDLE_TIMEOUT"] == timedelta(minutes=30)
    assert defaults["FLEETHOOK_SESSION_MAX_AGE"] == timedelta(hours=12)
    for name, value in [
        ("FLEETHOOK_SESSION_IDLE_MINUTES", "0"),
        ("FLEETHOOK_SESSION_MAX_HOURS", "a day"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load_config({**environ, name: value}, str(tmp_path))
