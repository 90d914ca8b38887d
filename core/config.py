"""Settings: every environment variable Fleethook reads, its default, and the checks
that refuse to start with a configuration that would be unsafe or unusable."""

from __future__ import annotations

import ipaddress
import os
import secrets
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography.fernet import Fernet

ENVIRONMENTS = ("production", "development", "testing")

# Requests larger than this are refused with 413 before a view reads them.
MAX_REQUEST_BYTES = 1024 * 1024

DEFAULT_REDIS_NAMESPACE = "fleethook"

# The most reports one telemetry request may carry (fleet/reports.py MAX_BATCH).
MAX_BATCH_REPORTS = 1000

# Who may read /metrics without its token: this machine only.
DEFAULT_METRICS_NETWORKS = "127.0.0.0/8,::1/128"

# Each provider's API address; a setting so tests and `make run` can use local fakes.
PROVIDER_URLS = {
    "FLEETHOOK_FLEETIO_BASE_URL": "https://secure.fleetio.com/api",
    "FLEETHOOK_SERVICETITAN_BASE_URL": "https://api.servicetitan.io",
    "FLEETHOOK_SERVICETITAN_AUTH_URL": "https://auth.servicetitan.io",
    "FLEETHOOK_SALESFORCE_LOGIN_URL": "https://login.salesforce.com",
    "FLEETHOOK_SALESFORCE_SANDBOX_LOGIN_URL": "https://test.salesforce.com",
    "FLEETHOOK_ASANA_BASE_URL": "https://app.asana.com/api/1.0",
    # Assumed: no public Agile Fleet API documentation was found (integrations/agilefleet.py).
    "FLEETHOOK_AGILEFLEET_BASE_URL": "https://api.agilefleet.com",
}

# FLEETHOOK_SMTP_URL schemes: the ones that encrypt (certificate checked), and plain.
SMTP_TLS_SCHEMES = ("smtp+starttls", "smtps")
SMTP_SCHEMES = ("smtp", *SMTP_TLS_SCHEMES)

# What the sweeper prunes, each kept this many days (FLEETHOOK_KEEP_..._DAYS, 30).
KEEP_SETTINGS = (
    "FLEETHOOK_KEEP_REPORTS",
    "FLEETHOOK_KEEP_DELIVERED",
    "FLEETHOOK_KEEP_ENDED",
    "FLEETHOOK_KEEP_ASSIGNMENTS",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """The environment describes a configuration Fleethook refuses to run with."""


def parse_bool(name: str, value: str) -> bool:
    """Read an on/off variable; anything unrecognised is an error, not a silent false."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {value!r}")


def parse_encryption_keys(value: str) -> list[str]:
    """Split FLEETHOOK_ENCRYPTION_KEYS and check each is a Fernet key."""
    keys = [key.strip() for key in value.split(",") if key.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ConfigError(
                f"FLEETHOOK_ENCRYPTION_KEYS: key {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
    return keys


def parse_networks(
    value: str, name: str = "FLEETHOOK_ALLOWED_NETWORKS"
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """FLEETHOOK_ALLOWED_NETWORKS (or the setting `name`): comma-separated CIDR
    blocks (10.20.0.0/16, fd00::/8)."""
    networks = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError:
            raise ConfigError(
                f"{name}: {part.strip()!r} is not a network (e.g. 10.20.0.0/16)"
            ) from None
    return networks


def _split_address(url: str) -> SplitResult | None:
    """The address's parts; None when its port is not a number (urlsplit finds that
    out only when the port is read)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 — raises on a port that is not a number
    except ValueError:
        return None
    return parts


def parse_public_url(value: str, production: bool) -> str:
    """FLEETHOOK_PUBLIC_URL: the address people reach the portal at — scheme, host and
    port, no path (https://fleethook.example.com). Addresses that leave Fleethook
    and must come back to it (Salesforce's OAuth callback) are built from it, never
    from a request's Host header, which the client chooses. Empty when unset; in
    production it must be https (Salesforce accepts no other callback)."""
    url = value.strip().rstrip("/")
    if not url:
        return ""
    parts = _split_address(url)
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"FLEETHOOK_PUBLIC_URL must be an http(s) address like https://fleethook.example.com; "
            f"got {value!r}"
        )
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            "FLEETHOOK_PUBLIC_URL is the scheme, host and port only "
            f"(https://fleethook.example.com), without a path, query or user; got {value!r}"
        )
    if production and parts.scheme != "https":
        raise ConfigError(f"FLEETHOOK_PUBLIC_URL must be https in production; got {value!r}")
    return url


