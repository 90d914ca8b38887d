"""REST API plumbing shared by every `/api/v1` blueprint: bearer-token
authentication, the scope check every request passes (GET needs `read`, any other
method `admin`, unless the view says otherwise with `requires`), and JSON body
parsing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from accounts.models import ApiToken, Scope, User
from accounts.tokens import find_unrevoked_token, record_use, role_grants, token_grants
from database import MAX_ID, whole_number
from errors import ValidationError, problem, validation_problem
from extensions import csrf

API_PREFIX = "/api/v1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The attribute `requires` sets on a view: the scope a request to it needs.
_REQUIRED_SCOPE = "required_scope"

F = TypeVar("F", bound=Callable[..., Any])


class ApiProblem(HTTPException):
    """Abort an API request with a problem response."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(
            description=detail, response=problem(status, title, detail, headers=headers)
        )


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under /api/v1 whose every route needs a bearer token whose scope
    (capped by its user's role) allows the request: see `required_scope`.

    The API takes no cookies, so CSRF cannot reach it and its token check is off."""
    blueprint = Blueprint(name, import_name, url_prefix=API_PREFIX)
    blueprint.before_request(_authenticate)
    csrf.exempt(blueprint)
    return blueprint


def _authenticate() -> None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="fleethook"'}
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiProblem(
            401, "Unauthorized", "Send an API token: Authorization: Bearer <token>.", challenge
        )
    token = find_unrevoked_token(value.strip())
    if token is None:
        raise ApiProblem(401, "Unauthorized", "The API token is unknown or revoked.", challenge)
    if token.is_expired:
        raise ApiProblem(401, "Unauthorized", "The API token has expired.", challenge)
    record_use(token)
    g.api_token = token
    _authorize(token, required_scope())


def required_scope() -> Scope:
    """What the current request needs: what its view `requires`, or else `read` to
    look and `admin` to change — so a write route that forgot to say is closed to
    members and to narrow tokens rather than open to them."""
    view = current_app.view_functions.get(request.endpoint or "")
    declared = getattr(view, _REQUIRED_SCOPE, None)
    if declared is not None:
        return cast(Scope, declared)
    return Scope.READ if request.method in SAFE_METHODS else Scope.ADMIN


def _authorize(token: ApiToken, needed: Scope) -> None:
    if needed in token_grants(token):
        return
    if needed not in role_grants(token.user):
        detail = f"The token's user is a {token.user.role}: only an admin may do this."
    else:
        detail = f"The token's scope is {token.scope}; this needs the scope {needed}."
    raise ApiProblem(403, "Forbidden", detail)


def api_token() -> ApiToken:
    return cast(ApiToken, g.api_token)


def api_user() -> User:
    return api_token().user


def requires(scope: Scope) -> Callable[[F], F]:
    """Declare the scope a view needs, instead of the default (read for GET, admin
    for every other method): e.g. ingest needs only telemetry:write, and the audit
    log, though read, needs admin. The blueprint checks it before the view runs."""

    def mark(view: F) -> F:
        setattr(view, _REQUIRED_SCOPE, scope)
        return view

    return mark


def admin_only(view: F) -> F:
    """Refuse the view to tokens of members and to read or telemetry tokens. Writes
    need admin without it; it says so where a reader looks, and is needed on a GET
    that only admins may make."""
    return requires(Scope.ADMIN)(view)


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 problem saying what is wrong;
    a 422 problem naming the field whose text no database can store."""
    if not request.is_json:
        raise ApiProblem(415, "Unsupported Media Type", "Send the body as application/json.")
    try:
        body = request.get_json()
    except (BadRequest, RecursionError):  # RecursionError: nested too deep to parse
        raise ApiProblem(400, "Bad Request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "Bad Request", "The body must be a JSON object.")
    where = unstorable_text(body)
    if where is not None:
        raise HTTPException(
            response=validation_problem(
                {
                    where: [
                        "Text may not hold NUL characters (\\u0000) or unpaired surrogates "
                        "(\\ud800–\\udfff)."
                    ]
                }
            )
        )
    return body


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable_text(body: Any) -> str | None:
    """Where a parsed JSON body holds a string (key or value) with a NUL character
    or an unpaired surrogate — JSON spells both (\\u0000, \\ud800), but
    PostgreSQL stores neither and UTF-8 has no unpaired surrogates — as the path
    "reports[3].driver"; None if it holds none."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                shown = key if _storable(key) else ascii(key)[1:-1]
                where = f"{path}.{shown}" if path else shown
                if not _storable(key):
                    return where
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_arguments(max_cursor: int = MAX_ID) -> tuple[int, int | None]:
    """`limit` (1–200, default 50) and `cursor` (the last id of the previous page,
    at most `max_cursor`: the largest id of the rows paged)."""
    errors: dict[str, list[str]] = {}
    limit_text = request.args.get("limit", str(DEFAULT_PAGE_SIZE))
    cursor_text = request.args.get("cursor")
    limit = whole_number(limit_text, MAX_PAGE_SIZE) or 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        errors["limit"] = [f"A whole number from 1 to {MAX_PAGE_SIZE}."]
    cursor = whole_number(cursor_text, max_cursor)
    if cursor_text is not None and cursor is None:
        errors["cursor"] = ["Pass the next_cursor of the previous page, unchanged."]
    if errors:
        raise ValidationError(errors)
    return limit, cursor


def page_json(key: str, found: Sequence[Any], limit: int, render: Callable[[Any], Any]) -> Response:
    """A page of a listing: `found` holds up to limit + 1 rows — one more than asked
    tells whether another page follows, and the last row shown is its cursor."""
    page = found[:limit]
    next_cursor = str(page[-1].id) if len(found) > limit else None
    return jsonify({key: [render(row) for row in page], "next_cursor": next_cursor})


def iso_time(value: datetime | None) -> str | None:
    """A timestamp as the API writes it (ISO 8601 with its UTC offset), or None."""
    return value.isoformat() if value is not None else None
