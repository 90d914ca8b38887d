"""Test fixtures: one Redis and one database per session (the ones in REDIS_URL and
DATABASE_URL when set, else a private Redis and an SQLite file), an app per test
with a clean database, and helpers to log in and make accounts.

Everything the tests write to Redis carries a per-run namespace and is removed
at the end, so the suite can share a Redis server with other users."""

from __future__ import annotations

import contextvars
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import redis
from cryptography.fernet import Fernet
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from accounts.models import Role, User
from accounts.tokens import issue_token
from accounts.users import add_user, create_account
from app import create_app
from core.config import normalise_database_url
from core.extensions import db, redis_client
from devstack.redis_server import RedisServer
from tests.receiver import ReceiverServer, start_receiver

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = f"fhtest-{uuid.uuid4().hex[:10]}"
PASSWORD = "correct horse battery"

# What names resolve to in tests (this machine has no DNS, and tests must not
# depend on the internet): the app's FLEETHOOK_RESOLVER.
DNS = {
    "hooks.example.com": ["93.184.215.14"],
    "receiver.example.net": ["93.184.215.15", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "internal.example.com": ["10.0.0.7"],
}


def stub_resolve(host: str) -> list[str]:
    if host not in DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return DNS[host]


# RQ's own housekeeping locks, outside any namespace; removed at the end only if
# this run created them.
RQ_HOUSEKEEPING_KEYS = ("rq:clean_groups",)


def delete_namespace(connection: redis.Redis, namespace: str) -> None:
    """Remove every Redis key and RQ set member this run made in its namespace."""
    for key in connection.scan_iter(match=f"*{namespace}*", count=1000):
        connection.delete(key)
    for registry in (b"rq:queues", b"rq:workers"):
        for member in connection.smembers(registry):
            if namespace.encode() in member:
                connection.srem(registry, member)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL, or an SQLite file of this run's; under pytest-xdist each worker
    gets a PostgreSQL database of its own, beside DATABASE_URL's, dropped at the end."""
    base = os.environ.get("DATABASE_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('database')}/fleethook.db"
    elif worker is None:
        yield base
    else:
        with scratch_database(base, worker) as url:
            yield url


@contextmanager
def scratch_database(base_url: str, suffix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named after `base_url`'s, dropped afterwards."""
    url = make_url(normalise_database_url(base_url))
    name = f"{url.database}_{suffix}"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="session", autouse=True)
def environment(redis_url: str, database_url: str) -> Iterator[dict[str, str]]:
    """The environment every app (and every subprocess) of this run starts from."""
    values = {
        "FLEETHOOK_ENV": "testing",
        "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "FLEETHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "FLEETHOOK_REDIS_NAMESPACE": NAMESPACE,
    }
    saved = {name: os.environ.get(name) for name in values}
    connection = redis.Redis.from_url(redis_url)
    housekeeping_before = {key for key in RQ_HOUSEKEEPING_KEYS if connection.exists(key)}
    os.environ.update(values)
    app = create_app()
    with app.app_context():
        flask_migrate.upgrade()
    yield values
    delete_namespace(connection, NAMESPACE)
    for key in set(RQ_HOUSEKEEPING_KEYS) - housekeeping_before:
        connection.delete(key)
    connection.close()
    with app.app_context():
        db.engine.dispose()
        redis_client().close()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def reset_database() -> None:
    db.session.remove()
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


class IsolatedClient(FlaskClient):
    """A test client whose every request runs in a context of its own, as in
    production: nothing of the test's app context (`g`, the logged-in user, the
    database session) leaks into a request, or back."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = contextvars.Context().run(super().open, *args, **kwargs)
        if has_app_context():
            # End the test's own transaction so its next read sees what the request wrote.
            db.session.rollback()
        return response


@pytest.fixture
def make_app() -> Iterator[Any]:
    """Build apps with config overrides; each is cleaned up after the test."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        built = create_app({"FLEETHOOK_RESOLVER": stub_resolve, **overrides})
        built.test_client_class = IsolatedClient
        apps.append(built)
        return built

    yield build
    for built in apps:
        with built.app_context():
            db.session.remove()
            db.engine.dispose()
            redis_client().close()


@pytest.fixture
def app(make_app: Any, request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The app of a test, with `@pytest.mark.app_config(KEY=value)` on top."""
    marker = request.node.get_closest_marker("app_config")
    app = make_app(**(marker.kwargs if marker else {}))
    with app.app_context():
        yield app
        reset_database()
        delete_namespace(redis_client(), NAMESPACE)


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    """A real HTTP receiver on loopback (tests/receiver.py)."""
    server = start_receiver()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        rb'"X-CSRFToken": "([^"]+)"', page
    )
    assert match, "page carries no CSRF token"
    return match.group(1).decode()


# The header htmx puts on its requests.
HTMX = {"HX-Request": "true"}


class AuthActions:
    """Log in and out through the real login form, CSRF token included."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def login(self, email: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        return self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(page.data)},
        )

    def logout(self) -> Any:
        page = self.client.get("/")
        return self.client.post("/logout", data={"csrf_token": csrf_token(page.data)})

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        page: str = "/",
        htmx: bool = False,
    ) -> Any:
        """POST a portal form with the CSRF token of `page`; as htmx sends it if asked."""
        token = csrf_token(self.client.get(page).data)
        headers = HTMX if htmx else {}
        return self.client.post(path, data={**(data or {}), "csrf_token": token}, headers=headers)


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


def make_user(
    account_name: str = "Acme Haulage",
    email: str = "admin@acme.example.com",
    role: Role = Role.ADMIN,
    admin: User | None = None,
) -> User:
    """An account's admin, or (with `admin`) a user of that admin's account."""
    if admin is not None:
        user = add_user(admin.account, email, PASSWORD, role.value)
    else:
        user = create_account(account_name, email, PASSWORD)
    db.session.commit()
    return user


@pytest.fixture
def admin(app: Flask, auth: AuthActions) -> User:
    """The signed-in admin of Acme Haulage."""
    user = make_user()
    auth.login("admin@acme.example.com")
    return user


def bearer(user: User, name: str = "test") -> dict[str, str]:
    """Authorization header of a new token of `user`."""
    _, clear = issue_token(user, name)
    db.session.commit()
    return {"Authorization": f"Bearer {clear}"}


# The skips a CI run expects, by the start of their reason. Any other skip fails a
# CI run (CI=1), so a missing browser, tool or listener cannot pass as a green run.
EXPECTED_SKIPS = ("SQLite has one writer at a time",)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not os.environ.get("CI") or hasattr(session.config, "workerinput"):
        return  # not CI, or a pytest-xdist worker: the controller sees every report
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    reasons = [report.longrepr[2] for report in skipped if isinstance(report.longrepr, tuple)]
    unexpected = [r for r in reasons if not r.removeprefix("Skipped: ").startswith(EXPECTED_SKIPS)]
    if unexpected and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"CI: {len(unexpected)} unexpected skip(s): {unexpected}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
