"""API tokens: issued once in clear, kept as a SHA-256, looked up by bearer value;
their scopes, expiry, and what a token may do — its scope capped by its user's role."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from accounts.audit import record
from accounts.models import ApiToken, Role, Scope, User
from accounts.schemas import TokenCreate
from core.contract import check_fields
from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow

TOKEN_PREFIX = "fh_"
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# What a request may need, granted by each scope: admin is everything (read, every
# change, ingest); telemetry:write is ingest alone, so a device gateway's token
# leaked from a truck cannot read the fleet or change a webhook.
SCOPE_GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset(Scope),
    Scope.READ: frozenset({Scope.READ}),
    Scope.TELEMETRY_WRITE: frozenset({Scope.TELEMETRY_WRITE}),
}
# The cap each role puts on its tokens, whatever their scope: members may look.
ROLE_GRANTS: dict[str, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.MEMBER: frozenset({Scope.READ}),
}
SCOPE_DESCRIPTIONS = {
    Scope.ADMIN: "Admin — everything its user may do",
    Scope.READ: "Read — look, change nothing",
    Scope.TELEMETRY_WRITE: "Telemetry — post telemetry only",
}


def hash_token(token: str) -> str:
    # The token carries 256 random bits, so a plain SHA-256 cannot be brute-forced;
    # a slow password hash would only slow down every API request.
    return hashlib.sha256(token.encode()).hexdigest()


def role_grants(user: User) -> frozenset[Scope]:
    # An unknown role grants nothing: fail closed.
    return ROLE_GRANTS.get(user.role, frozenset())


def scopes_for(user: User) -> list[Scope]:
    """The scopes `user` may give a token: those granting no more than the role does."""
    return [scope for scope in Scope if SCOPE_GRANTS[scope] <= role_grants(user)]


def token_grants(token: ApiToken) -> frozenset[Scope]:
    """What the token may do: its scope, capped by its user's role as it is now (a
    token an admin made keeps nothing beyond read if the admin becomes a member)."""
    try:
        scope = Scope(token.scope)
    except ValueError:
        return frozenset()
    return SCOPE_GRANTS[scope] & role_grants(token.user)


def default_scope(user: User) -> Scope:
    """The scope of a token made without one: all its user may do."""
    return Scope.ADMIN if Scope.ADMIN in scopes_for(user) else Scope.READ


def check_scope(user: User, scope: str) -> list[str]:
    """What is wrong with giving a token of `user` this scope (one of Scope): more
    than the user's role allows."""
    if Scope(scope) not in scopes_for(user):
        return [f"A {user.role}'s token may only have the scope read."]
    return []


def create_token(user: User, values: Mapping[str, Any]) -> tuple[ApiToken, str]:
    """A new token for `user` from `values` (the API's body: accounts/schemas.TokenCreate):
    the row and the clear token, which is never stored. A scope left out or null
    is the widest the user's role allows (admin, or read for a member); an expiry
    left out or null, never. ValidationError names every bad field, the scope
    beyond the user's role too.

    The caller commits."""
    fields, errors = check_fields(TokenCreate, values, unknown="Not a field of a token.")
    scope = fields.get("scope") or default_scope(user)
    beyond_role = [] if "scope" in errors else check_scope(user, scope)
    if beyond_role:
        errors["scope"] = beyond_role
    if errors:
        raise ValidationError(errors)
    expires_at = fields.get("expires_at")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        account_id=user.account_id,
        user=user,
        name=fields["name"],
        token_hash=hash_token(clear),
        hint=clear[:8],
        scope=scope,
        expires_at=expires_at,
    )
    db.session.add(token)
    details = {"name": token.name, "user": user.email}
    # The log names a scope or an expiry only where the token is narrower than its user.
    if scope != default_scope(user):
        details["scope"] = scope
    if expires_at is not None:
        details["expires_at"] = expires_at.isoformat()
    record(user.account_id, "token.created", token, details)
    return token, clear


def issue_token(
    user: User, name: str, scope: str | None = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """`create_token` with its fields one by one (the portal's form, the command line)."""
    return create_token(user, {"name": name, "scope": scope, "expires_at": expires_at})


def revoke_token(token: ApiToken) -> None:
    """Revoke a token; the caller commits. Revoking twice changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(token.account_id, "token.revoked", token)


def find_unrevoked_token(clear: str) -> ApiToken | None:
    """The unrevoked token with this clear value, expired or not; or None."""
    if not clear.startswith(TOKEN_PREFIX):
        return None
    return db.session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(clear), ApiToken.revoked_at.is_(None)
        )
    )


def record_use(token: ApiToken) -> None:
    """Note that the token was used now, to the minute; commits."""
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        db.session.commit()


def account_tokens(account_id: int) -> list[ApiToken]:
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.account_id == account_id)
            .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc())
        )
    )


def get_account_token(account_id: int, token_id: int) -> ApiToken | None:
    """The account's token with this id; another account's id finds nothing."""
    return db.session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.account_id == account_id)
    )
