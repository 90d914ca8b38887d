"""Admission control for login attempts, counted in Redis so the limits hold across
every web process.

An attempt is counted (the limiter's atomic `hit`) *before* its password is
checked, so however many arrive at once, at most the limit reach the check. Three
moving-window limits, hit in this order:

1. per client network and email address (LOGIN_FAILURE_LIMIT, 5 per 15 minutes):
   the one that stops guessing, and the one a success clears;
2. per client network (LOGIN_FAILURE_LIMIT_PER_ADDRESS): one address spraying many
   email addresses;
3. per email address (LOGIN_FAILURE_LIMIT_PER_EMAIL), set much higher: many
   addresses guessing one account's password.

The order is what keeps a stranger from locking the real user out: an attempt
refused by a limit counts in none after it, so one stranger's network adds at most
its pair limit to the email's count, and exhausting it needs many networks at once.
A client network is its IPv4 address or its IPv6 /64 (one subscriber's usual
allocation, so hopping addresses inside it gains nothing). Email addresses appear
in keys only as a keyed hash: short, fixed-size keys, and no addresses in Redis."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time

from flask import current_app
from limits import RateLimitItem, parse
from limits.strategies import MovingWindowRateLimiter

from core.extensions import rate_limiter

# The prefix length that counts as one IPv6 client.
IPV6_CLIENT_PREFIX = 64


def _limiter() -> MovingWindowRateLimiter:
    return rate_limiter("login-attempts")


def client_network(address: str) -> str:
    """The client an address stands for: an IPv4 address itself (also when written
    IPv4-mapped, ::ffff:a.b.c.d), an IPv6 address's /64; anything else "unknown"."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no zone (fe80::1%eth0)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def _email_digest(email: str) -> str:
    """Keyed, so that reading Redis cannot confirm who tried to log in."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()[:32]


def _limits(email: str, address: str) -> list[tuple[RateLimitItem, str]]:
    """The limits an attempt counts against, in the order they are hit."""
    network, digest = client_network(address), _email_digest(email)
    config = current_app.config
    return [
        (parse(config["LOGIN_FAILURE_LIMIT"]), f"pair:{network}:{digest}"),
        (parse(config["LOGIN_FAILURE_LIMIT_PER_ADDRESS"]), f"address:{network}"),
        (parse(config["LOGIN_FAILURE_LIMIT_PER_EMAIL"]), f"email:{digest}"),
    ]


def admit_attempt(email: str, address: str) -> int:
    """Count one login attempt before its password is checked: 0 if it is admitted,
    else the seconds until the limit that refused it lets one through."""
    limiter = _limiter()
    for item, identifier in _limits(email, address):
        if not limiter.hit(item, identifier):
            reset_at = limiter.get_window_stats(item, identifier).reset_time
            return math.ceil(max(reset_at - time.time(), 1.0))
    return 0


def forget_failures(email: str, address: str) -> None:
    """A successful login clears the count of that email from that network only:
    the others also guard against people who may know a password of their own."""
    item, identifier = _limits(email, address)[0]
    _limiter().clear(item, identifier)
