"""Failed-login counting in Redis, per email address and per client address, so the
limit holds across every web process."""

from __future__ import annotations

import math
import time

from flask import current_app
from limits import RateLimitItem, parse
from limits.strategies import MovingWindowRateLimiter

from extensions import rate_limiter


def _limiter() -> MovingWindowRateLimiter:
    return rate_limiter("login-failures")


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
