"""The production address filter delivers for real: local networks NOT allowed,
one loopback address allowed as an on-premises network (FLEETHOOK_ALLOWED_NETWORKS),
a receiver speaking TLS with a certificate for a test name signed by a test CA
(FLEETHOOK_DELIVERY_CA_FILE), and the name resolved by a fake `socket.getaddrinfo`
that answers differently the second time it is asked.

The delivery succeeds only if the transport looks the name up once, connects to the
address it checked, and keeps the URL's host as the TLS server name (the
certificate is for the name, not the address) and in the Host header."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask import Flask
from sqlalchemy import select

from core.extensions import db
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import make_user, reset_database
from webhooks.lifecycle import create_webhook

NAME = "hooks.test"
CHECKED = "127.0.0.1"  # what the name resolves to the first time: the listener
REBOUND = "127.0.0.2"  # what it resolves to afterwards: nothing listens there

_real_getaddrinfo = socket.getaddrinfo


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a server certificate for NAME it signed."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fleethook test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class TLSReceiver(ThreadingHTTPServer):
    """HTTPS on CHECKED: records the TLS server name each handshake asked for and
    the Host header of each request."""

    daemon_threads = True

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hosts.append(self.headers["Host"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        receiver = self
        super().__init__((CHECKED, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class RebindingDNS:
    """`socket.getaddrinfo` for NAME: CHECKED the first time, REBOUND after."""

    def __init__(self) -> None:
        self.lookups = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        self.lookups += 1
        address = CHECKED if self.lookups == 1 else REBOUND
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 443)))]


@pytest.fixture
def tls_app(make_app: Any, tmp_path: Path) -> Iterator[tuple[Flask, TLSReceiver, RebindingDNS]]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    server = TLSReceiver(cert_file, key_file)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = make_app(
        FLEETHOOK_ALLOW_LOCAL_NETWORK=False,
        FLEETHOOK_ALLOWED_NETWORKS=[ipaddress.ip_network(f"{CHECKED}/32")],
        FLEETHOOK_DELIVERY_CA_FILE=str(ca_file),
        FLEETHOOK_RESOLVER=lambda host: [CHECKED],  # the check when the URL is saved
        FLEETHOOK_DELIVERY_DEADLINE=5,
    )
    dns = RebindingDNS()
    with app.app_context(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", dns)
        yield app, server, dns
        reset_database()
    server.shutdown()
    server.server_close()


def _emit(account_id: int, count: int) -> None:
    events = [
        DetectedEvent(EVENT_TYPES["location"], datetime.now(UTC), EXAMPLE_VEHICLE)
        for _ in range(count)
    ]
    fan_out(events, account_targets(account_id))
    db.session.commit()


def test_the_address_filter_delivers_over_tls_to_the_address_it_checked(tls_app):
    _, server, dns = tls_app
    account = make_user().account_id
    webhook, _ = create_webhook(
        account,
        {"event_type": "location", "name": "On-prem", "url": f"https://{NAME}:{server.port}/h"},
    )
    db.session.commit()
    _emit(account, 3)
    drain_target(webhook.id)
    outcomes = db.session.scalars(select(DeliveryAttempt.outcome)).all()
    assert outcomes == ["delivered"] * 3, db.session.scalars(select(OutboxMessage.last_error)).all()
    # One lookup for the one connection, kept alive for all three; the name
    # rebound since, and was never asked again.
    assert dns.lookups == 1
    assert server.server_names == [NAME]  # the TLS server name is the URL's host
    assert server.hosts == [f"{NAME}:{server.port}"] * 3


def test_an_address_outside_the_allowed_network_is_still_refused(tls_app):
    _, server, dns = tls_app
    dns.lookups = 1  # the next answer is REBOUND, outside 127.0.0.1/32
    account = make_user().account_id
    webhook, _ = create_webhook(
        account,
        {"event_type": "location", "name": "On-prem", "url": f"https://{NAME}:{server.port}/h"},
    )
    db.session.commit()
    _emit(account, 1)
    drain_target(webhook.id)
    (attempt,) = db.session.scalars(select(DeliveryAttempt)).all()
    assert attempt.outcome == "failed"
    assert attempt.error == f"{NAME} is not a public address; not connected"
    assert server.server_names == [] and server.hosts == []
