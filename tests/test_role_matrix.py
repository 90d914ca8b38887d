"""Who may call which route — roles and token scopes — generated from the URL map,
so that a new route cannot escape it (like the tenant matrix, and filled with ids
the same way: tests/tenants.py).

One account (tests/tenants.py `seed`) with an admin and a member. Then:

- members may look, not change (accounts/models.py Role): a member gets 403 on
  every route that changes state — every API route but GET (with the member's
  token at scope admin, as every token made before scopes is, so only the role
  stops it) and every portal POST — but for the short allow-lists below, and
  nothing of the account changes; the admin passes the same check on every one
  of those routes (the control: the 403s come from the role);
- a `telemetry:write` token posts telemetry and gets 403 on every other API route;
- a `read` token gets 403 on every API route but GET, and on each GET answers as
  a member's token does: it reads all a member may, and nothing more;
- the API routes that need no token are exactly the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.routing import Rule

from accounts.models import Scope, User
from accounts.tokens import issue_token
from core.extensions import db
from core.times import utcnow
from tests.conftest import csrf_token
from tests.fakes.fleetio import FleetioFake
from tests.tenants import (
    Tenant,
    assert_every_argument_known,
    fill,
    is_api,
    methods_of,
    routes,
    seed,
    with_query,
)
from tests.test_tenant_matrix import rows_of

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=2, FLEETHOOK_READ_TIMEOUT=2
)

VIN = "1FUJGLDR3CLBP8834"
SAFE = {"GET"}
# Portal writes a member may make (DESIGN.md: members may look): logging in and out.
MEMBER_PORTAL_WRITES = {"accounts.login", "accounts.logout"}
# API writes a member's token may make: none.
MEMBER_API_WRITES: set[str] = set()
# Portal pages that, though GET, only admins may open: the audit log, and the
# Salesforce OAuth steps that connect an integration.
ADMIN_ONLY_PORTAL_GETS = {
    "accounts.audit",
    "servicemax.connect",
    "servicemax.callback",
}
# The one thing a telemetry:write token may do.
INGEST = ("POST", "/api/v1/telemetry")
# The API routes anyone may call, without a token.
PUBLIC_API = {("GET", "/api/v1/openapi.json")}


@pytest.fixture
def fleetio(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


@pytest.fixture
def tenant(app, client, fleetio) -> Tenant:
    return seed(client, "Acmeish", VIN)


def member_of(tenant: Tenant) -> User:
    return db.session.get(User, tenant.ids["user_id"])


def admin_of(tenant: Tenant) -> User:
    return db.session.scalar(db.select(User).where(User.email == tenant.email))


def token_headers(user: User, scope: Scope | None = None) -> dict[str, str]:
    _, clear = issue_token(user, f"{scope or 'default'} token", scope)
    db.session.commit()
    return {"Authorization": f"Bearer {clear}"}


def report(minutes_ago: int = 1) -> dict[str, Any]:
    moment = utcnow().replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {
        "vin": VIN,
        "type": "position",
        "time": moment.isoformat().replace("+00:00", "Z"),
        "latitude": 41.9,
        "longitude": -87.7,
        "speed_mph": 30,
        "heading": 0,
        "ignition": True,
    }


def calls(app: Flask, tenant: Tenant, api: bool) -> Iterator[tuple[Rule, str, str]]:
    """(rule, method, path) for every API (or portal) route and method, with the
    account's own ids, so a 403 is never a 404 in disguise."""
    assert_every_argument_known(app)
    for rule in routes(app):
        if is_api(rule) != api:
            continue
        path = with_query(rule, fill(rule, tenant.ids))
        for method in methods_of(rule):
            if (method, rule.rule) not in PUBLIC_API:
                yield rule, method, path


def call_api(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"json": {}} if method not in SAFE | {"DELETE"} else {}
    return client.open(path, method=method, headers=headers, **body)


def call_portal(client: FlaskClient, method: str, path: str, token: str) -> Any:
    return client.open(
        path, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token}
    )


def account_rows(account_id: int) -> dict[str, Any]:
    """Every row of the account, but when its tokens were last used (a refused
    request still used its token)."""
    rows = rows_of(account_id)
    for row in rows["api_token"].values():
        row.pop("last_used_at")
    return rows


def describe(title: str, wrong: list[str]) -> str:
    return title + ":\n  " + "\n  ".join(wrong)


def test_the_api_routes_without_a_token_are_only_the_openapi_document(app, client, tenant):
    public = set()
    for rule in routes(app):
        if is_api(rule):
            for method in methods_of(rule):
                answer = call_api(client, method, fill(rule, tenant.ids), {})
                if answer.status_code != 401:
                    public.add((method, rule.rule))
    assert public == PUBLIC_API


