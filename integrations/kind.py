"""The integration kind of target for the outbox: it hands each event and each
batch of messages to the integration's provider module."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from events.redaction import Redaction, redact
from integrations.models import Integration
from integrations.pacing import sending_until
from integrations.providers import PROVIDERS
from outbox.models import OutboxMessage, Target
from outbox.queues import INTEGRATIONS
from outbox.registry import Result


class IntegrationKind:
    """Registered with the outbox as the kind "integration"."""

    kind = "integration"
    queue = INTEGRATIONS

    def payload_for(self, target: Target, event: Any) -> dict[str, Any] | None:
        if not isinstance(target, Integration) or getattr(event, "is_test", False):
            return None
        # The provider sees the event as the integration's redaction lets it out.
        return PROVIDERS[target.provider].payload_for(target, redact(event, Redaction.of(target)))

    def stale_after(self, target: Target, event_type: str) -> timedelta | None:
        # A provider's record keeps its own date (an odometer reading of 40 minutes
        # ago is still right): only the retention ends its messages.
        return None

    def latest_value_types(self, target: Target) -> frozenset[str]:
        assert isinstance(target, Integration)
        return PROVIDERS[target.provider].latest_value_types

    def send(
        self, target: Target, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        assert isinstance(target, Integration)
        with sending_until(stop_at):
            return PROVIDERS[target.provider].send(target, messages, stop_at)
