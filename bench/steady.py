"""The steady scenarios of bench/run.py: throughput against the ceiling, latency
under a steady load, and isolation from failing endpoints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from bench.receiver import Receiver
from bench.stack import NAMESPACE, Stack, stack, wait_until

# The ingest of the latency scenarios runs in the harness process through the Flask
# test client (the real views, no HTTP server): commit times are taken there.
INGEST = "harness process, Flask test client"
LATENCY_TARGETS_MS = {"p50": 50.0, "p99": 250.0}
ISOLATION_TARGET = 1.2  # healthy p95 with the bad endpoints / without, at most
PRODUCTION_WORKERS = 3  # Stack.start_production_workers: two main, one retries
MAKE_RUN_WORKERS = 2  # Stack.start_make_run_workers: one main (with RQ's scheduler), one retries
WORKER_SETS = {
    "production": "two on the main queues, one on retries, the sweeper",
    "make run": "make run's: one on the main queues, one on retries, the sweeper",
}


class Lost(AssertionError):
    """An event did not reach a receiver, a signature did not verify, a lane's
    messages arrived out of sequence, or an attempt outlasted its deadline."""


@dataclass
class Throughput:
    engine: str
    workers: int
    events: int
    webhooks: int
    deliveries: int
    seconds: float  # first arrival to last
    per_second: float
    ceiling_per_second: float
    ratio: float
    duplicates: int
    signatures_checked: int

    def summary(self) -> str:
        return f"{self.per_second:.0f} deliveries/s, {self.ratio:.2f} of the ceiling"


@dataclass
class Latency:
    """Ingest commit → receiver arrival at a steady offered load, with W = 3 workers
    already running as production runs them (two main, one retries)."""

    engine: str
    workers: int
    webhooks: int
    events: int
    seconds: float  # of offered load
    offered_per_second: float  # asked for
    achieved_per_second: float  # events committed per second
    deliveries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    targets_met: bool  # p50 ≤ 50 ms and p99 ≤ 250 ms
    duplicates: int
    signatures_checked: int
    ingest: str = INGEST

    def summary(self) -> str:
        met = "met" if self.targets_met else "NOT met"
        return (
            f"p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, p99 {self.p99_ms:.0f} ms "
            f"at {self.achieved_per_second:.0f} events/s (targets {met})"
        )


@dataclass
class Isolation:
    """Healthy endpoints' latency with and without a black hole and a failing
    endpoint beside them, at the same offered load, W = 3 (two main, one retries)."""

    engine: str
    workers: int
    healthy_webhooks: int
    events: int  # per variant
    seconds: float  # of offered load, per variant
    offered_per_second: float  # events/s (each goes to every webhook)
    achieved_per_second_without: float
    achieved_per_second_with: float
    healthy_deliveries: int  # per variant
    p50_ms_without: float
    p95_ms_without: float
    p50_ms_with: float
    p95_ms_with: float
    ratio: float  # p95 with / p95 without
    target_met: bool  # ratio ≤ 1.2
    hang_requests: int  # requests the black hole read (and never answered)
    failing_requests: int  # requests answered 500
    duplicates: int
    signatures_checked: int
    ingest: str = INGEST

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"healthy p95 {self.p95_ms_without:.0f} ms without the bad endpoints, "
            f"{self.p95_ms_with:.0f} ms with them: {self.ratio:.2f}× (target {met})"
        )


def check_delivered(stats: dict[str, Any], paths: list[str], expected: int) -> tuple[int, int]:
    """Every path got `expected` distinct webhook-ids and every sampled signature
    verified; returns (duplicates, signatures checked) or raises Lost."""
    duplicates = checked = 0
    for path in paths:
        got = stats[path]
        if got["unique"] != expected:
            raise Lost(f"{path}: {got['unique']} of {expected} events arrived")
        if got["signature_failures"]:
            raise Lost(f"{path}: {got['signature_failures']} signatures failed to verify")
        duplicates += got["duplicates"]
        checked += got["verified"]
    return duplicates, checked


def throughput(
    engine: str,
    workers: int,
    events: int,
    webhooks: int,
    ceiling: float,
    postgresql_url: str | None,
    per_message_jobs: bool = False,
) -> Throughput:
    """N events ingested through the API, fanned out to K webhooks, delivered by W
    `rq worker` processes; deliveries per second from the first arrival to the last."""
    paths = [f"/w{n}" for n in range(webhooks)]
    with stack(engine, postgresql_url) as system:
        secrets = system.webhooks_at(paths)
        with Receiver(dict.fromkeys(paths, "ok"), secrets) as receiver:
            system.point_webhooks(receiver.url)
            if per_message_jobs:
                queue_per_message_jobs(system, events)
            else:
                system.ingest(events)
            system.start_workers(workers)
            expected = events * webhooks
            done = wait_until(
                lambda: (
                    sum(s["unique"] for s in receiver.stats(arrivals=False).values()) >= expected
                ),
                timeout=max(120.0, expected / 20),
            )
            system.stop_workers()
            stats = receiver.stats()
            if not done:
                got = sum(s["unique"] for s in stats.values())
                raise Lost(f"only {got} of {expected} deliveries arrived in time")
            duplicates, checked = check_delivered(stats, paths, events)
            arrivals = [t for s in stats.values() for _, t in s["arrivals"]]
            seconds = max(arrivals) - min(arrivals)
            rate = len(arrivals) / seconds if seconds > 0 else float("inf")
            return Throughput(
                engine,
                workers,
                events,
                webhooks,
                expected,
                round(seconds, 3),
                round(rate, 1),
                round(ceiling, 1),
                round(rate / ceiling, 3),
                duplicates,
                checked,
            )


@dataclass
class _Steady:
    """What one steady-load run measured on its healthy paths."""

    events: int
    achieved_per_second: float
    latencies_ms: list[float]  # sorted, one per healthy delivery
    duplicates: int
    signatures_checked: int
    received: dict[str, int]  # requests per path, healthy or not
    attempt_ms: dict[str, list[int]]  # the recorded attempts' durations, per unhealthy path


def latency(
    engine: str,
    rate: float,
    seconds: float,
    webhooks: int,
    postgresql_url: str | None,
    batch: int = 10,
) -> Latency:
    """`rate` events/s for `seconds`, posted `batch` reports at a time, each to
    `webhooks` Location webhooks; per delivery, ingest commit → receiver arrival."""
    paths = [f"/w{n}" for n in range(webhooks)]
    run = steady_load(engine, dict.fromkeys(paths, "ok"), rate, seconds, batch, postgresql_url)
    p50, p95, p99 = (percentile(run.latencies_ms, p) for p in (50, 95, 99))
    met = p50 <= LATENCY_TARGETS_MS["p50"] and p99 <= LATENCY_TARGETS_MS["p99"]
    return Latency(
        engine,
        PRODUCTION_WORKERS,
        webhooks,
        run.events,
        seconds,
        rate,
        run.achieved_per_second,
        len(run.latencies_ms),
        p50,
        p95,
        p99,
        round(run.latencies_ms[-1], 1),
        met,
        run.duplicates,
        run.signatures_checked,
    )


def isolation(
    engine: str,
    rate: float,
    seconds: float,
    healthy: int,
    postgresql_url: str | None,
    batch: int = 5,
) -> Isolation:
    """The same steady load twice on fresh systems with a short deadline (the
    production workers): to `healthy` endpoints alone, then with a black hole
    ("hang": each attempt ends at the deadline) and an endpoint answering 500
    beside them; the healthy endpoints' p95 latency of the second run over the first."""
    paths = dict.fromkeys((f"/w{n}" for n in range(healthy)), "ok")
    bad = {"/hang": "hang", "/failing": "status:500"}
    alone = steady_load(engine, paths, rate, seconds, batch, postgresql_url, SHORT_TIMEOUTS)
    beside = steady_load(
        engine, {**paths, **bad}, rate, seconds, batch, postgresql_url, SHORT_TIMEOUTS
    )
    p95_alone, p95_beside = (percentile(r.latencies_ms, 95) for r in (alone, beside))
    ratio = p95_beside / p95_alone if p95_alone > 0 else float("inf")
    return Isolation(
        engine,
        PRODUCTION_WORKERS,
        healthy,
        alone.events,
        seconds,
        rate,
        alone.achieved_per_second,
        beside.achieved_per_second,
        len(alone.latencies_ms),
        percentile(alone.latencies_ms, 50),
        p95_alone,
        percentile(beside.latencies_ms, 50),
        p95_beside,
        round(ratio, 3),
        ratio <= ISOLATION_TARGET,
        beside.received.get("/hang", 0),
        beside.received.get("/failing", 0),
        alone.duplicates + beside.duplicates,
        alone.signatures_checked + beside.signatures_checked,
    )


