"""Tenant isolation (DESIGN invariant 7), generated from the URL map so that a new
route cannot escape it.

Two accounts, Acmeish (A) and Bluefin (B), each with one object of every kind
(tests/tenants.py). Then:

- every route that takes an object id, with every method it answers, called by
  A with B's ids — in the portal (A's admin logged in, a valid CSRF token on
  unsafe methods) and in the API (A's admin token) — answers 404, and no row of
  B's changes; a route with several ids also gets B's id in one place and A's in
  the others;
- the same GET routes with A's own ids do answer, so those 404s come from the
  tenancy check and not from a malformed URL;
- no page and no API answer A can reach (listings, dialogs, A's objects' own
  pages) shows anything of B's: names, emails, VINs, message ids, object ids;
- ids that travel in query strings and bodies (the example preview, the
  Salesforce reconnection, a driver assigned to a vehicle, telemetry naming a
  vehicle) are refused too, and change nothing.

A route whose argument tests/tenants.py cannot fill fails these tests with its
name, until the mapping there learns it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.routing import Rule

from core.extensions import db
from core.times import utcnow
from fleet.models import Vehicle
from tests.conftest import bearer, csrf_token, make_user
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

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=2, FLEETHOOK_READ_TIMEOUT=2
)

VIN_A, VIN_B = "1FUJGLDR3CLBP8834", "1M8GDM9AXKP042788"
RECENT = (utcnow().replace(microsecond=0) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# API answers list objects under these keys; the argument that names such an object.
COLLECTIONS = {
    "webhooks": "webhook_id",
    "messages": "message_id",
    "integrations": "integration_id",
    "vehicles": "vehicle_id",
    "drivers": "driver_id",
    "landmarks": "landmark_id",
    "tokens": "token_id",
}
# Portal pages that list A's objects, and what of A's each shows, so that the
# absence of B's objects there means something.
PORTAL_LISTINGS = {
    "/webhooks/": "Acmeish Dispatch hook",
    "/manager/integration/grid": 'id="integration-{integration_id}"',
    "/fleet/vehicles": "Acmeish Truck",
    "/fleet/drivers": "Acmeish Driver",
    "/fleet/landmarks": "Acmeish Yard",
    "/account/tokens": "Acmeish dispatch token",
    "/account/users": "member@acmeish.example.com",
}


@dataclass
class World:
    acme: Tenant  # whose admin makes every request
    blue: Tenant  # whose ids A tries


@pytest.fixture
def fleetio(app):
    server = FleetioFake().start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = server.base_url
    yield server
    server.stop()


@pytest.fixture
def world(app, client, auth, fleetio) -> World:
    acme = seed(client, "Acmeish", VIN_A)
    blue = seed(client, "Bluefin", VIN_B)
    assert auth.login(acme.email).status_code == 302
    return World(acme, blue)


def rows_of(account_id: int) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row that belongs to the account, by table and primary key: its own
    rows (account_id), and the rows hanging off those by foreign key (a webhook's
    messages and their attempts, a vehicle's reports and state …), whatever tables
    the metadata has."""
    owned: dict[str, list[dict[str, Any]]] = {}
    for table in db.metadata.sorted_tables:  # parents before children
        mine = []
        for row in db.session.execute(select(table)).mappings():
            if table.name == "account":
                belongs = row["id"] == account_id
            else:
                belongs = any(
                    row[fk.parent.name] is not None
                    and any(
                        parent[fk.column.name] == row[fk.parent.name]
                        for parent in owned.get(fk.column.table.name, [])
                    )
                    for fk in table.foreign_keys
                )
            if belongs:
                mine.append(dict(row))
        owned[table.name] = mine
    db.session.rollback()
    return {
        table.name: {
            tuple(row[c.name] for c in table.primary_key.columns): row for row in owned[table.name]
        }
        for table in db.metadata.sorted_tables
    }


def with_other_ids(app: Flask, world: World) -> Iterator[tuple[Rule, str, str]]:
    """(rule, method, path) for every route that takes ids: all of them B's, and
    for routes with several, each one B's in turn among A's."""
    assert_every_argument_known(app)
    for rule in routes(app):
        names = rule_arguments(rule)
        if not names:
            continue
        owners = [dict.fromkeys(names, world.blue)]
        if len(names) > 1:
            owners += [{n: world.blue if n == b else world.acme for n in names} for b in names]
        for owner in owners:
            path = fill(rule, {name: tenant.ids[name] for name, tenant in owner.items()})
            for method in methods_of(rule):
                yield rule, method, path


