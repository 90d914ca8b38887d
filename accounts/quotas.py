"""Tenant limits: what one account may use of a shared installation — telemetry
reports a second (a token bucket in Redis), webhooks, integrations, and messages
waiting for delivery. The installation's defaults are settings (core/config.py); an
operator overrides them per account (`flask quota set`, the `account_quota` row).

The reports bucket is GCRA (the generic cell rate algorithm) in one Lua script:
a bucket of `burst` tokens refilled at `rate` a second, stored as one number per
account (the time the bucket will be full again), checked and spent atomically
on Redis's own clock, so every web process on every host shares one bucket."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, cast

import redis
from flask import current_app
from sqlalchemy import func, select

from accounts.models import AccountQuota
from core.config import MAX_BATCH_REPORTS
from core.errors import ValidationError
from core.extensions import db, redis_client, redis_key

log = logging.getLogger(__name__)

# What each limit is called: by the CLI's options, AccountQuota's columns and the
# FLEETHOOK_QUOTA_<NAME> settings that hold the defaults.
LIMIT_NAMES = (
    "reports_per_second",
    "reports_burst",
    "webhooks",
    "integrations",
    "pending_messages",
)


class ReportQuotaExceeded(Exception):
    """The account sent reports faster than its quota; `retry_after` is the
    whole seconds until the bucket holds enough tokens for the same request."""

    def __init__(self, retry_after: int, reports: int, limits: AccountLimits):
        super().__init__(f"report quota exceeded; retry after {retry_after} s")
        self.retry_after = retry_after
        self.reports = reports
        self.limits = limits


@dataclass(frozen=True)
class AccountLimits:
    reports_per_second: float
    reports_burst: int
    webhooks: int
    integrations: int
    pending_messages: int


def default_limits() -> AccountLimits:
    settings = current_app.config
    return AccountLimits(
        **{name: settings[f"FLEETHOOK_QUOTA_{name.upper()}"] for name in LIMIT_NAMES}
    )


def account_limits(account_id: int) -> AccountLimits:
    """The account's limits: its overrides where it has them, else the defaults."""
    defaults = default_limits()
    override = db.session.get(AccountQuota, account_id)
    if override is None:
        return defaults
    return AccountLimits(
        **{
            name: getattr(defaults, name)
            if getattr(override, name) is None
            else getattr(override, name)
            for name in LIMIT_NAMES
        }
    )


def check_limit_value(name: str, value: float) -> list[str]:
    """What is wrong with `value` as the limit `name` (nothing: an empty list)."""
    if name == "reports_per_second":
        return [] if 0 < value <= 1_000_000 else ["A number of reports a second above 0."]
    if value != int(value) or value < 0:
        return ["A whole number, 0 or more."]
    if name == "reports_burst" and value < MAX_BATCH_REPORTS:
        return [
            f"At least {MAX_BATCH_REPORTS:,} (the largest telemetry batch), or a full "
            "batch could never pass."
        ]
    return []


# KEYS[1]: the account's bucket (the theoretical arrival time, µs on Redis's clock).
# ARGV: µs one token takes to refill, the bucket's capacity (tokens), the cost.
# Returns {1, 0} when spent, else {0, µs until the bucket holds `cost` tokens}.
_GCRA = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allowed_at = new_tat - capacity * interval
if allowed_at > now then
  return {0, math.ceil(allowed_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, 0}
"""
_SCRIPT = "fleethook.quota_script"


def _bucket_script() -> Any:
    script = current_app.extensions.get(_SCRIPT)
    if script is None:
        script = current_app.extensions[_SCRIPT] = redis_client().register_script(_GCRA)
    return script


def spend_reports(account_id: int, reports: int) -> None:
    """Take `reports` tokens from the account's bucket, or raise
    ReportQuotaExceeded (and take none). Redis unreachable: allowed, with a
    warning — telemetry must not stop because the limiter's store is away."""
    limits = account_limits(account_id)
    interval_us = 1_000_000 / limits.reports_per_second
    try:
        spent, wait_us = cast(
            list[int],
            _bucket_script()(
                keys=[redis_key("quota", "reports", str(account_id))],
                args=[repr(interval_us), limits.reports_burst, reports],
            ),
        )
    except redis.RedisError as error:
        log.warning(
            "report quota not checked for account %s (Redis: %s); the request is let through",
            account_id,
            error,
        )
        return
    if not spent:
        raise ReportQuotaExceeded(max(1, math.ceil(wait_us / 1_000_000)), reports, limits)


def check_room(account_id: int, name: str, model: Any) -> None:
    """ValidationError (under `name`) when the account already has as many rows of
    `model` (Webhook, Integration) as its `name` limit allows: call before
    creating one. Two creates racing may both pass: a limit of N may become N+1."""
    limit = getattr(account_limits(account_id), name)
    count = db.session.scalar(
        select(func.count()).select_from(model).where(model.account_id == account_id)
    )
    if (count or 0) >= limit:
        noun = name[:-1] if limit == 1 else name
        raise ValidationError(
            {
                name: [
                    f"Your account may have {limit:,} {noun}, and has {count:,}: delete one "
                    "first, or ask your Fleethook operator to raise the limit."
                ]
            }
        )
