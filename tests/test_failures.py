"""Failures in plain words (outbox/failures.py): each kind of failure, produced for
real by both HTTP stacks (requests, as provider calls use it, and aiohttp, as the
webhook transport uses it) against loopback servers that refuse, stay silent,
hang up, reset, speak no HTTP or present a certificate for another name, becomes
one short sentence, with the technical text kept beside it; and end to end, a
webhook to a name that does not resolve shows "Could not resolve <host>" in the
API and the grid while its attempt keeps the detail."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from markupsafe import escape
from sqlalchemy import select

from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from integrations.providers import PROVIDERS
from outbox.drain import drain_target
from outbox.failures import describe_failure, shorten
from outbox.fanout import account_targets, fan_out
from outbox.http import connect_address
from outbox.models import DeliveryAttempt
from outbox.transport import CheckedResolver
from tests.conftest import bearer, make_user
from tests.test_tls_delivery import TLSReceiver, _certificates

UNRESOLVABLE = "hooks.fleethook.invalid"  # .invalid never resolves (RFC 6761)

# -- the two stacks, as the product uses them ---------------------------------------


def requests_error(url: str, timeout: float = 1, ca_file: str | None = None) -> BaseException:
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.RequestException) as caught:
        session.post(url, data=b"{}", timeout=timeout, verify=ca_file or True)
    return caught.value


def aiohttp_error(
    url: str, timeout: float = 1, ca_file: str | None = None, resolver: Any = None
) -> BaseException:
    """As outbox/transport.py sends: one deadline for the whole request."""

    async def post() -> None:
        context = ssl.create_default_context(cafile=ca_file)
        connector = aiohttp.TCPConnector(ssl=context, resolver=resolver)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.timeout(timeout):
                async with session.post(url, data=b"{}") as response:
                    await response.read()

    try:
        asyncio.run(post())
    except Exception as error:
        return error
    raise AssertionError(f"{url} did not fail")


STACKS = [requests_error, aiohttp_error]


# -- loopback servers that fail in one way each --------------------------------------


class RawServer:
    """A TCP server on 127.0.0.1 that reads a request, then does `behave(conn)`."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self._behave = behave
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._held.append(connection)
            _read_request(connection)
            self._behave(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self._held:
            connection.close()


def _read_request(connection: socket.socket) -> None:
    # All of it: a close with unread data would be a reset, whatever `behave` does.
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    while length and len(body) < int(length.group(1)):
        body += connection.recv(65536)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(behave: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def silent(connection: socket.socket) -> None:
    pass  # holds the connection open and never answers


def hang_up(connection: socket.socket) -> None:
    connection.close()


def reset(connection: socket.socket) -> None:
    # SO_LINGER 0: close with a TCP reset instead of a clean FIN.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def not_http(connection: socket.socket) -> None:
    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    connection.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[TLSReceiver, str]]:
    """HTTPS on 127.0.0.1 with a certificate for hooks.test from a test CA."""
    ca_file, cert_file, key_file = _certificates(tmp_path)
    server = TLSReceiver(cert_file, key_file)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, str(ca_file)
    server.shutdown()
    server.server_close()


# -- each kind of failure ------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_a_refused_port(stack: Any) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/in"
    error = stack(url)
    failure = describe_failure(error, url, 1)
    assert failure.words == f"Connection refused by 127.0.0.1:{port}"
    assert type(error).__name__ in failure.detail and "refused" in failure.detail.lower()


@pytest.mark.parametrize("stack", STACKS)
def test_a_name_that_does_not_resolve(stack: Any) -> None:
    url = f"https://{UNRESOLVABLE}/in"
    error = stack(url)
    failure = describe_failure(error, url, 1)
    assert failure.words == f"Could not resolve {UNRESOLVABLE}"
    assert type(error).__name__ in failure.detail and UNRESOLVABLE in failure.detail


@pytest.mark.parametrize("stack", STACKS)
def test_a_receiver_that_never_answers(stack: Any, raw_server: Any) -> None:
    url = f"http://127.0.0.1:{raw_server(silent).port}/in"
    failure = describe_failure(stack(url, timeout=0.5), url, 0.5)
    assert failure.words == "Timed out after 0.5 s waiting for an answer"


def test_a_connect_timeout_names_where_it_was_connecting(raw_server: Any) -> None:
    url = "http://hooks.example.com/in"
    error = requests.ConnectTimeout("Connection to hooks.example.com timed out")
    failure = describe_failure(error, url, deadline=10, connect_timeout=3)
    assert failure.words == "Timed out after 3 s connecting to hooks.example.com:80"


@pytest.mark.parametrize("stack", STACKS)
def test_a_receiver_that_hangs_up_without_answering(stack: Any, raw_server: Any) -> None:
    url = f"http://127.0.0.1:{raw_server(hang_up).port}/in"
    failure = describe_failure(stack(url), url, 1)
    assert failure.words == "127.0.0.1 closed the connection without answering"


@pytest.mark.parametrize("stack", STACKS)
def test_a_receiver_that_resets_the_connection(stack: Any, raw_server: Any) -> None:
    url = f"http://127.0.0.1:{raw_server(reset).port}/in"
    failure = describe_failure(stack(url), url, 1)
    assert failure.words == "Connection reset by 127.0.0.1"


@pytest.mark.parametrize("stack", STACKS)
def test_an_answer_that_is_not_http(stack: Any, raw_server: Any) -> None:
    url = f"http://127.0.0.1:{raw_server(not_http).port}/in"
    error = stack(url)
    failure = describe_failure(error, url, 1)
    assert failure.words == "127.0.0.1 sent an answer that could not be read"
    assert "SSH-2.0" in failure.detail or type(error).__name__ in failure.detail


@pytest.mark.parametrize("stack", STACKS)
def test_a_certificate_for_another_name(stack: Any, tls_server: Any) -> None:
    server, ca_file = tls_server
    url = f"https://127.0.0.1:{server.port}/in"  # the certificate is for hooks.test
    error = stack(url, ca_file=ca_file)
    failure = describe_failure(error, url, 1)
    assert failure.words == "TLS certificate not valid for 127.0.0.1"
    assert "127.0.0.1" in failure.detail and "certificate" in failure.detail.lower()


@pytest.mark.parametrize("stack", STACKS)
def test_a_certificate_from_an_unknown_authority(stack: Any, tls_server: Any) -> None:
    server, _ = tls_server
    url = f"https://127.0.0.1:{server.port}/in"
    failure = describe_failure(stack(url), url, 1)
    assert failure.words == "TLS certificate of 127.0.0.1 is not from a trusted authority"


def test_an_address_the_rule_refuses_requests() -> None:
    with pytest.raises(requests.RequestException) as caught:
        connect_address("localhost", 80, lambda address: False)
    failure = describe_failure(caught.value, "http://localhost/in")
    assert failure.words == "localhost is not a public address; not connected"


def test_an_address_the_rule_refuses_aiohttp(raw_server: Any) -> None:
    port = raw_server(silent).port
    url = f"http://localhost:{port}/in"
    error = aiohttp_error(url, resolver=CheckedResolver(lambda address: False))
    failure = describe_failure(error, url, 1)
    assert failure.words == "localhost is not a public address; not connected"
    assert "127.0.0.1" not in failure.words + failure.detail  # the address is not told


def test_a_bug_is_an_internal_error_with_its_exception_kept() -> None:
    try:
        {}["vehicle"]
    except KeyError as error:
        failure = describe_failure(error, "https://hooks.example.com/in")
    assert failure.words == "The attempt failed inside Fleethook (an internal error)"
    assert failure.detail == "KeyError: 'vehicle'"


def test_a_long_host_is_shortened_at_a_word_boundary() -> None:
    host = ("a" * 60 + ".") * 4 + "example.com"
    failure = describe_failure(socket.gaierror(-2, "Name or service not known"), f"http://{host}/")
    assert failure.words == f"Could not resolve {host}"  # 264 characters fit
    words = shorten("Could not resolve " + " ".join(["segment"] * 80), 100)
    assert len(words) <= 100 and words.endswith("segment…")


@pytest.mark.parametrize(
    ("text", "limit", "shortened"),
    [
        ("Connection refused by 203.0.113.7:443", 100, "Connection refused by 203.0.113.7:443"),
        (
            "Max retries exceeded: Failed to resolve 'hooks.example.com'",
            40,
            "Max retries exceeded: Failed to…",
        ),
        ("one two three", 9, "one two…"),
        ("abcdefghij", 5, "abcd…"),  # one word longer than the limit: nothing else to do
    ],
)
def test_shorten_never_cuts_a_word(text: str, limit: int, shortened: str) -> None:
    assert shorten(text, limit) == shortened
    assert len(shortened) <= limit


# -- end to end: the grid and the API say it in words; the attempt keeps the detail --


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1)
def test_a_webhook_to_a_name_that_does_not_resolve(client: Any, auth: Any) -> None:
    user = make_user()
    headers = bearer(user)
    created = client.post(
        "/api/v1/webhooks",
        json={"event_type": "location", "name": "Nowhere", "url": f"https://{UNRESOLVABLE}/in"},
        headers=headers,
    )
    assert created.status_code == 201, created.json
    webhook_id = created.json["id"]
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)],
        account_targets(user.account_id),
    )
    db.session.commit()
    drain_target(webhook_id)

    words = f"Could not resolve {UNRESOLVABLE}"
    webhook = client.get(f"/api/v1/webhooks/{webhook_id}", headers=headers).json
    assert webhook["status_reason"] == f"Retrying: {words}"
    (message,) = client.get(f"/api/v1/webhooks/{webhook_id}/messages", headers=headers).json[
        "messages"
    ]
    assert message["last_error"] == words
    detail = client.get(
        f"/api/v1/webhooks/{webhook_id}/messages/{message['id']}", headers=headers
    ).json
    (attempt,) = detail["attempt_log"]
    assert attempt["error"] == words
    assert "ClientConnectorDNSError" in attempt["error_detail"]
    assert UNRESOLVABLE in attempt["error_detail"]
    stored = db.session.scalars(select(DeliveryAttempt)).one()
    assert stored.error_detail == attempt["error_detail"]

    auth.login("admin@acme.example.com")
    grid = client.get("/webhooks/").data.decode()
    assert words in grid and "ClientConnectorDNSError" not in grid
    page = client.get(f"/webhooks/{webhook_id}/messages/{message['id']}").data.decode()
    assert words in page and "ClientConnectorDNSError" in page


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1)
def test_an_integration_whose_provider_refuses_shows_both_on_its_page(
    app: Any, client: Any, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = f"http://127.0.0.1:{port}/api"
    user = make_user()
    monkeypatch.setattr(PROVIDERS["fleetio"], "check_credentials", lambda integration: None)
    created = client.post(
        "/api/v1/integrations",
        json={
            "provider": "fleetio",
            "api_key": "fl-key",
            "account_id": "acct-1",
            "update_odometer": True,
            "update_dtcs": True,
        },
        headers=bearer(user),
    )
    assert created.status_code == 201, created.json
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=1234.5, fix_time=utcnow())
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), vehicle)],
        account_targets(user.account_id),
    )
    db.session.commit()
    drain_target(created.json["id"])

    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.error == f"Looking up the VIN: Connection refused by 127.0.0.1:{port}"
    assert attempt.error_detail and "ConnectionError" in attempt.error_detail
    auth.login("admin@acme.example.com")
    page = client.get(f"/integrations/{created.json['id']}").data.decode()
    assert attempt.error in page and "Technical detail" in page
    assert escape(attempt.error_detail) in page