def describe(wrong: list[str]) -> str:
    return "another account's ids must answer 404 on every route:\n  " + "\n  ".join(wrong)


def test_the_portal_answers_404_to_every_route_with_another_accounts_ids(app, client, world):
    token = csrf_token(client.get("/").data)
    before = rows_of(world.blue.account_id)
    tried, wrong = 0, []
    for rule, method, path in with_other_ids(app, world):
        if is_api(rule):
            continue
        unsafe = method in UNSAFE
        response = client.open(
            path,
            method=method,
            data={"csrf_token": token} if unsafe else None,
            headers={"X-CSRFToken": token} if unsafe else {},
        )
        tried += 1
        if response.status_code != 404:
            wrong.append(f"portal {method} {path} → {response.status_code}")
    assert tried > 0, "no portal route takes an id?"
    assert not wrong, describe(wrong)
    assert rows_of(world.blue.account_id) == before


def test_the_api_answers_404_to_every_route_with_another_accounts_ids(app, client, world):
    before = rows_of(world.blue.account_id)
    tried, wrong = 0, []
    for rule, method, path in with_other_ids(app, world):
        if not is_api(rule):
            continue
        body = {"json": {}} if method in UNSAFE - {"DELETE"} else {}
        response = client.open(path, method=method, headers=world.acme.headers, **body)
        tried += 1
        if response.status_code != 404:
            wrong.append(f"API {method} {path} → {response.status_code}")
        elif response.mimetype != "application/problem+json":
            wrong.append(f"API {method} {path} → 404 as {response.mimetype}, not problem+json")
    assert tried > 0, "no API route takes an id?"
    assert not wrong, describe(wrong)
    assert rows_of(world.blue.account_id) == before


def test_the_same_routes_with_the_accounts_own_ids_answer(app, client, world):
    """The control: with A's own ids the GET routes are found, so the 404s above
    come from the tenancy check, not from a path that matches nothing."""
    missing = []
    for rule in routes(app):
        if not rule_arguments(rule) or "GET" not in methods_of(rule):
            continue
        path = with_query(rule, fill(rule, world.acme.ids))
        headers = world.acme.headers if is_api(rule) else {}
        response = client.get(path, headers=headers)
        if response.status_code == 404:
            missing.append(f"GET {path} → 404")
    assert not missing, "own objects must be found:\n  " + "\n  ".join(missing)


def test_no_page_or_api_answer_shows_another_accounts_objects(app, client, world):
    """Every GET route, with A's ids where it takes some: listings, dialogs, detail
    pages, feeds, the API's collections (discovered from the URL map)."""
    blue, acme = world.blue, world.acme
    assert_every_argument_known(app)
    # Links to B's objects: every portal route of one id, filled with B's.
    links = [
        fill(rule, blue.ids) + '"'
        for rule in routes(app)
        if not is_api(rule) and len(rule_arguments(rule)) == 1
    ]
    leaks, seen = [], {}
    for rule in routes(app):
        if "GET" not in methods_of(rule):
            continue
        path = with_query(rule, fill(rule, acme.ids))
        response = client.get(path, headers=acme.headers if is_api(rule) else {})
        text = response.get_data(as_text=True).lower()
        seen[path] = (response.status_code, text)
        leaks += [f"GET {path} shows {word!r}" for word in blue.words if word in text]
        leaks += [f"GET {path} links to {link[:-1]}" for link in links if link in text]
        body = response.get_json(silent=True) if response.is_json else None
        for key, argument in COLLECTIONS.items():
            items = body.get(key) if isinstance(body, dict) else None
            if isinstance(items, list):
                ids = {item.get("id") for item in items if isinstance(item, dict)}
                if blue.ids[argument] in ids:
                    leaks.append(f"GET {path} lists B's {key[:-1]} {blue.ids[argument]}")
                if rule_arguments(rule) == [] and key != "messages":
                    assert acme.ids[argument] in ids, f"GET {path} should list A's {key}"
    assert not leaks, "another account's objects are shown:\n  " + "\n  ".join(leaks)
    for path, shown in PORTAL_LISTINGS.items():
        status, text = seen[path]
        assert status == 200, f"GET {path} → {status}"
        assert shown.format(**acme.ids).lower() in text, f"{path} should list A's objects"
    assert any(path.startswith("/api/v1/") for path in seen)


