"""Secrets at rest (DESIGN invariant 6), end to end with real servers: a webhook's
signing secret and custom header value, a Fleetio API key, ServiceMax's OAuth
access and refresh tokens (from the real connection flow against the fake
Salesforce) and an API token are seeded through the API and the portal, and
messages are delivered to each target, so attempt records exist. Then none of
those secrets appears in a raw dump of every table (plain SQL, no column type
to decrypt anything), in the SQLite files' bytes, in Redis, in any log record
(captured at DEBUG for the whole test, SQLAlchemy's statements, parameters and
rows included), in the attempt records, or in any page or API answer after the
one that showed it.

Then the encryption keys are rotated the way an operator does it (a new key
first, `flask --app app keys rotate`, the old key dropped), and everything is
still readable: the webhook signs with the same secret (the receiver verifies
it with the standardwebhooks library) and sends the same header, Fleetio still
accepts the API key, Salesforce the access token, and the tokens decrypt."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, select, text
from standardwebhooks.webhooks import Webhook as StandardWebhook

from core.extensions import db, redis_client
from core.times import utcnow
from integrations.base import secrets_of
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import NAMESPACE, bearer, make_user
from tests.fakes.fleetio import ACCOUNT_TOKEN, FleetioFake
from tests.fakes.salesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce
from webhooks.models import Webhook

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
# Known secrets, random per run so that nothing from another test can match them.
FLEETIO_API_KEY = "fl-key-" + secrets.token_hex(16)
HEADER_VALUE = "Bearer hdr-" + secrets.token_hex(16)
VIN = "1FUJGLDR3CLBP8834"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)

SETTINGS = {
    "FLEETHOOK_ALLOW_LOCAL_NETWORK": True,
    "FLEETHOOK_CONNECT_TIMEOUT": 2,
    "FLEETHOOK_READ_TIMEOUT": 2,
    "FLEETHOOK_SALESFORCE_CLIENT_ID": CLIENT_ID,
    "FLEETHOOK_SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
}
pytestmark = pytest.mark.app_config(FLEETHOOK_ENCRYPTION_KEYS=[OLD], **SETTINGS)


@pytest.fixture
def fleetio(app):
    fake = FleetioFake(api_key=FLEETIO_API_KEY).start()
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = fake.base_url
    yield fake
    fake.stop()


@pytest.fixture
def salesforce(app):
    fake = FakeSalesforce().start()
    app.config["FLEETHOOK_SALESFORCE_LOGIN_URL"] = fake.url
    yield fake
    fake.stop()


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def position(seconds: float, odometer: float) -> dict[str, Any]:
    return {
        "vin": VIN,
        "type": "position",
        "time": at(seconds),
        "latitude": 41.88,
        "longitude": -87.63,
        "speed_mph": 30,
        "heading": 90,
        "ignition": True,
        "odometer_mi": odometer,
    }


# --- where secrets could end up -------------------------------------------------


def database_dump() -> str:
    """Every value of every table in the database, as stored (plain SQL: no column
    type gets a chance to decrypt anything)."""
    quote = db.engine.dialect.identifier_preparer.quote
    lines = []
    with db.engine.connect() as connection:
        for table in sorted(inspect(connection).get_table_names()):
            for row in connection.execute(text(f"SELECT * FROM {quote(table)}")):
                lines.append(f"{table}: " + " | ".join(str(value) for value in row))
    return "\n".join(lines)


def database_files() -> bytes:
    """The SQLite database and its write-ahead log, byte for byte (b"" elsewhere).

    Read by a child process: closing any descriptor of the database file in this
    process would drop the POSIX locks SQLite's own connections here hold on it,
    and the next write from another process would corrupt the WAL index."""
    if db.engine.dialect.name != "sqlite":
        return b""
    path = Path(db.engine.url.database or "")
    files = [str(path.with_name(path.name + suffix)) for suffix in ("", "-wal", "-journal")]
    reader = (
        "import os, sys\n"
        "for name in sys.argv[1:]:\n"
        "    if os.path.exists(name):\n"
        "        sys.stdout.buffer.write(open(name, 'rb').read())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", reader, *files], capture_output=True, check=True
    ).stdout


def _redis_values(connection: Any, key: bytes) -> list[Any]:
    kind = connection.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return [connection.get(key)]
    if kind == "hash":
        return [part for pair in connection.hgetall(key).items() for part in pair]
    if kind == "list":
        return list(connection.lrange(key, 0, -1))
    if kind == "set":
        return list(connection.smembers(key))
    if kind == "zset":
        return list(connection.zrange(key, 0, -1))
    return []


def redis_dump() -> bytes:
    """Every value this run keeps in Redis (RQ's zlib-compressed job data unpacked)."""
    connection = redis_client()
    chunks: list[bytes] = []
    for key in connection.scan_iter(match=f"*{NAMESPACE}*"):
        for value in [key, *_redis_values(connection, key)]:
            raw = value.encode() if isinstance(value, str) else bytes(value or b"")
            chunks.append(raw)
            try:
                chunks.append(zlib.decompress(raw))
            except zlib.error:
                pass
    return b"\n".join(chunks)


def attempts_dump() -> str:
    """Every attempt record and message, every column, as the app reads them."""
    rows: list[dict[str, Any]] = []
    for model in (DeliveryAttempt, OutboxMessage):
        for row in db.session.scalars(select(model)):
            rows.append({c.key: getattr(row, c.key) for c in model.__mapper__.column_attrs})
    db.session.rollback()
    return json.dumps(rows, default=str)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )


