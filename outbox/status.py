"""The status of a target — Active, Failing, Paused, Disabled, Needs attention — and
why. Every change of status goes through this module with a typed `Cause`: people
pausing and resuming, the fan-out's queue cap, the drain's results, an integration
waiting for its release form. Code asks the cause, never the words; the words
(`status_reason`) are for the grid."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from outbox.failures import shorten
from outbox.models import Target, TargetStatus
from outbox.queues import nudge_after_commit
from outbox.registry import Result


class Cause(StrEnum):
    """Why a target is not simply Active."""

    PAUSED_BY_USER = "paused_by_user"
    QUEUE_CAP = "queue_cap"  # Queue Depth passed FLEETHOOK_QUEUE_DEPTH_CAP
    RELEASE_FORM = "release_form"  # an integration waits for its signed release form
    RETRYING = "retrying"  # the last attempt failed; retries go on (Failing)
    ENDPOINT_GONE = "endpoint_gone"  # the receiver answered 410 (Disabled)
    # The receiver or provider refused our settings or credentials, or a setting can
    # never be sent: nothing goes until a person fixes it (Needs attention).
    SETTINGS_REFUSED = "settings_refused"


def _set(target: Target, status: TargetStatus, cause: Cause | None, reason: str | None) -> None:
    target.status = status.value
    target.status_cause = cause.value if cause else None
    target.status_reason = reason


def pause(target: Target) -> None:
    _set(target, TargetStatus.PAUSED, Cause.PAUSED_BY_USER, "Paused by a user")


def hold_for_release(target: Target, reason: str) -> None:
    _set(target, TargetStatus.PAUSED, Cause.RELEASE_FORM, reason)


def pause_at_cap(target: Target, cap: int) -> None:
    _set(
        target,
        TargetStatus.PAUSED,
        Cause.QUEUE_CAP,
        f"Paused automatically: Queue Depth passed {cap:,}. Fix the receiver, then "
        "Resume to deliver the backlog.",
    )


def activate(target: Target) -> None:
    """Active again (Resume, a fixed setting, a signed release form); its backlog is
    nudged once the caller commits."""
    _set(target, TargetStatus.ACTIVE, None, None)
    target.last_failure_at = None
    nudge_after_commit([target])


def is_waiting_for_release(target: Target) -> bool:
    return target.status_cause == Cause.RELEASE_FORM


def needs_fixing(target: Target) -> bool:
    """Whether the engine stopped on a setting a person must fix."""
    return target.status == TargetStatus.NEEDS_ATTENTION


def after_attempts(
    target: Target, last_failure: Result | None, results: Sequence[Result], now: datetime
) -> dict[str, Any]:
    """The status columns the drain writes with a batch of results: the latest
    failure that is not permanent decides (Disabled on 410, Needs attention when a
    setting was refused, else Failing); a batch without one makes a Failing target
    Active again. Paused targets stay paused."""
    changes: dict[str, Any] = {}
    if last_failure is not None:
        changes["last_failure_at"] = now
        if last_failure.gone:
            changes.update(
                status=TargetStatus.DISABLED.value,
                status_cause=Cause.ENDPOINT_GONE.value,
                status_reason="Disabled: the endpoint answered 410 Gone",
            )
        elif last_failure.needs_attention:
            changes.update(
                status=TargetStatus.NEEDS_ATTENTION.value,
                status_cause=Cause.SETTINGS_REFUSED.value,
                status_reason=f"Needs attention: {last_failure.needs_attention}"[:500],
            )
        elif target.status in (TargetStatus.ACTIVE, TargetStatus.FAILING):
            changes.update(
                status=TargetStatus.FAILING.value,
                status_cause=Cause.RETRYING.value,
                status_reason=_retrying(last_failure),
            )
    elif results and target.status == TargetStatus.FAILING:
        changes.update(
            status=TargetStatus.ACTIVE.value,
            status_cause=None,
            status_reason=None,
            last_failure_at=None,
        )
    return changes


def _retrying(result: Result) -> str:
    # A record refused inside a 2xx answer (a provider's per-record status) is told
    # by its own words, not by the answer's code.
    if result.status_code is not None and not 200 <= result.status_code < 300:
        return f"Retrying: the last attempt got HTTP {result.status_code}"
    return shorten(f"Retrying: {result.error or 'the last attempt failed'}", 500)
