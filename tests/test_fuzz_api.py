"""The REST API against its own OpenAPI document (/api/v1/openapi.json), fuzzed
with Schemathesis in-process (WSGI) with an admin's bearer token: no operation
answers 5xx, and every answer is one the document describes — its status code,
its content type, its JSON schema and its headers.

Bounded for CI: a few examples per operation, derandomized (the same requests on
every run), no deadline. Each request runs in a context of its own, as the test
client of conftest does (nothing of the test's app context leaks into it)."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from accounts.models import ApiToken
from accounts.tokens import issue_token
from app import IdConverter, register_blueprints
from core.extensions import db
from core.openapi import openapi_document
from integrations.providers import load_providers
from tests.conftest import make_user

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Provider APIs are refused before any connection (local networks are not
# allowed here), so an integration's credential check answers at once.
PROVIDER_SETTINGS = {
    "FLEETHOOK_FLEETIO_BASE_URL": "http://127.0.0.1:9/api",
    "FLEETHOOK_SERVICETITAN_BASE_URL": "http://127.0.0.1:9",
    "FLEETHOOK_SERVICETITAN_AUTH_URL": "http://127.0.0.1:9",
    "FLEETHOOK_ASANA_BASE_URL": "http://127.0.0.1:9",
    "FLEETHOOK_AGILEFLEET_BASE_URL": "http://127.0.0.1:9",
    "FLEETHOOK_SALESFORCE_LOGIN_URL": "http://127.0.0.1:9",
}


class Seeded:
    """An account with an admin, a vehicle, a landmark and a webhook, and the
    admin's token — a new one if a fuzzed DELETE /tokens/{id} revoked it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.user = make_user()
        self.token_id = 0
        self.clear = ""
        self._issue()
        client = app.test_client()
        headers = self.headers()
        created = client.post(
            "/api/v1/vehicles",
            headers=headers,
            json={"name": "Truck 1", "vin": "1FUJGLDR3CLBP8834"},
        )
        assert created.status_code == 201, created.json
        webhook = {"event_type": "speed", "name": "Dispatch", "url": "https://hooks.example.com/in"}
        created = client.post("/api/v1/webhooks", headers=headers, json=webhook)
        assert created.status_code == 201, created.json

    def _issue(self) -> None:
        token, self.clear = issue_token(self.user, "fuzz")
        db.session.commit()
        self.token_id = token.id

    def headers(self) -> dict[str, str]:
        db.session.rollback()
        token = db.session.scalar(select(ApiToken).where(ApiToken.id == self.token_id))
        if token is None or token.revoked_at is not None:
            self._issue()
        return {"Authorization": f"Bearer {self.clear}"}


@pytest.fixture
def seeded(app: Any) -> Seeded:
    app.config.update(PROVIDER_SETTINGS)
    return Seeded(app)


def routes_only() -> Flask:
    """An app with every route, and the providers the integrations' shapes are made
    from: all the document is made of."""
    load_providers()
    app = Flask("routes_only")
    app.url_map.converters["int"] = IdConverter
    register_blueprints(app)
    return app


def test_the_fuzzed_document_is_the_served_one(client: Any) -> None:
    assert client.get("/api/v1/openapi.json").json == openapi_document(routes_only())


# The document is loaded as the app serves it (above), when this module is
# imported: schemathesis's fixture-based loading does not work with pytest 9.
schema = schemathesis.openapi.from_dict(openapi_document(routes_only()))


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, app: Any, seeded: Seeded) -> None:
    headers = seeded.headers()
    contextvars.Context().run(case.call_and_validate, headers=headers, checks=CHECKS, app=app)
