"""The drain job. For kinds that hand over ready-to-send deliveries (webhooks), one
RQ job keeps many requests in flight: across the lanes of its target up to the
target's window, and across targets — it takes other targets' queued drain jobs
off its queue while it has room. Requests go through the process's transport
(outbox/transport.py); this thread claims, records and nudges. For kinds that send
a batch themselves (integrations), one job sends one target's messages in order.
Either way every attempt is recorded under its leases (outbox/recording.py), and a
job stops claiming
when its time budget is spent, re-nudging the targets that have work left."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from flask import current_app
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select, update

from core.extensions import db, redis_client, redis_key
from core.times import utcnow
from outbox.claims import (
    Room,
    acquire_drain,
    acquire_drains,
    claim_due_in_lanes,
    claim_lane_runs,
    has_due_messages,
    lease,
    release_drain,
    release_drains,
    release_messages,
)
from outbox.failures import describe_failure
from outbox.feed import keep_for_feed
from outbox.http import read_timeout_cap
from outbox.metrics import record_drain
from outbox.models import (
    HELD,
    Ordering,
    OutboxMessage,
    Target,
)
from outbox.queues import RETRIES, again_key, drain_job_id, nudge, queue_for
from outbox.recording import Outcomes, record_results
from outbox.registry import ConcurrentKind, Result, SerialKind, kind_of
from outbox.transport import Delivery, transport

log = logging.getLogger(__name__)

# Messages a serial drain claims at once: the most any provider takes in one
# request (Salesforce's sObject Collections: 200 records). Messages of one lane
# sent one after another in one slot before the drain claims again (a longer run
# spends less on claims and records per message when few lanes have many).
BATCH_SIZE = 200
RUN_LENGTH = 50
# Seconds a drain job claims for, and after that sends for (its requests then end
# by their deadline: the sweeper, on the same workers, never waits long for one);
# the longest it waits for an answer before looking at its targets.
TIME_BUDGET_SECONDS = 5.0
TICK_SECONDS = 0.05
# How often a drain reads the nudges that asked it to look at a target again.
ASK_SECONDS = 0.2
# How long a finishing drain waits for a finishing job of its target to end, to
# queue the next one.
FOLLOW_UP_PATIENCE = 0.5
# Targets one drain job serves at once, and takes off its queue per look: a few at
# a time, so the other workers on the queue get their share.
MAX_TARGETS = 1000
TAKEN_PER_LOOK = 20
DRAIN_FUNCTION = "outbox.drain.drain_target"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def drain_target(target_id: int) -> dict[str, Any]:
    """RQ job: send the target's due messages (and, for webhooks, other targets'
    while there is room) for a few seconds."""
    target = db.session.get(Target, target_id)
    if target is None:
        return {"target": target_id, "sent": 0}
    if target.pull_only:  # what waited when it became pull-only, or arrived meanwhile
        kept = keep_for_feed(target_id)
        db.session.commit()
        return {"target": target_id, "sent": 0, "kept": kept}
    if isinstance(kind_of(target), ConcurrentKind):
        return ConcurrentDrain(_owner()).run(target_id)
    return _serial_drain(target_id)


@dataclass
class _InFlight:
    """A run of one lane's messages being sent, one after another: one slot of the
    target's window."""

    messages: list[OutboxMessage]
    future: Future[list[Result]]
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Served:
    """A target this drain holds."""

    target_id: int
    in_flight: list[_InFlight] = field(default_factory=list)
    done: list[tuple[list[OutboxMessage], list[Result]]] = field(default_factory=list)
    # Claim again: at the start, after results, or when asked to look again (a
    # claim that found less than it had room for found everything due).
    look: bool = True
    # When it was last claimed for (time.monotonic()): at the process's cap on
    # requests in flight, the targets that waited longest go first.
    claimed_at: float = 0.0
    # Rate limit: when the next message may start (time.monotonic()).
    next_start: float = 0.0
    # The target's window when it was last read: no need to read the target
    # again while that many are in flight.
    window: int = 0
    # When the window was last halved: push-back from requests started before it
    # was already answered by that halving (once per window, as TCP does).
    halved_at: float = 0.0


