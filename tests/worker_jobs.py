"""Jobs the worker tests enqueue by name; they run in a real `rq worker`."""

from __future__ import annotations

from flask import current_app

from accounts.models import Account
from extensions import db


def rename_account(account_id: int, name: str) -> str:
    """Touch the database through the app, as every real job does."""
    account = db.session.get(Account, account_id)
    account.name = name
    db.session.commit()
    return current_app.config["FLEETHOOK_ENV"]
