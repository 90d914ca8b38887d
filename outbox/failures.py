"""How a failed delivery or provider call is told: `describe_failure` turns the
exception (from aiohttp, requests/urllib3, the address check or a bug) into a short
sentence a fleet manager understands ("Could not resolve hooks.example.com",
"Connection refused by 203.0.113.7:443") and keeps the technical text beside it.
The sentence is what the grid, the API's `last_error` and a message's page show;
the detail stays on the attempt (DeliveryAttempt.error_detail).

`shorten` is the one way such texts are made to fit: at a word boundary, with "…"."""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import requests
import urllib3.exceptions

from outbox.addresses import AddressRefused

MAX_WORDS = 300  # the sentence; Target.last_error holds 500
MAX_DETAIL = 2000  # the technical text kept on the attempt

_RESET = (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE)
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH)
# OpenSSL's verify codes worth their own words.
_NAME_MISMATCH = (62, 64)  # the host name, or the IP address, is not the certificate's
_EXPIRED = 10
_UNTRUSTED = (18, 19, 20, 21)  # self-signed, or an issuer nobody here trusts


@dataclass(frozen=True)
class Failure:
    words: str  # one short sentence, no trailing period
    detail: str  # the exceptions' own text, for whoever debugs the receiver


def describe_failure(
    error: BaseException,
    url: str | None = None,
    deadline: float | None = None,
    connect_timeout: float | None = None,
) -> Failure:
    """`error` in plain words, for a request to `url` that could wait `deadline`
    seconds for its answer (`connect_timeout` to connect)."""
    words = _words(error, url, deadline, connect_timeout)
    return Failure(shorten(words, MAX_WORDS), shorten(_detail(error), MAX_DETAIL))


def shorten(text: str, limit: int) -> str:
    """`text`, or its first words and "…" when it is longer than `limit`: cut at a
    space, never inside a word (only a single word longer than `limit` is cut)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def _words(
    error: BaseException, url: str | None, deadline: float | None, connect_timeout: float | None
) -> str:
    chain = list(_chain(error))
    where = _where(url)
    host = where[0] if where else "the receiver"
    at = f"{_bracketed(where[0])}:{where[1]}" if where else host

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((each for each in chain if isinstance(each, kind)), None)

    refused = first(AddressRefused)
    if refused is not None:  # already in words, and says no internal address
        return str(refused).rstrip(".")
    if first(ssl.SSLCertVerificationError) is not None:
        # aiohttp's wrapper is one too, without the code: take the first that has it.
        codes = [getattr(each, "verify_code", None) for each in chain]
        code = next((c for c in codes if c is not None), None)
        if code in _NAME_MISMATCH:
            return f"TLS certificate not valid for {host}"
        if code == _EXPIRED:
            return f"TLS certificate of {host} has expired"
        if code in _UNTRUSTED:
            return f"TLS certificate of {host} is not from a trusted authority"
        return f"TLS certificate of {host} was refused"
    if _resolution_failed(chain):
        return f"Could not resolve {host}"
    if any(_connect_timed_out(each) for each in chain):
        waited = f" after {connect_timeout:g} s" if connect_timeout else ""
        return f"Timed out{waited} connecting to {at}"
    if any(_timed_out(each) for each in chain):
        waited = f" after {deadline:g} s" if deadline else ""
        return f"Timed out{waited} waiting for an answer"
    if any(_errno(each) == errno.ECONNREFUSED for each in chain):
        return f"Connection refused by {at}"
    if first((aiohttp.ServerDisconnectedError, http.client.RemoteDisconnected)) is not None:
        return f"{host} closed the connection without answering"
    if any(_errno(each) in _RESET for each in chain):
        return f"Connection reset by {host}"
    if any(_errno(each) in _UNREACHABLE for each in chain):
        return f"No network route to {at}"
    if first(ssl.SSLError) is not None:
        return f"TLS handshake with {host} failed"
    unreadable = (
        aiohttp.ClientResponseError,
        aiohttp.ClientPayloadError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        http.client.HTTPException,
        urllib3.exceptions.ProtocolError,
    )
    if first(unreadable) is not None:
        return f"{host} sent an answer that could not be read"
    if first((aiohttp.InvalidURL, requests.exceptions.InvalidURL)) is not None:
        return "Not a URL that can be sent to"
    if first(OSError) is not None:
        return f"Could not connect to {at}"
    return "The attempt failed inside Fleethook (an internal error)"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it wraps: causes, contexts, aiohttp's os_error, urllib3's
    reason and exceptions passed as arguments (requests wraps that way)."""
    seen: list[BaseException] = []
    todo: list[object] = [error]
    while todo and len(seen) < 20:
        each = todo.pop(0)
        if not isinstance(each, BaseException) or any(each is s for s in seen):
            continue
        seen.append(each)
        yield each
        todo += [each.__cause__, each.__context__, getattr(each, "os_error", None)]
        todo += [getattr(each, "reason", None), *each.args]


def _resolution_failed(chain: list[BaseException]) -> bool:
    kinds = (
        socket.gaierror,
        urllib3.exceptions.NameResolutionError,
        aiohttp.ClientConnectorDNSError,
    )
    return any(isinstance(each, kinds) for each in chain)


def _connect_timed_out(error: BaseException) -> bool:
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return False  # urllib3 files it under connect timeouts; it is not one
    return isinstance(
        error,
        (
            requests.ConnectTimeout,
            urllib3.exceptions.ConnectTimeoutError,
            aiohttp.ConnectionTimeoutError,
        ),
    )


def _timed_out(error: BaseException) -> bool:
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(error, (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError))


def _errno(error: BaseException) -> int | None:
    return error.errno if isinstance(error, OSError) else None


def _where(url: str | None) -> tuple[str, int] | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _detail(error: BaseException) -> str:
    """The outer exception and, when it does not already say it, the innermost."""
    chain = list(_chain(error))
    texts = [_text(chain[0])]
    innermost = _text(chain[-1])
    if str(chain[-1]) not in texts[0]:
        texts.append(innermost)
    return " ← ".join(texts)


def _text(error: BaseException) -> str:
    said = str(error)
    return f"{type(error).__name__}: {said}" if said else type(error).__name__
