"""The declarative base every model shares: constraint naming, the UTC timestamp
type, and the SQLite connection settings that make the embedded database safe for
several processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic can alter and drop them on every engine.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The largest id a row can have: INTEGER primary keys are 32 bits on PostgreSQL;
# the outbox's messages and attempts have BIGINT ids, up to MAX_BIG_ID. A larger
# number from a client names nothing, and cannot even be queried.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1


def whole_number(text: str | None, maximum: int = MAX_ID) -> int | None:
    """The number a client wrote (ASCII digits, at most `maximum`), or None. Not
    str.isdigit() alone: it is true of "²", which int() refuses; and a number past
    `maximum` is no id at all (a PostgreSQL INTEGER cannot even hold it)."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


# How long an SQLite connection waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_MS = 5000


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so values are stored naive in UTC and given the zone back
    on the way out; PostgreSQL stores `timestamptz`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_unique_violation(error: IntegrityError) -> bool:
    """Whether the database refused a write for a taken unique key (not for a
    missing foreign key or an empty column): SQLSTATE 23505 on PostgreSQL, the
    unique or primary-key constraint code on SQLite."""
    original = error.orig
    if getattr(original, "sqlstate", None) == "23505":
        return True
    return getattr(original, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_CONSTRAINT_UNIQUE,
        sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
    )


def _open_sqlite_transaction(session: Session | scoped_session[Any]) -> None:
    # pysqlite opens a transaction only before INSERT, UPDATE or DELETE, so a
    # SAVEPOINT before any of them opens one itself, and its RELEASE commits: the
    # caller's rollback would then undo nothing. Open the transaction first.
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi_connection: Any = connection.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN")


def write_unless_taken(session: Session | scoped_session[Any], change: Callable[[], None]) -> bool:
    """Make `change` (add rows, set fields) and write it now, in a savepoint; False
    when a unique key it needs was taken meanwhile — a concurrent request committed
    the same VIN, name or email after this one checked that it was free. The
    savepoint is then rolled back and the rest of the transaction goes on, so the
    caller can answer as for any duplicate. Any other refusal is raised."""
    _open_sqlite_transaction(session)
    try:
        with session.begin_nested():
            change()
    except IntegrityError as error:
        if not is_unique_violation(error):
            raise
        return False
    return True


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def configure_sqlite(engine: Engine) -> None:
    """Turn on WAL, a busy timeout and foreign keys for every SQLite connection."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
