"""The scenarios of bench/run.py that grow the data: the grid's time with many
messages, a worker's memory after a large run, and ingest with many landmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.receiver import Receiver
from bench.stack import Stack, stack, wait_until
from bench.steady import Lost, check_delivered

GROWTH_TARGET = 1.5  # grid p95 and ingest rate, large / small, at most
MEMORY_TARGET = 1.1  # worker RSS after the large run / after the small one, at most


@dataclass
class GridGrowth:
    engine: str
    webhooks: int
    messages_small: int
    messages_large: int
    p95_ms_small: float
    p95_ms_large: float
    ratio: float
    target_met: bool

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"grid p95 {self.p95_ms_small:.0f} ms at {self.messages_small:,} messages, "
            f"{self.p95_ms_large:.0f} ms at {self.messages_large:,}: {self.ratio:.2f}× "
            f"(target {met})"
        )


def _add_messages(system: Stack, target_ids: list[int], first: int, count: int) -> None:
    """`count` delivered messages spread over the targets, in bulk (the grid reads
    the targets' counters, so what matters is only that the rows are there)."""
    from sqlalchemy import insert

    from core.extensions import db
    from core.times import utcnow
    from outbox.models import OutboxMessage

    now = utcnow()
    payload = {"type": "location", "data": {"vehicle": {"id": 1, "name": "Truck", "vin": "X"}}}
    with system.app.app_context():
        chunk = 20_000
        for start in range(first, first + count, chunk):
            rows = [
                {
                    "target_id": target_ids[n % len(target_ids)],
                    "sequence": n // len(target_ids) + 1,
                    "message_id": f"msg_bench{n:012d}",
                    "event_type": "location",
                    "payload": payload,
                    "is_test": False,
                    "status": "delivered",
                    "attempts": 1,
                    "next_attempt_at": now,
                    "created_at": now,
                    "retain_from": now,
                    "finished_at": now,
                }
                for n in range(start, min(start + chunk, first + count))
            ]
            db.session.execute(insert(OutboxMessage), rows)
            db.session.commit()
        db.session.remove()


def _grid_p95_ms(system: Stack, user_id: int, samples: int) -> float:
    """p95 of the grid's polling request (GET /webhooks/ as htmx asks for it)."""
    from accounts.sessions import SESSION_ID_FIELD, create_session_record

    client = system.app.test_client()
    with system.app.app_context():
        session_id = create_session_record(user_id)  # portal sessions live server-side
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True
        session[SESSION_ID_FIELD] = session_id
    timings = []
    for _ in range(samples + 3):
        started = time.perf_counter()
        response = client.get("/webhooks/", headers={"HX-Request": "true"})
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    timings = sorted(timings[3:])  # the first requests warm caches
    return timings[int(0.95 * (len(timings) - 1))]


def grid_growth(
    engine: str,
    postgresql_url: str | None,
    webhooks: int,
    small: int,
    large: int,
    samples: int,
) -> GridGrowth:
    """The grid's polling fragment with `webhooks` webhooks, at `small` and then
    `large` messages in the outbox (target: p95 ratio ≤ 1.5)."""
    from sqlalchemy import select

    from accounts.models import User
    from core.extensions import db

    with stack(engine, postgresql_url) as system:
        made = system.add_webhooks([f"http://127.0.0.1:9/w{n}" for n in range(webhooks)])
        ids = [webhook_id for webhook_id, _ in made]
        with system.app.app_context():
            user_id = db.session.scalar(select(User.id))
            db.session.remove()
        _add_messages(system, ids, 0, small)
        p95_small = _grid_p95_ms(system, user_id, samples)
        _add_messages(system, ids, small, large - small)
        p95_large = _grid_p95_ms(system, user_id, samples)
    ratio = p95_large / p95_small
    return GridGrowth(
        engine,
        webhooks,
        small,
        large,
        round(p95_small, 1),
        round(p95_large, 1),
        round(ratio, 3),
        ratio <= GROWTH_TARGET,
    )


@dataclass
class WorkerMemory:
    engine: str
    webhooks: int
    deliveries_small: int
    deliveries_large: int
    rss_mib_small: float
    rss_mib_large: float
    ratio: float
    target_met: bool
    duplicates: int
    signatures_checked: int

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"worker RSS {self.rss_mib_small:.1f} MiB after {self.deliveries_small:,} "
            f"deliveries, {self.rss_mib_large:.1f} MiB after {self.deliveries_large:,}: "
            f"{self.ratio:.3f}× (target {met})"
        )


def worker_memory(
    engine: str, postgresql_url: str | None, webhooks: int, small: int, large: int
) -> WorkerMemory:
    """One `rq worker` delivers `large` messages (`large / webhooks` events to each
    of `webhooks` webhooks); its resident memory as the receiver counts `small`
    deliveries, and again at `large` (target: ratio ≤ 1.1)."""
    import psutil

    paths = [f"/w{n}" for n in range(webhooks)]
    events = large // webhooks
    with stack(engine, postgresql_url) as system:
        secrets = system.webhooks_at(paths)
        with Receiver(dict.fromkeys(paths, "ok"), secrets) as receiver:
            system.point_webhooks(receiver.url)
            system.ingest(events, batch=500)
            system.start_workers(1)
            worker = psutil.Process(system.workers[0].pid)

            def delivered() -> int:
                return sum(s["unique"] for s in receiver.stats(arrivals=False).values())

            rss = {}
            for count in (small, large):
                if not wait_until(
                    lambda n=count: delivered() >= n,  # type: ignore[misc]
                    timeout=max(120.0, count / 20),
                    poll=0.05,
                ):
                    raise Lost(f"only {delivered()} of {count} deliveries arrived in time")
                rss[count] = worker.memory_info().rss / 2**20
            system.stop_workers()
            duplicates, checked = check_delivered(receiver.stats(arrivals=False), paths, events)
    ratio = rss[large] / rss[small]
    return WorkerMemory(
        engine,
        webhooks,
        small,
        large,
        round(rss[small], 1),
        round(rss[large], 1),
        round(ratio, 3),
        ratio <= MEMORY_TARGET,
        duplicates,
        checked,
    )


@dataclass
class IngestGrowth:
    engine: str
    reports: int
    landmarks_small: int
    landmarks_large: int
    per_second_small: float  # reports/s
    per_second_large: float
    ratio: float  # small / large
    target_met: bool

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"ingest {self.per_second_small:.0f} reports/s with {self.landmarks_small:,} "
            f"landmarks, {self.per_second_large:.0f} with {self.landmarks_large:,}: "
            f"{self.ratio:.2f}× (target {met})"
        )


def ingest_growth(
    engine: str, postgresql_url: str | None, reports: int, small: int, large: int
) -> IngestGrowth:
    """Reports per second through the ingest API with `small` and with `large`
    landmarks (bench/ingest_landmarks.py; target: ratio ≤ 1.5)."""
    from bench.ingest_landmarks import reports_per_second

    rates = {}
    for count in (small, large):
        with stack(engine, postgresql_url) as system:
            rates[count] = reports_per_second(
                system, count, reports, ["location", "landmark_change"]
            )
    ratio = rates[small] / rates[large]
    return IngestGrowth(
        engine,
        reports,
        small,
        large,
        round(rates[small], 1),
        round(rates[large], 1),
        round(ratio, 3),
        ratio <= GROWTH_TARGET,
    )
