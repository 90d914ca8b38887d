"""Each integration's request budget: at most so many requests a minute to its
provider, counted in Redis so the budget holds across every worker process and
host. The budget is the integration's rate limit (Target.rate_limit, requests a
second, shown as a minute's worth); a new integration gets its provider's
documented budget. Every call through an integrations.base.Api made with the
integration waits here for room, up to the drain's time to send."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from core.extensions import rate_limiter
from outbox.models import Target

# The window counted here is a second longer than the provider's minute, so that
# requests which leave at its edge and arrive a little apart still fit the
# provider's own count of its minute.
WINDOW_SECONDS = 61
# Requests a minute an integration may be set to (1 to a paid plan's most).
REQUESTS_PER_MINUTE_RANGE = (1, 6000)
# How long a call outside a drain (a credential check) waits for room at most.
CHECK_PATIENCE_SECONDS = 5.0

# The monotonic time the running send must stop starting requests at (its stop_at):
# a call waits for room no longer than that.
_send_ends: ContextVar[float | None] = ContextVar("send_ends", default=None)


@contextmanager
def sending_until(stop_at: float) -> Iterator[None]:
    """Calls made inside wait for room in their budget until `stop_at` at most."""
    token = _send_ends.set(stop_at)
    try:
        yield
    finally:
        _send_ends.reset(token)


def _limiter() -> MovingWindowRateLimiter:
    return rate_limiter("integration-budget")


def requests_per_minute(target: Target) -> int | None:
    """The target's budget a minute, or None when it has none."""
    if not target.rate_limit:
        return None
    return max(1, math.floor(target.rate_limit * 60 + 1e-9))


def _item(per_minute: int) -> RateLimitItem:
    return RateLimitItemPerSecond(per_minute, WINDOW_SECONDS)


def wait_for_room(target: Target) -> float | None:
    """Take one request of the target's budget, waiting for room until the send's
    stop_at (sending_until) at the latest. None when it was taken; else how many
    seconds from now room frees up (nothing was taken)."""
    per_minute = requests_per_minute(target)
    if per_minute is None or target.id is None:
        return None  # no budget, or the credential check of one being created
    until = _send_ends.get()
    if until is None:
        until = time.monotonic() + CHECK_PATIENCE_SECONDS
    limiter, item, key = _limiter(), _item(per_minute), str(target.id)
    while True:
        if limiter.hit(item, key):
            return None
        wait = max(0.05, limiter.get_window_stats(item, key).reset_time - time.time())
        if time.monotonic() + wait > until:
            return wait
        time.sleep(wait)


def forget_budget(target: Target) -> None:
    """Clear what was counted (a changed budget starts from a fresh window)."""
    per_minute = requests_per_minute(target)
    if per_minute is not None:
        _limiter().clear(_item(per_minute), str(target.id))
