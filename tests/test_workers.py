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
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select, update

from core.config import retry_queues, worker_queues
from core.extensions import db
from core.times import utcnow
from devstack.redis_server import RedisServer
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.fanout import account_targets, fan_out
from outbox.models import OutboxMessage, Target
from outbox.sweeper import sweep
from tests.conftest import NAMESPACE, ROOT, make_user
from tests.test_delivery import emit, webhook_to
from tests.test_lanes import attempts_of
from webhooks.lifecycle import create_webhook

RQ = str(Path(sys.executable).parent / "rq")
SETTINGS = {
    "FLEETHOOK_ALLOW_LOCAL_NETWORK": "1",
    "FLEETHOOK_LEASE_SECONDS": "6",
    "FLEETHOOK_DELIVERY_DEADLINE": "2",
    "FLEETHOOK_CONNECT_TIMEOUT": "1",
    "FLEETHOOK_READ_TIMEOUT": "2",
    "FLEETHOOK_MAIN_READ_TIMEOUT": "0.5",
}
pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_LEASE_SECONDS=6,
    FLEETHOOK_DELIVERY_DEADLINE=2,
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
                    [
                        RQ,
                        "worker",
                        "--worker-class",
                        "worker.FleethookWorker",
                        "--url",
                        self.redis_url,
                        "--name",
                        name,
                        "--quiet",
                        *listen,
                    ],
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

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


def test_lanes_stay_in_sequence_through_random_latency_and_a_killed_worker(app, receiver, workers):
    """50 vehicles × 100 events, receivers answering in 0–300 ms, two workers, the
    one draining killed midway: every vehicle's events arrive in sequence (a
    repeat only of one already seen, with its webhook-id), nothing is lost; the
    webhook that asked for strict FIFO gets all 5,000 in creation order."""
    account = make_user().account_id
    lanes_hook = webhook_to_lanes(account, receiver.url("/random/0-300"), max_in_flight=64)
    fifo_hook = webhook_to_lanes(account, receiver.url("/ok/fifo"), ordering="webhook")
    workers.start(2)
    emit_fleet(account, vehicles=50, per_vehicle=100)
    assert wait_until(lambda: len(receiver.requests_to("/random")) >= 1500, 60), _state()
    holder = drain_holder(lanes_hook.id)
    victim = next(p for p in workers.processes if p.pid == holder)
    workers.kill_hard(victim)
    done = wait_until(lambda: time_passes() and delivered_count() == 10_000, 120, every=1)
    assert done, _state()
    for path, key in (("/random", None), ("/ok/fifo", "webhook")):
        arrivals: dict[str, list[int]] = defaultdict(list)
        ids: dict[tuple[str, int], set[str]] = defaultdict(set)
        for request in receiver.requests_to(path):
            lane = request.headers["fleethook-ordering-key"]
            sequence = int(request.headers["fleethook-sequence"])
            arrivals[lane].append(sequence)
            ids[(lane, sequence)].add(request.headers["webhook-id"])
        expected = {key: 5000} if key else {f"vehicle:{v}": 100 for v in range(1, 51)}
        assert {lane: len(set(seqs)) for lane, seqs in arrivals.items()} == expected
        for lane, sequence in arrivals.items():
            # First arrivals in order; anything else is a repeat of one already seen.
            assert list(dict.fromkeys(sequence)) == sorted(set(sequence)), lane
            assert all(s <= max(sequence[: i + 1]) for i, s in enumerate(sequence)), lane
        assert all(len(webhook_ids) == 1 for webhook_ids in ids.values())
    _ = fifo_hook


def time_passes() -> bool:
    """Retries come due at once (a deadline missed on this busy machine would
    otherwise wait minutes on the schedule), and the sweeper runs."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "pending")
        .values(next_attempt_at=utcnow())
    )
    db.session.commit()
    sweep()
    return True


def webhook_to_lanes(account_id: int, url: str, **settings: object):
    webhook, _ = create_webhook(account_id, {"event_type": "location", "name": "Lanes", "url": url})
    for name, value in settings.items():
        setattr(webhook, name, value)
    if "max_in_flight" in settings:
        webhook.send_window = settings["max_in_flight"]
    db.session.commit()
    return webhook


def emit_fleet(account_id: int, vehicles: int, per_vehicle: int) -> None:
    """A fleet reporting: each round, one event of every vehicle, committed in
    batches as ingest commits them."""
    for n in range(1, per_vehicle + 1):
        events = [
            DetectedEvent(
                EVENT_TYPES["location"],
                utcnow(),
                replace(EXAMPLE_VEHICLE, vehicle_id=v, odometer_mi=float(n)),
            )
            for v in range(1, vehicles + 1)
        ]
        fan_out(events, account_targets(account_id))
        db.session.commit()


def drain_holder(target_id: int) -> int | None:
    """The pid of the worker whose drain holds the target now."""
    for _ in range(100):
        db.session.rollback()
        owner = db.session.get(Target, target_id).drain_owner
        if owner:
            return int(owner.split(":")[1])
        time.sleep(0.05)
    return None


def test_a_flushed_redis_loses_nothing_once_the_sweeper_runs(make_app, receiver, tmp_path):
    private = RedisServer(tmp_path / "redis").start()  # FLUSHALL must not touch a shared Redis
    app = make_app(
        REDIS_URL=private.url,
        FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
        FLEETHOOK_LEASE_SECONDS=6,
        FLEETHOOK_DELIVERY_DEADLINE=2,
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
            emit(account, 200)  # one drain job queued per target, no worker yet
            from core.extensions import redis_client

            redis_client().flushall()  # the queued drains: gone
            pool.start(1)
            time.sleep(3)
            assert delivered_count() == 0, "the flush should have stranded the messages"
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


def test_a_trickling_receiver_costs_a_slot_until_its_deadline_never_the_worker(
    app, receiver, workers
):
    account = make_user().account_id
    trickling, _ = webhook_to(account, receiver.url("/trickle?seconds=30"))
    healthy, _ = webhook_to(account, receiver.url("/slow/20"))
    workers.start(1, worker_queues(NAMESPACE))  # one worker, no retries worker
    emit(account, 20)
    # The healthy webhook's 20 messages go while the trickling answer is still coming.
    assert wait_until(lambda: len(receiver.requests_to("/slow")) == 20, 10), _state()
    healthy_done = time.time()
    assert wait_until(lambda: attempts_of(trickling.id), 10), _state()
    (attempt,) = attempts_of(trickling.id)
    assert attempt.outcome == "failed"
    assert attempt.error == "Timed out after 2 s waiting for an answer"
    assert 2000 <= attempt.duration_ms < 3000, attempt.duration_ms
    first_trickle = receiver.requests_to("/trickle")[0].at
    assert healthy_done < first_trickle + 2, "the healthy webhook waited for the trickle"
