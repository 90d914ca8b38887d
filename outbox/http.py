"""The outbound HTTP session of provider API calls: keep-alive, timeouts from the
settings, no redirects, no proxies from the environment, and the address checked
at connect time: each request resolves its host once, is refused unless every
address of the answer may be connected to (outbox/addresses.py, the rule URLs are
saved by; local-network mode widens it but keeps metadata and link-local out), and
connects to the first of them — what was checked is what is connected to,
whatever the name answers a moment later."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress
from urllib3.util.connection import allowed_gai_family

from outbox.addresses import AddressRefused, IPAddress, may_connect

log = logging.getLogger(__name__)

# One keep-alive session per process and settings (RQ runs one job at a time in a
# process): connections survive from one batch and drain to the next.
_sessions: dict[tuple[Any, ...], requests.Session] = {}
_read_timeout_cap: ContextVar[float | None] = ContextVar("read_timeout_cap", default=None)


class NotPublicAddress(InvalidIPAddress, AddressRefused):
    """The host of a request resolved, when it was sent, to an address that may not
    be connected to; nothing was connected to."""


AddressRule = Callable[[IPAddress], bool]


def connect_address(host: str, port: int | None, allowed: AddressRule) -> IPAddress:
    """The address to connect to for `host`: one lookup, refused unless every
    address of the answer is `allowed`, then the first of them."""
    try:
        infos = socket.getaddrinfo(host, port, family=allowed_gai_family(), type=socket.SOCK_STREAM)
    except OSError as error:
        raise requests.ConnectionError(f"{host} does not resolve") from error
    except UnicodeError as error:  # a name IDNA cannot encode resolves to nothing
        raise requests.ConnectionError(f"{host} does not resolve") from socket.gaierror(
            socket.EAI_NONAME, f"{host} cannot be encoded ({error})"
        )
    addresses = [
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6)
    ]
    if not addresses:
        raise requests.ConnectionError(f"{host} does not resolve") from socket.gaierror(
            socket.EAI_NODATA, f"{host} has no IPv4 or IPv6 address"
        )
    refused = [address for address in addresses if not allowed(address)]
    if refused:
        shown = ", ".join(str(address) for address in refused)
        log.warning("not connecting to %s: %s is not a public address", host, shown)
        # The tenant is not told which internal address the name has (the log is).
        raise NotPublicAddress(f"{host} is not a public address; not connected.")
    return addresses[0]


class PublicAddressAdapter(HTTPAdapter):
    """Connects only where `connect_address` allows: the pool is keyed by the
    checked address, while the Host header, TLS server name and certificate check
    keep the URL's host (as requests-hardened's IPFilterAdapter does)."""

    def __init__(self, https: bool, allowed: AddressRule) -> None:
        super().__init__()
        self._https = https
        self._allowed = allowed

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host, port = host_params["host"], host_params["port"]
        if not host:
            raise requests.exceptions.InvalidURL("Invalid URL: missing hostname")
        named = f"[{host}]" if ":" in host else host
        # A copy: the caller's headers may be shared between requests.
        request.headers = CaseInsensitiveDict(request.headers or {})
        request.headers["Host"] = named if port is None else f"{named}:{port}"
        if self._https:
            pool_kwargs["assert_hostname"] = host  # type: ignore[typeddict-unknown-key]
            pool_kwargs["server_hostname"] = host  # type: ignore[typeddict-unknown-key]
        address = connect_address(host, port, self._allowed)
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        # Deprecated in requests, and it would skip the check above.
        raise NotImplementedError("use get_connection_with_tls_context")


def http_session(read_timeout: float | None = None) -> requests.Session:
    """A keep-alive session that refuses, when they are connected to, the addresses
    this installation's rule refuses, and never redirects."""
    config = current_app.config
    allow_local = config["FLEETHOOK_ALLOW_LOCAL_NETWORK"]
    networks = tuple(config["FLEETHOOK_ALLOWED_NETWORKS"])

    def allowed(address: IPAddress) -> bool:
        return may_connect(address, allow_local, networks)

    session = HTTPSession(
        Config(
            ip_filter_enable=False,  # PublicAddressAdapter below does it
            ip_filter_allow_loopback_ips=False,
            never_redirect=True,
            default_timeout=(
                current_app.config["FLEETHOOK_CONNECT_TIMEOUT"],
                read_timeout or current_app.config["FLEETHOOK_READ_TIMEOUT"],
            ),
        )
    )
    session.mount("http://", PublicAddressAdapter(https=False, allowed=allowed))
    session.mount("https://", PublicAddressAdapter(https=True, allowed=allowed))
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


def request_timeouts() -> tuple[float, float]:
    """Seconds a request of the outbound session may take to connect, and to
    answer, under the current settings and cap."""
    config = current_app.config
    read_timeout = config["FLEETHOOK_READ_TIMEOUT"]
    cap = _read_timeout_cap.get()
    if cap is not None:
        read_timeout = min(read_timeout, cap)
    return config["FLEETHOOK_CONNECT_TIMEOUT"], read_timeout


def outbound_session() -> requests.Session:
    """This process's session for the current settings and read timeout."""
    config = current_app.config
    connect_timeout, read_timeout = request_timeouts()
    settings = (
        config["FLEETHOOK_ALLOW_LOCAL_NETWORK"],
        tuple(config["FLEETHOOK_ALLOWED_NETWORKS"]),
        connect_timeout,
        read_timeout,
    )
    if settings not in _sessions:
        _sessions[settings] = http_session(read_timeout)
    return _sessions[settings]
