"""When a failed message is tried again: exponential steps with ±20 % jitter, a
receiver's Retry-After honoured within the schedule's bounds, and the retention
window after which it is dead (see README, "Delivery")."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from core.times import utcnow

# Seconds before attempt 2, 3, 4 …; the last step repeats until retention ends.
RETRY_STEPS = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600)
JITTER = 0.2


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    if retry_after is not None:
        return min(max(retry_after, RETRY_STEPS[0]), RETRY_STEPS[-1])
    step = RETRY_STEPS[min(attempts, len(RETRY_STEPS)) - 1]
    return step * random.uniform(1 - JITTER, 1 + JITTER)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", float() does not
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - (now or utcnow())).total_seconds())


def next_attempt_at(attempts: int, retry_after: float | None, now: datetime) -> datetime:
    return now + timedelta(seconds=retry_delay(attempts, retry_after))
