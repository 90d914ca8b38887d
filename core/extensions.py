"""The Flask extensions (database, migrations, CSRF, login, htmx) and typed access to
the Redis connection and RQ queues, all bound to the app in `init_extensions`."""

from __future__ import annotations

from typing import cast

import redis
from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from rq import Queue

from core.database import Base, configure_sqlite

db = SQLAlchemy(model_class=Base)
# render_as_batch lets Alembic alter SQLite tables (by copying them).
migrate = Migrate(render_as_batch=True, compare_type=True)
csrf = CSRFProtect()
login_manager = LoginManager()
htmx = Htmx()

_REDIS = "fleethook.redis"

# Redis answers in microseconds; a second without an answer means it is gone.
REDIS_TIMEOUT_SECONDS = 2.0


def init_extensions(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    migrate.init_app(app, db)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.login_message_category = "info"
    htmx.init_app(app)
    app.extensions[_REDIS] = redis.Redis.from_url(
        app.config["REDIS_URL"],
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


def redis_client() -> redis.Redis:
    """The app's Redis connection (a pool shared by the process's threads)."""
    return cast(redis.Redis, current_app.extensions[_REDIS])


def rate_limiter(name: str) -> MovingWindowRateLimiter:
    """The app's moving-window rate limiter `name` (login failures, integration
    budgets): counts kept in Redis under the namespace, so a limit holds across
    every process; one limiter per app and name."""
    key = f"fleethook.limiter.{name}"
    limiter = current_app.extensions.get(key)
    if limiter is None:
        storage = RedisStorage(
            current_app.config["REDIS_URL"],
            connection_pool=redis_client().connection_pool,
            key_prefix=redis_key(name),
        )
        limiter = current_app.extensions[key] = MovingWindowRateLimiter(storage)
    return cast(MovingWindowRateLimiter, limiter)


def redis_key(*parts: str) -> str:
    """A Redis key inside this installation's namespace."""
    return ":".join((current_app.config["FLEETHOOK_REDIS_NAMESPACE"], *parts))


def queue(kind: str) -> Queue:
    """An RQ queue of this installation: deliveries, integrations, retries or
    maintenance (see outbox/queues.py)."""
    return Queue(redis_key(kind), connection=redis_client())
