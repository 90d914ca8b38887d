"""Failed-login counting in Redis, per email address and per client address, so the
limit holds across every web process."""

from __future__ import annotations

import math
import time
from typing import cast

from flask import current_app
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from extensions import redis_client, redis_key

_LIMITER = "fleethook.login_throttle"


def _limiter() -> MovingWindowRateLimiter:
    limiter = current_app.extensions.get(_LIMITER)
    if limiter is None:
        storage = RedisStorage(
            current_app.config["REDIS_URL"],
            connection_pool=redis_client().connection_pool,
            key_prefix=redis_key("login-failures"),
        )
        limiter = current_app.extensions[_LIMITER] = MovingWindowRateLimiter(storage)
    return cast(MovingWindowRateLimiter, limiter)


def _limits(email: str, address: str) -> list[tuple[RateLimitItem, str]]:
    return [
        (parse(current_app.config["LOGIN_FAILURE_LIMIT"]), "email:" + email),
        (parse(current_app.config["LOGIN_FAILURE_LIMIT_PER_ADDRESS"]), "address:" + address),
    ]


def seconds_until_allowed(email: str, address: str) -> int:
    """0 if another attempt may be made now, else how long to wait."""
    limiter = _limiter()
    wait = 0.0
    for item, identifier in _limits(email, address):
        if not limiter.test(item, identifier):
            reset_at = limiter.get_window_stats(item, identifier).reset_time
            wait = max(wait, reset_at - time.time(), 1.0)
    return math.ceil(wait)


def record_failure(email: str, address: str) -> None:
    limiter = _limiter()
    for item, identifier in _limits(email, address):
        limiter.hit(item, identifier)


def forget_failures(email: str) -> None:
    """A successful login clears the address's count for that email only."""
    item, identifier = _limits(email, "")[0]
    _limiter().clear(item, identifier)