def parse_smtp_url(value: str) -> str:
    """FLEETHOOK_SMTP_URL: smtp://, smtp+starttls:// or smtps://, user and password
    optional. A password goes over TLS only: with plain smtp:// it would cross the
    network in clear text, so a user name there is refused."""
    url = value.strip()
    if not url:
        return ""
    parts = _split_address(url)
    if parts is None:
        raise ConfigError("FLEETHOOK_SMTP_URL has a port that is not a number")
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ConfigError(
            "FLEETHOOK_SMTP_URL must be smtp+starttls://user:password@host:587, "
            "smtps://user:password@host:465 or smtp://host:25 (no login)"
        )
    if parts.username and parts.scheme not in SMTP_TLS_SCHEMES:
        raise ConfigError(
            "FLEETHOOK_SMTP_URL has a user name over plain smtp://, which would send the "
            "password unencrypted; use smtp+starttls:// or smtps://"
        )
    return url


def normalise_database_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the driver Fleethook installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def worker_queues(namespace: str) -> list[str]:
    """The RQ queues of the main workers, in the order a worker takes jobs from them.
    Housekeeping (the sweep) comes first: its jobs are short, and behind a queue of
    drains it waited for a gap that never came under load — with claims of killed
    workers left held past their lease."""
    return [f"{namespace}:{kind}" for kind in ("maintenance", "deliveries", "integrations")]


def retry_queues(namespace: str) -> list[str]:
    """The queue of targets that failed lately, for workers of its own (isolation)."""
    return [f"{namespace}:retries"]


def verbose(environ: Mapping[str, str]) -> bool:
    """FLEETHOOK_VERBOSE: the app's and `make run`'s switch for per-request,
    per-job and per-delivery log lines."""
    return parse_bool("FLEETHOOK_VERBOSE", environ.get("FLEETHOOK_VERBOSE", ""))


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number; got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be above 0; got {raw!r}")
    return value


