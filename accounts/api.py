"""REST API of the accounts blueprint: who am I, the account's API tokens, and its
audit log. What each route takes and answers is in accounts/schemas.py."""

from __future__ import annotations

from flask import Response

from accounts import schemas
from accounts.api_access import admin_only, api_blueprint, api_user, requires
from accounts.audit import account_events
from accounts.models import Scope
from accounts.tokens import account_tokens, create_token, get_account_token, revoke_token
from core.api import ApiProblem, PageQuery, json_object, page_arguments, page_json
from core.contract import answer, operation, page_of
from core.extensions import db

bp = api_blueprint("accounts_api", __name__)


@bp.get("/account")
@operation("The token's account and user", {200: schemas.Account})
def account() -> Response:
    """The token's account and user."""
    user = api_user()
    return answer(schemas.Account, user.account, user=user)


@bp.get("/tokens")
@operation("The account's API tokens (never the tokens themselves)", {200: schemas.Tokens})
def list_tokens() -> Response:
    """The account's API tokens, revoked ones included; never the tokens themselves."""
    return answer(schemas.Tokens, {"tokens": account_tokens(api_user().account_id)})


@bp.post("/tokens")
@admin_only
@operation(
    "Issue a token acting as the caller, with a scope and an optional expiry",
    {201: schemas.NewToken},
    body=schemas.TokenCreate,
)
def create() -> Response:
    """Issue a token acting as the caller, with a `scope` (default admin) and an
    optional `expires_at`; the token is in this response only."""
    token, clear = create_token(api_user(), json_object())
    db.session.commit()
    return answer(schemas.NewToken, token, 201, token=clear)


@bp.delete("/tokens/<int:token_id>")
@admin_only
@operation("Revoke a token", {204: "Revoked."}, problems={404: "No such token in this account."})
def delete_token(token_id: int) -> tuple[str, int]:
    """Revoke a token of the account."""
    token = get_account_token(api_user().account_id, token_id)
    if token is None:
        raise ApiProblem(404, "Not Found", "No such token in this account.")
    revoke_token(token)
    db.session.commit()
    return "", 204


@bp.get("/audit-events")
@requires(Scope.ADMIN)  # a read, but members and read tokens may not see the log
@operation(
    "The account's audit log, newest first, a page at a time (admins only)",
    {200: page_of("audit_events", schemas.AuditEvent)},
    query=PageQuery,
    problems={
        403: "The token's user is a member, or its scope is not admin: only an admin's "
        "admin token reads the log."
    },
)
def list_audit_events() -> Response:
    """The account's audit log, newest first, a page at a time (`limit`, `cursor`)."""
    limit, cursor = page_arguments()
    found = account_events(api_user().account_id, before_id=cursor, limit=limit + 1)
    return page_json("audit_events", found, limit, schemas.AuditEvent)
