"""No SSRF at send time (DESIGN.md invariant 5), proven against real sockets.

The one thing replaced is the resolver: `socket.getaddrinfo`, which the save-time
check (webhooks.url_safety.resolve_host), the outbound session's connect-time
check (outbox.http.connect_address) and urllib3 all call, answers from a table
the test changes between save and send. Real TCP listeners on loopback (127.0.0.1,
127.0.0.2, ::1) and on this machine's own interface addresses, all on one port,
record every connection they accept. Webhooks are saved through the API with
FLEETHOOK_ALLOW_LOCAL_NETWORK off (the production default); then the name turns to
a non-public address, a message is emitted and drained in this process, and the
listeners must have accepted nothing while the attempt failed with a clear error
and the message waits for its retry."""

from __future__ import annotations

import errno
import ipaddress
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import psutil
import pytest
from sqlalchemy import func, select, update
from urllib3.util.connection import HAS_IPV6

from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from integrations.models import Integration
from integrations.providers import PROVIDERS
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import DeliveryAttempt, OutboxMessage, Target
from outbox.sweeper import close_old_messages
from tests.conftest import bearer, make_user
from tests.receiver import ReceiverServer
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=False,
    FLEETHOOK_RESOLVER=None,  # url_safety asks socket.getaddrinfo, i.e. the fake below
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
NAME = "rebind.example.com"
REFUSED = "not a public address; not connected"

_real_getaddrinfo = socket.getaddrinfo


# -- the fake resolver -------------------------------------------------------------


