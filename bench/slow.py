"""The scenarios of bench/run.py with receivers that take their time: many slow
webhooks, one busy webhook with many lanes, and a receiver that trickles its
answer past the deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.receiver import Receiver
from bench.stack import stack, wait_until
from bench.steady import (
    DEADLINE_SECONDS,
    INGEST,
    ISOLATION_TARGET,
    WORKER_SETS,
    Lost,
    check_delivered,
    check_lanes,
    percentile,
    start_workers,
    steady_load,
)

# The latency scenarios of issue 14: figure / limit, at most.
SLOW_TARGET = 1.5  # many webhooks answering in 200 ms; one webhook with many lanes
SLOW_TARGET_WEBHOOKS = 200  # the size the 1.5× target is set for (1,000: reported only)
# An attempt at a trickling receiver ends at the deadline; it may be recorded this
# much later (the transport's loop also runs every other request of the worker).
DEADLINE_SLACK_MS = 1000
PROBE = "/probe"  # a receiver path no webhook uses: the round trip, measured
MAX_REPORTS_PER_REQUEST = 1000  # fleet.reports.MAX_BATCH


@dataclass
class SlowWebhooks:
    """Many webhooks whose receivers answer in `delay_ms`, each getting `messages`
    messages of one vehicle (one lane per webhook), with make run's workers already
    running: from the messages' commit until the receivers answered the last of
    them, beside the limit of one lane's sequential round trips."""

    engine: str
    workers: str
    webhooks: int
    messages: int  # per webhook
    lanes: str  # the lane structure
    delay_ms: int
    round_trip_ms: float  # one POST to a receiver answering in delay_ms, this run
    limit_seconds: float  # messages × round trip
    seconds: float  # commit → the last delivery answered
    ratio: float  # seconds / limit_seconds
    target: float | None  # SLOW_TARGET for SLOW_TARGET_WEBHOOKS webhooks; else reported
    target_met: bool | None
    deliveries: int
    peak_in_flight: int  # requests the receivers held at once, at most
    mean_in_flight: float  # deliveries × delay / seconds
    ingest_seconds: float  # the ingest request up to its commit (fan-out included)
    duplicates: int
    signatures_checked: int

    def summary(self) -> str:
        met = (
            ""
            if self.target is None
            else (f" (target ≤ {self.target}×: {'met' if self.target_met else 'NOT met'})")
        )
        return (
            f"{self.webhooks} webhooks × {self.messages}: {self.seconds:.2f} s from commit "
            f"to the last delivery, limit {self.limit_seconds:.2f} s: {self.ratio:.2f}×{met}; "
            f"peak {self.peak_in_flight} in flight"
        )


@dataclass
class BusyWebhook:
    """One webhook, `vehicles` × `reports` messages (one lane per vehicle), its
    receiver answering in `delay_ms`, `max_in_flight` requests at once, make run's
    workers: from the first commit until the last delivery was answered, beside
    the limit messages × round trip / max_in_flight."""

    engine: str
    workers: str
    vehicles: int
    reports: int  # per vehicle
    delay_ms: int
    max_in_flight: int
    round_trip_ms: float
    limit_seconds: float
    seconds: float  # first commit → the last delivery answered
    seconds_after_last_commit: float  # the last ingest request's commit → the same
    ratio: float
    target: float
    target_met: bool
    deliveries: int
    peak_in_flight: int
    mean_in_flight: float
    ingest_requests: int
    duplicates: int
    signatures_checked: int

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"{self.vehicles} vehicles × {self.reports} to one webhook: {self.seconds:.2f} s, "
            f"limit {self.limit_seconds:.2f} s: {self.ratio:.2f}× (target ≤ {self.target}×: "
            f"{met}); peak {self.peak_in_flight} in flight"
        )


@dataclass
class Trickle:
    """Healthy webhooks' latency alone and beside a receiver that trickles its
    answer (headers, then a byte every 100 ms), make run's workers, a short deadline;
    and the trickling webhook's recorded attempts, each ended at the deadline."""

    engine: str
    workers: str
    healthy_webhooks: int
    healthy_behaviour: str
    vehicles: int
    events: int  # per variant
    seconds: float
    offered_per_second: float
    deadline_ms: int
    achieved_per_second_without: float
    achieved_per_second_with: float
    healthy_deliveries: int  # per variant
    p50_ms_without: float
    p95_ms_without: float
    p50_ms_with: float
    p95_ms_with: float
    ratio: float
    target_met: bool  # ratio ≤ ISOLATION_TARGET
    trickle_requests: int  # requests the trickling receiver read
    trickle_attempts: int  # attempts recorded for its webhook
    attempt_ms_min: int
    attempt_ms_max: int
    duplicates: int
    signatures_checked: int
    ingest: str = INGEST

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        return (
            f"healthy p95 {self.p95_ms_without:.0f} ms alone, {self.p95_ms_with:.0f} ms beside "
            f"the trickle: {self.ratio:.2f}× (target {met}); {self.trickle_attempts} trickled "
            f"attempts took {self.attempt_ms_min}–{self.attempt_ms_max} ms "
            f"(deadline {self.deadline_ms} ms)"
        )


