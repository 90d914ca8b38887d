"""Helpers every portal view shares: the admin check, the 404 for a record the
account does not have, htmx-aware rendering (pages, fragments, dialogs; the one
place that reads htmx-flask), the answer to a change made from a dialog or a
grid's button, putting a domain `ValidationError` next to the form fields it
names, the empty form whose only job is to carry a CSRF token on bare POST
buttons, and the `relative_time` filter through which every template shows a
time."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, abort, flash, make_response, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from htmx_flask import request as htmx_request
from markupsafe import Markup, escape

from core.errors import ValidationError
from core.times import parse_rfc3339, utcnow

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# The event (HX-Trigger) that closes the open dialog (static/fleethook.js).
CLOSE_DIALOG = "close-dialog"


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


def or_404(record: T | None) -> T:
    """`record`, found among the account's own; none (another account's id too) is a 404."""
    if record is None:
        abort(404)
    return record


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


def after_change(message: str, changed: str, back: str | None = None) -> ResponseReturnValue:
    """The answer to a change made from a dialog or a grid's button. htmx: close the
    dialog and raise `changed`, on which the grid refreshes itself; otherwise
    back to `back` (the Webhook Manager by default) with the message."""
    if is_htmx_request():
        return Response(status=204, headers={"HX-Trigger": f"{changed}, {CLOSE_DIALOG}"})
    flash(message, "success")
    return redirect(back or url_for("manager.page"))


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


def number_or_text(text: str | None, *kinds: type[int] | type[float]) -> Any:
    """A form field's text as the first of `kinds` (int when none is named) that reads
    it as a finite number; otherwise the text, for the domain's rules to refuse with
    their own words; None when it is blank."""
    text = (text or "").strip()
    if not text:
        return None
    for kind in kinds or (int,):
        try:
            number = kind(text)
        except ValueError:
            continue
        if math.isfinite(number):
            return number
    return text


def show_errors(form: FlaskForm, error: ValidationError) -> None:
    """Put each domain error next to its field; errors of no field go to the form."""
    for field_name, messages in error.errors.items():
        # Nested API fields ("custom_header.name") are flat form fields here; one
        # the form has no field for is shown beside its parent's ("area.circle").
        parts = field_name.split(".")
        field = next(
            (
                getattr(form, "_".join(parts[:n]))
                for n in range(len(parts), 0, -1)
                if hasattr(form, "_".join(parts[:n]))
            ),
            None,
        )
        if field is None:
            form.form_errors.extend(messages)
        else:
            field.errors = [*field.errors, *messages]


# Times: relative to now ("just now", "2 min ago", "3 h ago", "yesterday", then
# the date), the exact UTC time on hover. The grids re-render every 2 s, so a
# time computed on the server stays fresh without any script.

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def describe(moment: datetime, now: datetime) -> str:
    """`moment` in words relative to `now`. Under a minute either way is "just now"
    (clocks of web and worker hosts differ by a little); past two days, the date."""
    seconds = (now - moment).total_seconds()
    past = seconds >= 0
    gap = abs(seconds)
    if gap < MINUTE:
        return "just now"
    if gap < HOUR:
        amount = f"{int(gap // MINUTE)} min"
    elif gap < DAY:
        amount = f"{int(gap // HOUR)} h"
    elif gap < 2 * DAY:
        return "yesterday" if past else "tomorrow"
    else:
        return moment.astimezone(UTC).strftime("%Y-%m-%d")
    return f"{amount} ago" if past else f"in {amount}"


def exact(moment: datetime) -> str:
    """The exact time, as the hover text shows it: "2026-11-30 03:12:05 UTC"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _as_moment(value: datetime | str) -> datetime | None:
    if isinstance(value, datetime):
        # Columns give aware times; a naive one can only be UTC here.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return parse_rfc3339(value)


def relative_time(
    value: datetime | str | None, empty: str = "—", now: datetime | None = None
) -> Markup:
    """The Jinja filter: `<time datetime="…" title="… UTC">2 min ago</time>`.
    `value` is an aware time or an RFC 3339 string (times inside stored reports);
    nothing gives `empty`, and text that is no time is shown as it is."""
    if value is None or value == "":
        return Markup(escape(empty))
    moment = _as_moment(value)
    if moment is None:
        return Markup(escape(value))
    machine = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    words = describe(moment, now or utcnow())
    return Markup('<time datetime="{}" title="{}">{}</time>').format(machine, exact(moment), words)
