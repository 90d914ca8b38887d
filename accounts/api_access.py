"""Who may call the REST API: every `/api/v1` blueprint authenticates a bearer token
and checks its scope, capped by its user's role, before the view runs (GET needs
`read`, any other method `admin`, unless the view says otherwise with `requires`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, current_app, g, request

from accounts.models import ApiToken, Scope, User
from accounts.tokens import find_unrevoked_token, record_use, role_grants, token_grants
from core.api import API_PREFIX, ApiProblem
from core.errors import ValidationError, validation_problem
from core.extensions import csrf, db

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The attribute `requires` sets on a view: the scope a request to it needs.
_REQUIRED_SCOPE = "required_scope"

F = TypeVar("F", bound=Callable[..., Any])


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under /api/v1 whose every route needs a bearer token whose scope
    (capped by its user's role) allows the request: see `required_scope`. A
    ValidationError a view lets through is answered 422 with its fields.

    The API takes no cookies, so CSRF cannot reach it and its token check is off."""
    blueprint = Blueprint(name, import_name, url_prefix=API_PREFIX)
    blueprint.before_request(_authenticate)
    blueprint.register_error_handler(ValidationError, _invalid)
    csrf.exempt(blueprint)
    return blueprint


def _invalid(error: ValidationError) -> Response:
    """Bad input, whichever view found it: 422 naming each field, and nothing of
    the request's changes kept."""
    db.session.rollback()
    return validation_problem(error.errors)


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
