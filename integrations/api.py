"""REST API of the integrations: list, create (credentials checked with the
provider), read, change, delete, sign the release, pause and resume. Secrets never
come back: API keys only masked, OAuth tokens not at all."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from accounts.api_access import admin_only, api_blueprint, api_user
from core.api import ApiProblem, iso_time, json_object
from core.encryption import mask
from core.errors import ValidationError, problem, validation_problem
from core.extensions import db
from integrations.base import secrets_of
from integrations.lifecycle import (
    account_integrations,
    create_integration,
    delete_integration,
    get_account_integration,
    pause_integration,
    resume_integration,
    sign_release,
    update_integration,
)
from integrations.models import Integration
from integrations.pacing import requests_per_minute
from integrations.providers import PROVIDERS
from integrations.servicemax.provider import CONNECT_ONLY, SERVICEMAX

bp = api_blueprint("integrations_api", __name__)


def integration_json(integration: Integration) -> dict[str, Any]:
    provider = PROVIDERS[integration.provider]
    secrets = secrets_of(integration)
    release = None
    if integration.release_signed_at is not None:
        release = {
            "signer_name": integration.release_signer_name,
            "signer_title": integration.release_signer_title,
            "signed_at": iso_time(integration.release_signed_at),
            "client_address": integration.release_client_address,
        }
    return {
        "id": integration.id,
        "provider": integration.provider,
        "vehicle_attribute": integration.vehicle_attribute,
        "options": integration.options or {},
        "credentials": {
            name: mask(str(secrets[name])) for name in provider.secret_fields if secrets.get(name)
        },
        "status": integration.status,
        "status_reason": integration.status_reason,
        "queue_depth": integration.queue_depth,
        "total_messages": integration.total_messages,
        "requests_per_minute": requests_per_minute(integration),
        "unmatched_vins": integration.unmatched_vins or [],
        "release_required": provider.receives_locations,
        "release": release,
        "created_at": iso_time(integration.created_at),
    }


def _own(integration_id: int) -> Integration:
    integration = get_account_integration(api_user().account_id, integration_id)
    if integration is None:
        raise ApiProblem(404, "Not Found", "No such integration in your account.")
    return integration


@bp.get("/integrations")
def list_integrations() -> Response:
    """The account's integrations by id."""
    integrations = account_integrations(api_user().account_id)
    return jsonify({"integrations": [integration_json(i) for i in integrations]})


@bp.post("/integrations")
@admin_only
def add_integration() -> Response | tuple[Response, int]:
    """Connect a provider; its credentials are checked with it first."""
    body = json_object()
    if body.get("provider") == SERVICEMAX.key:
        return validation_problem({"provider": [CONNECT_ONLY]})
    integration = create_integration(api_user().account_id, body)
    db.session.commit()
    response = jsonify(integration_json(integration))
    response.headers["Location"] = url_for(".get_integration", integration_id=integration.id)
    return response, 201


@bp.get("/integrations/<int:integration_id>")
def get_integration(integration_id: int) -> Response:
    return jsonify(integration_json(_own(integration_id)))


@bp.patch("/integrations/<int:integration_id>")
@admin_only
def change_integration(integration_id: int) -> Response | tuple[Response, int]:
    """Change settings or credentials (checked again with the provider)."""
    integration = _own(integration_id)
    update_integration(integration, json_object())
    db.session.commit()
    return jsonify(integration_json(integration))


@bp.delete("/integrations/<int:integration_id>")
@admin_only
def remove_integration(integration_id: int) -> tuple[str, int]:
    """Delete it and its queue; a Salesforce token is revoked."""
    delete_integration(_own(integration_id))
    db.session.commit()
    return "", 204


@bp.post("/integrations/<int:integration_id>/release")
@admin_only
def sign_integration_release(integration_id: int) -> Response | tuple[Response, int]:
    """Sign the release form ({"signer_name", "signer_title", "accept": true})."""
    integration = _own(integration_id)
    sign_release(integration, json_object(), api_user().id, request.remote_addr or "")
    db.session.commit()
    return jsonify(integration_json(integration))


@bp.post("/integrations/<int:integration_id>/pause")
@admin_only
def pause(integration_id: int) -> Response:
    integration = _own(integration_id)
    pause_integration(integration)
    db.session.commit()
    return jsonify(integration_json(integration))


@bp.post("/integrations/<int:integration_id>/resume")
@admin_only
def resume(integration_id: int) -> Response | tuple[Response, int]:
    integration = _own(integration_id)
    try:
        resume_integration(integration)
    except ValidationError as error:
        return problem(409, "Conflict", "Sign the release form first.", error.errors)
    db.session.commit()
    return jsonify(integration_json(integration))