def steady_load(
    engine: str,
    behaviours: dict[str, str],
    rate: float,
    seconds: float,
    batch: int,
    postgresql_url: str | None,
    settings: dict[str, str] | None = None,
    healthy: list[str] | None = None,
    vehicles: int = 1,
    workers: str = "production",
) -> _Steady:
    """A fresh system with one Location webhook per receiver path and its workers
    running (`workers`: a key of WORKER_SETS); reports posted at a steady `rate`,
    report n from vehicle n % `vehicles`; then every event must reach every healthy
    path (default: the "ok" ones) in each vehicle's order (Lost otherwise), and each
    delivery's latency is its first arrival minus its report's commit time (the
    message's `fix_time` names the report)."""
    paths = list(behaviours)
    if healthy is None:
        healthy = [path for path, behaviour in behaviours.items() if behaviour == "ok"]
    with stack(engine, postgresql_url, settings) as system:
        system.add_vehicles(vehicles)
        secrets = system.webhooks_at(paths)
        with Receiver(behaviours, secrets) as receiver:
            system.point_webhooks(receiver.url)
            start_workers(system, workers)
            committed, achieved = _paced_ingest(system, rate, seconds, batch, vehicles)
            expected = len(committed) * len(healthy)
            done = wait_until(
                lambda: (
                    sum(receiver.stats(arrivals=False)[p]["unique"] for p in healthy) >= expected
                ),
                timeout=max(120.0, expected / 20),
            )
            system.stop_workers()
            stats = receiver.stats()
            if not done:
                got = sum(stats[p]["unique"] for p in healthy)
                raise Lost(f"only {got} of {expected} healthy deliveries arrived in time")
            duplicates, checked = check_delivered(stats, healthy, len(committed))
            check_lanes(stats, healthy, min(vehicles, len(committed)), len(committed))
            for path in set(paths) - set(healthy):  # the bad ones' samples verify too
                if stats[path]["signature_failures"]:
                    raise Lost(f"{path}: {stats[path]['signature_failures']} signatures failed")
                if stats[path]["out_of_sequence"]:
                    raise Lost(f"{path}: out of sequence: {stats[path]['order_failures']}")
                checked += stats[path]["verified"]
            attempt_ms = {
                path: _attempt_durations(system, path) for path in set(paths) - set(healthy)
            }
            report_of = report_of_message(system)
            latencies: list[float] = []
            for path in healthy:
                seen: set[str] = set()
                for webhook_id, arrived in stats[path]["arrivals"]:
                    if webhook_id in seen:
                        continue  # a duplicate: the first arrival counts
                    seen.add(webhook_id)
                    if webhook_id not in report_of:
                        raise Lost(f"{path}: webhook-id {webhook_id!r} is no outbox message")
                    latencies.append((arrived - committed[report_of[webhook_id]]) * 1000)
            latencies.sort()
            received = {path: stats[path]["received"] for path in paths}
            return _Steady(
                len(committed), achieved, latencies, duplicates, checked, received, attempt_ms
            )


