"""Delivery by real `rq worker` processes: FIFO per target under four workers, a
worker killed with SIGKILL mid-drain, and Redis flushed with drains queued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from config import retry_queues, worker_queues
from devstack import RedisServer
from extensions import db
from outbox.models import DeliveryAttempt, OutboxMessage
from outbox.sweeper import sweep
from tests.conftest import NAMESPACE, ROOT, make_user
from tests.test_delivery import emit, webhook_to

RQ = str(Path(sys.executable).parent / "rq")
SETTINGS = {
    "FLEETHOOK_ALLOW_LOCAL_NETWORK": "1",
    "FLEETHOOK_LEASE_SECONDS": "6",
    "FLEETHOOK_CONNECT_TIMEOUT": "1",
    "FLEETHOOK_READ_TIMEOUT": "2",
    "FLEETHOOK_MAIN_READ_TIMEOUT": "0.5",
}
pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_LEASE_SECONDS=6,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=2,
    FLEETHOOK_MAIN_READ_TIMEOUT=0.5,
)


class Workers:
    """`rq worker` processes on this run's database, like production runs them."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1, queues: list[str] | None = None) -> None:
        env = {**os.environ, **SETTINGS, "REDIS_URL": self.redis_url}
        listen = queues or [*worker_queues(NAMESPACE), *retry_queues(NAMESPACE)]
        for _ in range(count):
            name = f"{NAMESPACE}-worker-{len(self.processes)}-{os.getpid()}"
            self.processes.append(
                subprocess.Popen(
                    [RQ, "worker", "--worker-class", "worker.FleethookWorker", "--url",
                     self.redis_url, "--name", name, "--quiet", *listen],
                    cwd=ROOT, env=env, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

    def kill_hard(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its work horse, as a crash would."""
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers(app):
    pool = Workers(app.config["REDIS_URL"])
    yield pool
    pool.stop()


def delivered_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).where(OutboxMessage.status == "delivered"))


def _state() -> str:
    """What the database holds, for a failure message."""
    from outbox.models import Target

    db.session.rollback()
    rows = db.session.execute(
        select(OutboxMessage.target_id, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.target_id, OutboxMessage.status
        )
    ).all()
    targets = [
        (t.id, t.status, t.drain_owner, t.drain_expires_at)
        for t in db.session.scalars(select(Target))
    ]
    return f"messages {rows}; targets {targets}; sweep {sweep()}"


def wait_until(condition, seconds: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def test_four_workers_keep_each_targets_order(app, receiver, workers):
    account = make_user().account_id
    hooks = [webhook_to(account, receiver.url(f"/ok/{n}"))[0] for n in range(3)]
    workers.start(4)
    for batch in range(15):
        emit(account, 10, start=batch * 10 + 1)
        time.sleep(0.05)
    assert wait_until(lambda: delivered_count() == 450, 90), delivered_count()
    for n, hook in enumerate(hooks):
        seen = [json.loads(r.body)["data"]["odometer_mi"] for r in receiver.requests_to(f"/ok/{n}")]
        assert seen == [float(i) for i in range(1, 151)], f"target {hook.id} out of order"


def test_a_killed_worker_loses_nothing(app, receiver, workers):
    account = make_user().account_id
    hook, _ = webhook_to(account, receiver.url("/slow/4"))
    workers.start(1)
    emit(account, 500)
    assert wait_until(lambda: len(receiver.requests_to("/slow")) >= 60, 60)
    workers.kill_hard(workers.processes[0])
    killed_at = len(receiver.requests_to("/slow"))
    assert killed_at < 500
    workers.start(1)
    # The dead worker's leases expire (6 s here); the sweeper, which `rq cron` runs
    # every few seconds, then hands the work on.
    assert wait_until(lambda: sweep() and delivered_count() == 500, 90, every=1), delivered_count()
    got = receiver.requests_to("/slow")
    by_id = defaultdict(list)
    for request in got:
        by_id[request.headers["webhook-id"]].append(request.body)
    assert len(by_id) == 500
    duplicated = {mid: bodies for mid, bodies in by_id.items() if len(bodies) > 1}
    # Only messages in flight at the kill (one claimed batch) come twice, unchanged.
    assert len(duplicated) <= 100
    assert all(len(set(bodies)) == 1 for bodies in duplicated.values())
    seen = [json.loads(r.body)["data"]["odometer_mi"] for r in got]
    firsts = list(dict.fromkeys(seen))
    assert firsts == [float(i) for i in range(1, 501)]


def test_a_flushed_redis_loses_nothing_once_the_sweeper_runs(make_app, receiver, tmp_path):
    private = RedisServer(tmp_path / "redis").start()  # FLUSHALL must not touch a shared Redis
    app = make_app(
        REDIS_URL=private.url,
        FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
        FLEETHOOK_LEASE_SECONDS=6,
        FLEETHOOK_CONNECT_TIMEOUT=1,
        FLEETHOOK_READ_TIMEOUT=2,
    )
    pool = Workers(private.url)
    try:
        with app.app_context():
            account = make_user().account_id
            webhook_to(account, receiver.url("/slow/5"))
            for n in range(2):
                webhook_to(account, receiver.url(f"/ok/{n}"))
            emit(account, 200)  # one drain job queued per target
            pool.start(1)
            assert wait_until(lambda: len(receiver.requests_to("/slow")) >= 5, 30)
            from extensions import redis_client

            redis_client().flushall()  # queued drains, the running job's record: gone
            time.sleep(7)  # the running drain stops or ends; its leases expire (6 s)
            lost = 600 - delivered_count()
            assert lost > 0, "the flush should have stranded messages"
            recovered = wait_until(lambda: sweep() and delivered_count() == 600, 60, every=2)
            assert recovered, _state()
            counts = Counter(r.path for r in receiver.received)
            assert counts["/ok/0"] == counts["/ok/1"] == 200
            assert len({r.headers["webhook-id"] for r in receiver.received}) == 600
            db.session.remove()
    finally:
        pool.stop()
        with app.app_context():
            from tests.conftest import reset_database

            reset_database()
        private.stop()


def test_a_black_holed_target_does_not_hold_up_a_healthy_one(app, receiver, workers):
    account = make_user().account_id
    webhook_to(account, receiver.url("/hang?seconds=30"))
    healthy, _ = webhook_to(account, receiver.url("/ok/healthy"))
    workers.start(1, worker_queues(NAMESPACE))
    workers.start(1, retry_queues(NAMESPACE))
    emit(account, 1)  # the black hole's first drain costs the main worker one read timeout
    assert wait_until(lambda: len(receiver.requests_to("/ok/healthy")) == 1, 15)
    time.sleep(1)
    for n in range(2, 12):
        emit(account, 1, start=n)
        time.sleep(0.3)
    assert wait_until(lambda: len(receiver.requests_to("/ok/healthy")) == 11, 15)
    db.session.rollback()
    latencies = [
        (m.finished_at - m.created_at).total_seconds()
        for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.target_id == healthy.id)
        )
        if m.sequence > 1
    ]
    # The black hole now drains from the retries queue: healthy deliveries never
    # wait for its 2-second read timeouts.
    assert max(latencies) < 1.5, latencies


def test_a_slow_receiver_holds_a_main_worker_only_for_the_main_read_timeout(app, receiver, workers):
    account = make_user().account_id
    webhook_to(account, receiver.url("/slow/1200"))  # slower than 0.5 s, within 2 s
    workers.start(1, worker_queues(NAMESPACE))
    workers.start(1, retry_queues(NAMESPACE))
    emit(account, 1)
    # The first attempt gives up after 0.5 s; the retry (5 s later, which the sweeper
    # queues) drains from the retries queue with the full read timeout.
    assert wait_until(lambda: sweep() is not None and delivered_count() == 1, 30), _state()
    first, *_, last = db.session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id))
    assert first.outcome == "failed" and first.error == "timed out"
    assert first.duration_ms < 1100, first.duration_ms
    assert last.outcome == "delivered" and last.duration_ms >= 1200
    assert len(receiver.requests_to("/slow")) >= 2
