"""Telemetry is accepted while Redis is unreachable: the outbox messages are
committed with the reports (the drain nudge after the commit fails, and is only
logged), and go out once Redis is back — the sweeper finds them in the database."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from core.config import retry_queues, worker_queues
from core.extensions import db
from core.times import utcnow
from devstack.redis_server import RedisServer
from fleet.models import TelemetryReport
from outbox.models import OutboxMessage
from outbox.sweeper import sweep
from tests.conftest import NAMESPACE, ROOT, bearer, make_user, reset_database
from tests.receiver import ReceiverServer
from tests.test_delivery import webhook_to
from tests.test_workers import SETTINGS

RQ = str(Path(sys.executable).parent / "rq")
VIN = "1FUJGLDR0NLD10001"
# An unreachable Redis is a refused connection here: it must not hold a request.
ACCEPTED_WITHIN_SECONDS = 2.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start again."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def app_on_private_redis(make_app, redis_server: RedisServer) -> Iterator[Flask]:
    app = make_app(
        REDIS_URL=redis_server.url,
        FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
        FLEETHOOK_LEASE_SECONDS=6,
        FLEETHOOK_DELIVERY_DEADLINE=2,
        FLEETHOOK_CONNECT_TIMEOUT=1,
        FLEETHOOK_READ_TIMEOUT=2,
    )
    with app.app_context():
        yield app
        reset_database()


def heartbeats(count: int) -> dict:
    first = utcnow().replace(microsecond=0) - timedelta(hours=1)
    return {
        "reports": [
            {
                "vin": VIN,
                "type": "heartbeat",
                "time": (first + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            }
            for n in range(count)
        ]
    }


def outbox_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def report_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(TelemetryReport)) or 0


def run_burst_worker(redis_url: str) -> None:
    """`rq worker --burst`: drain what is queued, then exit."""
    subprocess.run(
        [
            RQ,
            "worker",
            "--burst",
            "--worker-class",
            "worker.FleethookWorker",
            "--quiet",
            "--url",
            redis_url,
            *worker_queues(NAMESPACE),
            *retry_queues(NAMESPACE),
        ],
        cwd=ROOT,
        env={**os.environ, **SETTINGS, "REDIS_URL": redis_url},
        check=True,
        timeout=60,
    )


def test_telemetry_is_accepted_without_redis_and_delivered_once_it_is_back(
    app_on_private_redis: Flask,
    redis_server: RedisServer,
    receiver: ReceiverServer,
    caplog: pytest.LogCaptureFixture,
):
    client = app_on_private_redis.test_client()
    user = make_user()
    headers = bearer(user)
    created = client.post("/api/v1/vehicles", headers=headers, json={"name": "T1", "vin": VIN})
    assert created.status_code == 201, created.json
    webhook_to(user.account_id, receiver.url("/ok"), event_type="heartbeat")

    redis_server.stop()  # nothing listens on its port now
    health = client.get("/healthz")  # what an operator's probe sees: keep sending
    assert (health.status_code, health.json["status"]) == (200, "degraded")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="outbox.queues"):
        response = client.post("/api/v1/telemetry", headers=headers, json=heartbeats(20))
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 20, "duplicates": 0, "events": 20, "messages": 20}
    assert time.monotonic() - started < ACCEPTED_WITHIN_SECONDS
    assert outbox_count() == 20
    assert "could not nudge targets" in caplog.text

    # Bad input is still refused, and writes nothing, whatever Redis does.
    bad = client.post("/api/v1/telemetry", headers=headers, json={"vin": VIN, "type": "heartbeat"})
    assert bad.status_code == 422 and "time" in str(bad.json)
    assert outbox_count() == 20 and report_count() == 20

    redis_server.start()  # the same port, empty: no drain job was ever queued
    assert sweep()["nudged"] == 1  # what `rq cron` runs every few seconds
    run_burst_worker(redis_server.url)
    ids = [r.headers["webhook-id"] for r in receiver.requests_to("/ok")]
    assert len(ids) == len(set(ids)) == 20
    db.session.rollback()
    statuses = db.session.scalars(select(OutboxMessage.status).distinct()).all()
    assert statuses == ["delivered"]
