"""Which IP addresses Fleethook may connect to: global unicast addresses, never an
address translation prefix (NAT64, 6to4) and never a cloud metadata address; in
local-network mode (FLEETHOOK_ALLOW_LOCAL_NETWORK, for development) also this
machine and the private networks around it — but still no link-local, metadata,
multicast, broadcast or reserved address. One rule for both checks of invariant 5:
webhooks.url_safety applies it when a URL is saved, outbox.transport and
outbox.http at connect time to every address a name resolves to."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Also refused: the ranges requests-hardened blocks beyond ipaddress's own idea of
# "global" — among them the address translation prefixes, NAT64 (64:ff9b::/96,
# 64:ff9b:1::/48) and 6to4 (2002::/16), whose relays reach whatever IPv4 address
# the address carries (loopback and metadata included), the 6to4 relay anycast
# 192.88.99.0/24 and CGNAT 100.64.0.0/10.
REFUSED_NETWORKS = EXTRA_BLOCKED_NET_RANGES

# Where a cloud answers its instances with their own credentials: refused whatever
# the settings. AWS, GCP, Azure, Oracle (169.254.169.254, link-local anyway), AWS
# over IPv6 (inside fc00::/7), Alibaba (inside CGNAT) and Azure's wire server (a
# global address, reachable only from inside Azure).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)

# What local-network mode opens: loopback, the private ranges, CGNAT (VPNs such as
# Tailscale number their hosts there) and IPv6 unique local addresses. Link-local
# (169.254.0.0/16, fe80::/10) stays shut: it is where metadata services live.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
    )
)


class AddressRefused(Exception):
    """Marks the connect-time refusals of both HTTP stacks (each raises its own
    subclass): nothing was connected to, and the text says so without naming the
    address the host resolved to."""


def _plain(address: IPAddress) -> IPAddress:
    # An IPv4-mapped IPv6 address reaches the IPv4 address it maps.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public_address(address: IPAddress) -> bool:
    """True only for a global unicast address outside REFUSED_NETWORKS; an
    IPv4-mapped IPv6 address is judged by the IPv4 address it maps."""
    address = _plain(address)
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False  # fec0::/10: deprecated, but still used inside networks
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not any(address in network for network in REFUSED_NETWORKS)
    )


def is_metadata_address(address: IPAddress) -> bool:
    return _plain(address) in METADATA_ADDRESSES


def is_local_address(address: IPAddress) -> bool:
    """An address local-network mode allows: in LOCAL_NETWORKS, and no metadata."""
    address = _plain(address)
    return not is_metadata_address(address) and any(address in n for n in LOCAL_NETWORKS)


def why_not_local(address: IPAddress) -> str:
    """What `address` is, in words, when local-network mode still refuses it."""
    if _plain(address).is_link_local:
        return "a link-local address (cloud metadata)"
    if is_metadata_address(address):
        return "a cloud metadata address"
    return "neither a public nor a local-network address"


def may_connect(
    address: IPAddress, allow_local: bool, allowed_networks: Sequence[Any] = ()
) -> bool:
    """The rule of this installation: public addresses, local ones in local-network
    mode, and those of FLEETHOOK_ALLOWED_NETWORKS — never a metadata address."""
    if is_metadata_address(address):
        return False
    if is_public_address(address) or (allow_local and is_local_address(address)):
        return True
    return any(address in network for network in allowed_networks)
