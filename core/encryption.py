"""Secrets at rest: MultiFernet over FLEETHOOK_ENCRYPTION_KEYS (the first key
encrypts, every key decrypts), the `EncryptedText` column type that stores
only ciphertext, and the filter that keeps decrypted rows out of SQLAlchemy's
debug log."""

from __future__ import annotations

import logging
from typing import Any, cast

import click
from cryptography.fernet import Fernet, MultiFernet
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.types import TypeDecorator

_FERNET = "fleethook.fernet"


class _NoFetchedRows(logging.Filter):
    """SQLAlchemy's DEBUG log (`echo="debug"`) shows each row it fetched after the
    column types ran, EncryptedText values decrypted; drop those records. The
    statements and their parameters (ciphertext only) still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).endswith("Row %r")


_NO_FETCHED_ROWS = _NoFetchedRows()


def init_encryption(app: Flask) -> None:
    keys = app.config["FLEETHOOK_ENCRYPTION_KEYS"]
    app.extensions[_FERNET] = MultiFernet([Fernet(key) for key in keys])
    # The logger of every engine (with echo on, too); adding it again is a no-op.
    logging.getLogger("sqlalchemy.engine.Engine").addFilter(_NO_FETCHED_ROWS)


def _fernet() -> MultiFernet:
    return cast(MultiFernet, current_app.extensions[_FERNET])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode()).decode()


def mask(secret: str, visible: int = 4) -> str:
    """What people may see of a secret: its last few characters."""
    return "•" * 8 + secret[-visible:] if len(secret) > visible * 2 else "•" * 8


class EncryptedText(TypeDecorator[str]):
    """A string column whose database value is Fernet ciphertext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)


def rotate_all(session: Any, metadata: Any) -> int:
    """Re-encrypt every EncryptedText value under the first key (MultiFernet.rotate),
    table by table in the caller's transaction; returns how many values changed.
    Values under a key that is no longer configured fail loudly (InvalidToken)."""
    fernet = _fernet()
    rotated = 0
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, EncryptedText)]
        if not columns:
            continue
        (key,) = table.primary_key.columns
        raw = [type_coerce(c, Text).label(c.name) for c in columns]
        for row in session.execute(select(key, *raw)).all():
            values = {
                c.name: fernet.rotate(row._mapping[c.name].encode()).decode()
                for c in columns
                if row._mapping[c.name] is not None
            }
            if values:
                session.execute(
                    update(table)
                    .where(key == row[0])
                    .values(
                        {table.c[name]: type_coerce(value, Text) for name, value in values.items()}
                    )
                )
                rotated += len(values)
    return rotated


keys_cli = AppGroup("keys", help="Manage the encryption keys of secrets at rest.")


@keys_cli.command("rotate")
def rotate_command() -> None:
    """Re-encrypt every stored secret under the first key of FLEETHOOK_ENCRYPTION_KEYS.
    Afterwards the other keys may be removed from the setting."""
    from core.extensions import db

    count = rotate_all(db.session, db.metadata)
    db.session.commit()
    click.echo(f"Re-encrypted {count} secrets under the first key.")
