"""API tokens: issued once in clear, kept as a SHA-256, looked up by bearer value."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select

from accounts.audit import record
from accounts.models import ApiToken, User
from database import utcnow
from errors import ValidationError
from extensions import db

TOKEN_PREFIX = "fh_"
MAX_TOKEN_NAME_LENGTH = 100
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    # The token carries 256 random bits, so a plain SHA-256 cannot be brute-forced;
    # a slow password hash would only slow down every API request.
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_name(name: str) -> list[str]:
    name = name.strip()
    if not name:
        return ["Name the token after what will use it."]
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        return [f"At most {MAX_TOKEN_NAME_LENGTH} characters."]
    return []


def issue_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: the row and the clear token, which is never stored.

    The caller commits."""
    errors = check_token_name(name)
    if errors:
        raise ValidationError({"name": errors})
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        account_id=user.account_id,
        user=user,
        name=name.strip(),
        token_hash=hash_token(clear),
        hint=clear[:8],
    )
    db.session.add(token)
    record(user.account_id, "token.created", token, {"name": token.name, "user": user.email})
    return token, clear


def revoke_token(token: ApiToken) -> None:
    """Revoke a token; the caller commits. Revoking twice changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(token.account_id, "token.revoked", token)


def find_active_token(clear: str) -> ApiToken | None:
    """The unrevoked token with this clear value, its use recorded; or None."""
    if not clear.startswith(TOKEN_PREFIX):
        return None
    token = db.session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(clear), ApiToken.revoked_at.is_(None)
        )
    )
    if token is not None:
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            token.last_used_at = now
            db.session.commit()
    return token


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
