"""The transport of concurrent deliveries: one asyncio loop per process, in a thread
of its own, with one aiohttp session, so a worker keeps many requests in flight
while its drain (in the worker's own thread) claims and records in the database.

Every request has one hard deadline for connect, send and the whole answer,
whatever the receiver trickles; keep-alive connections are reused; redirects are
never followed; no proxy, netrc or cookie is taken from anywhere. The address is
checked when a connection is opened, in local-network mode too: each new
connection resolves its host once (`CheckedResolver`), is refused unless every
address of the answer may be connected to (outbox/addresses.py, the rule URLs are
saved by), and connects to those checked addresses — never by name again — while
the Host header, the TLS server name and the certificate check keep the URL's
host.

A `Delivery` is what a kind hands over: the URL, the body, and how to sign an
attempt at a given time; `send_run` sends a lane's messages one after another and
stops at the first that is not delivered."""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from flask import current_app
from yarl import URL

from outbox.addresses import AddressRefused, IPAddress, may_connect
from outbox.answers import (
    MAX_RESPONSE_BODY_BYTES,
    MAX_RESPONSE_HEADER_BYTES,
    THROTTLING,
    answered,
    unanswered,
)
from outbox.failures import describe_failure
from outbox.registry import Result

log = logging.getLogger(__name__)

GONE = 410
# Connections one process keeps open at most (across every target).
MAX_CONNECTIONS = 1024


class NotPublicAddress(OSError, AddressRefused):
    """The host resolved, when a connection was opened, to an address that may not
    be connected to; nothing was connected to."""


class UnsendableSetting(ValueError):
    """The target's own settings make a request impossible (e.g. a custom header
    value HTTP cannot carry); no retry can mend it, a person must."""


@dataclass(frozen=True)
class Signed:
    """The headers of one attempt, and what its record shows of them (masked)."""

    headers: dict[str, str]
    shown: dict[str, str]


@dataclass(frozen=True)
class Delivery:
    """One message, ready to send: signed at the moment of each attempt."""

    url: str
    body: bytes
    sign: Callable[[int], Signed]  # unix time of the attempt -> its headers


def address_rule(allow_local: bool, allowed_networks: Sequence[Any]) -> Callable[[IPAddress], bool]:
    """The address rule of this installation (outbox/addresses.py) as one function."""
    return lambda address: may_connect(address, allow_local, allowed_networks)


class CheckedResolver(AbstractResolver):
    """One lookup per new connection, refused unless every address may be
    connected to; the connector then connects to exactly these addresses."""

    def __init__(self, allowed: Callable[[IPAddress], bool]) -> None:
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            infos = await asyncio.to_thread(
                socket.getaddrinfo, host, port, family, socket.SOCK_STREAM
            )
        except UnicodeError as error:  # a name IDNA cannot encode resolves to nothing
            raise socket.gaierror(socket.EAI_NONAME, f"{host} cannot be encoded") from error
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            if info_family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if not self._allowed(address):
                log.warning("not connecting to %s: %s is not a public address", host, address)
                raise NotPublicAddress(f"{host} is not a public address; not connected.")
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=info_family,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise socket.gaierror(socket.EAI_NODATA, f"{host} has no IPv4 or IPv6 address")
        return results

    async def close(self) -> None:
        return None


