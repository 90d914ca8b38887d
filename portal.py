"""Helpers every portal view shares: the admin check, putting a domain
`ValidationError` next to the form fields it names, and the empty form whose only
job is to carry a CSRF token on bare POST buttons."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import abort
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from errors import ValidationError

F = TypeVar("F", bound=Callable[..., Any])


class EmptyForm(FlaskForm):
    """A form with no fields: a POST button that carries the CSRF token."""


def admin_required(view: F) -> F:
    """Log-in required, and the user must be an admin of the account: members may look."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403, "Only an admin of the account can make this change.")
        return view(*args, **kwargs)

    return cast(F, wrapped)


def show_errors(form: FlaskForm, error: ValidationError) -> None:
    """Put each domain error next to its field; errors of no field go to the form."""
    for field_name, messages in error.errors.items():
        field = getattr(form, field_name, None)
        if field is None:
            form.form_errors.extend(messages)
        else:
            field.errors = [*field.errors, *messages]
