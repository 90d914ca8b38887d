"""Which webhook URLs Fleethook accepts: absolute http(s) URLs whose host is, and
resolves only to, public addresses — in every spelling of an address — or, when
the operator allows local networks (FLEETHOOK_ALLOW_LOCAL_NETWORK), also loopback
and private ones, but never link-local or metadata addresses.

A refusal names the host and the kind of address, never an address the name
resolved to: that would tell a tenant what the operator's internal names point at.

This is the check at save time; the outbound session (outbox/http.py) checks again
at connect time, with the same rule (outbox/addresses.py), every address the name
resolves to then, and connects to one of those it checked."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from outbox.addresses import IPAddress, is_local_address, may_connect, why_not_local

Resolver = Callable[[str], list[str]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

# Names that mean "this machine" or "this site" whatever DNS says.
LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"}
)
LOCAL_SUFFIXES = (
    ".localhost",
    ".localdomain",
    ".local",
    ".internal",
    ".intranet",
    ".lan",
    ".home.arpa",
    ".arpa",
)

_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def resolve_host(host: str) -> list[str]:
    """Every address the system resolver gives for `host`."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def parse_address(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a client would accept — dotted,
    decimal (2130706433), octal (0177.0.0.1), hex (0x7f.1), short (127.1),
    bracketed IPv6 with or without a zone — or None for a name."""
    host = host.strip().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]  # an IPv6 zone id
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            # inet_aton reads the historic forms curl and browsers still accept.
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_local_name(host: str) -> bool:
    name = host.strip().rstrip(".").lower()
    return name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES) or "." not in name


def url_problems(
    url: str,
    allow_local_network: bool,
    resolve: Resolver = resolve_host,
    allowed_networks: Sequence[IPNetwork] = (),
) -> list[str]:
    """What is wrong with `url` as a webhook URL; an empty list when nothing is.
    Addresses in `allowed_networks` (FLEETHOOK_ALLOWED_NETWORKS) count as public."""

    def allowed(address: IPAddress) -> bool:
        return may_connect(address, allow_local_network, allowed_networks)

    if len(url) > MAX_URL_LENGTH:
        return [f"At most {MAX_URL_LENGTH:,} characters."]
    if any(char.isspace() or ord(char) < 32 for char in url):
        return ["A URL has no spaces or control characters."]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return [f"Not a valid URL ({error})."]
    if parts.scheme not in ("http", "https"):
        return ["Use an http:// or https:// URL."]
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return ["Leave the user name and password out of the URL; use a custom header instead."]
    host = parts.hostname
    if not host:
        return ["The URL needs a host name."]
    if port == 0:
        return ["Port 0 cannot be reached."]
    literal = parse_address(host)
    if allow_local_network:
        return _local_network_problems(host, literal, allowed, resolve)
    if literal is not None:
        if not allowed(literal):
            return [f"{literal} is not a public address; webhooks go to the internet."]
        return []
    if is_local_name(host) and not allowed_networks:
        return [f"{host} is a local name; use the public name of your server."]
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError):
        return [f"{host} does not resolve; check the name."]
    if not addresses:
        return [f"{host} does not resolve; check the name."]
    if any(not allowed(ipaddress.ip_address(a)) for a in addresses):
        # Never which address: the answer would map the operator's internal DNS
        # for whoever asks (a name per request, one address disclosed per answer).
        return [f"{host} resolves to a private, local or reserved address: not a public address."]
    return []


def _local_network_problems(
    host: str, literal: IPAddress | None, allowed: Callable[[IPAddress], bool], resolve: Resolver
) -> list[str]:
    """In local-network mode local names and addresses are what it is for, but
    link-local and metadata addresses stay refused. A name that does not resolve
    (yet) is accepted, as a development receiver may start later: the check at
    connect time holds whatever the name turns out to be."""
    if literal is not None:
        if not allowed(literal):
            return [f"{literal} is {why_not_local(literal)}; webhooks never go there."]
        return []
    try:
        addresses = [ipaddress.ip_address(a) for a in resolve(host)]
    except (OSError, UnicodeError, ValueError):
        return []
    refused = [a for a in addresses if not allowed(a)]
    if refused:
        # The kind of address, never the address itself (see url_problems).
        return [f"{host} resolves to {why_not_local(refused[0])}; webhooks never go there."]
    return []


def is_plain_http(url: str) -> bool:
    """Whether events to `url` would cross networks unencrypted: plain http to a
    host that is not this machine or a private network (those never leave it)."""
    if not url.strip().lower().startswith("http://"):
        return False
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return True
    address = parse_address(host)
    if address is not None:
        return not is_local_address(address)
    return not is_local_name(host)
