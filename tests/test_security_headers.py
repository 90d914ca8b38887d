"""The response headers of core/security.py, and the cookie flags of core/config.py, on every
route — generated from the URL map, so a new page cannot escape them.

Every GET route, with the logged-in account's own ids filled in (tests/tenants.py),
as the account's admin and logged out; and the error pages (404, 405, a failed
CSRF check, 403 for a member, 413, a failed login, 429 after too many): every
answer carries X-Content-Type-Options: nosniff and a Content-Security-Policy
with no 'unsafe-inline', no 'unsafe-eval', no wildcard sources and
frame-ancestors 'none' (plus X-Frame-Options: DENY for old browsers). HTML
answers are never cached by shared caches and hold no inline script, style
or event handler, so they work under that policy. Every cookie set on the way
(session, login) is HttpOnly, SameSite=Lax or Strict, and Secure.

All of it runs twice: in the testing configuration, and in the production one
(FLEETHOOK_ENV=production, as an operator runs it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from accounts.models import Role, User
from core.config import MAX_REQUEST_BYTES
from core.extensions import db, redis_client
from tests.conftest import (
    NAMESPACE,
    PASSWORD,
    csrf_token,
    delete_namespace,
    make_user,
    reset_database,
)
from tests.fakes.fleetio import FleetioFake
from tests.tenants import (
    Tenant,
    assert_every_argument_known,
    fill,
    is_api,
    methods_of,
    routes,
    rule_arguments,
    seed,
    with_query,
)

VIN = "1FUJGLDR3CLBP8834"
# Inline code the CSP would block: the page would break in a browser.
INLINE = {
    "an inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "a style attribute": re.compile(r"<[^>]+\sstyle\s*=", re.I),
    "an event handler attribute": re.compile(r"<[^>]+\son[a-z]+\s*=", re.I),
    "an hx-on attribute (needs eval)": re.compile(r"<[^>]+\shx-on", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}
WIDE = {"*", "data:", "http:", "https:", "blob:", "'unsafe-hashes'"}


@pytest.fixture(params=["testing", "production"])
def app(request, make_app, monkeypatch) -> Iterator[Flask]:
    """This module's app: as `FLEETHOOK_ENV` configures it, testing or production."""
    monkeypatch.setenv("FLEETHOOK_ENV", request.param)
    built = make_app(
        FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=2, FLEETHOOK_READ_TIMEOUT=2
    )
    assert built.config["FLEETHOOK_ENV"] == request.param
    assert built.testing == (request.param == "testing")
    with built.app_context():
        yield built
        reset_database()
        delete_namespace(redis_client(), NAMESPACE)


@pytest.fixture
def account(app, client) -> Iterator[Tenant]:
    fleetio = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = fleetio.base_url
    yield seed(client, "Acmeish", VIN)
    fleetio.stop()


def policy(response: Any) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {words[0].lower(): words[1:] for words in directives}


def cookie_problems(response: Any) -> list[str]:
    problems = []
    for header in response.headers.getlist("Set-Cookie"):
        name = header.partition("=")[0]
        flags = {
            part.strip().partition("=")[0].lower(): part.strip().partition("=")[2]
            for part in header.split(";")[1:]
        }
        if "httponly" not in flags:
            problems.append(f"cookie {name} is not HttpOnly")
        if "secure" not in flags:
            problems.append(f"cookie {name} is not Secure")
        if flags.get("samesite", "").lower() not in ("lax", "strict"):
            problems.append(f"cookie {name} has SameSite={flags.get('samesite')!r}")
    return problems


def problems_of(response: Any) -> list[str]:
    """What is wrong with one answer's headers (and, for HTML, its inline code)."""
    problems = cookie_problems(response)
    csp = policy(response)
    if not csp:
        return [*problems, "no Content-Security-Policy"]
    sources = {source.lower() for values in csp.values() for source in values}
    problems += [
        f"CSP allows {bad}" for bad in ("'unsafe-inline'", "'unsafe-eval'") if bad in sources
    ]
    if csp.get("frame-ancestors") != ["'none'"]:
        problems.append(f"CSP frame-ancestors is {csp.get('frame-ancestors')}, not 'none'")
    for directive in ("script-src", "style-src", "object-src", "connect-src", "form-action"):
        effective = csp.get(directive) or csp.get("default-src")
        if effective is None:
            problems.append(f"CSP limits neither {directive} nor default-src")
        elif WIDE & {source.lower() for source in effective}:
            problems.append(f"CSP {directive} is too wide: {' '.join(effective)}")
    if "base-uri" not in csp:
        problems.append("CSP sets no base-uri")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if response.headers.get("X-Frame-Options") != "DENY":
        problems.append("no X-Frame-Options: DENY")
    if response.mimetype == "text/html":
        if "no-store" not in response.headers.get("Cache-Control", ""):
            problems.append("HTML without Cache-Control: no-store")
        text = response.get_data(as_text=True)
        problems += [f"holds {what}" for what, pattern in INLINE.items() if pattern.search(text)]
    return problems