class ConcurrentDrain:
    """One job's drain of webhook-like targets, many requests in flight. Each turn
    of its loop reads, claims, records and releases for all its targets at once:
    a statement per step, not per target."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.served: dict[int, _Served] = {}
        self.transport = transport()
        config = current_app.config
        self.deadline = float(config["FLEETHOOK_DELIVERY_DEADLINE"])
        self.process_cap = int(config["FLEETHOOK_WORKER_IN_FLIGHT"])
        self.claims_end = time.monotonic() + TIME_BUDGET_SECONDS
        self.asks_read_at = 0.0
        job = get_current_job()
        # Only a job on a queue takes its neighbours' jobs; a direct call drains one.
        self.queue_name = job.origin if job is not None else None

    def run(self, first_target_id: int) -> dict[str, Any]:
        self._serve([first_target_id])
        own = self._own_target()
        attempted = 0
        while self.served:
            more_queued = False
            if time.monotonic() < self.claims_end:
                more_queued = self._take_queued_targets()
                self._look_when_asked(own)
            self._claim()
            # While jobs wait on the queue, take them before waiting for answers.
            tick = 0.0 if more_queued else TICK_SECONDS
            futures = [lane.future for s in self.served.values() for lane in s.in_flight]
            if futures:
                wait(futures, timeout=tick, return_when=FIRST_COMPLETED)
            elif any(s.look for s in self.served.values()):
                time.sleep(tick)  # a rate-limited target waits for its next start
            for served in self.served.values():
                self._collect(served)
            attempted += self._record()
            self._finish()
        return {"target": first_target_id, "sent": attempted}

    def _in_flight(self) -> int:
        return sum(len(s.in_flight) for s in self.served.values())

    def _serve(self, target_ids: list[int]) -> None:
        """Serve these targets too; one already served is looked at again."""
        wanted = []
        for target_id in dict.fromkeys(target_ids):
            if target_id in self.served:
                self.served[target_id].look = True
            else:
                wanted.append(target_id)
        for target_id in _take_drains(wanted, self.owner):
            self.served[target_id] = _Served(target_id)

    def _look_when_asked(self, own: int | None) -> None:
        """Look again at the targets a nudge asked about: a nudge finding this job
        started (for its own target), or another drain finding a target held here,
        leaves the ask under the target's again_key. Read every ASK_SECONDS, in one
        round trip."""
        if time.monotonic() < self.asks_read_at + ASK_SECONDS:
            return
        self.asks_read_at = time.monotonic()
        quiet = [t for t, s in self.served.items() if not s.look]
        if own is not None and own not in self.served:
            quiet.append(own)  # its job serves others now; a nudge serves it again
        if not quiet:
            return
        pipeline = redis_client().pipeline(transaction=False)
        for target_id in quiet:
            pipeline.getdel(again_key(target_id))
        asked = [t for t, ask in zip(quiet, pipeline.execute(), strict=True) if ask]
        if asked:
            self._serve(asked)

    def _take_queued_targets(self) -> bool:
        """Take the drain jobs waiting on this job's queue while there is room: their
        targets are served here, alongside, instead of one job after another.
        Whether more may be waiting."""
        if self.queue_name is None:
            return False
        if len(self.served) >= MAX_TARGETS or self._in_flight() >= self.process_cap:
            return False
        rq_queue = Queue(self.queue_name, connection=redis_client())
        taken: list[int] = []
        more = False
        for _ in range(min(TAKEN_PER_LOOK, MAX_TARGETS - len(self.served))):
            # Queue.pop_job_id() fails on an empty queue (rq 3.0): pop it here.
            popped = redis_client().lpop(rq_queue.key)
            if popped is None:
                break
            job_id = popped.decode() if isinstance(popped, bytes) else str(popped)
            try:
                job = Job.fetch(job_id, connection=redis_client())
            except NoSuchJobError:
                continue
            if job.func_name != DRAIN_FUNCTION:
                rq_queue.push_job_id(job_id, at_front=True)
                break
            taken.append(int(job.args[0]))
            job.delete(remove_from_queue=False)
        else:
            more = True
        if taken:
            self._serve(taken)
        return more

    def _claim(self) -> None:
        """Claim for every target that has room in its window, in one transaction."""
        looking = [s for s in self.served.values() if s.look]
        if not looking:
            return
        if time.monotonic() >= self.claims_end:
            for served in looking:
                served.look = False  # the job's budget is spent: finish what is in flight
            return
        looking = [
            s
            for s in looking
            # A full window is looked at again when a request ends; a rate-limited
            # target next tick.
            if not (s.window and len(s.in_flight) >= s.window) and s.next_start <= time.monotonic()
        ]
        if not looking:
            return
        looking.sort(key=lambda s: s.claimed_at)
        targets = _load_targets([s.target_id for s in looking])
        now = utcnow()
        spare = self.process_cap - self._in_flight()
        rooms: dict[int, Room] = {}
        for served in looking:
            target = targets.get(served.target_id)
            if target is None or target.status in HELD or target.pull_only:
                served.look = False
                continue
            if target.throttled_until is not None and target.throttled_until > now:
                served.look = False  # the sweeper nudges it again once the pause is over
                continue
            window = served.window = max(1, min(target.send_window, target.max_in_flight))
            lanes = min(window - len(served.in_flight), spare)
            # A rate-limited target: one message a slot, started no faster than the limit.
            run_length = 1 if target.rate_limit else RUN_LENGTH
            if target.rate_limit:
                lanes = min(lanes, 1)
            if lanes > 0:
                rooms[target.id] = Room(target, lanes, run_length)
        if not rooms:
            db.session.rollback()
            return
        held = acquire_drains({t: len(self.served[t].in_flight) for t in rooms}, self.owner, now)
        claimed = claim_lane_runs([r for t, r in rooms.items() if t in held], self.owner, now)
        # Each room may take the process's whole spare (most targets claim far less
        # than their window); runs past it go back.
        over: list[int] = []
        cut: set[int] = set()
        for target_id, runs in claimed.items():
            kept = runs[: max(0, spare)]
            if len(kept) < len(runs):
                over += [m.id for run in runs[len(kept) :] for m in run]
                cut.add(target_id)
            claimed[target_id] = kept
            spare -= len(kept)
        release_messages(over, self.owner)
        # Start no request the lease would not outlast, nor after the job's time to
        # send is over (what a run did not send goes back to the queue).
        stop_at = min(
            time.monotonic() + lease().total_seconds() - self.deadline - 1,
            self.claims_end + TIME_BUDGET_SECONDS,
        )
        for target_id, room in rooms.items():
            served = self.served[target_id]
            served.claimed_at = time.monotonic()
            runs = claimed.get(target_id, [])
            # Less than it had room for is everything due now: look again after a
            # result, or when a nudge asks. One cut at the cap looks again at once.
            served.look = len(runs) >= room.lanes or target_id in cut
            if not runs:
                continue
            if room.target.rate_limit:
                served.next_start = time.monotonic() + 1.0 / room.target.rate_limit
            self._start(served, room.target, runs, stop_at)
            served.look = served.look and len(served.in_flight) < served.window

    def _start(
        self, served: _Served, target: Target, runs: list[list[OutboxMessage]], stop_at: float
    ) -> None:
        kind = kind_of(target)
        assert isinstance(kind, ConcurrentKind)
        for run in runs:
            prepared: list[Delivery | Result] = kind.deliveries(target, run)
            ready: list[Delivery] = []
            for item in prepared:
                if not isinstance(item, Delivery):
                    break
                ready.append(item)
            if not ready:
                # The first message could not even be built: that is its attempt.
                failed = prepared[0]
                assert isinstance(failed, Result)
                served.done.append((run[:1], [failed]))
                release_messages([m.id for m in run[1:]], self.owner)
                continue
            future = self.transport.send_run(ready, self.deadline, stop_at)
            served.in_flight.append(_InFlight(run[: len(ready)], future))
            release_messages([m.id for m in run[len(ready) :]], self.owner)

    def _collect(self, served: _Served) -> None:
        still = []
        for lane in served.in_flight:
            if lane.future.done():
                results = lane.future.result()
                if lane.started < served.halved_at:
                    results = [replace(result, throttled=False) for result in results]
                elif any(result.throttled for result in results):
                    served.halved_at = time.monotonic()
                served.done.append((lane.messages, results))
                release_messages([m.id for m in lane.messages[len(results) :]], self.owner)
            else:
                still.append(lane)
        served.in_flight = still

    def _record(self) -> int:
        """Record every finished request's results, in one transaction."""
        finished = [s for s in self.served.values() if s.done]
        if not finished:
            return 0
        targets = _load_targets([s.target_id for s in finished])
        outcomes = []
        for served in finished:
            target = targets.get(served.target_id)
            done, served.done = served.done, []
            if target is None:
                served.in_flight, served.look = [], False
                continue
            messages = [m for batch, results in done for m in batch[: len(results)]]
            results = [r for _, batch_results in done for r in batch_results]
            outcomes.append(Outcomes(target, messages, results))
            served.look = True
        acquire_drains(
            {o.target.id: len(self.served[o.target.id].in_flight) for o in outcomes},
            self.owner,
            utcnow(),
        )
        record_results(self.owner, outcomes)
        return sum(len(o.results) for o in outcomes)

    def _finish(self) -> None:
        """Let go of the targets with nothing in flight and nothing to claim."""
        ended = [t for t, s in self.served.items() if not s.in_flight and not s.look]
        if not ended:
            return
        for target_id in ended:
            del self.served[target_id]
        release_drains(ended, self.owner)
        own = self._own_target()
        for target_id in ended:
            _follow_up(target_id, own_job=target_id == own)

    def _own_target(self) -> int | None:
        job = get_current_job()
        if job is None or job.func_name != DRAIN_FUNCTION:
            return None
        return int(job.args[0])