def _round_trip_ms(url: str, posts: int = 5) -> float:
    """One POST's time to `url`, the mean of `posts` in a row on a keep-alive
    connection (opened by one POST before)."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        session.post(url, data=b"{}", timeout=10)
        began = time.perf_counter()
        for _ in range(posts):
            session.post(url, data=b"{}", timeout=10)
        return round((time.perf_counter() - began) / posts * 1000, 1)


def _wait_for_all(receiver: Receiver, paths: list[str], expected: int, timeout: float) -> bool:
    """Whether `expected` distinct messages reached `paths` within `timeout`."""
    wanted = set(paths)
    return wait_until(
        lambda: (
            sum(s["unique"] for p, s in receiver.stats(arrivals=False).items() if p in wanted)
            >= expected
        ),
        timeout=timeout,
        poll=0.1,
    )


def _first_arrivals(stats: dict[str, Any], paths: list[str]) -> list[float]:
    """Each message's first arrival time, over `paths`."""
    firsts: list[float] = []
    for path in paths:
        seen: set[str] = set()
        for webhook_id, arrived in stats[path]["arrivals"]:
            if webhook_id not in seen:
                seen.add(webhook_id)
                firsts.append(arrived)
    return firsts


def _peak_in_flight(stats: dict[str, Any], paths: list[str], hold: float) -> int:
    """The most requests held at once by receivers that answer `hold` seconds
    after a request arrived."""
    times = sorted(t for path in paths for _, t in stats[path]["arrivals"])
    peak = start = 0
    for end, arrived in enumerate(times):
        while times[start] <= arrived - hold:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def slow_webhooks(
    engine: str,
    webhooks: int,
    messages: int,
    delay_ms: int,
    postgresql_url: str | None,
) -> SlowWebhooks:
    """`messages` position reports of one vehicle in one ingest request, to
    `webhooks` Location webhooks whose receivers answer in `delay_ms`: each webhook
    gets one lane of `messages`, so no sender can finish in under `messages` round
    trips; make run's workers are running before the commit."""
    paths = [f"/s{n}" for n in range(webhooks)]
    behaviour = f"slow:{delay_ms}"
    with stack(engine, postgresql_url) as system:
        secrets = system.webhooks_at(paths)
        with Receiver({**dict.fromkeys(paths, behaviour), PROBE: behaviour}, secrets) as receiver:
            system.point_webhooks(receiver.url)
            round_trip = _round_trip_ms(receiver.url + PROBE)
            limit = messages * round_trip / 1000
            start_workers(system, "make run")
            began = time.time()
            with system.commit_times() as commits:
                system.post_reports(range(messages))  # one vehicle: one lane per webhook
            committed = commits[-1]
            expected = webhooks * messages
            wait = max(600.0, 30 * limit)
            done = _wait_for_all(receiver, paths, expected, wait)
            system.stop_workers()
            stats = receiver.stats()
            if not done:
                got = sum(stats[p]["unique"] for p in paths)
                raise Lost(f"only {got} of {expected} deliveries arrived within {wait:.0f} s")
            duplicates, checked = check_delivered(stats, paths, messages)
            check_lanes(stats, paths, 1, messages)
            seconds = max(_first_arrivals(stats, paths)) + delay_ms / 1000 - committed
            peak = _peak_in_flight(stats, paths, delay_ms / 1000)
    target = SLOW_TARGET if webhooks == SLOW_TARGET_WEBHOOKS else None
    ratio = seconds / limit
    return SlowWebhooks(
        engine,
        WORKER_SETS["make run"],
        webhooks,
        messages,
        f"one vehicle's {messages} reports: one lane of {messages} per webhook, "
        f"{webhooks} lanes in all",
        delay_ms,
        round_trip,
        round(limit, 3),
        round(seconds, 3),
        round(ratio, 3),
        target,
        None if target is None else ratio <= target,
        expected,
        peak,
        round(expected * delay_ms / 1000 / seconds, 1),
        round(committed - began, 3),
        duplicates,
        checked,
    )


