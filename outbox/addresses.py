"""Which IP addresses Fleethook may connect to: global unicast addresses only, never
an address translation prefix (NAT64, 6to4). One rule for both checks of
invariant 5: webhooks.url_safety applies it when a URL is saved, outbox.http at
connect time to every address a name resolves to."""

from __future__ import annotations

import ipaddress

from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Also refused: the ranges requests-hardened blocks beyond ipaddress's own idea of
# "global" — among them the address translation prefixes, NAT64 (64:ff9b::/96,
# 64:ff9b:1::/48) and 6to4 (2002::/16), whose relays reach whatever IPv4 address
# the address carries (loopback and metadata included), the 6to4 relay anycast
# 192.88.99.0/24 and CGNAT 100.64.0.0/10.
REFUSED_NETWORKS = EXTRA_BLOCKED_NET_RANGES


class AddressRefused(Exception):
    """Marks the connect-time refusals of both HTTP stacks (each raises its own
    subclass): nothing was connected to, and the text says so without naming the
    address the host resolved to."""


def is_public_address(address: IPAddress) -> bool:
    """True only for a global unicast address outside REFUSED_NETWORKS; an
    IPv4-mapped IPv6 address is judged by the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address.is_site_local:  # fec0::/10: deprecated, but still used inside networks
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not any(address in network for network in REFUSED_NETWORKS)
    )
