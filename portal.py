"""Helpers every portal view shares: the admin check, htmx-aware rendering (pages,
fragments, dialogs; the one place that reads htmx-flask), putting a domain
`ValidationError` next to the form fields it names, and the empty form whose only
job is to carry a CSRF token on bare POST buttons."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, abort, make_response, render_template
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from htmx_flask import request as htmx_request

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


def is_htmx_request() -> bool:
    """An htmx swap; a history restore wants the whole page, not a fragment."""
    return bool(htmx_request.htmx) and not htmx_request.htmx.history_restore_request


def render_page_or_fragment(
    page: str, fragment: str, status: int = 200, **context: Any
) -> Response:
    """The fragment alone for htmx requests, the whole page otherwise."""
    template = fragment if is_htmx_request() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def render_dialog(
    content: str, title: str, status: int = 200, trigger: str | None = None, **context: Any
) -> Response:
    """`content` in a modal dialog for htmx requests, or on a page of its own, so
    every dialog also works without JavaScript. `trigger` names an event htmx
    raises on the page (HX-Trigger), e.g. to refresh a grid."""
    response = render_page_or_fragment(
        "dialog_page.html", "_dialog.html", status, content=content, title=title, **context
    )
    if trigger:
        response.headers["HX-Trigger"] = trigger
    return response


def show_errors(form: FlaskForm, error: ValidationError) -> None:
    """Put each domain error next to its field; errors of no field go to the form."""
    for field_name, messages in error.errors.items():
        # Nested API fields ("custom_header.name") are flat form fields here.
        field = getattr(form, field_name.replace(".", "_"), None)
        if field is None:
            form.form_errors.extend(messages)
        else:
            field.errors = [*field.errors, *messages]