def test_ids_in_query_strings_and_bodies_are_refused_and_change_nothing(app, client, world):
    acme, blue = world.acme, world.blue
    token = csrf_token(client.get("/").data)
    before = rows_of(blue.account_id)
    driver_before = db.session.get(Vehicle, acme.ids["vehicle_id"]).driver_id
    db.session.rollback()

    # Query strings: the example preview shows a webhook's custom header (masked);
    # Connect with Salesforce may reconnect an existing integration.
    for path in (
        f"/webhooks/example?event_type=location&custom_header_name=X-Fleet-Key"
        f"&webhook_id={blue.ids['webhook_id']}",
        f"/integrations/servicemax/connect?integration={blue.ids['integration_id']}",
    ):
        assert client.get(path).status_code == 404, path

    # B's driver onto A's vehicle, in the API and in the portal's Edit Vehicle dialog.
    vehicle = acme.ids["vehicle_id"]
    api = client.patch(
        f"/api/v1/vehicles/{vehicle}",
        headers=acme.headers,
        json={"driver_id": blue.ids["driver_id"]},
    )
    assert api.status_code == 422 and "driver_id" in api.json["errors"], api.json
    portal = client.post(
        f"/fleet/vehicles/{vehicle}/edit",
        data={
            "csrf_token": token,
            "name": "Acmeish Truck",
            "plate": "",
            "group": "",
            "driver_id": str(blue.ids["driver_id"]),
        },
    )
    assert portal.status_code == 422

    # Telemetry for B's vehicle, named by VIN or by id, sent with A's token.
    report = {
        "type": "position",
        "time": RECENT,
        "latitude": 41.9,
        "longitude": -87.7,
        "speed_mph": 80,
        "heading": 0,
        "ignition": True,
    }
    for vehicle_ref in ({"vin": blue.vin}, {"vehicle_id": blue.ids["vehicle_id"]}):
        response = client.post(
            "/api/v1/telemetry", headers=acme.headers, json={**report, **vehicle_ref}
        )
        assert response.status_code == 422, response.json
        assert set(response.json["errors"]) == set(vehicle_ref), response.json

    assert rows_of(blue.account_id) == before
    assert db.session.get(Vehicle, acme.ids["vehicle_id"]).driver_id == driver_before


def test_identical_names_and_vins_in_two_accounts_stay_apart(app, client, auth):
    """Names and VINs are unique only within an account: two accounts called the
    same, with a token, a driver and a vehicle (same VIN) called the same, never
    mix — in listings, or when telemetry names the vehicle by VIN."""
    fleet_a = make_user(account_name="Fleet", email="admin@acme.example.com")
    fleet_b = make_user(account_name="Fleet", email="admin@blue.example.com")
    vehicles = {}
    for user in (fleet_a, fleet_b):
        headers = bearer(user, "Dispatch")
        for path, body in (
            ("/api/v1/drivers", {"name": "Dana Whitfield"}),
            ("/api/v1/vehicles", {"name": "Truck 42", "vin": VIN_A}),
        ):
            made = client.post(path, json=body, headers=headers)
            assert made.status_code == 201, made.json
        vehicles[user.email] = (made.json["id"], headers)
    acme_vehicle, acme_headers = vehicles["admin@acme.example.com"]
    blue_vehicle, _ = vehicles["admin@blue.example.com"]

    tokens = client.get("/api/v1/tokens", headers=acme_headers).json["tokens"]
    assert [t["user"] for t in tokens] == ["admin@acme.example.com"]
    listed = client.get("/api/v1/vehicles", headers=acme_headers).json["vehicles"]
    assert [v["id"] for v in listed] == [acme_vehicle]

    report = {
        "vin": VIN_A,
        "type": "position",
        "time": RECENT,
        "latitude": 41.9,
        "longitude": -87.7,
        "speed_mph": 30,
        "heading": 0,
        "ignition": True,
    }
    assert client.post("/api/v1/telemetry", json=report, headers=acme_headers).status_code == 202
    assert db.session.get(Vehicle, acme_vehicle).last_fix_at is not None
    assert db.session.get(Vehicle, blue_vehicle).last_fix_at is None
    db.session.rollback()

    assert auth.login("admin@acme.example.com").status_code == 302
    page = client.get("/account/tokens").data
    assert page.count(b"<td>Dispatch</td>") == 1 and b"blue.example.com" not in page
    assert b"blue.example.com" not in client.get("/account/users").data
