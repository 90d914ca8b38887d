"""Connecting, changing and deleting integrations: their fields checked against
the shapes made from each provider's declaration (integrations/schemas.py), the
credential check against the provider on save, the request budget, and the
release form that providers receiving locations require. The portal and the API
both call these; each change adds its audit event; callers commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select

from accounts.audit import HIDDEN, record
from accounts.quotas import check_room
from core.contract import check_fields, checked
from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES
from events.redaction import path_problems
from fleet.detector import current_states
from integrations.attributes import VEHICLE_ATTRIBUTES
from integrations.base import (
    BUDGET_FIELD,
    REDACTION_FIELD_NAMES,
    RELEASE_REASON,
    ProviderRejected,
    secrets_of,
    store_secrets,
)
from integrations.models import Integration
from integrations.pacing import forget_budget, requests_per_minute
from integrations.providers import PROVIDERS
from integrations.schemas import ReleaseSign, provider_shapes
from outbox.fanout import fan_out
from outbox.models import TargetStatus
from outbox.status import activate, hold_for_release, is_waiting_for_release, needs_fixing, pause


def _provider(values: Mapping[str, Any]) -> Any:
    key = values.get("provider")
    if not isinstance(key, str) or key not in PROVIDERS:
        raise ValidationError({"provider": ["One of: " + ", ".join(sorted(PROVIDERS)) + "."]})
    return PROVIDERS[key]


def clean_fields(
    provider: Any, values: Mapping[str, Any], current: Integration | None = None
) -> dict[str, Any]:
    """The fields of a provider's form — its own and the request budget — checked
    against its shapes (integrations/schemas.provider_shapes): for a new integration
    every required one, and each left out is empty (a checkbox false); for a change
    (`current`) only those given. ValidationError names every bad field."""
    shapes = provider_shapes(provider)
    shape = shapes.create if current is None else shapes.change
    fields, errors = check_fields(shape, values, unknown="Not a field of this provider.")
    fields.pop("provider", None)
    if fields.get("drop_driver_name") and provider.needs_driver_names:
        errors["drop_driver_name"] = [
            f"{provider.name} matches each driver to a technician by name: it cannot work "
            "without drivers' names."
        ]
    # An integration gets events of many types: a path must be in one of them.
    problems = path_problems(fields.get("drop_fields") or (), EVENT_TYPES.values())
    if problems:
        errors["drop_fields"] = problems
    if errors:
        raise ValidationError(errors)
    if current is None:
        for field in provider.fields:
            fields.setdefault(field.name, False if field.kind == "checkbox" else None)
    return fields


def _set_redaction(integration: Integration, fields: Mapping[str, Any]) -> None:
    """The redaction fields given, on the target's columns (None: no paths)."""
    for name in REDACTION_FIELD_NAMES:
        if name in fields:
            value = fields[name]
            setattr(integration, name, (value or []) if name == "drop_fields" else value)


