"""REST API of the integrations: list, create (credentials checked with the
provider), read, change, delete, sign the release, pause and resume. Secrets never
come back: API keys only masked, OAuth tokens not at all. What each route takes
and answers is in integrations/schemas.py."""

from __future__ import annotations

from flask import Response, request, url_for

from accounts.api_access import admin_only, api_blueprint, api_user
from core.api import ApiProblem, json_object
from core.contract import answer, operation
from core.errors import ValidationError, problem
from core.extensions import db
from integrations import schemas
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
from integrations.servicemax.provider import CONNECT_ONLY, SERVICEMAX

bp = api_blueprint("integrations_api", __name__)

NOT_FOUND = {404: "No such integration in this account."}


def _own(integration_id: int) -> Integration:
    integration = get_account_integration(api_user().account_id, integration_id)
    if integration is None:
        raise ApiProblem(404, "Not Found", "No such integration in your account.")
    return integration


@bp.get("/integrations")
@operation("The account's integrations", {200: schemas.Integrations})
def list_integrations() -> Response:
    """The account's integrations by id."""
    integrations = account_integrations(api_user().account_id)
    return answer(schemas.Integrations, {"integrations": integrations})


@bp.post("/integrations")
@admin_only
@operation(
    "Connect a provider (credentials checked with it)",
    {201: schemas.Integration},
    body=schemas.IntegrationCreate,
)
def add_integration() -> Response:
    """Connect a provider; its credentials are checked with it first. Providers that
    receive locations stay paused until the release form is signed."""
    body = json_object()
    if body.get("provider") == SERVICEMAX.key:
        raise ValidationError({"provider": [CONNECT_ONLY]})
    integration = create_integration(api_user().account_id, body)
    db.session.commit()
    location = url_for(".get_integration", integration_id=integration.id)
    return answer(schemas.Integration, integration, 201, {"Location": location})


@bp.get("/integrations/<int:integration_id>")
@operation("One integration", {200: schemas.Integration}, problems=NOT_FOUND)
def get_integration(integration_id: int) -> Response:
    """One integration."""
    return answer(schemas.Integration, _own(integration_id))


@bp.patch("/integrations/<int:integration_id>")
@admin_only
@operation(
    "Change settings or credentials",
    {200: schemas.Integration},
    body=schemas.IntegrationChange,
    problems=NOT_FOUND,
)
def change_integration(integration_id: int) -> Response:
    """Change settings or credentials (checked again with the provider)."""
    integration = _own(integration_id)
    update_integration(integration, json_object())
    db.session.commit()
    return answer(schemas.Integration, integration)


@bp.delete("/integrations/<int:integration_id>")
@admin_only
@operation(
    "Delete it and its queue (a Salesforce token is revoked)",
    {204: "Deleted."},
    problems=NOT_FOUND,
)
def remove_integration(integration_id: int) -> tuple[str, int]:
    """Delete it and its queue; a Salesforce token is revoked."""
    delete_integration(_own(integration_id))
    db.session.commit()
    return "", 204


@bp.post("/integrations/<int:integration_id>/release")
@admin_only
@operation(
    "Sign the release form; the integration becomes active",
    {200: schemas.Integration},
    body=schemas.ReleaseSign,
    problems=NOT_FOUND,
)
def sign_integration_release(integration_id: int) -> Response:
    """Sign the release form ({"signer_name", "signer_title", "accept": true})."""
    integration = _own(integration_id)
    sign_release(integration, json_object(), api_user().id, request.remote_addr or "")
    db.session.commit()
    return answer(schemas.Integration, integration)


@bp.post("/integrations/<int:integration_id>/pause")
@admin_only
@operation("Stop sending; messages queue up", {200: schemas.Integration}, problems=NOT_FOUND)
def pause(integration_id: int) -> Response:
    """Stop sending; messages queue up."""
    integration = _own(integration_id)
    pause_integration(integration)
    db.session.commit()
    return answer(schemas.Integration, integration)


@bp.post("/integrations/<int:integration_id>/resume")
@admin_only
@operation(
    "Send again, the backlog first",
    {200: schemas.Integration},
    problems={**NOT_FOUND, 409: "The release form is not signed."},
)
def resume(integration_id: int) -> Response:
    """Send again, the backlog first; refused while a required release form is unsigned."""
    integration = _own(integration_id)
    try:
        resume_integration(integration)
    except ValidationError as error:
        return problem(409, "Conflict", "Sign the release form first.", error.errors)
    db.session.commit()
    return answer(schemas.Integration, integration)