def _load_targets(target_ids: list[int]) -> dict[int, Target]:
    """These targets as they are now, in one query."""
    return {
        target.id: target
        for target in db.session.scalars(
            select(Target)
            .where(Target.id.in_(target_ids))
            .execution_options(populate_existing=True)
        )
    }


def _take_drains(target_ids: list[int], owner: str) -> list[int]:
    """Take the targets' drain leases; when another drain holds one, ask that one
    to look again before it stops (for what this nudge was about)."""
    if not target_ids:
        return []
    held = acquire_drains(dict.fromkeys(target_ids, 0), owner, utcnow())
    db.session.commit()
    for target_id in target_ids:
        if target_id in held:
            record_drain()
        else:
            redis_client().set(again_key(target_id), 1, ex=int(lease().total_seconds()) * 3)
    return [t for t in target_ids if t in held]


def _serial_drain(target_id: int) -> dict[str, Any]:
    """One target's due messages, sent in batches by its kind, for a few seconds.
    Each vehicle's messages go in order; a message waiting for its retry holds back
    only its own vehicle's (claim_due_in_lanes)."""
    owner = _owner()
    if not _take_drains([target_id], owner):
        return {"target": target_id, "sent": 0, "skipped": "another drain holds the target"}
    attempted = 0
    budget_ends = time.monotonic() + TIME_BUDGET_SECONDS
    try:
        while time.monotonic() < budget_ends:
            target = db.session.get(Target, target_id, populate_existing=True)
            if target is None or target.status in HELD:
                break
            kind = kind_of(target)
            assert isinstance(kind, SerialKind)
            claimed_at = time.monotonic()
            batch = claim_due_in_lanes(
                target_id, owner, utcnow(), BATCH_SIZE, kind.latest_value_types(target)
            )
            if not batch:
                if redis_client().getdel(again_key(target_id)):
                    continue
                break
            # Start no request the lease would not outlast (core/config.py keeps the lease
            # longer than the slowest request).
            slowest = (
                current_app.config["FLEETHOOK_CONNECT_TIMEOUT"]
                + current_app.config["FLEETHOOK_READ_TIMEOUT"]
            )
            stop_at = min(budget_ends, claimed_at + lease().total_seconds() - slowest - 1)
            with _patience():
                results = _send_serially(target, batch, stop_at)
            # Requests the budget had no room for were never made: not attempts.
            sent = len(results)
            while sent and results[sent - 1].not_sent:
                sent -= 1
            acquire_drain(target_id, owner, utcnow())  # renew, committed with the results
            if sent < len(results):
                _wait_for_budget(target, results[-1])
            record_results(owner, [Outcomes(target, batch[:sent], results[:sent])])
            release_messages([m.id for m in batch[sent:]], owner)
            attempted += sent
            if sent < len(results) or (sent and _target_wide(results[sent - 1])):
                break  # the provider, not one message, must wait
            everything = sent == len(batch) < BATCH_SIZE
            if everything and not redis_client().getdel(again_key(target_id)):
                # Everything due was in this batch and sent, and no nudge came
                # since: no need to claim again to learn that nothing is left.
                break
    finally:
        release_drain(target_id, owner)
    _follow_up(target_id, own_job=True)
    return {"target": target_id, "sent": attempted}


