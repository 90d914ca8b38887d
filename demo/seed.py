"""Demo data for `make run`: the demo account with its admin login, the demo
vehicles, and a fresh API token on every start. Never in production: the demo
admin's password is published."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from accounts.models import ApiToken, User
from accounts.tokens import issue_token, revoke_token
from accounts.users import create_account
from core.extensions import db
from demo.simulator import DEFAULT_VEHICLES
from demo.vehicles import demo_vehicles
from fleet.models import Vehicle
from fleet.records import create_vehicle

DEMO_ACCOUNT = "Demo Fleet"
DEMO_EMAIL = "demo@fleethook.example"
DEMO_PASSWORD = "fleethook-demo"
DEMO_TOKEN_NAME = "make run"

demo_cli = AppGroup("demo", help="Demo data for local runs.")


def seed_demo() -> tuple[User, str]:
    """The demo admin (created if missing), the simulator's demo vehicles (those
    missing), and a new API token; the previous demo token is revoked so only the
    one last printed works."""
    user = db.session.scalar(select(User).where(User.email == DEMO_EMAIL))
    if user is None:
        user = create_account(DEMO_ACCOUNT, DEMO_EMAIL, DEMO_PASSWORD)
        db.session.flush()
    # Here, not only when the simulator starts: the documentation's examples name
    # these VINs, and must work with the simulator off too.
    known = set(
        db.session.scalars(select(Vehicle.vin).where(Vehicle.account_id == user.account_id))
    )
    for vehicle in demo_vehicles(DEFAULT_VEHICLES):
        if vehicle.vin not in known:
            create_vehicle(user.account_id, vehicle.api_body())
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
    if current_app.config["FLEETHOOK_ENV"] == "production":
        # The demo admin's password is published (README, this file): in production
        # it would be a way in for anyone who read them.
        raise click.ClickException(
            "`flask demo seed` makes an admin with a published password and is refused "
            "in production (FLEETHOOK_ENV=production, the default). Run it with "
            "FLEETHOOK_ENV=development on a laptop; nothing was created."
        )
    user, clear = seed_demo()
    click.echo(f"Demo login:  {user.email} / {DEMO_PASSWORD}")
    click.echo(f"API token:   {clear}")
