"""Migrations against an empty database of the engine this run uses, and the
database settings every model relies on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from accounts.models import Account
from core.extensions import db
from tests.conftest import scratch_database


@contextmanager
def empty_database(base_url: str, tmp_path) -> Iterator[str]:
    """A new, empty database on the same server as `base_url`, dropped afterwards."""
    if base_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    with scratch_database(base_url, f"migrations_{uuid.uuid4().hex[:8]}") as url:
        yield url


def test_migrations_build_the_models_schema_from_empty(make_app, environment, tmp_path):
    with empty_database(environment["DATABASE_URL"], tmp_path) as url:
        app = make_app(SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            flask_migrate.upgrade()
            with db.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, db.metadata) == []
            flask_migrate.downgrade(revision="base")
            assert inspect(db.engine).get_table_names() == ["alembic_version"]
            db.engine.dispose()


def test_sqlite_runs_with_wal_busy_timeout_and_foreign_keys(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/pragmas.db")
    with app.app_context(), db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_timestamps_come_back_in_utc(app):
    created = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    account = Account(name="Zone Test", created_at=created)
    db.session.add(account)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Account, account.id).created_at
    assert stored == created
    assert stored.tzinfo == UTC