def _options_and_secrets(
    provider: Any, fields: Mapping[str, Any], current: Integration | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings and the secrets of every field of the provider's form: those in
    `fields`, and changing (`current`), the stored ones of those not given."""
    options: dict[str, Any] = {}
    secrets: dict[str, Any] = secrets_of(current) if current is not None else {}
    stored = (current.options or {}) if current is not None else {}
    for field in provider.fields:
        if field.name in provider.secret_fields:
            if field.name in fields:
                secrets[field.name] = fields[field.name]
        else:
            options[field.name] = fields.get(field.name, stored.get(field.name))
    return options, secrets


def _set_budget(integration: Integration, provider: Any, fields: Mapping[str, Any]) -> None:
    """The integration's request budget from the checked `fields`: null, or left out
    of a new one, is the provider's documented budget; left out of a change, the
    budget stays."""
    if BUDGET_FIELD.name not in fields and integration.rate_limit is not None:
        return
    per_minute = fields.get(BUDGET_FIELD.name) or provider.requests_per_minute
    if per_minute != requests_per_minute(integration):
        forget_budget(integration)
        integration.rate_limit = per_minute / 60


def _check_with_provider(provider: Any, integration: Integration) -> None:
    try:
        provider.check_credentials(integration)
    except ProviderRejected as rejected:
        raise ValidationError({"credentials": [str(rejected)]}) from None


def _settings(integration: Integration) -> dict[str, Any]:
    """The settings that are not secret, as the audit log shows them."""
    redaction = {name: getattr(integration, name) for name in REDACTION_FIELD_NAMES}
    return {
        "vehicle_attribute": integration.vehicle_attribute,
        **(integration.options or {}),
        **redaction,
    }


def audit_details(integration: Integration) -> dict[str, Any]:
    """What the audit log keeps of a new integration: its provider and settings;
    of its secrets, only which are set."""
    secrets = secrets_of(integration)
    hidden = {
        name: HIDDEN for name in PROVIDERS[integration.provider].secret_fields if secrets.get(name)
    }
    settings = {
        k: v
        for k, v in _settings(integration).items()
        if v is not None and (v or k not in REDACTION_FIELD_NAMES)  # a redaction, if any
    }
    return {"provider": integration.provider, **settings, **dict(sorted(hidden.items()))}


def create_integration(account_id: int, values: Mapping[str, Any]) -> Integration:
    """A new integration, its credentials checked with the provider. Providers that
    receive locations start paused until the release form is signed."""
    check_room(account_id, "integrations", Integration)
    provider = _provider(values)
    fields = clean_fields(provider, values)
    options, secrets = _options_and_secrets(provider, fields)
    integration = Integration(
        account_id=account_id,
        provider=provider.key,
        vehicle_attribute=options.pop("vehicle_attribute", None),
        options=options,
        vehicle_map={},
        unmatched_vins=[],
    )
    store_secrets(integration, secrets)
    _set_budget(integration, provider, fields)
    _set_redaction(integration, fields)
    if provider.receives_locations:
        hold_for_release(integration, RELEASE_REASON)
    else:
        integration.status = TargetStatus.ACTIVE.value
    # Added first, in a savepoint, so that the check's requests count against its
    # own budget (kept by id); a refusal rolls the savepoint back, leaving nothing.
    savepoint = db.session.begin_nested()
    db.session.add(integration)
    db.session.flush()
    try:
        _check_with_provider(provider, integration)
    except ValidationError:
        savepoint.rollback()
        raise
    savepoint.commit()
    record(account_id, "integration.created", integration, audit_details(integration))
    send_current_state(integration)
    return integration


def send_current_state(integration: Integration) -> int:
    """Queue each of the account's vehicles as it is now for this integration
    alone (initial sync: the provider need not wait for the next odometer change
    or fault); how many messages that made. They wait for the release form where
    one is needed, like every other message."""
    db.session.flush()  # the integration's id
    events = current_states(integration.account_id, utcnow())
    return sum(len(messages) for messages in fan_out(events, [integration]))


def _catch_up(integration: Integration) -> None:
    """After an outage longer than the retention window its messages expired
    unsent: the current state brings the provider up to date instead."""
    last = integration.last_delivered_at
    if last is not None and utcnow() - last > current_app.config["FLEETHOOK_RETENTION"]:
        send_current_state(integration)


def update_integration(integration: Integration, values: Mapping[str, Any]) -> None:
    """Change settings or credentials; they are checked again, and an integration
    that needed attention resumes with its queue."""
    provider = PROVIDERS[integration.provider]
    fields = clean_fields(provider, values, integration)
    options, secrets = _options_and_secrets(provider, fields, integration)
    budget_before = requests_per_minute(integration)
    _set_budget(integration, provider, fields)
    settings_before, secrets_before = _settings(integration), secrets_of(integration)
    attribute = options.pop("vehicle_attribute", None) or integration.vehicle_attribute
    # Options no form field owns (ServiceMax's instance URL and technicians) stay.
    integration.options = {**(integration.options or {}), **options}
    integration.vehicle_attribute = attribute
    _set_redaction(integration, fields)
    store_secrets(integration, secrets)
    integration.vehicle_map_at = None  # other credentials may see other vehicles
    _check_with_provider(provider, integration)
    changed = {k: v for k, v in _settings(integration).items() if settings_before.get(k) != v}
    if requests_per_minute(integration) != budget_before:
        changed[BUDGET_FIELD.name] = requests_per_minute(integration)
    changed |= {
        name: HIDDEN
        for name in sorted(provider.secret_fields)
        if secrets.get(name) != secrets_before.get(name)
    }
    if needs_fixing(integration):
        activate(integration)
        _catch_up(integration)
        changed["status"] = integration.status
    if changed:
        record(integration.account_id, "integration.updated", integration, changed)


def sign_release(
    integration: Integration, values: Mapping[str, Any], user_id: int, client_address: str
) -> None:
    """Record the signed release (who, title, when, from where; integrations/schemas.ReleaseSign)
    and activate."""
    fields = checked(ReleaseSign, values, unknown="Not a field of the release form.")
    integration.release_signer_name = fields["signer_name"]
    integration.release_signer_title = fields["signer_title"]
    integration.release_signed_at = utcnow()
    integration.release_user_id = user_id
    integration.release_client_address = client_address[:45]
    record(
        integration.account_id,
        "integration.release_signed",
        integration,
        {
            "signer_name": integration.release_signer_name,
            "signer_title": integration.release_signer_title,
        },
    )
    if is_waiting_for_release(integration):
        activate(integration)


def pause_integration(integration: Integration) -> None:
    pause(integration)
    record(integration.account_id, "integration.paused", integration)


def resume_integration(integration: Integration) -> None:
    """Send again; refused while a required release form is unsigned."""
    if PROVIDERS[integration.provider].receives_locations and not integration.release_signed_at:
        raise ValidationError({"release": ["Sign the release form first."]})
    activate(integration)
    _catch_up(integration)
    record(integration.account_id, "integration.resumed", integration)


def delete_integration(integration: Integration) -> None:
    """Delete it with its messages (the outbox rows cascade), after the provider's
    own clean-up (revoking an OAuth token) where it has one."""
    revoke = getattr(PROVIDERS[integration.provider], "revoke", None)
    if revoke is not None:
        revoke(integration)
    record(integration.account_id, "integration.deleted", integration)
    db.session.delete(integration)


def get_account_integration(account_id: int, integration_id: int) -> Integration | None:
    return db.session.scalar(
        select(Integration).where(
            Integration.id == integration_id, Integration.account_id == account_id
        )
    )


def account_integrations(account_id: int) -> list[Integration]:
    return list(
        db.session.scalars(
            select(Integration).where(Integration.account_id == account_id).order_by(Integration.id)
        )
    )


def summary(integration: Integration) -> str:
    """The grid's "Attribute or options" cell: the synced attribute, or the options on."""
    provider = PROVIDERS[integration.provider]
    if integration.vehicle_attribute:
        return dict(VEHICLE_ATTRIBUTES).get(integration.vehicle_attribute, "—")
    labels = [
        field.label
        for field in provider.fields
        if field.kind == "checkbox" and (integration.options or {}).get(field.name)
    ]
    return ", ".join(labels) or "—"