def start_workers(system: Stack, workers: str) -> None:
    """Start a WORKER_SETS set of workers and wait until RQ knows them all."""
    if workers == "make run":
        system.start_make_run_workers()
        count = MAKE_RUN_WORKERS
    else:
        system.start_production_workers()
        count = PRODUCTION_WORKERS
    if not wait_until(lambda: system.workers_ready() >= count, timeout=60):
        raise RuntimeError("the rq workers did not start")


def check_lanes(stats: dict[str, Any], paths: list[str], lanes: int, messages: int) -> None:
    """At each path, `messages` first arrivals in `lanes` lanes (fleethook-ordering-key),
    each lane's numbered 1, 2, 3, … in arrival order (fleethook-sequence); Lost if not."""
    for path in paths:
        got = stats[path]
        if got["out_of_sequence"]:
            raise Lost(
                f"{path}: {got['out_of_sequence']} messages arrived out of their lane's "
                f"sequence: {'; '.join(got['order_failures'])}"
            )
        if got["lanes"] != lanes or got["in_sequence"] != messages:
            raise Lost(
                f"{path}: {got['in_sequence']} messages in {got['lanes']} lanes arrived "
                f"in sequence; {messages} in {lanes} expected"
            )


def _attempt_durations(system: Stack, path: str) -> list[int]:
    """The recorded attempts' durations (ms) of the webhook at receiver `path`."""
    from sqlalchemy import select

    from core.extensions import db
    from outbox.models import DeliveryAttempt, OutboxMessage
    from webhooks.models import Webhook

    with system.app.app_context():
        durations = db.session.scalars(
            select(DeliveryAttempt.duration_ms)
            .join(OutboxMessage, OutboxMessage.id == DeliveryAttempt.message_id)
            .join(Webhook, Webhook.id == OutboxMessage.target_id)
            .where(Webhook.url.endswith(path))
            .order_by(DeliveryAttempt.duration_ms)
        ).all()
        db.session.remove()
    return [int(d or 0) for d in durations]


