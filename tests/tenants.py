"""Accounts full of objects, made through the REST API the way customers make
them, and the one mapping from a route's URL arguments (`<int:webhook_id>` …) to
the ids of an account's objects. The tests generated from the URL map
(test_tenant_matrix.py, test_security_headers.py) fill every route's arguments
from here, so a route with an argument this mapping does not know fails them
until it is added below.

Every object of an account carries the account's marker in a name, so a page
or an API answer that shows another account's objects can be caught by text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import Rule

from accounts.models import Role
from core.extensions import db
from core.times import utcnow
from outbox.models import OutboxMessage
from tests.conftest import bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY

# Where a route's argument names come from, and what kind of object each names.
# Add a line here for every new route argument (and create the object in `seed`).
ARGUMENT_KINDS = {
    "webhook_id": "webhook",
    "message_id": "message",  # a webhook-id (msg_…) of one of the webhook's messages
    "integration_message_id": "integration message",  # msg_… of one of the integration's
    "integration_id": "integration",
    "target_id": "integration",  # the Webhook Manager's pause, resume, delete: any kind
    "vehicle_id": "vehicle",
    "driver_id": "driver",
    "landmark_id": "landmark",
    "token_id": "token",
    "user_id": "user",
}
# Rules whose arguments are not object ids at all.
NOT_OBJECT_ROUTES = {"static"}  # /static/<path:filename>

# Query strings a route needs to answer at all (they pick a type, not an object).
QUERY_STRINGS = {
    "webhooks.new": "event_type=location",
    "webhooks.example": "event_type=location",
    "integrations.new": "provider=fleetio",
}

_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
SKIPPED_METHODS = {"HEAD", "OPTIONS"}


def rule_arguments(rule: Rule) -> list[str]:
    """The argument names of a rule, in the order the path has them."""
    return _ARGUMENT.findall(rule.rule)


def fill(rule: Rule, values: dict[str, Any]) -> str:
    """The rule's path with each argument replaced by `values[name]`."""
    return _ARGUMENT.sub(lambda match: str(values[match.group(1)]), rule.rule)


def methods_of(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - SKIPPED_METHODS)


def is_api(rule: Rule) -> bool:
    return rule.rule.startswith("/api/")


def routes(app: Flask) -> Iterator[Rule]:
    """Every rule of the app but the static files, in a stable order."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint not in NOT_OBJECT_ROUTES:
            yield rule


def unknown_arguments(app: Flask) -> list[str]:
    """Rules with an argument ARGUMENT_KINDS does not map, said so they can be added."""
    return [
        f"{rule.rule} ({rule.endpoint}): argument {name!r}"
        for rule in routes(app)
        for name in rule_arguments(rule)
        if name not in ARGUMENT_KINDS
    ]


def assert_every_argument_known(app: Flask) -> None:
    unknown = unknown_arguments(app)
    assert not unknown, (
        "Routes take arguments the generated tests cannot fill, so they would escape "
        "the tenant matrix and the header checks. Map each in tests/tenants.py "
        "ARGUMENT_KINDS (and create such an object in seed()):\n  " + "\n  ".join(unknown)
    )


def with_query(rule: Rule, path: str) -> str:
    query = QUERY_STRINGS.get(rule.endpoint)
    return f"{path}?{query}" if query else path


@dataclass
class Tenant:
    """One account seeded with one object of every kind."""

    marker: str  # in the name of everything the account has
    email: str  # of its admin
    headers: dict[str, str]  # its admin's API token
    account_id: int
    vin: str
    ids: dict[str, Any] = field(default_factory=dict)  # argument name → id
    words: list[str] = field(default_factory=list)  # strings only its pages may show


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (201, 202), (response.status_code, response.json)
    return dict(response.json)


def seed(client: FlaskClient, marker: str, vin: str) -> Tenant:
    """An account named after `marker` with an admin, a member, an API token, a
    driver driving a vehicle that has reported, a landmark, a webhook with a custom
    header and a message, and a Fleetio integration (the fake Fleetio must be the
    app's FLEETHOOK_FLEETIO_BASE_URL: the credentials are checked on creation)."""
    domain = f"{marker.lower()}.example.com"
    admin = make_user(account_name=f"{marker} Haulage", email=f"admin@{domain}")
    member = make_user(email=f"member@{domain}", role=Role.MEMBER, admin=admin)
    headers = bearer(admin, f"{marker} dispatch token")
    tenant = Tenant(marker, admin.email, headers, admin.account_id, vin)
    tenant.ids["user_id"] = member.id
    tenant.ids["token_id"] = client.get("/api/v1/tokens", headers=headers).json["tokens"][0]["id"]

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _created(client.post(path, json=body, headers=headers))

    driver = post("/api/v1/drivers", {"name": f"{marker} Driver", "external_id": f"{marker}-7"})
    tenant.ids["driver_id"] = driver["id"]
    vehicle = post(
        "/api/v1/vehicles",
        {
            "name": f"{marker} Truck",
            "vin": vin,
            "plate": f"{marker[:3]}-42",
            "group": f"{marker} Group",
        },
    )
    tenant.ids["vehicle_id"] = vehicle["id"]
    assigned = client.patch(
        f"/api/v1/vehicles/{vehicle['id']}", headers=headers, json={"driver_id": driver["id"]}
    )
    assert assigned.status_code == 200, assigned.json
    circle = {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}
    tenant.ids["landmark_id"] = post(
        "/api/v1/landmarks", {"name": f"{marker} Yard", "circle": circle}
    )["id"]
    header_value = f"{marker}-header-value-31337"
    webhook = post(
        "/api/v1/webhooks",
        {
            "event_type": "location",
            "name": f"{marker} Dispatch hook",
            "url": f"https://hooks.example.com/{marker.lower()}",
            "custom_header": {"name": "X-Fleet-Key", "value": header_value},
        },
    )
    tenant.ids["webhook_id"] = webhook["id"]
    integration = post(
        "/api/v1/integrations",
        {
            "provider": "fleetio",
            "api_key": API_KEY,
            "account_id": ACCOUNT_TOKEN,
            "update_odometer": True,
            "update_dtcs": True,
        },
    )
    tenant.ids["integration_id"] = integration["id"]
    tenant.ids["target_id"] = integration["id"]
    moment = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    report = {
        "vin": vin,
        "type": "position",
        "time": moment.isoformat().replace("+00:00", "Z"),
        "latitude": 41.88,
        "longitude": -87.63,
        "speed_mph": 30,
        "heading": 90,
        "ignition": True,
        "odometer_mi": 1000.0,
    }
    post("/api/v1/telemetry", report)
    demo = post(f"/api/v1/webhooks/{webhook['id']}/demo", {})
    tenant.ids["message_id"] = demo["id"]
    # The position's odometer made a meter entry for Fleetio.
    tenant.ids["integration_message_id"] = db.session.scalars(
        select(OutboxMessage.message_id).where(OutboxMessage.target_id == integration["id"])
    ).first()
    assert tenant.ids["integration_message_id"], "the report made no message for Fleetio"
    tenant.words = [marker.lower(), vin.lower(), header_value.lower(), demo["id"].lower()]
    assert set(tenant.ids) == set(ARGUMENT_KINDS), "seed() must make an object of every kind"
    db.session.rollback()
    return tenant
