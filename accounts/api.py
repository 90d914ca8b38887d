"""REST API of the accounts blueprint: who am I, the account's API tokens, and its
audit log."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from accounts.api_access import admin_only, api_blueprint, api_user, requires
from accounts.audit import AuditEvent, account_events
from accounts.models import ApiToken, Scope
from accounts.tokens import (
    EXPIRY_FORMAT,
    account_tokens,
    get_account_token,
    issue_token,
    revoke_token,
)
from core.api import ApiProblem, iso_time, json_object, page_arguments, page_json
from core.errors import validation_problem
from core.extensions import db
from core.times import parse_rfc3339

bp = api_blueprint("accounts_api", __name__)


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "hint": token.hint,
        "user": token.user.email,
        "scope": token.scope,
        "created_at": iso_time(token.created_at),
        "expires_at": iso_time(token.expires_at),
        "last_used_at": iso_time(token.last_used_at),
        "revoked_at": iso_time(token.revoked_at),
    }


@bp.get("/account")
def account() -> Response:
    """The token's account and user."""
    user = api_user()
    return jsonify(
        {
            "id": user.account_id,
            "name": user.account.name,
            "user": {"id": user.id, "email": user.email, "role": user.role},
        }
    )


@bp.get("/tokens")
def list_tokens() -> Response:
    """The account's API tokens, revoked ones included; never the tokens themselves."""
    return jsonify({"tokens": [token_json(t) for t in account_tokens(api_user().account_id)]})


@bp.post("/tokens")
@admin_only
def create_token() -> tuple[Response, int] | Response:
    """Issue a token acting as the caller, with a `scope` (default admin) and an
    optional `expires_at`; the token is in this response only."""
    body = json_object()
    errors: dict[str, list[str]] = {}
    name, scope, expires_text = body.get("name"), body.get("scope"), body.get("expires_at")
    if not isinstance(name, str):
        errors["name"] = ["A string is required."]
    if scope is not None and not isinstance(scope, str):
        errors["scope"] = ["One of " + ", ".join(s.value for s in Scope) + "."]
    expires_at = None
    if expires_text is not None:
        expires_at = parse_rfc3339(expires_text)
        if expires_at is None:
            errors["expires_at"] = [EXPIRY_FORMAT]
    if errors:
        return validation_problem(errors)
    token, clear = issue_token(api_user(), str(name), scope, expires_at)
    db.session.commit()
    return jsonify({**token_json(token), "token": clear}), 201


@bp.delete("/tokens/<int:token_id>")
@admin_only
def delete_token(token_id: int) -> tuple[str, int]:
    """Revoke a token of the account."""
    token = get_account_token(api_user().account_id, token_id)
    if token is None:
        raise ApiProblem(404, "Not Found", "No such token in this account.")
    revoke_token(token)
    db.session.commit()
    return "", 204


def audit_event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso_time(event.at),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_name": event.object_name,
        "details": event.details,
        "client_address": event.client_address,
    }


@bp.get("/audit-events")
@requires(Scope.ADMIN)  # a read, but members and read tokens may not see the log
def list_audit_events() -> Response | tuple[Response, int]:
    """The account's audit log, newest first, a page at a time (`limit`, `cursor`)."""
    limit, cursor = page_arguments()
    found = account_events(api_user().account_id, before_id=cursor, limit=limit + 1)
    return page_json("audit_events", found, limit, audit_event_json)
