"""Portal pages of the integrations blueprint: the provider forms (with the
credential check), the release form, an integration's page, its messages and its
edit form. The grid, pause, resume and delete are the Webhook Manager's
(manager/views.py); a provider's own pages live in its package
(integrations/servicemax/views.py) and its templates folder."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from core.errors import ValidationError
from core.extensions import db
from core.portal import (
    admin_required,
    after_change,
    is_htmx_request,
    render_dialog,
    show_errors,
)
from core.times import utcnow
from events.redaction import Redaction
from integrations.base import BUDGET_FIELD, form_fields, secrets_of
from integrations.forms import ProviderForm, ReleaseForm, provider_form
from integrations.lifecycle import (
    create_integration,
    get_account_integration,
    resume_integration,
    sign_release,
    summary,
    update_integration,
)
from integrations.models import Integration
from integrations.pacing import requests_per_minute
from integrations.providers import PROVIDERS
from outbox.activity import target_activity
from outbox.recovery import find_message, last_error_details, target_messages

bp = Blueprint("integrations", __name__, url_prefix="/integrations")

# Raised on the page (HX-Trigger) after a change: the integrations grid refreshes.
CHANGED = "integrations-changed"


def own_integration(integration_id: int) -> Integration:
    integration = get_account_integration(current_user.account_id, integration_id)
    if integration is None:
        abort(404)
    return integration


def _provider(key: str | None) -> Any:
    if key not in PROVIDERS:
        abort(404)
    return PROVIDERS[key]


def _form_dialog(
    form: ProviderForm, provider: Any, integration: Integration | None = None, status: int = 200
) -> Response:
    title = f"Edit integration {integration.id}" if integration else f"Connect {provider.name}"
    stored = {}
    if integration is not None:
        stored = {name: value for name, value in secrets_of(integration).items() if value}
    return render_dialog(
        "integrations/_form.html",
        title,
        status,
        form=form,
        provider=provider,
        integration=integration,
        stored=stored,
        form_fields=form_fields,
    )


@bp.get("/new")
@admin_required
def new() -> Response:
    """The form of one provider (ServiceMax: the Connect with Salesforce button)."""
    provider = _provider(request.args.get("provider"))
    form = provider_form(provider, editing=False, formdata=None)
    for field in provider.fields:
        if field.kind == "checkbox":
            getattr(form, field.name).data = True
    return _form_dialog(form, provider)


@bp.post("/new")
@admin_required
def create() -> ResponseReturnValue:
    """Save after checking the credentials with the provider; providers that
    receive locations go on to the release form."""
    provider = _provider(request.form.get("provider"))
    form = provider_form(provider, editing=False)
    if not form.validate():  # the CSRF token
        return _form_dialog(form, provider, status=422)
    try:
        integration = create_integration(
            current_user.account_id, {"provider": provider.key, **form.values(editing=False)}
        )
    except ValidationError as error:
        show_errors(form, error)
        return _form_dialog(form, provider, status=422)
    db.session.commit()
    if provider.receives_locations:
        return _release_dialog(ReleaseForm(formdata=None), integration)
    if is_htmx_request():  # say so before the dialog closes
        return render_dialog(
            "integrations/_connected.html",
            f"{provider.name} connected",
            trigger=CHANGED,
            provider=provider,
            integration=integration,
        )
    return after_change(f"{provider.name} connected as integration {integration.id}.", CHANGED)


def _release_dialog(form: ReleaseForm, integration: Integration, status: int = 200) -> Response:
    provider = PROVIDERS[integration.provider]
    return render_dialog(
        "integrations/_release.html",
        f"Release form: {provider.name}",
        status,
        form=form,
        integration=integration,
        provider=provider,
        trigger=CHANGED,
    )


def resume_or_release(integration: Integration) -> Response | None:
    """Resume it (the Webhook Manager's Resume); while its release form is unsigned,
    the form to sign instead."""
    try:
        resume_integration(integration)
    except ValidationError:
        return _release_dialog(ReleaseForm(formdata=None), integration)
    return None


@bp.get("/<int:integration_id>/release")
@admin_required
def release(integration_id: int) -> Response:
    return _release_dialog(ReleaseForm(formdata=None), own_integration(integration_id))


@bp.post("/<int:integration_id>/release")
@admin_required
def sign(integration_id: int) -> ResponseReturnValue:
    """Record the signed release (who, title, when, from where) and activate."""
    integration = own_integration(integration_id)
    form = ReleaseForm()
    if not form.validate():
        return _release_dialog(form, integration, status=422)
    try:
        sign_release(integration, form.values(), current_user.id, request.remote_addr or "")
    except ValidationError as error:
        show_errors(form, error)
        return _release_dialog(form, integration, status=422)
    db.session.commit()
    return after_change(f"Release signed; integration {integration.id} is active.", CHANGED)


@bp.get("/<int:integration_id>")
@login_required
def detail(integration_id: int) -> str:
    """An integration's page: status, settings (secrets masked), the release,
    vehicles the provider does not know, and its latest messages."""
    integration = own_integration(integration_id)
    messages = target_messages(integration.id, None, None, 20)
    return render_template(
        "integrations/detail.html",
        integration=integration,
        provider=PROVIDERS[integration.provider],
        secrets=secrets_of(integration),
        requests_per_minute=requests_per_minute,
        redaction=Redaction.of(integration).in_words(),
        messages=messages,
        error_details=last_error_details([m.id for m in messages]),
        activity=target_activity(integration.id, utcnow()),
        summary=summary,
    )


@bp.get("/<int:integration_id>/messages/<integration_message_id>")
@login_required
def message(integration_id: int, integration_message_id: str) -> str:
    """One message: the event as the integration took it, and every call made for it."""
    integration = own_integration(integration_id)
    found = find_message(integration.id, integration_message_id)
    if found is None:
        abort(404)
    name = f"{PROVIDERS[integration.provider].name} · integration {integration.id}"
    return render_template(
        "_message.html",
        message=found,
        back={"url": url_for("integrations.detail", integration_id=integration.id), "name": name},
        body_title="Event",
        body=json.dumps(found.payload, indent=2),
        redeliver=None,
    )


@bp.get("/<int:integration_id>/edit")
@admin_required
def edit(integration_id: int) -> Response:
    integration = own_integration(integration_id)
    provider = PROVIDERS[integration.provider]
    form = provider_form(provider, editing=True, formdata=None)
    for field in provider.fields:
        if field.kind == "secret":
            continue
        value = (
            integration.vehicle_attribute
            if field.name == "vehicle_attribute"
            else (integration.options.get(field.name))
        )
        getattr(form, field.name).data = value
    getattr(form, BUDGET_FIELD.name).data = requests_per_minute(integration)
    form.drop_driver_name.data = integration.drop_driver_name
    form.coordinate_decimals.data = integration.coordinate_decimals
    form.drop_fields.data = ", ".join(integration.drop_fields)
    return _form_dialog(form, provider, integration)


@bp.post("/<int:integration_id>/edit")
@admin_required
def update(integration_id: int) -> ResponseReturnValue:
    """Save changed settings or credentials, checked with the provider again."""
    integration = own_integration(integration_id)
    provider = PROVIDERS[integration.provider]
    form = provider_form(provider, editing=True)
    if not form.validate():
        return _form_dialog(form, provider, integration, status=422)
    try:
        update_integration(integration, form.values(editing=True))
    except ValidationError as error:
        db.session.rollback()
        show_errors(form, error)
        return _form_dialog(form, provider, own_integration(integration_id), status=422)
    db.session.commit()
    return after_change(f"Integration {integration.id} saved.", CHANGED)
