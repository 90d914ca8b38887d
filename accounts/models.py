"""Tables of the tenant: accounts, their users and their API tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.database import UTCDateTime
from core.extensions import db
from core.times import utcnow

# The longest email address there is (RFC 5321's path limit, less its brackets).
MAX_EMAIL_LENGTH = 254


class Role(StrEnum):
    ADMIN = "admin"  # may change webhooks, integrations, tokens and users
    MEMBER = "member"  # may look


class Scope(StrEnum):
    """What an API token may do, beyond which its user's role caps it (tokens.py)."""

    ADMIN = "admin"  # everything its user may do
    READ = "read"  # look: every GET a member may make, nothing else
    TELEMETRY_WRITE = "telemetry:write"  # post telemetry, nothing else (device gateways)


class Account(db.Model):  # type: ignore[name-defined]
    """A customer: the unit of tenancy. Every object belongs to exactly one."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # Bumped by every change to the account's landmarks, so each process knows
    # when its cached landmark index is stale (fleet/landmark_index.py).
    landmarks_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    users: Mapped[list[User]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    # Stored lower-cased; one user per address across all accounts.
    email: Mapped[str] = mapped_column(String(MAX_EMAIL_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship(back_populates="users")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A bearer token for the REST API. It acts as the user who holds it, limited to
    its scope and never beyond that user's role. Only a SHA-256 of the token is kept."""

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, so people can tell their tokens apart.
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(
        String(32), default=Scope.ADMIN.value, server_default=Scope.ADMIN.value
    )
    # None: the token never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired


class AccountQuota(db.Model):  # type: ignore[name-defined]
    """An operator's overrides of the installation's tenant limits for one account
    (`flask quota set`); a column left empty means the default (core/config.py)."""

    __tablename__ = "account_quota"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    reports_per_second: Mapped[float | None]
    reports_burst: Mapped[int | None]
    webhooks: Mapped[int | None]
    integrations: Mapped[int | None]
    pending_messages: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