def _target_wide(result: Result) -> bool:
    """A failure of the provider rather than of one message: no answer, a server
    error, a push-back or refused credentials. Other vehicles' messages wait too."""
    if result.delivered or result.permanent:
        return False
    return (
        result.status_code is None
        or result.status_code >= 500
        or result.throttled
        or result.retry_after is not None
        or result.needs_attention is not None
    )


def _wait_for_budget(target: Target, result: Result) -> None:
    """The request budget is spent: nothing goes to the target before it has room
    again (the sweeper nudges it then). Committed with the results."""
    wait = result.retry_after or 1.0
    db.session.execute(
        update(Target)
        .where(Target.id == target.id)
        .values(throttled_until=utcnow() + timedelta(seconds=wait))
        .execution_options(synchronize_session=False)
    )


def _send_serially(target: Target, batch: Sequence[OutboxMessage], stop_at: float) -> list[Result]:
    """The kind's send; an exception in it is the head's failed attempt, not a
    drain that dies with its messages claimed and nothing recorded."""
    started = time.perf_counter()
    kind = kind_of(target)
    assert isinstance(kind, SerialKind)
    try:
        return kind.send(target, batch, stop_at)
    except Exception as error:
        log.exception("sending to target %s failed unexpectedly", target.id)
        db.session.rollback()
        failure = describe_failure(error)
        return [
            Result(
                delivered=False,
                duration_ms=round((time.perf_counter() - started) * 1000),
                error=failure.words,
                error_detail=failure.detail,
            )
        ]


