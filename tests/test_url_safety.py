"""Which webhook URLs Fleethook accepts (webhooks.url_safety): every spelling of a
non-public address is refused, local names are refused without asking DNS, names
are judged by every address they resolve to, and malformed URLs are refused
whatever the local-network setting. DNS is a stub here; nothing goes to the net."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import pytest

from outbox.addresses import is_public_address
from webhooks.url_safety import MAX_URL_LENGTH, is_plain_http, parse_address, url_problems

PUBLIC_V4 = "93.184.215.14"


class StubResolver:
    """A dict-backed resolver that records the names it was asked about; an
    unknown name fails the way the system resolver does."""

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records = records or {}
        self.calls: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.records[host])


def urls(host: str) -> Iterable[str]:
    """A host as it appears in a plain URL and in one with a port and a path."""
    yield f"http://{host}/hook"
    yield f"https://{host}:8443/x"


# Each spelling of a non-public address, with the address a client connects to.
NON_PUBLIC_HOSTS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # short form
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0X7F000001", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),  # hex octet
    ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),  # octal octet
    ("017700000001", "127.0.0.1"),  # octal
    ("127.000.000.001", "127.0.0.1"),  # zero-padded: inet_aton reads 000 and 001 as octal
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot
    ("2130706433.", "127.0.0.1"),
    ("0x7f000001.", "127.0.0.1"),
    ("0.0.0.0", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("10.0.0.7", "10.0.0.7"),
    ("10.0.0.7.", "10.0.0.7"),
    ("10.1", "10.0.0.1"),
    ("172.16.5.4", "172.16.5.4"),
    ("192.168.1.1", "192.168.1.1"),
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata
    ("0xa9fea9fe", "169.254.169.254"),
    ("100.64.0.1", "100.64.0.1"),  # CGNAT
    ("100.100.100.200", "100.100.100.200"),  # CGNAT (Alibaba metadata)
    ("224.0.0.1", "224.0.0.1"),  # multicast
    ("239.255.255.250", "239.255.255.250"),  # multicast (SSDP)
    ("255.255.255.255", "255.255.255.255"),  # broadcast
    ("240.0.0.1", "240.0.0.1"),  # reserved
    ("198.18.0.1", "198.18.0.1"),  # benchmarking
    ("192.0.2.1", "192.0.2.1"),  # documentation
    ("[::1]", "::1"),
    ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),  # IPv4-mapped
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1"),
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
    ("[fe80::1]", "fe80::1"),  # link-local
    ("[fe80::1%25eth0]", "fe80::1"),  # link-local with a zone
    ("[fc00::1]", "fc00::1"),  # unique local
    ("[fd00:ec2::254]", "fd00:ec2::254"),  # AWS metadata over IPv6
    ("[ff02::1]", "ff02::1"),  # multicast
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),  # NAT64 of loopback
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),  # NAT64 of metadata
    ("[2002:7f00:1::]", "2002:7f00:1::"),  # 6to4 of loopback
    ("[fec0::1]", "fec0::1"),  # deprecated site-local
    ("[64:ff9b:1::808:808]", "64:ff9b:1::808:808"),  # local-use NAT64: gateway-defined
    ("[2001:db8::1]", "2001:db8::1"),  # documentation
    # Translation prefixes as a whole, as the send-time check refuses them: a relay
    # reaches whatever IPv4 address they carry, public or not.
    ("[64:ff9b::808:808]", "64:ff9b::808:808"),  # NAT64 of 8.8.8.8
    ("[2002:808:808::1]", "2002:808:808::1"),  # 6to4 of 8.8.8.8
    ("192.88.99.1", "192.88.99.1"),  # 6to4 relay anycast
]

PUBLIC_HOSTS = [
    (PUBLIC_V4, PUBLIC_V4),
    ("8.8.8.8", "8.8.8.8"),
    ("[2606:2800:21f:cb07:6820:80da:af6b:8b2c]", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
]

LOCAL_NAMES = [
    "localhost",
    "LOCALHOST",
    "foo.localhost",
    "localhost.",
    "metadata.google.internal",
    "printer.local",
    "intranet",
    "router.home.arpa",
    "1.0.0.127.in-addr.arpa",
]


@pytest.mark.parametrize(("host", "address"), NON_PUBLIC_HOSTS)
def test_every_spelling_of_a_non_public_address_is_rejected(host: str, address: str) -> None:
    for url in urls(host):
        resolver = StubResolver()
        problems = url_problems(url, allow_local_network=False, resolve=resolver)
        assert problems, url
        assert "not a public address" in problems[0], (url, problems)
        assert resolver.calls == [], f"{url}: an address literal was looked up in DNS"


# Of NON_PUBLIC_HOSTS, what local-network mode opens: loopback, the private ranges,
# CGNAT and unique local addresses (outbox/addresses.py LOCAL_NETWORKS).
LOCAL_ADDRESSES = {
    ipaddress.ip_address(a)
    for a in ["127.0.0.1", "10.0.0.7", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1"]
    + ["::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fc00::1"]
}


@pytest.mark.parametrize(("host", "address"), NON_PUBLIC_HOSTS)
def test_local_network_mode_accepts_local_addresses_and_nothing_else(
    host: str, address: str
) -> None:
    """Link-local, metadata, multicast, broadcast, reserved, documentation and
    translated addresses stay refused when local networks are allowed."""
    for url in urls(host):
        problems = url_problems(url, allow_local_network=True, resolve=StubResolver())
        if ipaddress.ip_address(address) in LOCAL_ADDRESSES:
            assert problems == [], url
        else:
            assert problems and problems[0].endswith("webhooks never go there."), (url, problems)


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("169.254.169.254", "a link-local address (cloud metadata)"),
        ("::ffff:169.254.169.254", "a link-local address (cloud metadata)"),
        ("fe80::1", "a link-local address (cloud metadata)"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),
        ("0.0.0.0", "neither a public nor a local-network address"),
        ("224.0.0.1", "neither a public nor a local-network address"),
        ("64:ff9b::7f00:1", "neither a public nor a local-network address"),
    ],
)
def test_local_network_mode_says_why_an_address_is_still_refused(address: str, words: str) -> None:
    host = f"[{address}]" if ":" in address else address
    assert url_problems(f"http://{host}/", allow_local_network=True) == [
        f"{ipaddress.ip_address(address)} is {words}; webhooks never go there."
    ]
    resolver = StubResolver({"meta.example.com": ["127.0.0.1", address]})
    assert url_problems("http://meta.example.com/", True, resolver) == [
        f"meta.example.com resolves to {words}; webhooks never go there."
    ]


def test_metadata_is_refused_even_inside_an_allowed_network() -> None:
    """FLEETHOOK_ALLOWED_NETWORKS opens an on-premises range, never the metadata
    address inside it."""
    allowed = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10")]
    assert url_problems("http://169.254.10.1/", False, allowed_networks=allowed) == []
    for metadata in ("169.254.169.254", "100.100.100.200"):
        assert url_problems(f"http://{metadata}/", False, allowed_networks=allowed)


def test_a_name_that_does_not_resolve_is_accepted_in_local_network_mode() -> None:
    """A development receiver may start later; the connect-time check still holds."""
    assert url_problems("http://receiver.lan:9000/", True, StubResolver()) == []


@pytest.mark.parametrize(("host", "address"), NON_PUBLIC_HOSTS + PUBLIC_HOSTS)
def test_parse_address_reads_the_address_a_client_would_connect_to(host: str, address: str) -> None:
    assert parse_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(("host", "address"), NON_PUBLIC_HOSTS)
def test_non_public_addresses_are_not_public(host: str, address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(("host", "address"), PUBLIC_HOSTS)
def test_public_literals_are_accepted(host: str, address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is True
    for url in urls(host):
        resolver = StubResolver()
        assert url_problems(url, allow_local_network=False, resolve=resolver) == [], url
        assert resolver.calls == []


@pytest.mark.parametrize(
    "host", ["hooks.example.com", "example.com", "cafe.be", "deadbeef", "1.2.3.4.5", "08.0.0.1"]
)
def test_parse_address_leaves_names_alone(host: str) -> None:
    """Names, including ones made of hex-looking characters, are not addresses."""
    assert parse_address(host) is None


@pytest.mark.parametrize("name", LOCAL_NAMES)
def test_local_names_are_rejected_without_asking_dns(name: str) -> None:
    # Even a resolver that would vouch for the name is not consulted.
    resolver = StubResolver({name: [PUBLIC_V4], name.lower(): [PUBLIC_V4]})
    problems = url_problems(f"https://{name}/hook", allow_local_network=False, resolve=resolver)
    assert problems
    assert "local name" in problems[0]
    assert resolver.calls == []


@pytest.mark.parametrize("name", LOCAL_NAMES)
def test_local_names_are_accepted_when_local_networks_are_allowed(name: str) -> None:
    url = f"https://{name}/hook"
    assert url_problems(url, allow_local_network=True, resolve=StubResolver()) == []


def test_a_name_resolving_to_a_private_address_is_rejected() -> None:
    resolver = StubResolver({"hooks.example.com": ["10.0.0.7"]})
    problems = url_problems("https://hooks.example.com/hook", False, resolver)
    assert problems == [
        "hooks.example.com resolves to a private, local or reserved address: not a public address."
    ]  # the address itself is never told (a tenant would map internal DNS with it)
    assert resolver.calls == ["hooks.example.com"]


def test_a_name_resolving_to_a_public_address_is_accepted() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    assert url_problems("https://hooks.example.com/hook", False, resolver) == []
    assert resolver.calls == ["hooks.example.com"]


def test_a_name_resolving_to_a_public_ipv6_address_is_accepted() -> None:
    resolver = StubResolver({"hooks.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    assert url_problems("https://hooks.example.com/hook", False, resolver) == []


def test_a_name_with_one_private_record_among_public_ones_is_rejected() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4, "127.0.0.1"]})
    problems = url_problems("https://hooks.example.com/hook", False, resolver)
    assert len(problems) == 1
    assert "resolves to a private, local or reserved address" in problems[0]
    assert "127.0.0.1" not in problems[0] and PUBLIC_V4 not in problems[0]


@pytest.mark.parametrize("address", ["::1", "::ffff:10.0.0.1", "fd00:ec2::254", "169.254.169.254"])
def test_a_name_resolving_to_any_non_public_address_is_rejected(address: str) -> None:
    resolver = StubResolver({"hooks.example.com": [address]})
    problems = url_problems("https://hooks.example.com/hook", False, resolver)
    assert problems
    assert "resolves to a private, local or reserved address" in problems[0]
    assert address not in problems[0]


def test_a_name_that_does_not_resolve_is_rejected() -> None:
    problems = url_problems("https://nowhere.example.com/hook", False, StubResolver())
    assert len(problems) == 1
    assert "does not resolve" in problems[0]


def test_a_name_resolving_to_no_address_is_rejected() -> None:
    resolver = StubResolver({"hooks.example.com": []})
    problems = url_problems("https://hooks.example.com/hook", False, resolver)
    assert len(problems) == 1
    assert "does not resolve" in problems[0]


def test_names_are_not_resolved_when_local_networks_are_allowed() -> None:
    resolver = StubResolver({"hooks.example.com": ["10.0.0.7"]})
    assert url_problems("https://hooks.example.com/hook", True, resolver) == []
    assert url_problems("https://nowhere.example.com/hook", True, resolver) == []


BAD_URLS = [
    "ftp://hooks.example.com/hook",
    "javascript:alert(1)",
    "hooks.example.com/hook",  # no scheme
    "https:///x",  # no host
    "https://user:pw@hooks.example.com/",
    "https://user@hooks.example.com/",
    "https://hooks.example.com/a b",
    " https://hooks.example.com/hook",
    "https://hooks.example.com/hook\n",
    "https://hooks.example.com/hook\r\nX-Injected: 1",
    "https://hooks.example.com/\thook",
    "https://hooks.example.com:99999/",
    "https://hooks.example.com:65536/",
    "https://hooks.example.com:0/",
    "https://hooks.example.com/" + "a" * MAX_URL_LENGTH,
]


@pytest.mark.parametrize("allow_local_network", [False, True])
@pytest.mark.parametrize("url", BAD_URLS)
def test_malformed_urls_are_rejected_whatever_the_network_setting(
    url: str, allow_local_network: bool
) -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    problems = url_problems(url, allow_local_network, resolver)
    assert problems, url
    assert all(isinstance(problem, str) and problem for problem in problems)


def test_user_info_rejection_points_to_the_custom_header() -> None:
    problems = url_problems("https://user:pw@hooks.example.com/", True, StubResolver())
    assert problems
    assert "custom header" in problems[0]


def test_url_length_limit_is_inclusive() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    prefix = "https://hooks.example.com/"
    at_limit = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert len(at_limit) == MAX_URL_LENGTH == 2048
    assert url_problems(at_limit, False, resolver) == []
    assert url_problems(at_limit + "a", False, resolver) != []


def test_a_well_formed_public_url_with_port_query_and_fragment_is_accepted() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC_V4]})
    url = "https://hooks.example.com:8443/fleet/events?source=fleethook#x"
    assert url_problems(url, False, resolver) == []


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://hooks.example.com/hook", True),
        ("HTTP://hooks.example.com/hook", True),
        ("https://hooks.example.com/hook", False),
        ("HTTPS://hooks.example.com/hook", False),
        # Plain http that never leaves the machine or the private network: no warning.
        ("http://127.0.0.1:9000/hook", False),
        ("http://localhost:9000/hook", False),
        ("http://[::1]:9000/hook", False),
        ("http://10.1.2.3/hook", False),
        ("http://203.0.113.7/hook", True),
        ("http://8.8.8.8/hook", True),
    ],
)
def test_is_plain_http(url: str, plain: bool) -> None:
    assert is_plain_http(url) is plain