def busy_webhook(
    engine: str,
    vehicles: int,
    reports: int,
    delay_ms: int,
    max_in_flight: int,
    postgresql_url: str | None,
) -> BusyWebhook:
    """`reports` position reports from each of `vehicles` vehicles, ingested in
    requests of at most 1,000 (report n from vehicle n % vehicles, so every request
    has work for every lane), to one Location webhook allowed `max_in_flight`
    requests at once, whose receiver answers in `delay_ms`; make run's workers."""
    from sqlalchemy import update

    from core.extensions import db
    from outbox.models import Target

    path = "/busy"
    behaviour = f"slow:{delay_ms}"
    total = vehicles * reports
    with stack(engine, postgresql_url) as system:
        system.add_vehicles(vehicles)
        secrets = system.webhooks_at([path])
        with system.app.app_context():
            db.session.execute(
                update(Target).values(max_in_flight=max_in_flight, send_window=max_in_flight)
            )
            db.session.commit()
            db.session.remove()
        with Receiver({path: behaviour, PROBE: behaviour}, secrets) as receiver:
            system.point_webhooks(receiver.url)
            round_trip = _round_trip_ms(receiver.url + PROBE)
            limit = total * round_trip / 1000 / max_in_flight
            start_workers(system, "make run")
            client = system.api()
            commits = []  # each ingest request's commit (its last)
            for first in range(0, total, MAX_REPORTS_PER_REQUEST):
                with system.commit_times() as times:
                    system.post_reports(
                        range(first, min(first + MAX_REPORTS_PER_REQUEST, total)), client, vehicles
                    )
                commits.append(times[-1])
            requests_ = len(commits)
            wait = max(600.0, 10 * limit)
            done = _wait_for_all(receiver, [path], total, wait)
            system.stop_workers()
            stats = receiver.stats()
            if not done:
                raise Lost(
                    f"only {stats[path]['unique']} of {total} deliveries arrived within "
                    f"{wait:.0f} s"
                )
            duplicates, checked = check_delivered(stats, [path], total)
            check_lanes(stats, [path], vehicles, total)
            answered = max(_first_arrivals(stats, [path])) + delay_ms / 1000
            peak = _peak_in_flight(stats, [path], delay_ms / 1000)
    seconds = answered - commits[0]
    ratio = seconds / limit
    return BusyWebhook(
        engine,
        WORKER_SETS["make run"],
        vehicles,
        reports,
        delay_ms,
        max_in_flight,
        round_trip,
        round(limit, 3),
        round(seconds, 3),
        round(answered - commits[-1], 3),
        round(ratio, 3),
        SLOW_TARGET,
        ratio <= SLOW_TARGET,
        total,
        peak,
        round(total * delay_ms / 1000 / seconds, 1),
        requests_,
        duplicates,
        checked,
    )


def trickle(
    engine: str,
    rate: float,
    seconds: float,
    healthy: int,
    vehicles: int,
    postgresql_url: str | None,
    batch: int = 5,
) -> Trickle:
    """The same steady load twice on fresh systems with make run's workers and a
    deadline of DEADLINE_SECONDS: to `healthy` webhooks answering in 50–500 ms
    alone, then with a webhook whose receiver trickles its answer beside them;
    the healthy webhooks' p95 latency of the second run over the first, and the
    trickling webhook's recorded attempts, each of which must have ended at the
    deadline (Lost otherwise)."""
    behaviour = "slow:50-500"
    paths = [f"/h{n}" for n in range(healthy)]
    settings = {"FLEETHOOK_DELIVERY_DEADLINE": f"{DEADLINE_SECONDS:g}"}
    runs = []
    for bad in ({}, {"/trickle": "trickle"}):
        runs.append(
            steady_load(
                engine,
                {**dict.fromkeys(paths, behaviour), **bad},
                rate,
                seconds,
                batch,
                postgresql_url,
                settings,
                healthy=paths,
                vehicles=vehicles,
                workers="make run",
            )
        )
    alone, beside = runs
    durations = beside.attempt_ms["/trickle"]
    deadline_ms = round(DEADLINE_SECONDS * 1000)
    if not durations:
        raise Lost("no attempt at the trickling receiver was recorded")
    if durations[0] < deadline_ms or durations[-1] > deadline_ms + DEADLINE_SLACK_MS:
        raise Lost(
            f"the trickling receiver's attempts took {durations[0]}–{durations[-1]} ms; "
            f"each should end at the deadline, {deadline_ms} ms"
        )
    p95_alone, p95_beside = (percentile(r.latencies_ms, 95) for r in (alone, beside))
    ratio = p95_beside / p95_alone if p95_alone > 0 else float("inf")
    return Trickle(
        engine,
        WORKER_SETS["make run"],
        healthy,
        behaviour,
        vehicles,
        alone.events,
        seconds,
        rate,
        deadline_ms,
        alone.achieved_per_second,
        beside.achieved_per_second,
        len(alone.latencies_ms),
        percentile(alone.latencies_ms, 50),
        p95_alone,
        percentile(beside.latencies_ms, 50),
        p95_beside,
        round(ratio, 3),
        ratio <= ISOLATION_TARGET,
        beside.received["/trickle"],
        len(durations),
        durations[0],
        durations[-1],
        alone.duplicates + beside.duplicates,
        alone.signatures_checked + beside.signatures_checked,
    )