def _patience() -> AbstractContextManager[None]:
    """On the main queues a serial drain waits FLEETHOOK_MAIN_READ_TIMEOUT at most
    for an answer: a provider that never answers costs a main worker that long
    once, then its target drains from the retries queue (it failed lately), where
    drains wait the full FLEETHOOK_READ_TIMEOUT on workers of their own."""
    job = get_current_job()
    if job is None or job.origin == redis_key(RETRIES):
        return nullcontext()
    return read_timeout_cap(current_app.config["FLEETHOOK_MAIN_READ_TIMEOUT"])


def _follow_up(target_id: int, own_job: bool) -> None:
    """Nudge again when work is left or arrived meanwhile. For the job's own target
    under the other of its two job ids (this job's id exists until it ends); a
    target taken from the queue had its job deleted, so its first id is free."""
    target = db.session.get(Target, target_id, populate_existing=True)
    now = utcnow()
    if target is None or target.status in HELD or target.pull_only:
        db.session.rollback()
        return
    if target.throttled_until is not None and target.throttled_until > now:
        db.session.rollback()
        return  # the receiver asked for a pause; the sweeper nudges it after
    asked_again = redis_client().getdel(again_key(target_id))
    # Kinds that send a batch themselves keep each vehicle's order, whatever the
    # target's ordering setting says.
    ordering = None if isinstance(kind_of(target), ConcurrentKind) else Ordering.VEHICLE
    if asked_again or has_due_messages(target, now, ordering):
        db.session.rollback()
        # Another drain that took the target since this one let go sends it; it reads
        # the ask after it lets go in turn (the ask is set before the lease is read,
        # so that drain cannot have read the asks already). Two jobs of the target
        # finishing at once must not each wait for the other to end.
        follow_up = False
        if own_job:
            job = get_current_job()
            i_am_follow_up = job is not None and job.id == drain_job_id(target_id, follow_up=True)
            follow_up = not i_am_follow_up
        # A job under that id may be running on another worker: asked to look again
        # (nudge), it sends the work if it takes the target; if it is finishing, past
        # its last look, wait a moment for it to end and queue one then (the sweeper
        # replaces leftovers). Never wait for a job that took the target: it reads
        # the ask after it lets go — and it may be waiting for this job to end.
        gives_up = time.monotonic() + FOLLOW_UP_PATIENCE
        while not nudge(target_id, queue_for(target), follow_up=follow_up):
            if _held_by_another_drain(target_id) or time.monotonic() > gives_up:
                break
            time.sleep(0.01)
    db.session.rollback()


def _held_by_another_drain(target_id: int) -> bool:
    owner, expires_at = db.session.execute(
        select(Target.drain_owner, Target.drain_expires_at).where(Target.id == target_id)
    ).one()
    db.session.rollback()
    return owner is not None and expires_at is not None and expires_at > utcnow()
