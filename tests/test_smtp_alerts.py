"""The auto-pause email (outbox/alerts.py) against a real SMTP server on loopback:
the mail server's certificate is checked (a self-signed one is refused, one the
operator's CA file vouches for is accepted), and the password never crosses the
network unencrypted — not over plain smtp://, not when the server offers no
STARTTLS, not to a server whose certificate does not verify. The server records
every byte it receives, so "never sent" is observed, not assumed."""

from __future__ import annotations

import base64
import logging
import smtplib
import socketserver
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import ConfigError, load_config
from core.extensions import db
from outbox.alerts import send_auto_pause_email
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook

USER, PASSWORD = "alerts@acme.example.com", "smtp-secret-pw"
CONTACT = "ops@acme.example.com"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signed itself (trusted by no system CA store),
    usable as its own CA file."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fleethook test mail server")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class SmtpServer(socketserver.ThreadingTCPServer):
    """A small ESMTP server on 127.0.0.1: STARTTLS (if offered) or TLS from the first
    byte (`implicit_tls`), AUTH accepted whatever the password. Records the raw
    bytes it received before and after TLS, the commands, and the messages."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cert_file: Path, key_file: Path, offer_starttls: bool, implicit_tls: bool):
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert_file, key_file)
        self.offer_starttls, self.implicit_tls = offer_starttls, implicit_tls
        self.plaintext = b""  # what crossed the network readable by anyone on the way
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _SmtpHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _SmtpHandler(socketserver.BaseRequestHandler):
    server: SmtpServer

    def handle(self) -> None:
        self.connection = self.request
        try:
            self._converse()
        finally:
            self.connection.close()  # the TLS wrapper, if any, owns the socket now

    def _starttls(self) -> bool:
        try:
            self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            return False  # the client refused the certificate
        return True

    def _converse(self) -> None:
        encrypted = False
        if self.server.implicit_tls:
            if not self._starttls():
                return
            encrypted = True
        connection = self.connection
        reader = connection.makefile("rb")

        def reply(line: str) -> None:
            connection.sendall(line.encode() + b"\r\n")

        reply("220 127.0.0.1 ESMTP test")
        while line := reader.readline():
            if not encrypted:
                self.server.plaintext += line
            command = line.decode(errors="replace").strip()
            verb = command.split(" ", 1)[0].upper()
            self.server.commands.append(verb)
            if verb == "EHLO":
                offers = ["STARTTLS"] if self.server.offer_starttls and not encrypted else []
                for offer in ["127.0.0.1", *offers]:
                    reply(f"250-{offer}")
                reply("250 AUTH PLAIN LOGIN")
            elif verb == "STARTTLS":
                reply("220 go ahead")
                reader.close()
                if not self._starttls():
                    return
                connection = self.connection
                encrypted, reader = True, connection.makefile("rb")
            elif verb == "AUTH":
                reply("235 2.7.0 accepted")
            elif verb == "DATA":
                reply("354 go on")
                body = b""
                while (chunk := reader.readline()) not in (b".\r\n", b""):
                    body += chunk
                self.server.messages.append(body)
                reply("250 queued")
            elif verb == "QUIT":
                reply("221 bye")
                break
            else:
                reply("250 ok")
        reader.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return _self_signed(tmp_path)


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[Any]:
    servers: list[SmtpServer] = []

    def start(offer_starttls: bool = True, implicit_tls: bool = False) -> SmtpServer:
        server = SmtpServer(*certificate, offer_starttls, implicit_tls)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _paused_webhook(app: Any, smtp_url: str, ca_file: Path | None = None) -> int:
    """An auto-paused webhook with a contact address, in an app mailing through `smtp_url`."""
    app.config["FLEETHOOK_SMTP_URL"] = smtp_url
    app.config["FLEETHOOK_SMTP_CA_FILE"] = str(ca_file) if ca_file else ""
    account = make_user().account_id
    webhook, _ = create_webhook(
        account,
        {
            "event_type": "location",
            "name": "Dispatch",
            "url": "https://hooks.example.com/h",
            "contact_email": CONTACT,
        },
    )
    webhook.status_reason = "Paused: more than 5,000 messages queued."
    db.session.commit()
    return webhook.id


def _password_seen(server: SmtpServer) -> bool:
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    login = base64.b64encode(PASSWORD.encode())
    return any(secret in server.plaintext for secret in (PASSWORD.encode(), plain, login))


@pytest.mark.parametrize(("scheme", "implicit"), [("smtp+starttls", False), ("smtps", True)])
def test_a_mail_server_whose_certificate_does_not_verify_gets_no_password(
    app, smtp_server, scheme, implicit
):
    """A self-signed certificate (what a man in the middle presents) ends the
    connection before AUTH, and no mail is sent."""
    server = smtp_server(implicit_tls=implicit)
    webhook_id = _paused_webhook(app, f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{server.port}")
    with pytest.raises(ssl.SSLCertVerificationError):
        send_auto_pause_email(webhook_id)
    assert "AUTH" not in server.commands
    assert server.messages == []
    assert not _password_seen(server)


@pytest.mark.parametrize(("scheme", "implicit"), [("smtp+starttls", False), ("smtps", True)])
def test_mail_goes_over_verified_tls_with_the_password_only_after_the_handshake(
    app, smtp_server, certificate, scheme, implicit
):
    server = smtp_server(implicit_tls=implicit)
    url = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    webhook_id = _paused_webhook(app, url, ca_file=certificate[0])
    send_auto_pause_email(webhook_id)
    assert len(server.messages) == 1
    assert f"To: {CONTACT}".encode() in server.messages[0]
    assert "AUTH" in server.commands
    if not implicit:
        assert server.commands.index("STARTTLS") < server.commands.index("AUTH")
    assert not _password_seen(server)


def test_a_server_that_offers_no_starttls_gets_no_password(app, smtp_server, certificate):
    """STARTTLS stripped (by the server or by someone on the way): smtplib stops
    before AUTH rather than log in over clear text."""
    server = smtp_server(offer_starttls=False)
    url = f"smtp+starttls://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    webhook_id = _paused_webhook(app, url, ca_file=certificate[0])
    with pytest.raises(smtplib.SMTPNotSupportedError):
        send_auto_pause_email(webhook_id)
    assert "AUTH" not in server.commands
    assert server.messages == []
    assert not _password_seen(server)


def test_plain_smtp_with_a_login_sends_no_password_and_says_why(app, smtp_server, caplog):
    """A configuration made past load_config (which refuses it) still sends nothing."""
    server = smtp_server()
    webhook_id = _paused_webhook(app, f"smtp://{USER}:{PASSWORD}@127.0.0.1:{server.port}")
    with caplog.at_level(logging.ERROR, logger="outbox.alerts"):
        send_auto_pause_email(webhook_id)
    assert "AUTH" not in server.commands
    assert not _password_seen(server)
    assert server.messages == []
    assert "no TLS" in caplog.text
    assert PASSWORD not in caplog.text


def test_plain_smtp_without_a_login_still_sends(app, smtp_server):
    """A relay on the local network that needs no login: no secret to protect."""
    server = smtp_server()
    webhook_id = _paused_webhook(app, f"smtp://127.0.0.1:{server.port}")
    send_auto_pause_email(webhook_id)
    assert len(server.messages) == 1
    assert "AUTH" not in server.commands


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"smtp://{USER}:{PASSWORD}@mail.example.com:587", "unencrypted"),
        ("http://mail.example.com", "must be"),
        ("smtps://:465", "must be"),
        ("smtps://mail.example.com:port", "not a number"),
    ],
)
def test_startup_refuses_an_smtp_url_that_would_leak_or_cannot_work(tmp_path, url, words):
    environ = {"FLEETHOOK_ENV": "development", "FLEETHOOK_SMTP_URL": url}
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match=words) as error:
        load_config(environ, str(tmp_path))
    assert PASSWORD not in str(error.value)


@pytest.mark.parametrize(
    "url",
    ["smtp+starttls://u:p@mail.example.com:587", "smtps://u:p@mail.example.com", "smtp://relay:25"],
)
def test_startup_accepts_tls_logins_and_plain_relays(tmp_path, url):
    environ = {"FLEETHOOK_ENV": "development", "FLEETHOOK_SMTP_URL": url}
    with pytest.warns(UserWarning):
        assert load_config(environ, str(tmp_path))["FLEETHOOK_SMTP_URL"] == url