def load_config(environ: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """Build the Flask config from environment variables (see README, Configuration)."""
    env = environ.get("FLEETHOOK_ENV", "production").strip().lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"FLEETHOOK_ENV must be one of {', '.join(ENVIRONMENTS)}; got {env!r}")
    relaxed = env != "production"

    secret_key = environ.get("SECRET_KEY", "")
    if not secret_key:
        if not relaxed:
            raise ConfigError(
                "SECRET_KEY is not set. Fleethook refuses to start in production without it; "
                "set it to a long random string (or FLEETHOOK_ENV=development on a laptop)."
            )
        warnings.warn(
            "SECRET_KEY is not set; using a random key, so sessions end when this process does",
            stacklevel=2,
        )
        secret_key = secrets.token_urlsafe(32)

    raw_keys = environ.get("FLEETHOOK_ENCRYPTION_KEYS", "")
    encryption_keys = parse_encryption_keys(raw_keys)
    if not encryption_keys:
        if not relaxed:
            raise ConfigError(
                "FLEETHOOK_ENCRYPTION_KEYS is not set. Secrets are encrypted at rest; give one "
                "or more comma-separated Fernet keys (the first encrypts, all decrypt)."
            )
        warnings.warn(
            "FLEETHOOK_ENCRYPTION_KEYS is not set; using a random key, so stored secrets "
            "become unreadable when this process ends",
            stacklevel=2,
        )
        encryption_keys = [Fernet.generate_key().decode()]

    default_database = "sqlite:///" + os.path.join(instance_path, "fleethook.db")
    try:
        trusted_proxies = int(environ.get("FLEETHOOK_TRUSTED_PROXIES", "0"))
    except ValueError:
        raise ConfigError("FLEETHOOK_TRUSTED_PROXIES must be a whole number") from None

    connect_timeout = _number(environ, "FLEETHOOK_CONNECT_TIMEOUT", 5)
    read_timeout = _number(environ, "FLEETHOOK_READ_TIMEOUT", 15)
    deadline = _number(environ, "FLEETHOOK_DELIVERY_DEADLINE", 10)
    lease_seconds = _number(environ, "FLEETHOOK_LEASE_SECONDS", 60)
    if lease_seconds < max(connect_timeout + read_timeout, deadline) + 2:
        raise ConfigError(
            "FLEETHOOK_LEASE_SECONDS must be at least FLEETHOOK_CONNECT_TIMEOUT + "
            "FLEETHOOK_READ_TIMEOUT + 2 and FLEETHOOK_DELIVERY_DEADLINE + 2, so a claim "
            "outlasts the slowest request"
        )

    reports_burst = int(_number(environ, "FLEETHOOK_QUOTA_REPORTS_BURST", 2000))
    if reports_burst < MAX_BATCH_REPORTS:
        raise ConfigError(
            f"FLEETHOOK_QUOTA_REPORTS_BURST must be at least {MAX_BATCH_REPORTS:,} (the largest "
            f"telemetry batch), or a full batch could never pass; got {reports_burst}"
        )

    return {
        # Tenant limits (accounts/quotas.py; README, "Quotas"); `flask quota set`
        # overrides them per account. Sized for a fleet of 1,000 trucks.
        "FLEETHOOK_QUOTA_REPORTS_PER_SECOND": _number(
            environ, "FLEETHOOK_QUOTA_REPORTS_PER_SECOND", 200
        ),
        "FLEETHOOK_QUOTA_REPORTS_BURST": reports_burst,
        "FLEETHOOK_QUOTA_WEBHOOKS": int(_number(environ, "FLEETHOOK_QUOTA_WEBHOOKS", 50)),
        "FLEETHOOK_QUOTA_INTEGRATIONS": int(_number(environ, "FLEETHOOK_QUOTA_INTEGRATIONS", 10)),
        "FLEETHOOK_QUOTA_PENDING_MESSAGES": int(
            _number(environ, "FLEETHOOK_QUOTA_PENDING_MESSAGES", 250_000)
        ),
        # A report received longer than this after its time (its fix) makes "late"
        # events: store-and-forward after a dead zone (README, "Late data").
        "FLEETHOOK_LATE_AFTER": timedelta(
            seconds=_number(environ, "FLEETHOOK_LATE_AFTER_SECONDS", 120)
        ),
        # Delivery (see README, "Delivery").
        "FLEETHOOK_RETENTION": timedelta(hours=_number(environ, "FLEETHOOK_RETENTION_HOURS", 72)),
        # How long rows are kept before the sweeper deletes them (outbox/retention.py):
        # reports by their time (older ones are refused at ingest), delivered messages
        # and dead, expired or superseded ones from when they ended, driver
        # assignments from when the next one began.
        **{
            setting: timedelta(days=_number(environ, f"{setting}_DAYS", 30))
            for setting in KEEP_SETTINGS
        },
        # Rows one pruning statement deletes, and the seconds one sweep prunes for.
        # 500: on SQLite a batch holds the write lock while it deletes; at 2,000 the
        # ingest waited up to 88 ms (p99) for it, at 500 37 ms (bench/storage.py; two
        # runs, the second on a less loaded machine).
        "FLEETHOOK_PRUNE_BATCH": int(_number(environ, "FLEETHOOK_PRUNE_BATCH", 500)),
        "FLEETHOOK_PRUNE_SECONDS": _number(environ, "FLEETHOOK_PRUNE_SECONDS", 2),
        "FLEETHOOK_CONNECT_TIMEOUT": connect_timeout,
        "FLEETHOOK_READ_TIMEOUT": read_timeout,
        "FLEETHOOK_MAIN_READ_TIMEOUT": _number(environ, "FLEETHOOK_MAIN_READ_TIMEOUT", 3),
        # One webhook attempt's whole time: connect, send and the complete answer.
        "FLEETHOOK_DELIVERY_DEADLINE": deadline,
        # Requests one worker process keeps in flight at most, across its targets.
        "FLEETHOOK_WORKER_IN_FLIGHT": int(_number(environ, "FLEETHOOK_WORKER_IN_FLIGHT", 512)),
        "FLEETHOOK_QUEUE_DEPTH_CAP": int(_number(environ, "FLEETHOOK_QUEUE_DEPTH_CAP", 5000)),
        "FLEETHOOK_SWEEP_SECONDS": int(_number(environ, "FLEETHOOK_SWEEP_SECONDS", 5)),
        "FLEETHOOK_LEASE_SECONDS": lease_seconds,
        "FLEETHOOK_SMTP_URL": parse_smtp_url(environ.get("FLEETHOOK_SMTP_URL", "")),
        # Extra CA certificates (a PEM file) the mail server's certificate may chain to.
        "FLEETHOOK_SMTP_CA_FILE": environ.get("FLEETHOOK_SMTP_CA_FILE", ""),
        "FLEETHOOK_MAIL_FROM": environ.get("FLEETHOOK_MAIL_FROM", "fleethook@localhost"),
        # Providers' API addresses (tests and the demo point them at local fakes)
        # and the credentials Fleethook itself holds with them.
        **{
            name: environ.get(name, "").rstrip("/") or default
            for name, default in PROVIDER_URLS.items()
        },
        "FLEETHOOK_SERVICETITAN_APP_KEY": environ.get("FLEETHOOK_SERVICETITAN_APP_KEY", ""),
        "FLEETHOOK_SERVICETITAN_GPS_PROVIDER": environ.get(
            "FLEETHOOK_SERVICETITAN_GPS_PROVIDER", "fleethook"
        ),
        # The portal's public address (parse_public_url): ServiceMax's Salesforce
        # callback URL is built from it. Unset, development builds it from the
        # request's Host header (and says so in the log); production refuses to
        # start a Salesforce sign-in.
        "FLEETHOOK_PUBLIC_URL": parse_public_url(
            environ.get("FLEETHOOK_PUBLIC_URL", ""), production=not relaxed
        ),
        "FLEETHOOK_SALESFORCE_CLIENT_ID": environ.get("FLEETHOOK_SALESFORCE_CLIENT_ID", ""),
        "FLEETHOOK_SALESFORCE_CLIENT_SECRET": environ.get("FLEETHOOK_SALESFORCE_CLIENT_SECRET", ""),
        "FLEETHOOK_ENV": env,
        "TESTING": env == "testing",
        # How passwords are hashed (werkzeug). The test suite makes and signs in
        # a user in most of its tests: there a cheap hash saves minutes; anywhere
        # else scrypt's full cost.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000" if env == "testing" else "scrypt",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(
            environ.get("DATABASE_URL", "") or default_database
        ),
        "REDIS_URL": environ.get("REDIS_URL", "") or "redis://127.0.0.1:6379/0",
        # Prefixes every key and queue name Fleethook makes in Redis, so several
        # installations (or test runs) can share one server.
        "FLEETHOOK_REDIS_NAMESPACE": environ.get("FLEETHOOK_REDIS_NAMESPACE", "")
        or DEFAULT_REDIS_NAMESPACE,
        "FLEETHOOK_ENCRYPTION_KEYS": encryption_keys,
        "FLEETHOOK_ALLOW_LOCAL_NETWORK": parse_bool(
            "FLEETHOOK_ALLOW_LOCAL_NETWORK", environ.get("FLEETHOOK_ALLOW_LOCAL_NETWORK", "")
        ),
        # Log every delivery (and, in `make run`, every request and RQ job); off,
        # a console shows warnings and a summary a minute.
        "FLEETHOOK_VERBOSE": verbose(environ),
        # Networks deliveries may reach though they are not public (on-premises
        # receivers), while every other non-public address stays refused.
        "FLEETHOOK_ALLOWED_NETWORKS": parse_networks(environ.get("FLEETHOOK_ALLOWED_NETWORKS", "")),
        # Who may read /metrics (outbox/metrics.py): a scraper sending this bearer
        # token, or any client in these networks (loopback when unset).
        "FLEETHOOK_METRICS_TOKEN": environ.get("FLEETHOOK_METRICS_TOKEN", "").strip(),
        "FLEETHOOK_METRICS_NETWORKS": parse_networks(
            environ.get("FLEETHOOK_METRICS_NETWORKS", "") or DEFAULT_METRICS_NETWORKS,
            "FLEETHOOK_METRICS_NETWORKS",
        ),
        # Extra CA certificates (a PEM file) deliveries trust beside the system's:
        # for receivers whose certificate a private CA signed.
        "FLEETHOOK_DELIVERY_CA_FILE": environ.get("FLEETHOOK_DELIVERY_CA_FILE", ""),
        # How many reverse proxies in front of the portal to trust for the client
        # address and scheme (X-Forwarded-For / -Proto); 0 trusts none.
        "FLEETHOOK_TRUSTED_PROXIES": trusted_proxies,
        # Login attempts admitted (accounts/login_throttle.py) per email address from
        # one client network (an IPv4 address, an IPv6 /64; a success clears it), per
        # client network, and per email address from everywhere: high enough that
        # locking a user out takes 10 networks at once, not one stranger.
        "LOGIN_FAILURE_LIMIT": "5 per 15 minutes",
        "LOGIN_FAILURE_LIMIT_PER_ADDRESS": "30 per 15 minutes",
        "LOGIN_FAILURE_LIMIT_PER_EMAIL": "50 per 15 minutes",
        # Portal sessions (accounts/sessions.py) end after this long without a
        # person's request, and this long after logging in whatever happens.
        "FLEETHOOK_SESSION_IDLE_TIMEOUT": timedelta(
            minutes=_number(environ, "FLEETHOOK_SESSION_IDLE_MINUTES", 30)
        ),
        "FLEETHOOK_SESSION_MAX_AGE": timedelta(
            hours=_number(environ, "FLEETHOOK_SESSION_MAX_HOURS", 12)
        ),
        "MAX_CONTENT_LENGTH": MAX_REQUEST_BYTES,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env != "development",
        "SESSION_COOKIE_NAME": "fleethook_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": env != "development",
        # CSRF tokens live as long as the session, so a form left open for hours still posts.
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    }
