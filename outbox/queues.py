"""Queues and nudges: after a commit, one drain job per affected target, with a
deterministic job id, on the queue its health calls for."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from flask import current_app
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.extensions import db, queue, redis_client, redis_key
from core.times import utcnow
from outbox.models import Target
from outbox.registry import kind_of

log = logging.getLogger(__name__)

DELIVERIES = "deliveries"  # drains of healthy webhooks
INTEGRATIONS = "integrations"  # drains of integrations
RETRIES = "retries"  # drains of targets that failed lately, on workers of their own
MAINTENANCE = "maintenance"  # the sweeper and other housekeeping

# A target that failed this recently drains from RETRIES, so its timeouts cannot
# hold the workers healthy targets need.
RECENT_FAILURE = timedelta(minutes=10)
# An RQ job may run this long: the drain budget plus one slow request, with room.
DRAIN_JOB_TIMEOUT = 180

_PENDING = "fleethook.nudges"
_WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def drain_job_id(target_id: int, follow_up: bool = False) -> str:
    """The target's drain job id (RQ allows letters, digits, - and _ only)."""
    name = "-".join([current_app.config["FLEETHOOK_REDIS_NAMESPACE"], "drain", str(target_id)])
    return re.sub(r"[^A-Za-z0-9_-]", "_", name + ("-next" if follow_up else ""))


def queue_for(target: Target) -> str:
    failed = target.last_failure_at
    if failed is not None and utcnow() - failed < RECENT_FAILURE:
        return RETRIES
    return kind_of(target).queue


def nudge_after_commit(targets: list[Target]) -> None:
    """Nudge these targets once the current transaction commits (never before:
    a drain must find the messages)."""
    pending = db.session.info.setdefault(_PENDING, {})
    for target in targets:
        pending[target.id] = queue_for(target)


def nudge(
    target_id: int,
    queue_name: str,
    follow_up: bool = False,
    replace_stale: bool = False,
    drain_died: bool = False,
) -> bool:
    """Enqueue a drain of this target unless one is queued already; if one is
    running, ask it to look again before it stops. Whether a job is queued now
    (False: one is running, and has been asked).

    `replace_stale` is for the sweeper, which calls it only for targets no drain
    holds: a job under the target's id that is neither waiting nor running is a
    leftover, replaced; a started one only when `drain_died` — the target's drain
    lease ran out while held, so its worker died mid-drain (RQ notices dead
    workers only every 10 minutes). Replacing a finishing job would delete it
    under its worker."""
    job_id = drain_job_id(target_id, follow_up)
    for _ in range(100):  # each round either returns or follows a change
        try:
            queue(queue_name).enqueue(
                "outbox.drain.drain_target",
                target_id,
                job_id=job_id,
                unique=True,
                result_ttl=0,
                failure_ttl=300,
                job_timeout=DRAIN_JOB_TIMEOUT,
            )
            return True
        except DuplicateJobError:
            try:
                existing = Job.fetch(job_id, connection=redis_client())
            except NoSuchJobError:
                continue  # it ended just now
            status = existing.get_status(refresh=False)
            if status in _WAITING:
                return True
            if (status == JobStatus.STARTED and not drain_died) or not replace_stale:
                break
            existing.delete()
    redis_client().set(again_key(target_id), 1, ex=DRAIN_JOB_TIMEOUT)
    return False


def again_key(target_id: int) -> str:
    return redis_key("drain-again", str(target_id))


@event.listens_for(Session, "after_commit")
def _nudge_committed(session: Session) -> None:
    # No SQL here: the transaction is over. The queues were chosen before commit.
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    try:
        for target_id, queue_name in sorted(pending.items()):
            nudge(target_id, queue_name)
    except Exception:  # Redis down: the sweeper finds the messages in the database
        log.warning("could not nudge targets %s; the sweeper will", sorted(pending), exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_nudges(session: Session) -> None:
    session.info.pop(_PENDING, None)
