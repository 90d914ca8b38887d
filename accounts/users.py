"""Accounts and their users: creation with validated input, and password checks."""

from __future__ import annotations

from functools import cache

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.audit import record
from accounts.models import Account, Role, User
from core.database import write_unless_taken
from core.errors import ValidationError
from core.extensions import db

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
MAX_NAME_LENGTH = 100
EMAIL_TAKEN = "A user with this email address already exists."


@cache
def _dummy_hash(method: str) -> str:
    """Checked against when the email is unknown, so a wrong address costs the same
    time as a wrong password and response times do not reveal who has an account."""
    return generate_password_hash("not a password of anyone", method=method)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_account_name(name: str) -> list[str]:
    name = name.strip()
    if not name:
        return ["Give the account a name."]
    if len(name) > MAX_NAME_LENGTH:
        return [f"At most {MAX_NAME_LENGTH} characters."]
    return []


def check_email(email: str) -> list[str]:
    if not email.strip():
        return ["Enter an email address."]
    try:
        validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        return [str(error)]
    if db.session.scalar(select(User.id).where(User.email == normalise_email(email))):
        return [EMAIL_TAKEN]
    return []


def check_password(password: str) -> list[str]:
    if len(password) < MIN_PASSWORD_LENGTH:
        return [f"Use at least {MIN_PASSWORD_LENGTH} characters."]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [f"At most {MAX_PASSWORD_LENGTH} characters."]
    return []


def _raise_if_any(errors: dict[str, list[str]]) -> None:
    errors = {field: messages for field, messages in errors.items() if messages}
    if errors:
        raise ValidationError(errors)


def create_account(name: str, email: str, password: str) -> User:
    """Create an account and its first admin; the caller commits."""
    _raise_if_any(
        {
            "name": check_account_name(name),
            "email": check_email(email),
            "password": check_password(password),
        }
    )
    account = Account(name=name.strip())
    db.session.add(account)
    return _new_user(account, email, password, Role.ADMIN)


def add_user(account: Account, email: str, password: str, role: str) -> User:
    """Add a user to an account; the caller commits."""
    _raise_if_any(
        {
            "email": check_email(email),
            "password": check_password(password),
            "role": [] if role in set(Role) else ["Choose admin or member."],
        }
    )
    return _new_user(account, email, password, Role(role))


def _new_user(account: Account, email: str, password: str, role: Role) -> User:
    user = User(
        email=normalise_email(email),
        password_hash=generate_password_hash(
            password, method=current_app.config["PASSWORD_HASH_METHOD"]
        ),
        role=role.value,
    )

    def join_account() -> None:
        # Joined here, inside the savepoint, so that nothing writes the user before it.
        user.account = account
        db.session.add(user)

    # Written now: the account's id, for the audit event. An address checked free
    # above may have been taken since by a concurrent request: the same answer then.
    if not write_unless_taken(db.session, join_account):
        raise ValidationError({"email": [EMAIL_TAKEN]})
    record(user.account_id, "user.created", user, {"email": user.email, "role": user.role})
    return user


def remove_user(user: User) -> None:
    """Remove a user, never the account's last admin; the caller commits."""
    if user.is_admin:
        admins = db.session.scalar(
            select(func.count(User.id)).where(
                User.account_id == user.account_id, User.role == Role.ADMIN
            )
        )
        if admins == 1:
            raise ValidationError({"user": ["The account's last admin cannot be removed."]})
    record(user.account_id, "user.removed", user, {"email": user.email, "role": user.role})
    # The event goes in first: if the user removes themselves, the database then
    # clears its actor_user_id (SET NULL) instead of refusing a dangling reference.
    db.session.flush()
    db.session.delete(user)


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or None."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def get_account_user(account_id: int, user_id: int) -> User | None:
    """The account's user with this id; another account's id finds nothing."""
    return db.session.scalar(select(User).where(User.id == user_id, User.account_id == account_id))


def account_users(account_id: int) -> list[User]:
    return list(
        db.session.scalars(select(User).where(User.account_id == account_id).order_by(User.email))
    )