class Transport:
    """A process's loop and session for one set of settings."""

    def __init__(
        self,
        allowed: Callable[[IPAddress], bool],
        connect_timeout: float,
        ca_file: str | None = None,
    ) -> None:
        self._allowed = allowed
        self._connect_timeout = connect_timeout
        # The system's CAs, plus the operator's own (FLEETHOOK_DELIVERY_CA_FILE).
        self._tls = ssl.create_default_context()
        if ca_file:
            self._tls.load_verify_locations(cafile=ca_file)
        self._loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fleethook-transport", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(self._allowed),
            use_dns_cache=False,  # every new connection is checked again
            ssl=self._tls,
            limit=MAX_CONNECTIONS,
            limit_per_host=0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # nothing carries from one receiver to another
            trust_env=False,  # no proxy or netrc from the environment
            auto_decompress=False,  # what we keep of a body is raw bytes, never inflated
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            max_field_size=MAX_RESPONSE_HEADER_BYTES,
            max_line_size=MAX_RESPONSE_HEADER_BYTES,
        )

    def send_run(
        self, deliveries: Sequence[Delivery], deadline: float, stop_at: float
    ) -> Future[list[Result]]:
        """Send `deliveries` in order, each within `deadline` seconds, stopping
        after the first that is not delivered (unless its failure is permanent) and
        starting none once time.monotonic() passes `stop_at` (always one)."""
        return asyncio.run_coroutine_threadsafe(
            self._send_run(deliveries, deadline, stop_at), self._loop
        )

    async def _send_run(
        self, deliveries: Sequence[Delivery], deadline: float, stop_at: float
    ) -> list[Result]:
        results: list[Result] = []
        for delivery in deliveries:
            if results and time.monotonic() > stop_at:
                break
            result = await self.attempt(delivery, deadline)
            results.append(result)
            if not (result.delivered or result.permanent):
                break
        return results

    async def attempt(self, delivery: Delivery, deadline: float) -> Result:
        """One attempt; whatever happens, a Result (never an exception)."""
        started = time.perf_counter()
        shown: dict[str, str] = {}
        try:
            signed = delivery.sign(int(time.time()))
            shown = signed.shown
            self._check_literal(delivery.url)
            async with asyncio.timeout(deadline):
                return await self._post(delivery, signed, started)
        except UnsendableSetting as error:
            return unanswered(started, shown, str(error), needs_attention=str(error))
        except Exception as error:  # anything else still ends as a recorded attempt
            if not isinstance(error, (aiohttp.ClientError, OSError)):  # TimeoutError is one
                log.exception("delivery attempt to %s failed unexpectedly", URL(delivery.url).host)
            failure = describe_failure(error, delivery.url, deadline, self._connect_timeout)
            failed = unanswered(started, shown, failure.words, detail=failure.detail)
            # A receiver past its deadline is overloaded: its window is halved.
            failed.throttled = isinstance(error, TimeoutError)
            return failed

    def _check_literal(self, url: str) -> None:
        # An address in the URL is never resolved, so it is checked here.
        host = URL(url).host or ""
        try:
            address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return
        if not self._allowed(address):
            raise NotPublicAddress(f"{address} is not a public address; not connected.")

    async def _post(self, delivery: Delivery, signed: Signed, started: float) -> Result:
        assert self._session is not None
        try:
            # Fails when a value cannot be carried by HTTP (not Latin-1, or CR/LF).
            for name, value in signed.headers.items():
                value.encode("latin-1")
                if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                    raise ValueError("line breaks in a header")
        except (UnicodeEncodeError, ValueError) as error:
            raise UnsendableSetting(
                f"A header's value cannot be sent over HTTP ({error.__class__.__name__}); "
                "edit the webhook's custom header."
            ) from error
        async with self._session.post(
            delivery.url,
            data=delivery.body,
            headers=signed.headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        ) as response:
            body = await _read_capped(response)
            result = answered(response.status, response.headers, body, started, signed.shown)
            result.throttled = response.status in THROTTLING
            result.gone = response.status == GONE
            return result

    def close(self) -> None:
        async def shut() -> None:
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """At most MAX_RESPONSE_BODY_BYTES of the body. A body read to its end leaves
    the connection for the next request; a longer one closes it."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BODY_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BODY_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if not response.content.at_eof():
        response.close()
    return b"".join(chunks)


_transports: dict[tuple[Any, ...], Transport] = {}
_transports_lock = threading.Lock()


@atexit.register
def _close_transports() -> None:
    # Close the sessions while their loops still run (aiohttp warns otherwise).
    for each in _transports.values():
        try:
            each.close()
        except Exception:  # exiting anyway
            pass


def transport() -> Transport:
    """This process's transport for the current settings."""
    config = current_app.config
    networks = tuple(config["FLEETHOOK_ALLOWED_NETWORKS"])
    allow_local = config["FLEETHOOK_ALLOW_LOCAL_NETWORK"]
    connect_timeout = config["FLEETHOOK_CONNECT_TIMEOUT"]
    ca_file = config["FLEETHOOK_DELIVERY_CA_FILE"] or None
    settings = (allow_local, networks, connect_timeout, ca_file)
    with _transports_lock:
        if settings not in _transports:
            _transports[settings] = Transport(
                address_rule(allow_local, networks), connect_timeout, ca_file
            )
        return _transports[settings]