def leaks(where: str, haystack: str | bytes, known: dict[str, str]) -> list[str]:
    if isinstance(haystack, bytes):
        return [f"{name} in {where}" for name, value in known.items() if value.encode() in haystack]
    return [f"{name} in {where}" for name, value in known.items() if value in haystack]


def assert_nowhere(known: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    attempts = attempts_dump()
    assert attempts.count('"outcome"') >= 3, "expected attempt records of every target"
    files, in_redis = database_files(), redis_dump()
    # The signing key's bytes themselves, not only their base64.
    key = base64.b64decode(known["the signing key"])
    found = (
        leaks("the database dump", database_dump(), known)
        + leaks("the database files", files, known)
        + leaks("Redis", in_redis, known)
        + [
            f"the signing key's bytes in {where}"
            for where, raw in (("the database files", files), ("Redis", in_redis))
            if key in raw
        ]
        + leaks("the logs", log_text(caplog), known)
        + leaks("the attempt records", attempts, known)
    )
    assert not found, "secrets found at rest:\n  " + "\n  ".join(found)


# --- the test ----------------------------------------------------------------------


def test_known_secrets_stay_secret_and_survive_key_rotation(
    app, client, auth, receiver, fleetio, salesforce, caplog, make_app
):
    # SQLAlchemy keeps its loggers at WARNING; at DEBUG they log every statement,
    # its parameters and the rows fetched, as an operator's `echo="debug"` would.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    caplog.set_level(logging.DEBUG)  # last: it also sets the capturing handler's level
    user = make_user()
    headers = bearer(user)
    api_token = headers["Authorization"].removeprefix("Bearer ")
    assert (
        client.post(
            "/api/v1/vehicles", headers=headers, json={"name": "Truck 42", "vin": VIN}
        ).status_code
        == 201
    )
    fleetio.add_vehicle(VIN, "Truck 42")
    technician = salesforce.add_technician("Dana Whitfield")

    # A webhook with a custom header, and Fleetio, through the API.
    made = client.post(
        "/api/v1/webhooks",
        headers=headers,
        json={
            "event_type": "location",
            "name": "Dispatch",
            "url": receiver.url("/ok"),
            "custom_header": {"name": "Authorization", "value": HEADER_VALUE},
        },
    )
    assert made.status_code == 201, made.json
    webhook_id, signing_secret = made.json["id"], made.json["secret"]
    made = client.post(
        "/api/v1/integrations",
        headers=headers,
        json={
            "provider": "fleetio",
            "api_key": FLEETIO_API_KEY,
            "account_id": ACCOUNT_TOKEN,
            "update_odometer": True,
            "update_dtcs": False,
        },
    )
    assert made.status_code == 201, made.json
    fleetio_id = made.json["id"]

    # ServiceMax through the portal's Connect with Salesforce, as a browser does it.
    assert auth.login(user.email).status_code == 302
    authorize = urlsplit(client.get("/integrations/servicemax/connect").headers["Location"])
    asked = parse_qs(authorize.query)
    code = salesforce.issue_code(asked["redirect_uri"][0])
    back = client.get(
        "/integrations/servicemax/callback", query_string={"code": code, "state": asked["state"][0]}
    )
    assert back.status_code == 302, back.data
    servicemax_id = int(back.headers["Location"].split("/")[-2])  # /integrations/<id>/release
    [refresh_token] = salesforce.refresh_tokens
    [access_token] = salesforce.access_tokens
    mapped = auth.post(
        f"/integrations/servicemax/{servicemax_id}/technicians",
        {"technicians": f"Dana Whitfield = {technician}"},
    )
    assert mapped.status_code == 302
    signed = client.post(
        f"/api/v1/integrations/{servicemax_id}/release",
        headers=headers,
        json={"signer_name": "Pat Reyes", "signer_title": "Fleet Manager", "accept": True},
    )
    assert signed.status_code == 200 and signed.json["status"] == "active", signed.json

    known = {
        "the signing secret": signing_secret,
        "the signing key": signing_secret.removeprefix("whsec_"),
        "the custom header value": HEADER_VALUE,
        "the Fleetio API key": FLEETIO_API_KEY,
        "the Salesforce access token": access_token,
        "the Salesforce refresh token": refresh_token,
        "the Salesforce client secret": CLIENT_SECRET,
        "the API token": api_token,
    }

    # Deliveries to all three, so attempt records exist.
    def report_and_drain(*reports: dict[str, Any]) -> None:
        posted = client.post("/api/v1/telemetry", headers=headers, json={"reports": list(reports)})
        assert posted.status_code == 202, posted.json
        for target in (webhook_id, fleetio_id, servicemax_id):
            drain_target(target)

    assign = {"vin": VIN, "type": "driver_assignment", "time": at(0), "driver": "Dana Whitfield"}
    # 15 minutes apart: Fleetio gets a meter entry every 15 minutes at most.
    report_and_drain(assign, position(60, 1000.0), position(960, 1001.5))
    delivered = receiver.requests_to("/ok")
    assert len(delivered) == 2
    for request in delivered:
        StandardWebhook(signing_secret).verify(request.body, dict(request.headers))
        assert request.headers["Authorization"] == HEADER_VALUE
    assert [e["value"] for e in fleetio.meter_entries[fleetio.vehicles[0]["id"]]] == [
        1000.0,
        1001.5,
    ]
    patches = salesforce.received("PATCH")
    assert patches and {p.headers["Authorization"] for p in patches} == {f"Bearer {access_token}"}

    # Nothing after the creation answer shows them: pages and API answers.
    shown = []
    for path in (
        f"/webhooks/{webhook_id}",
        f"/webhooks/{webhook_id}/edit",
        "/webhooks/",
        f"/integrations/{fleetio_id}",
        f"/integrations/{fleetio_id}/edit",
        f"/integrations/{servicemax_id}",
        f"/integrations/{servicemax_id}/edit",
        "/account/tokens",
    ):
        shown += leaks(f"GET {path}", client.get(path).get_data(as_text=True), known)
    listed = client.get(f"/api/v1/webhooks/{webhook_id}/messages", headers=headers).json
    message_path = f"/api/v1/webhooks/{webhook_id}/messages/{listed['messages'][0]['id']}"
    for path in (
        f"/api/v1/webhooks/{webhook_id}",
        "/api/v1/integrations",
        "/api/v1/tokens",
        message_path,
    ):
        shown += leaks(
            f"GET {path}", client.get(path, headers=headers).get_data(as_text=True), known
        )
    assert not shown, "secrets shown again:\n  " + "\n  ".join(shown)

    # At rest: the secrets are Fernet ciphertext, and nowhere in clear.
    ciphertext = db.session.execute(
        text("SELECT signing_secret FROM webhook WHERE id = :id"), {"id": webhook_id}
    ).scalar_one()
    assert Fernet(OLD).decrypt(ciphertext.encode()).decode() == signing_secret
    db.session.rollback()
    assert_nowhere(known, caplog)

    # Rotate: the new key first, `keys rotate`, then the old key dropped.
    db.session.remove()
    both = make_app(FLEETHOOK_ENCRYPTION_KEYS=[NEW, OLD], **SETTINGS)
    # The command runs in the app context it finds: this one's, not the test's.
    with both.app_context():
        rotated = both.test_cli_runner().invoke(args=["keys", "rotate"])
        db.session.remove()
    assert rotated.exit_code == 0, rotated.output
    assert "Re-encrypted 4 secrets" in rotated.output  # secret, header, 2 integrations
    only_new = make_app(
        FLEETHOOK_ENCRYPTION_KEYS=[NEW],
        FLEETHOOK_FLEETIO_BASE_URL=fleetio.base_url,
        FLEETHOOK_SALESFORCE_LOGIN_URL=salesforce.url,
        **SETTINGS,
    )
    with only_new.app_context():
        client = only_new.test_client()
        webhook = db.session.get(Webhook, webhook_id)
        assert (webhook.signing_secret, webhook.custom_header_value) == (
            signing_secret,
            HEADER_VALUE,
        )
        assert secrets_of(db.session.get(Integration, fleetio_id))["api_key"] == FLEETIO_API_KEY
        assert secrets_of(db.session.get(Integration, servicemax_id)) == {
            "access_token": access_token,
            "refresh_token": refresh_token,
        }
        ciphertext = db.session.execute(
            text("SELECT signing_secret FROM webhook WHERE id = :id"), {"id": webhook_id}
        ).scalar_one()
        assert Fernet(NEW).decrypt(ciphertext.encode()).decode() == signing_secret
        db.session.rollback()

        report_and_drain(position(1860, 1003.0))
        assert len(receiver.requests_to("/ok")) == 3
        latest = receiver.requests_to("/ok")[-1]
        StandardWebhook(signing_secret).verify(latest.body, dict(latest.headers))
        assert latest.headers["Authorization"] == HEADER_VALUE
        entries = fleetio.meter_entries[fleetio.vehicles[0]["id"]]
        assert entries[-1]["value"] == 1003.0, "Fleetio no longer accepts the key"
        last_patch = salesforce.received("PATCH")[-1]
        assert last_patch.headers["Authorization"] == f"Bearer {access_token}"
        assert salesforce.technicians[technician]["SVMXC__Latlong_Captured_On__c"] == at(1860)
        # Delivered, or (an older position behind a newer one) superseded: none failed.
        ended = {m.status for m in db.session.scalars(select(OutboxMessage))}
        assert ended <= {"delivered", "superseded"}, ended
        db.session.rollback()
        assert_nowhere(known, caplog)
        db.session.remove()