def test_a_member_gets_403_on_every_api_route_that_changes_state(app, client, tenant):
    member = member_of(tenant)
    headers = token_headers(member)
    # As every token made before scopes: stored as admin, so only the role stops it.
    db.session.execute(
        text("UPDATE api_token SET scope = 'admin' WHERE user_id = :id"), {"id": member.id}
    )
    db.session.commit()
    before = account_rows(tenant.account_id)
    refused, wrong = [], []
    for rule, method, path in calls(app, tenant, api=True):
        changes = method not in SAFE and rule.endpoint not in MEMBER_API_WRITES
        if not changes and rule.endpoint != "accounts_api.list_audit_events":
            continue
        answer = call_api(client, method, path, headers)
        if answer.status_code == 403 and answer.mimetype == "application/problem+json":
            refused.append((method, path))
        else:
            wrong.append(f"API {method} {path} → {answer.status_code}")
    assert not wrong, describe("a member's token must get 403 on every change", wrong)
    assert len(refused) > 20  # the API's writes were all tried
    assert account_rows(tenant.account_id) == before

    # The control: an admin's token passes the same check on each of those routes.
    admin = admin_of(tenant)
    passed = [
        f"API {method} {path} → 403"
        for method, path in refused
        if call_api(client, method, path, token_headers(admin)).status_code == 403
    ]
    assert not passed, describe("an admin's token must pass the role check", passed)


def test_a_member_gets_403_on_every_portal_route_that_changes_state(app, client, auth, tenant):
    member = member_of(tenant)
    assert auth.login(member.email).status_code == 302
    token = csrf_token(client.get("/").data)
    before = account_rows(tenant.account_id)
    refused, wrong = [], []
    for rule, method, path in calls(app, tenant, api=False):
        if method in SAFE:
            if rule.endpoint not in ADMIN_ONLY_PORTAL_GETS:
                continue
        elif rule.endpoint in MEMBER_PORTAL_WRITES:
            continue
        answer = call_portal(client, method, path, token)
        if answer.status_code == 403:
            refused.append((method, path))
        else:
            wrong.append(f"portal {method} {path} → {answer.status_code}")
    assert not wrong, describe("a member must get 403 on every change", wrong)
    assert len(refused) > 30  # the portal's writes were all tried
    assert account_rows(tenant.account_id) == before

    # The control: the admin passes the role check on each of those routes.
    auth.logout()
    assert auth.login(tenant.email).status_code == 302
    token = csrf_token(client.get("/").data)
    passed = [
        f"portal {method} {path} → 403"
        for method, path in refused
        if call_portal(client, method, path, token).status_code == 403
    ]
    assert not passed, describe("the admin must pass the role check", passed)


def test_a_telemetry_token_posts_telemetry_and_gets_403_on_every_other_api_route(
    app, client, tenant
):
    gateway = token_headers(admin_of(tenant), Scope.TELEMETRY_WRITE)
    posted = client.post(INGEST[1], json=report(), headers=gateway)
    assert posted.status_code == 202, posted.json
    assert posted.json["accepted"] == 1
    before = account_rows(tenant.account_id)
    wrong, tried = [], 0
    for rule, method, path in calls(app, tenant, api=True):
        if (method, rule.rule) == INGEST:
            continue
        answer = call_api(client, method, path, gateway)
        tried += 1
        if answer.status_code != 403 or answer.mimetype != "application/problem+json":
            wrong.append(f"API {method} {path} → {answer.status_code}")
    assert not wrong, describe("a telemetry:write token may only post telemetry", wrong)
    assert tried > 40
    assert account_rows(tenant.account_id) == before


def test_a_read_token_reads_what_a_member_may_and_changes_nothing(app, client, tenant):
    reader = token_headers(admin_of(tenant), Scope.READ)
    member = token_headers(member_of(tenant))  # a member's token: read, as members are
    before = account_rows(tenant.account_id)
    wrong, reads = [], 0
    for _rule, method, path in calls(app, tenant, api=True):
        answer = call_api(client, method, path, reader)
        if method in SAFE:
            reads += 1
            as_member = call_api(client, method, path, member).status_code
            if answer.status_code != as_member:
                wrong.append(f"API GET {path} → {answer.status_code}, a member's {as_member}")
        elif answer.status_code != 403:
            wrong.append(f"API {method} {path} → {answer.status_code}")
    assert not wrong, describe("a read token must read as a member and change nothing", wrong)
    assert reads > 15
    assert account_rows(tenant.account_id) == before
    # It does read: the account's webhooks, and is refused only the audit log.
    assert client.get("/api/v1/webhooks", headers=reader).json["webhooks"]
    assert client.get("/api/v1/audit-events", headers=reader).status_code == 403
