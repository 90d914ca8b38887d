"""The kinds of target the outbox serves. `webhooks/` and `integrations/` register
theirs at start-up; the outbox calls them and imports neither."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from outbox.models import OutboxMessage, Target


@dataclass
class Result:
    """What one attempt at one message came to."""

    delivered: bool
    status_code: int | None = None
    duration_ms: int = 0
    # What went wrong in a short sentence (outbox/failures.py), and the technical
    # text beside it: the sentence goes to the grid, both stay on the attempt.
    error: str | None = None
    error_detail: str | None = None
    # Seconds the receiver asked us to wait (Retry-After), if it did.
    retry_after: float | None = None
    # The receiver pushed back (429/502/503/504) or did not answer by the deadline:
    # the target's window of requests in flight is halved.
    throttled: bool = False
    # The receiver says it is gone for good (410): stop the target.
    gone: bool = False
    # The message itself was refused for good (e.g. a provider's 422): it is dead,
    # and the target goes on with the next one.
    permanent: bool = False
    # No request was made: the integration's request budget had no room before the
    # drain's time to send ended (retry_after says when it has). Not an attempt:
    # the message goes back to the queue unchanged and the target waits.
    not_sent: bool = False
    # The provider refused our credentials (401/403): why, in words. The target
    # stops sending until a person fixes them; its messages wait.
    needs_attention: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] | None = None
    response_body: str | None = None


class TargetKind(Protocol):
    """How the outbox treats one kind of target."""

    kind: str
    queue: str  # the queue its drains run on while healthy

    def payload_for(self, target: Target, event: Any) -> dict[str, Any] | None:
        """The message body this target wants for `event`, or None to skip it."""

    def stale_after(self, target: Target, event_type: str) -> timedelta | None:
        """How long a message of `event_type` stays worth sending to this target;
        older, it ends stale instead of being tried again. None: until the
        retention (FLEETHOOK_RETENTION) ends it."""


@runtime_checkable
class ConcurrentKind(TargetKind, Protocol):
    """A kind whose messages the outbox sends itself, many in flight at once
    (outbox/transport.py): it hands over each message ready to send."""

    def deliveries(self, target: Target, messages: Sequence[OutboxMessage]) -> list[Any]:
        """Each message as a transport Delivery, in order; a message that cannot
        be built ends the list as its failed Result."""


@runtime_checkable
class SerialKind(TargetKind, Protocol):
    """A kind that sends a batch of messages in order itself (a provider's API)."""

    def send(
        self, target: Target, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """Send messages in order; stop after the first that is not delivered
        (unless its failure is `permanent`), or
        before starting one once time.monotonic() passes `stop_at` (always send
        at least one). Returns one result per message attempted."""

    def latest_value_types(self, target: Target) -> frozenset[str]:
        """The message types of which only a lane's newest matters to this target."""


_KINDS: dict[str, ConcurrentKind | SerialKind] = {}


def register(kind: ConcurrentKind | SerialKind) -> None:
    _KINDS[kind.kind] = kind


def kind_of(target: Target) -> ConcurrentKind | SerialKind:
    return _KINDS[target.kind]


def send_in_order(
    messages: Sequence[OutboxMessage], stop_at: float, send_one: Callable[[OutboxMessage], Result]
) -> list[Result]:
    """The ordering contract of TargetKind.send for kinds that send one message at a
    time: in order; stop after a failure that is not permanent (later messages wait
    behind it); start no message after `stop_at`, but always send one."""
    results: list[Result] = []
    for message in messages:
        if results and time.monotonic() > stop_at:
            break
        result = send_one(message)
        results.append(result)
        if not (result.delivered or result.permanent):
            break
    return results
