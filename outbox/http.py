"""The outbound HTTP session every sender uses (webhook POSTs and provider API
calls alike): keep-alive, timeouts from the settings, no redirects, no proxies
from the environment, and the connected address checked at connect time
(requests-hardened) unless the operator allows local networks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests
from flask import current_app
from requests_hardened import Config, HTTPSession

from outbox.registry import Result

# One keep-alive session per process and settings (RQ runs one job at a time in a
# process): connections survive from one batch and drain to the next.
_sessions: dict[tuple[Any, ...], requests.Session] = {}
_read_timeout_cap: ContextVar[float | None] = ContextVar("read_timeout_cap", default=None)


def http_session(read_timeout: float | None = None) -> requests.Session:
    """A keep-alive session that refuses non-public addresses when they are
    connected to (unless local networks are allowed) and never redirects."""
    allow_local = current_app.config["FLEETHOOK_ALLOW_LOCAL_NETWORK"]
    session = HTTPSession(
        Config(
            ip_filter_enable=not allow_local,
            ip_filter_allow_loopback_ips=False,
            never_redirect=True,
            default_timeout=(
                current_app.config["FLEETHOOK_CONNECT_TIMEOUT"],
                read_timeout or current_app.config["FLEETHOOK_READ_TIMEOUT"],
            ),
        )
    )
    session.trust_env = False  # no proxies or netrc from the environment
    return session


@contextmanager
def read_timeout_cap(seconds: float) -> Iterator[None]:
    """Sessions taken inside wait at most `seconds` for an answer (drains on the
    main queues: see outbox/drain.py)."""
    token = _read_timeout_cap.set(seconds)
    try:
        yield
    finally:
        _read_timeout_cap.reset(token)


def outbound_session() -> requests.Session:
    """This process's session for the current settings and read timeout."""
    config = current_app.config
    read_timeout = config["FLEETHOOK_READ_TIMEOUT"]
    cap = _read_timeout_cap.get()
    if cap is not None:
        read_timeout = min(read_timeout, cap)
    settings = (
        config["FLEETHOOK_ALLOW_LOCAL_NETWORK"],
        config["FLEETHOOK_CONNECT_TIMEOUT"],
        read_timeout,
    )
    if settings not in _sessions:
        _sessions[settings] = http_session(read_timeout)
    return _sessions[settings]


def elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def failed_result(started: float, headers: dict[str, str], error: str) -> Result:
    return Result(
        delivered=False, duration_ms=elapsed_ms(started), error=error, request_headers=headers
    )


def connection_error_text(error: requests.ConnectionError) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused"
    if "reset" in text.lower() or "aborted" in text.lower():
        return "connection reset"
    return f"connection failed: {text[:200]}"
