"""Demo data for `make run`: the demo account with its admin login and a fresh API
token on every start."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from accounts.models import ApiToken, User
from accounts.tokens import issue_token, revoke_token
from accounts.users import create_account
from extensions import db

DEMO_ACCOUNT = "Demo Fleet"
DEMO_EMAIL = "demo@fleethook.example"
DEMO_PASSWORD = "fleethook-demo"
DEMO_TOKEN_NAME = "make run"

demo_cli = AppGroup("demo", help="Demo data for local runs.")


def seed_demo() -> tuple[User, str]:
    """The demo admin (created if missing) and a new API token; the previous demo
    token is revoked so only the one last printed works."""
    user = db.session.scalar(select(User).where(User.email == DEMO_EMAIL))
    if user is None:
        user = create_account(DEMO_ACCOUNT, DEMO_EMAIL, DEMO_PASSWORD)
        db.session.flush()
    previous = db.session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.name == DEMO_TOKEN_NAME,
            ApiToken.revoked_at.is_(None),
        )
    )
    for token in previous:
        revoke_token(token)
    _, clear = issue_token(user, DEMO_TOKEN_NAME)
    db.session.commit()
    return user, clear


@demo_cli.command("seed")
def seed_command() -> None:
    """Create the demo account if missing and print its login and a new API token."""
    user, clear = seed_demo()
    click.echo(f"Demo login:  {user.email} / {DEMO_PASSWORD}")
    click.echo(f"API token:   {clear}")
