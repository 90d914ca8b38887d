"""Portal forms of the integrations blueprint. A provider's form is built from its
`fields` (integrations/base.py), so the form, the API and the rules agree;
`values()` gives the mapping `lifecycle` checks."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField

from integrations.base import Field, Provider, form_fields


class ProviderForm(FlaskForm):
    """Subclassed per provider by `provider_form`."""

    _provider: Provider

    def values(self, editing: bool) -> dict[str, Any]:
        """The fields as lifecycle takes them; editing, a blank secret keeps the stored one."""
        values: dict[str, Any] = {}
        for field in form_fields(self._provider):
            data = getattr(self, field.name).data
            if field.kind == "checkbox":
                values[field.name] = bool(data)
            elif field.kind == "secret" and editing and not data:
                continue
            else:
                values[field.name] = data or None
        return values


def _wtform_field(field: Field, editing: bool) -> Any:
    help_text = field.help
    if field.kind == "secret":
        if editing:
            help_text = (help_text + " Leave blank to keep the stored one.").strip()
        return PasswordField(field.label, description=help_text)
    if field.kind == "checkbox":
        return BooleanField(field.label, description=help_text)
    if field.kind == "select":
        return SelectField(
            field.label,
            description=help_text,
            choices=[SelectChoice(key, label) for key, label in field.choices],
            validate_choice=False,  # the rules in lifecycle decide
        )
    if field.kind == "number":
        return StringField(
            field.label,
            description=help_text,
            render_kw={"type": "number", "min": field.minimum, "max": field.maximum, "step": 1},
        )
    return StringField(field.label, description=help_text)


def provider_form(provider: Provider, editing: bool, **kwargs: Any) -> ProviderForm:
    """A form with the provider's fields."""
    attributes: dict[str, Any] = {"_provider": provider}
    for field in form_fields(provider):
        attributes[field.name] = _wtform_field(field, editing)
    form_class = type(f"{provider.key.title()}Form", (ProviderForm,), attributes)
    form: ProviderForm = form_class(**kwargs)
    return form


class ReleaseForm(FlaskForm):
    signer_name = StringField("Your name")
    signer_title = StringField("Your title")
    accept = BooleanField(
        "I accept that the locations of this account's vehicles are sent to the provider."
    )

    def values(self) -> dict[str, Any]:
        return {
            "signer_name": self.signer_name.data,
            "signer_title": self.signer_title.data,
            "accept": bool(self.accept.data),
        }
