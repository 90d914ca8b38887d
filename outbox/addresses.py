"""Which IP addresses Fleethook may connect to: global unicast addresses only, also
for the IPv4 address an IPv6 address carries. One rule for both checks of
invariant 5: webhooks.url_safety applies it when a URL is saved, outbox.http at
connect time to every address a name resolves to."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The well-known NAT64 prefix (RFC 6052) carries an IPv4 address in its last 32
# bits. The local-use prefix 64:ff9b:1::/48 (RFC 8215) is refused outright: where
# its IPv4 bits sit depends on the gateway's configuration.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for a global unicast address, also for the IPv4 address an IPv6
    address carries (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:  # fec0::/10: deprecated, but still used inside networks
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
    )