class Sweep:
    """Requests and what was wrong with their answers, said all at once at the end."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self.wrong: list[str] = []
        self.html = 0
        self.cookies = 0

    def check(self, what: str, response: Any) -> Any:
        response.get_data()  # buffered, so that a streamed file is closed
        response.close()
        self.wrong += [f"{what} → {response.status_code}: {p}" for p in problems_of(response)]
        if response.status_code >= 500:
            self.wrong.append(f"{what} → {response.status_code}")
        self.html += response.mimetype == "text/html"
        self.cookies += len(response.headers.getlist("Set-Cookie"))
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.check(f"GET {path}", self.client.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.check(f"POST {path}", self.client.post(path, **kwargs))

    def done(self) -> None:
        assert not self.wrong, "security headers missing or wrong:\n  " + "\n  ".join(self.wrong)


def get_routes(app: Flask, account: Tenant) -> Iterator[tuple[Any, str]]:
    """(rule, path) of every GET route, its ids those of `account`."""
    assert_every_argument_known(app)
    for rule in routes(app):
        if "GET" in methods_of(rule):
            yield rule, with_query(rule, fill(rule, account.ids))


def test_every_get_route_as_the_admin(app, client, auth, account):
    sweep = Sweep(client)
    sweep.check("GET /login", client.get("/login"))
    page = client.get("/login")
    login = sweep.post(
        "/login",
        data={"email": account.email, "password": PASSWORD, "csrf_token": csrf_token(page.data)},
    )
    assert login.status_code == 302 and login.headers.getlist("Set-Cookie")
    html_routes = []
    for rule, path in get_routes(app, account):
        headers = account.headers if is_api(rule) else {}
        response = sweep.get(path, headers=headers)
        if response.mimetype == "text/html" and response.status_code == 200:
            html_routes.append(path)
        if not is_api(rule) and rule_arguments(rule):
            assert response.status_code != 404, f"{path}: own object not found"
    # the pages of the portal were among them, not only redirects
    for path in (
        "/",
        "/webhooks/",
        f"/webhooks/{account.ids['webhook_id']}",
        f"/integrations/{account.ids['integration_id']}",
        "/fleet/vehicles",
        "/account/tokens",
        "/account/users",
    ):
        assert path in html_routes, f"{path} should answer HTML"
    for asset in ("fleethook.js", "fleethook.css"):  # nosniff matters most here
        assert sweep.get(f"/static/{asset}").status_code == 200
    assert sweep.cookies > 0, "logging in set no cookie?"
    sweep.done()


def test_every_get_route_logged_out(app, client, account):
    sweep = Sweep(client)
    for rule, path in get_routes(app, account):
        response = sweep.get(path)
        if rule.rule.startswith(("/webhooks", "/integrations", "/fleet", "/account")):
            assert response.status_code == 302, f"{path} → {response.status_code} logged out"
        elif is_api(rule) and rule.endpoint != "openapi.openapi_json":
            assert response.status_code == 401, f"{path} → {response.status_code} without token"
    sweep.done()


def test_error_pages(app, client, auth, account):
    sweep = Sweep(client)
    # a failed login, then too many
    for _ in range(6):
        page = client.get("/login")
        failed = sweep.post(
            "/login",
            data={"email": account.email, "password": "wrong", "csrf_token": csrf_token(page.data)},
        )
    assert failed.status_code == 429
    assert b"Too many failed attempts" in failed.data
    # a form posted without its CSRF token
    assert sweep.post("/logout").status_code == 400
    # a member trying an admin's page
    make_user(email="viewer@acmeish.example.com", role=Role.MEMBER, admin=_admin(account))
    assert auth.login("viewer@acmeish.example.com").status_code == 302
    assert sweep.get("/webhooks/new?event_type=location").status_code == 403
    # no such page, a method the route does not take, a body too large
    assert sweep.get("/no/such/page").status_code == 404
    assert sweep.get(f"/webhooks/{account.ids['webhook_id'] + 1000}").status_code == 404
    assert sweep.get("/logout").status_code == 405
    token = csrf_token(client.get("/").data)
    too_large = sweep.post(
        "/account/tokens", data={"csrf_token": token, "name": "x" * MAX_REQUEST_BYTES}
    )
    assert too_large.status_code == 413
    assert sweep.html >= 10
    sweep.done()


def _admin(account: Tenant) -> User:
    return db.session.scalars(select(User).where(User.email == account.email)).one()
