"""The audit trail: one `AuditEvent` per change to an account's webhooks,
integrations, API tokens and users — who made it, what, when and from which
address — written by `record` in the changing transaction, and read back newest
first for the account's admins."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import JSON, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from core.database import UTCDateTime
from core.extensions import db
from core.times import utcnow

# What the log says instead of a secret's new value (signing secrets, API keys,
# OAuth tokens, custom header values, passwords never reach it).
HIDDEN = "(hidden)"
# The actor of changes made with `flask --app app …` commands, outside any request.
COMMAND_LINE = "command line"

# Every action recorded, and how the audit log page says it.
ACTIONS = {
    "webhook.created": "Created a webhook",
    "webhook.updated": "Changed a webhook",
    "webhook.paused": "Paused a webhook",
    "webhook.resumed": "Resumed a webhook",
    "webhook.secret_rotated": "Rotated a webhook's signing secret",
    "webhook.previous_secret_expired": "Expired a webhook's previous signing secret early",
    "webhook.deleted": "Deleted a webhook",
    "integration.created": "Connected an integration",
    "integration.updated": "Changed an integration",
    "integration.release_signed": "Signed an integration's release form",
    "integration.reconnected": "Signed in to Salesforce again for an integration",
    "integration.paused": "Paused an integration",
    "integration.resumed": "Resumed an integration",
    "integration.deleted": "Deleted an integration",
    "token.created": "Created an API token",
    "token.revoked": "Revoked an API token",
    "user.created": "Added a user",
    "user.removed": "Removed a user",
}


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """One change, as it was made. The object's type, id and name are copied, so
    the entry still reads after the object is deleted."""

    __tablename__ = "audit_event"
    # The log is listed per account by id, newest first.
    __table_args__ = (Index("ix_audit_event_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), index=True
    )
    # The user's email, "API token … of <email>", or "command line".
    actor: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(40))  # a key of ACTIONS
    object_type: Mapped[str] = mapped_column(String(20))  # webhook, integration, token, user
    object_id: Mapped[int]
    object_name: Mapped[str] = mapped_column(String(254))
    # Fields changed and their new values; HIDDEN for secrets.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    client_address: Mapped[str | None] = mapped_column(String(45))  # None: command line

    @property
    def description(self) -> str:
        return ACTIONS.get(self.action, self.action)


def _actor() -> tuple[int | None, str, str | None]:
    """Who is making the change, and from which address (as ProxyFix sees it)."""
    if not has_request_context():
        return None, COMMAND_LINE, None
    address = (request.remote_addr or "")[:45] or None
    token = g.get("api_token")  # set by core/api.py's bearer-token check
    if token is not None:
        actor = f'API token "{token.name}" ({token.hint}…) of {token.user.email}'
        return token.user_id, actor, address
    if current_user.is_authenticated:
        return current_user.id, current_user.email, address
    return None, "anonymous", address


def _name_of(obj: Any) -> str:
    for attribute in ("name", "email", "provider"):
        value = getattr(obj, attribute, None)
        if value:
            return str(value)[:254]
    return ""


def record(
    account_id: int, action: str, obj: Any, details: Mapping[str, Any] | None = None
) -> AuditEvent:
    """Add the event of `action` on `obj` (a webhook, integration, token or user)
    to the caller's session: it commits or rolls back with the change itself."""
    if obj.id is None:  # new: the id comes with the INSERT
        db.session.flush()
    actor_user_id, actor, address = _actor()
    event = AuditEvent(
        account_id=account_id,
        actor_user_id=actor_user_id,
        actor=actor[:400],
        action=action,
        object_type=action.partition(".")[0],
        object_id=obj.id,
        object_name=_name_of(obj),
        details=dict(details) if details else None,
        client_address=address,
    )
    db.session.add(event)
    return event


def account_events(
    account_id: int, before_id: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    """The account's events, newest first, optionally from before `before_id`."""
    query = select(AuditEvent).where(AuditEvent.account_id == account_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))
