"""Command-line tools: `flask --app app accounts create`, `flask --app app tokens create`
and the operator's per-account limits, `flask --app app quota set|show`."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from accounts.models import Account, AccountQuota, User
from accounts.quotas import LIMIT_NAMES, account_limits, check_limit_value, default_limits
from accounts.schemas import EXPIRY_FORMAT
from accounts.tokens import issue_token
from accounts.users import create_account, normalise_email
from core.errors import ValidationError
from core.extensions import db
from core.times import parse_rfc3339

accounts_cli = AppGroup("accounts", help="Manage customer accounts.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
quota_cli = AppGroup("quota", help="Show and override an account's limits.")


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
@click.option(
    "--scope", help="admin, read or telemetry:write (default: the widest the user's role allows)."
)
@click.option("--expires-at", help="An RFC 3339 time, e.g. 2027-01-31T17:00:00Z (default: never).")
def create_token_command(email: str, name: str, scope: str | None, expires_at: str | None) -> None:
    """Issue an API token; it is printed alone on the last line, and only once."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        click.echo(f"--email: no user with the address {email}", err=True)
        raise click.exceptions.Exit(2)
    expiry = None if expires_at is None else parse_rfc3339(expires_at)
    if expires_at is not None and expiry is None:
        _fail(ValidationError({"expires-at": [EXPIRY_FORMAT]}))
    try:
        token, clear = issue_token(user, name, scope, expiry)
    except ValidationError as error:
        _fail(ValidationError({k.replace("_", "-"): v for k, v in error.errors.items()}))
    db.session.commit()
    until = f", expires {token.expires_at.isoformat()}" if token.expires_at else ""
    click.echo(
        f"API token for {user.email} (role {user.role}, scope {token.scope}{until}), "
        "shown only now:"
    )
    click.echo(clear)


def _account(reference: str) -> Account:
    """The account with this id or exact name; exits with a clear error otherwise."""
    account = db.session.get(Account, int(reference)) if reference.isdigit() else None
    if account is None:
        named = list(db.session.scalars(select(Account).where(Account.name == reference)))
        if len(named) > 1:
            ids = ", ".join(str(a.id) for a in named)
            click.echo(
                f"ACCOUNT: several accounts are named {reference!r} (ids {ids}): give the id",
                err=True,
            )
            raise click.exceptions.Exit(2)
        account = named[0] if named else None
    if account is None:
        click.echo(f"ACCOUNT: no account with the id or name {reference!r}", err=True)
        raise click.exceptions.Exit(2)
    return account


def _limit_option(name: str) -> Any:
    return click.option(
        "--" + name.replace("_", "-"),
        name,
        metavar="N|default",
        help=f"The account's {name.replace('_', ' ')} limit; `default` removes the override.",
    )


def _parse_limit(name: str, raw: str) -> float | int | None:
    """A limit from the command line (None: back to the default), or ValidationError."""
    if raw.strip().lower() == "default":
        return None
    try:
        value = float(raw.replace(",", "").replace("_", ""))
    except ValueError:
        raise ValidationError({name.replace("_", "-"): [f"{raw!r} is not a number."]}) from None
    problems = check_limit_value(name, value)
    if problems:
        raise ValidationError({name.replace("_", "-"): problems})
    return value if name == "reports_per_second" else int(value)


@quota_cli.command("set")
@click.argument("account")
@_limit_option("reports_per_second")
@_limit_option("reports_burst")
@_limit_option("webhooks")
@_limit_option("integrations")
@_limit_option("pending_messages")
def set_quota_command(account: str, **raw: str | None) -> None:
    """Override limits of ACCOUNT (its id or name); the others keep their value."""
    target = _account(account)
    given = {name: value for name, value in raw.items() if value is not None}
    if not given:
        options = ", ".join("--" + name.replace("_", "-") for name in LIMIT_NAMES)
        click.echo(f"Give at least one of {options}.", err=True)
        raise click.exceptions.Exit(2)
    values, errors = {}, {}
    for name, text in given.items():
        try:
            values[name] = _parse_limit(name, text)
        except ValidationError as error:
            errors.update(error.errors)
    if errors:
        _fail(ValidationError(errors))
    quota = db.session.get(AccountQuota, target.id) or AccountQuota(account_id=target.id)
    for name, value in values.items():
        setattr(quota, name, value)
    db.session.add(quota)
    db.session.commit()
    _show(target)


@quota_cli.command("show")
@click.argument("account")
def show_quota_command(account: str) -> None:
    """The limits of ACCOUNT (its id or name), and which of them are overrides."""
    _show(_account(account))


def _show(account: Account) -> None:
    limits, defaults = account_limits(account.id), default_limits()
    quota = db.session.get(AccountQuota, account.id)
    click.echo(f"Account {account.id} ({account.name}):")
    for name in LIMIT_NAMES:
        overridden = quota is not None and getattr(quota, name) is not None
        source = (
            f"override; default {_figure(getattr(defaults, name))}" if overridden else "default"
        )
        click.echo(
            f"  {name.replace('_', '-'):<20} {_figure(getattr(limits, name)):>12}  ({source})"
        )


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,}"