def _paced_ingest(
    system: Stack, rate: float, seconds: float, batch: int, vehicles: int = 1
) -> tuple[list[float], float]:
    """Post `batch` reports every `batch / rate` seconds for `seconds`, one request
    at a time, report n from vehicle n % `vehicles`; returns each report's commit
    time (time.time() as its request returns; report n at index n) and the rate
    achieved between the first commit and the last. A loop that falls behind does
    not burst to catch up."""
    client = system.api()
    interval = batch / rate
    committed: list[float] = []
    next_at = time.monotonic()
    for first in range(0, max(batch, round(rate * seconds)), batch):
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        elif now - next_at > interval:
            next_at = now
        system.post_reports(range(first, first + batch), client, vehicles)
        committed.extend([time.time()] * batch)
        next_at += interval
    span = committed[-1] - committed[0]
    achieved = (len(committed) - batch) / span if span > 0 else float("inf")
    return committed, round(achieved, 1)


def percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list, rounded to 0.1."""
    if not sorted_values:
        raise Lost("no deliveries to measure")
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 1)


# A short deadline for the isolation scenarios, so a black hole or a trickle costs
# seconds, not minutes. A webhook attempt ends by FLEETHOOK_DELIVERY_DEADLINE
# (connect, send and the whole answer; outbox/transport.py); the read timeouts
# apply to integrations' serial drains only, and are here because the lease must
# outlast connect + read + 2 s (core/config.py).
DEADLINE_SECONDS = 2.0


SHORT_TIMEOUTS = {
    "FLEETHOOK_CONNECT_TIMEOUT": "1",
    "FLEETHOOK_READ_TIMEOUT": "2",
    "FLEETHOOK_DELIVERY_DEADLINE": f"{DEADLINE_SECONDS:g}",
    "FLEETHOOK_LEASE_SECONDS": "6",
}


def report_of_message(system: Stack) -> dict[str, int]:
    """Every outbox message's webhook-id → the n of the report it came from."""
    from sqlalchemy import select

    from core.extensions import db
    from outbox.models import OutboxMessage

    with system.app.app_context():
        rows = db.session.execute(select(OutboxMessage.message_id, OutboxMessage.payload))
        found = {
            message_id: system.report_second(payload["data"]["fix_time"])
            for message_id, payload in rows
        }
        db.session.remove()
    return found


def queue_per_message_jobs(system: Stack, events: int) -> None:
    """Ingest with the drains' nudges removed, then one RQ job per message."""
    from rq import Queue
    from sqlalchemy import select

    from core.extensions import db, redis_client
    from outbox.models import OutboxMessage

    system.ingest(events)
    with system.app.app_context():
        connection = redis_client()
        queue = Queue(f"{NAMESPACE}:deliveries", connection=connection)
        queue.empty()  # the drains the ingest queued: this baseline sends without them
        ids = list(db.session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))
        for message_id in ids:
            queue.enqueue("bench.jobs.deliver_one", message_id, result_ttl=0)
        db.session.remove()