class FakeDNS:
    """`socket.getaddrinfo` answering names from `records`: a list of addresses (in
    the order given) or an exception to raise. Address literals get the real,
    numeric-only answer (as the C library reads them: 127.1, 0x7f.1, ...); the
    hosts of REDIS_URL and DATABASE_URL go to the real resolver; any other name
    is unknown. No query leaves the machine."""

    def __init__(self) -> None:
        self.records: dict[str, list[str] | OSError] = {}
        self.asked: list[str] = []
        self.passthrough = {
            urlsplit(os.environ.get(name, "")).hostname for name in ("REDIS_URL", "DATABASE_URL")
        } - {None}

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        if host is None:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        if isinstance(host, bytes):
            host = host.decode("ascii")
        try:  # as socket.getaddrinfo itself encodes a name (U+3002 is a dot, too)
            name = host.encode("idna").decode("ascii").lower()
        except UnicodeError as error:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from error
        try:
            return _real_getaddrinfo(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        if host in self.passthrough:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        self.asked.append(name)
        answer = self.records.get(name.rstrip("."))
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if isinstance(answer, OSError):
            raise answer
        infos: list[tuple[Any, ...]] = []
        for address in answer:
            if ":" in address:
                if family not in (socket.AF_UNSPEC, socket.AF_INET6):
                    continue
                infos.append(
                    (
                        socket.AF_INET6,
                        socket.SOCK_STREAM,
                        socket.IPPROTO_TCP,
                        "",
                        (address, int(port or 0), 0, 0),
                    )
                )
            else:
                if family not in (socket.AF_UNSPEC, socket.AF_INET):
                    continue
                infos.append(
                    (
                        socket.AF_INET,
                        socket.SOCK_STREAM,
                        socket.IPPROTO_TCP,
                        "",
                        (address, int(port or 0)),
                    )
                )
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return infos


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


# -- the listeners -------------------------------------------------------------------


def own_addresses() -> list[str]:
    """This machine's interface addresses other than loopback and link-local (a
    link-local address needs its interface named to be reached)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(entry.address.split("%", 1)[0])
            if address.is_loopback or address.is_link_local:
                continue
            if address.version == 6 and not HAS_IPV6:
                continue
            found.append(str(address))
    return sorted(set(found))


class Listeners:
    """Plain TCP listeners on one port at several local addresses; every
    connection they accept is recorded (as the address it came in on) and closed."""

    WANTED = ("127.0.0.1", "127.0.0.2", "::1", *own_addresses())

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.addresses: list[str] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        for _ in range(50):
            if self._bind_all():
                break
        else:
            raise RuntimeError("no port free on every listening address")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _bind_all(self) -> bool:
        first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        first.bind(("127.0.0.1", 0))
        self.port = first.getsockname()[1]
        bound = {"127.0.0.1": first}
        for address in self.WANTED[1:]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                continue  # no IPv6 here
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, self.port))
            except OSError as error:
                sock.close()
                if error.errno == errno.EADDRINUSE:
                    for other in bound.values():
                        other.close()
                    return False
                continue  # this kernel does not have that address
            bound[address] = sock
        for address, sock in bound.items():
            sock.listen(16)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, address)
        self.addresses = list(bound)
        self._sockets = list(bound.values())
        return True

    def _accept(self, sock: socket.socket, address: str) -> None:
        while True:
            try:
                connection, _ = sock.accept()
            except (BlockingIOError, OSError):
                return
            with self._lock:
                self.accepted.append(address)
            connection.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                self._accept(key.fileobj, key.data)  # type: ignore[arg-type]

    def connections(self) -> list[str]:
        """What was accepted so far, including connections still in the backlog."""
        time.sleep(0.05)
        for sock, address in zip(self._sockets, self.addresses, strict=True):
            self._accept(sock, address)
        with self._lock:
            return list(self.accepted)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._selector.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    server = Listeners()
    yield server
    server.close()


def test_the_listeners_do_see_a_connection(listeners: Listeners) -> None:
    """The witness works: a plain connection to each listening address is seen,
    and so are the ones that reach loopback through 0.0.0.0 and ::ffff:127.0.0.1."""
    targets = [*listeners.addresses, "0.0.0.0"]
    if HAS_IPV6:
        targets.append("::ffff:127.0.0.1")
    for address in targets:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect((address, listeners.port))
    assert len(listeners.connections()) == len(targets)


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def account(app: Any) -> tuple[int, dict[str, str]]:
    user = make_user()
    return user.account_id, bearer(user)


def save_webhook(client: Any, headers: dict[str, str], url: str) -> int:
    response = client.post(
        "/api/v1/webhooks",
        json={"event_type": "location", "name": "Rebinding", "url": url},
        headers=headers,
    )
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def emit(account_id: int) -> None:
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=1234.5, fix_time=utcnow())
    event = DetectedEvent(EVENT_TYPES["location"], utcnow(), vehicle)
    fan_out([event], account_targets(account_id))
    db.session.commit()


def only_message(target_id: int) -> OutboxMessage:
    db.session.expire_all()
    (message,) = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    ).all()
    return message


def assert_waits_for_a_retry(target_id: int, error: str, attempts: int = 1) -> OutboxMessage:
    """The attempt failed before any answer, with `error` in its words; the message
    is pending with its next attempt scheduled, the target failing."""
    message = only_message(target_id)
    assert message.status == "pending"
    assert message.attempts == attempts
    assert message.last_status_code is None
    assert error in (message.last_error or ""), message.last_error
    assert message.next_attempt_at is not None and message.next_attempt_at > utcnow()
    last = db.session.scalars(
        select(DeliveryAttempt).order_by(DeliveryAttempt.id.desc()).limit(1)
    ).one()
    assert last.status_code is None and error in (last.error or "")
    target = db.session.get(Target, target_id)
    assert target is not None
    assert target.status == "failing"
    assert target.queue_depth == 1
    return message


def shown(address: str) -> str:
    """An address as Python writes it (::ffff:7f00:1 before 3.13, ::ffff:127.0.0.1 after)."""
    return str(ipaddress.ip_address(address))


def v6(address: str) -> Any:
    return pytest.param(
        address, marks=pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 on this machine")
    )


# -- DNS rebinding: public when saved, non-public when sent --------------------------

REBOUND = [
    "127.0.0.1",
    "127.0.0.2",
    v6("::1"),
    "0.0.0.0",  # reaches loopback on Linux
    v6("::"),
    v6("::ffff:127.0.0.1"),  # IPv4-mapped loopback
    "10.0.0.7",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # CGNAT (Alibaba metadata)
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast
    "255.255.255.255",
    v6("::ffff:169.254.169.254"),
    v6("fd00:ec2::254"),  # AWS metadata over IPv6
    v6("fe80::1"),
    v6("fec0::1"),  # deprecated site-local
    v6("::7f00:1"),  # IPv4-compatible loopback (reserved)
    v6("64:ff9b::7f00:1"),  # NAT64 of loopback
    v6("2002:7f00:1::"),  # 6to4 of loopback
    v6("2001:db8::1"),  # documentation
]


@pytest.mark.parametrize("address", REBOUND)
def test_a_name_rebound_to_a_non_public_address_gets_no_connection(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    address: str,
) -> None:
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"http://{NAME}:{listeners.port}/hook")
    assert NAME in dns.asked  # the save-time check did look the name up

    dns.records[NAME] = [address]
    emit(account_id)
    drain_target(webhook_id)

    assert listeners.connections() == []
    assert_waits_for_a_retry(webhook_id, REFUSED)


@pytest.mark.parametrize("address", own_addresses() or ["none"])
def test_a_name_rebound_to_this_machines_own_address_gets_no_connection(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    address: str,
) -> None:
    """A listener on the machine's own (private) interface address: rebinding to
    it reaches nothing either."""
    if address not in listeners.addresses:
        pytest.skip(f"no listener on {address} here")
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"http://{NAME}:{listeners.port}/hook")
    dns.records[NAME] = [address]
    emit(account_id)
    drain_target(webhook_id)
    assert listeners.connections() == []
    assert_waits_for_a_retry(webhook_id, REFUSED)


MIXED = [
    [PUBLIC_V4, "127.0.0.1"],
    ["127.0.0.1", PUBLIC_V4],
    [PUBLIC_V4, "10.0.0.7", "93.184.215.15"],
    pytest.param([PUBLIC_V6, "::1"], marks=v6("").marks),
    pytest.param(["::ffff:127.0.0.1", PUBLIC_V6], marks=v6("").marks),
]


@pytest.mark.parametrize("answer", MIXED)
def test_an_answer_with_any_non_public_address_gets_no_connection_in_any_order(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    answer: list[str],
) -> None:
    """As when saving: one non-public address in the answer refuses the whole
    answer, wherever it stands, so nothing is connected to at all."""
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"http://{NAME}:{listeners.port}/hook")
    dns.records[NAME] = answer
    emit(account_id)
    drain_target(webhook_id)
    assert listeners.connections() == []
    message = assert_waits_for_a_retry(webhook_id, REFUSED)
    bad = [shown(a) for a in answer if a not in (PUBLIC_V4, PUBLIC_V6, "93.184.215.15")]
    assert not any(address in (message.last_error or "") for address in bad)


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            "Temporary failure in name resolution",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "Name or service not known",
        ),
        ([], "Name or service not known"),
    ],
)
def test_a_resolver_error_at_send_time_is_a_retryable_failure(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    failure: Any,
    words: str,
) -> None:
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"http://{NAME}:{listeners.port}/hook")
    dns.records[NAME] = failure
    emit(account_id)
    drain_target(webhook_id)
    assert listeners.connections() == []
    message = assert_waits_for_a_retry(webhook_id, f"Could not resolve {NAME}")
    assert message.last_error == f"Could not resolve {NAME}"
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert words in (attempt.error_detail or ""), attempt.error_detail


def test_a_refused_message_is_retried_then_dead_never_delivered(
    client: Any, account: tuple[int, dict[str, str]], dns: FakeDNS, listeners: Listeners
) -> None:
    """The design's path for a failing message: retried on the schedule (each
    retry checks again), dead when the retention window ends."""
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"http://{NAME}:{listeners.port}/hook")
    dns.records[NAME] = ["127.0.0.1"]
    emit(account_id)
    drain_target(webhook_id)
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    dns.records[NAME] = ["::ffff:127.0.0.1" if HAS_IPV6 else "127.0.0.2"]
    drain_target(webhook_id)
    assert_waits_for_a_retry(webhook_id, REFUSED, attempts=2)
    long_ago = utcnow() - timedelta(hours=73)
    db.session.execute(update(OutboxMessage).values(retain_from=long_ago))
    db.session.commit()
    assert close_old_messages(utcnow()) == 1
    assert only_message(webhook_id).status == "dead"
    assert listeners.connections() == []


def test_https_urls_are_checked_before_any_connection_too(
    client: Any, account: tuple[int, dict[str, str]], dns: FakeDNS, listeners: Listeners
) -> None:
    account_id, headers = account
    dns.records[NAME] = [PUBLIC_V4]
    webhook_id = save_webhook(client, headers, f"https://{NAME}:{listeners.port}/hook")
    dns.records[NAME] = ["127.0.0.1"]
    emit(account_id)
    drain_target(webhook_id)
    assert listeners.connections() == []
    assert_waits_for_a_retry(webhook_id, REFUSED)


# -- redirects -----------------------------------------------------------------------


@pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["127.0.0.1", "127.0.0.2", "[::1]"])
def test_redirects_are_never_followed(
    client: Any,
    account: tuple[int, dict[str, str]],
    receiver: ReceiverServer,
    listeners: Listeners,
    code: int,
    where: str,
) -> None:
    """Local networks are allowed here, so that the receiver on loopback can be
    reached at all: then nothing but never-redirect stands between the 3xx and
    the listener, which is what this holds."""
    if where.strip("[]") not in listeners.addresses:
        pytest.skip(f"no listener on {where} here")
    account_id, headers = account
    location = f"http://{where}:{listeners.port}/internal"
    url = receiver.url(f"/redirect/{code}?to={quote(location)}")
    webhook_id = save_webhook(client, headers, url)
    emit(account_id)
    drain_target(webhook_id)
    assert len(receiver.requests_to("/redirect/")) == 1
    assert listeners.connections() == []
    message = only_message(webhook_id)
    assert (message.status, message.last_status_code, message.last_error) == (
        "pending",
        code,
        f"HTTP {code}",
    )
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.status_code == code
    assert attempt.response_headers["location"] == location


# -- every spelling, refused when saved through the API ------------------------------

# What a refused name answers: never the address it resolved to (url_safety.py).
RESOLVES_LOCAL = "resolves to a private, local or reserved address"
SPELLINGS = [
    # (URL, words of the error)
    ("http://127.1:{port}/", "not a public address"),
    ("http://0177.0.0.1:{port}/", "not a public address"),
    ("http://0x7f.1:{port}/", "not a public address"),
    ("http://2130706433:{port}/", "not a public address"),
    ("http://017700000001:{port}/", "not a public address"),
    ("http://127.0.0.1.:{port}/", "not a public address"),
    ("http://0:{port}/", "not a public address"),
    ("http://0.0.0.0:{port}/", "not a public address"),
    ("http://[::1]:{port}/", "not a public address"),
    ("http://[::]:{port}/", "not a public address"),
    ("http://[::ffff:7f00:1]:{port}/", "not a public address"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/", "not a public address"),
    ("http://[::ffff:127.0.0.1]:{port}/", "not a public address"),
    ("http://[fe80::1%25lo]:{port}/", "not a public address"),
    ("http://[64:ff9b::7f00:1]:{port}/", "not a public address"),
    ("http://localhost:{port}/", "local name"),
    ("http://localhost.:{port}/", "local name"),
    ("http://LOCALHOST:{port}/", "local name"),
    ("http://LocalHost.:{port}/", "local name"),
    ("http://api.localhost:{port}/", "local name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "local name"),
    ("http://127.0.0.1.nip.io:{port}/", RESOLVES_LOCAL),
    ("http://app.10.0.0.7.sslip.io/", RESOLVES_LOCAL),
    ("http://localtest.me:{port}/", RESOLVES_LOCAL),
    ("http://v6loop.example.com:{port}/", RESOLVES_LOCAL),
    ("http://metadata.example.com/latest/meta-data/", RESOLVES_LOCAL),
    ("http://cgnat.example.com/", RESOLVES_LOCAL),
    ("http://mixed.example.com:{port}/", RESOLVES_LOCAL),
    ("http://hooks.example.com@127.0.0.1:{port}/", "user name and password"),
    ("http://hooks.example.com:80@127.0.0.1:{port}/", "user name and password"),
    ("http://hooks.example.com\\@127.0.0.1:{port}/", "user name and password"),
    ("http://127.0.0.1:{port}#@hooks.example.com/", "not a public address"),
    ("http://127.0.0.1:{port}?@hooks.example.com/", "not a public address"),
    ("http://hooks.example.com\uff20127.0.0.1:{port}/", "Not a valid URL"),  # fullwidth @
    ("http://127\u30020\u30020\u30021:{port}/", "local name"),  # ideographic full stops
    ("http://127\uff0e0\uff0e0\uff0e1:{port}/", "local name"),  # fullwidth full stops
    ("http://127\uff610\uff610\uff611:{port}/", "local name"),  # halfwidth ideographic
    ("http://127\u30020.0.1:{port}/", RESOLVES_LOCAL),  # one odd dot, IDNA reads it
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/", RESOLVES_LOCAL),
    ("http://127.0.0.1:6379/", "not a public address"),  # Redis
    ("http://[::1]:5432/", "not a public address"),  # PostgreSQL
    ("http://0x7f.1:22/", "not a public address"),
    ("http://10.0.0.7:{port}/", "not a public address"),
    ("http://169.254.169.254/latest/meta-data/", "not a public address"),
    ("http://100.64.0.1/", "not a public address"),
    ("http://hooks.example.com:0/", "Port 0"),
    ("http://hooks.example.com:65536/", "Not a valid URL"),
    ("http://hooks.example.com:-1/", "Not a valid URL"),
    ("http://127.0.0.1:80:{port}/", "Not a valid URL"),
    ("http://nowhere.example.com/", "does not resolve"),
]


@pytest.mark.parametrize(("url", "words"), SPELLINGS)
def test_every_spelling_of_a_local_target_is_refused_when_saved(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    url: str,
    words: str,
) -> None:
    dns.records.update(
        {
            "hooks.example.com": [PUBLIC_V4],
            "127.0.0.1.nip.io": ["127.0.0.1"],
            "app.10.0.0.7.sslip.io": ["10.0.0.7"],
            "localtest.me": ["127.0.0.1"],
            "v6loop.example.com": ["::1"],
            "metadata.example.com": ["169.254.169.254"],
            "cgnat.example.com": ["100.64.0.1"],
            "mixed.example.com": [PUBLIC_V4, "127.0.0.1"],
        }
    )
    url = url.replace("{port}", str(listeners.port))
    _, headers = account
    response = client.post(
        "/api/v1/webhooks",
        json={"event_type": "location", "name": "Sneaky", "url": url},
        headers=headers,
    )
    assert response.status_code == 422, (url, response.json)
    assert response.mimetype == "application/problem+json"
    assert set(response.json["errors"]) == {"url"}
    (problem,) = response.json["errors"]["url"]
    assert words in problem, (url, problem)
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 0
    assert listeners.connections() == []


def test_a_public_name_on_any_port_is_accepted(
    client: Any, account: tuple[int, dict[str, str]], dns: FakeDNS
) -> None:
    """The other side of the spellings above: the checks refuse addresses, not ports."""
    dns.records["hooks.example.com"] = [PUBLIC_V4, PUBLIC_V6]
    _, headers = account
    for port in (22, 6379, 8443):
        save_webhook(client, headers, f"https://hooks.example.com:{port}/in")


# -- integrations: provider calls go through the same session ------------------------

FLEETIO = {
    "provider": "fleetio",
    "api_key": "fl-api-key-0001",
    "account_id": "acct-0001",
    "update_odometer": True,
    "update_dtcs": True,
}


def test_an_integration_whose_provider_host_is_loopback_cannot_be_saved(
    app: Any,
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
) -> None:
    """Saving checks the credentials with one call to the provider: it is refused
    before connecting, and the error says why."""
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = f"http://fleetio.example.com:{listeners.port}/api"
    dns.records["fleetio.example.com"] = ["127.0.0.1"]
    _, headers = account
    response = client.post("/api/v1/integrations", json=FLEETIO, headers=headers)
    assert response.status_code == 422, response.json
    (problem,) = response.json["errors"]["credentials"]
    assert "Could not reach Fleetio" in problem and REFUSED in problem, problem
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0
    assert listeners.connections() == []


def test_an_integration_whose_provider_host_rebinds_to_loopback_makes_no_connection(
    app: Any,
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = f"http://fleetio.example.com:{listeners.port}/api"
    account_id, headers = account
    dns.records["fleetio.example.com"] = [PUBLIC_V4]
    # Saved while Fleetio's name was public: its credential check passed then
    # (a public address is not reachable from a test, so that check is skipped).
    with monkeypatch.context() as patch:
        patch.setattr(PROVIDERS["fleetio"], "check_credentials", lambda integration: None)
        response = client.post("/api/v1/integrations", json=FLEETIO, headers=headers)
    assert response.status_code == 201, response.json
    integration_id = int(response.json["id"])

    dns.records["fleetio.example.com"] = ["127.0.0.1"]
    emit(account_id)
    drain_target(integration_id)

    assert listeners.connections() == []
    message = only_message(integration_id)
    assert message.status == "pending" and message.attempts == 1
    assert REFUSED in (message.last_error or "")
    assert "127.0.0.1" not in (message.last_error or "")  # no internal address is told
    assert message.next_attempt_at is not None and message.next_attempt_at > utcnow()
