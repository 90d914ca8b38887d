"""Jobs the worker tests enqueue by name; they run in a real `rq worker`."""

from __future__ import annotations

from flask import current_app

from accounts.models import Account
from core.extensions import db


def rename_account(account_id: int, name: str) -> str:
    """Touch the database through the app, as every real job does."""
    account = db.session.get(Account, account_id)
    account.name = name
    db.session.commit()
    return current_app.config["FLEETHOOK_ENV"]


def note_run(key: str, label: str) -> None:
    """Append this job's label to a Redis list: the order the worker ran jobs in."""
    from core.extensions import redis_client

    redis_client().rpush(key, label)
