"""Command-line tools: `flask --app app accounts create` and `flask --app app tokens create`."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from accounts.models import User
from accounts.tokens import issue_token
from accounts.users import create_account, normalise_email
from errors import ValidationError
from extensions import db

accounts_cli = AppGroup("accounts", help="Manage customer accounts.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")


def _fail(error: ValidationError) -> None:
    for field, messages in error.errors.items():
        for message in messages:
            click.echo(f"--{field}: {message}", err=True)
    raise click.exceptions.Exit(2)


@accounts_cli.command("create")
@click.option("--name", required=True, help="The account's (company's) name.")
@click.option("--email", required=True, help="Email address of the account's first admin.")
@click.option("--password", required=True, help="The admin's password (12 characters or more).")
def create_account_command(name: str, email: str, password: str) -> None:
    """Create an account and its admin user."""
    try:
        user = create_account(name, email, password)
    except ValidationError as error:
        _fail(error)
    db.session.commit()
    click.echo(
        f"Created account {user.account.name!r} (id {user.account_id}) with admin {user.email}"
    )


@tokens_cli.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", default="Command line", show_default=True, help="What will use it.")
def create_token_command(email: str, name: str) -> None:
    """Issue an API token; it is printed alone on the last line, and only once."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        click.echo(f"--email: no user with the address {email}", err=True)
        raise click.exceptions.Exit(2)
    try:
        _, clear = issue_token(user, name)
    except ValidationError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"API token for {user.email} (role {user.role}), shown only now:")
    click.echo(clear)
