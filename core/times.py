"""Time as Fleethook writes and reads it: aware UTC datetimes, and RFC 3339 text with
its offset ("…Z") in events, API answers and provider calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_rfc3339(moment: datetime) -> str:
    """An aware time as RFC 3339 in UTC with "Z", as events and provider calls write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 time with its offset ("…Z" or "…+02:00"), or None; None too for
    a time that is before year 1 or after year 9999 in UTC
    ("0001-01-01T00:00:00+05:00"), which no timestamp column can hold."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return None
    return moment
