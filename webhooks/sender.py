"""The webhook kind of target for the outbox: which events a webhook wants, and
each message as a signed HTTP POST that the outbox's concurrent transport
(outbox/transport.py) sends."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flask import current_app

from core.encryption import mask
from events.catalogue import (
    EVENT_TYPES,
    DetectedEvent,
    SpeedingEvents,
    build_event,
)
from events.redaction import Redaction, redact
from outbox.failures import describe_failure
from outbox.models import Ordering, OutboxMessage, Target
from outbox.queues import DELIVERIES
from outbox.registry import Result
from outbox.transport import Delivery, Signed
from webhooks.areas import has_area, in_area
from webhooks.lifecycle import signing_secrets
from webhooks.models import Webhook
from webhooks.tracks import TRACK_EVENT, add_position, example_feature, is_track
from webhooks.wire import (
    ORDERING_KEY_HEADER,
    SEQUENCE_HEADER,
    ContentType,
    encode_body,
    request_headers,
)

log = logging.getLogger(__name__)

LANDMARK_CROSSINGS = ("landmark_enter", "landmark_leave")


def wanted_payload(webhook: Webhook, event: DetectedEvent) -> dict[str, Any] | None:
    """The body this webhook gets for `event`, or None when it does not want it
    (another type, another vehicle group, outside its area, below its threshold,
    or late when it skips late events). A track webhook's position waits in its
    window: the body is the Feature of a window it closed, if any."""
    key = event.event_type.key
    if webhook.event_type != key and not (
        webhook.event_type == "landmark_change" and key in LANDMARK_CROSSINGS
    ):
        return None
    if webhook.vehicle_group and not event.is_test:
        if event.vehicle.group != webhook.vehicle_group:
            return None
    if has_area(webhook) and not event.is_test and not in_area(webhook, event.vehicle):
        return None
    details = dict(event.details)
    setting = event.event_type.setting
    if setting is not None:
        chosen = getattr(webhook, setting.field)
        if not event.is_test:
            if not setting.reaches(event, chosen or 0):
                return None
            # Speed and posted-speed events carry the value before (previous_mph).
            once = webhook.speeding_events == SpeedingEvents.EPISODE_START
            if once and event.previous_mph is not None and event.previous_mph >= (chosen or 0):
                return None  # the episode goes on: its first report was sent
        details[setting.field] = chosen
    redacted = redact(replace(event, details=details), Redaction.of(webhook))
    body = event_body(webhook.event_type, redacted)
    if webhook.skip_late and body["data"]["late"]:
        return None  # a position from the past: this webhook wants the present only
    if is_track(webhook):
        if event.is_test:
            return example_feature(Redaction.of(webhook), is_test=True)
        return add_position(webhook, redacted)
    if event.is_test:
        body["test"] = True
    return body


def event_body(event_type: str, event: DetectedEvent) -> dict[str, Any]:
    """The body of a webhook of `event_type` for an event it takes, as redacted: a
    landmark_change webhook's events are of its own type."""
    return build_event(
        EVENT_TYPES[event_type],
        event.occurred_at,
        event.vehicle,
        event.details,
        event.received_at,
        current_app.config["FLEETHOOK_LATE_AFTER"],
    )


def delivery_of(webhook: Webhook, message: OutboxMessage, secrets: list[str]) -> Delivery:
    """A message as the transport sends it: its body, encoded once, and its
    headers, signed at the time of each attempt."""
    content_type = ContentType(webhook.content_type)
    body = encode_body(message.payload, content_type)
    custom = None
    if webhook.custom_header_name and webhook.custom_header_value:
        custom = (webhook.custom_header_name, webhook.custom_header_value)
    ordering = ordering_headers(webhook, message)
    # Plain values only: `sign` runs in the transport's thread, where the ORM
    # objects of this thread's session must not be touched.
    message_id = message.message_id

    def sign(timestamp: int) -> Signed:
        headers = request_headers(content_type, message_id, timestamp, body, secrets, custom)
        headers.update(ordering)
        shown = dict(headers)
        if custom is not None:
            shown[custom[0]] = mask(custom[1])
        return Signed(headers, shown)

    return Delivery(webhook.url, body, sign)


def ordering_headers(webhook: Webhook, message: OutboxMessage) -> dict[str, str]:
    """fleethook-ordering-key and fleethook-sequence: the lane a message is ordered
    in and its number there (docs/receiving.md). One lane, the webhook's own, when
    the whole webhook is in order."""
    if webhook.ordering == Ordering.WEBHOOK:
        return {ORDERING_KEY_HEADER: "webhook", SEQUENCE_HEADER: str(message.sequence)}
    return {
        ORDERING_KEY_HEADER: message.ordering_key,
        SEQUENCE_HEADER: str(message.lane_sequence),
    }


class WebhookKind:
    """Registered with the outbox as the kind "webhook": its messages go through
    the concurrent transport."""

    kind = "webhook"
    queue = DELIVERIES

    def stale_after(self, target: Target, event_type: str) -> timedelta | None:
        if target.ttl_minutes is not None:
            return timedelta(minutes=target.ttl_minutes)
        known = EVENT_TYPES.get(event_type)
        return known.ttl if known is not None else None

    def payload_for(self, target: Target, event: Any) -> dict[str, Any] | None:
        if not isinstance(target, Webhook) or not isinstance(event, DetectedEvent):
            return None
        if event.event_type is TRACK_EVENT:  # a closed window, for the webhook it is of
            return dict(event.details["feature"]) if is_track(target) else None
        return wanted_payload(target, event)

    def deliveries(
        self, target: Target, messages: Sequence[OutboxMessage]
    ) -> list[Delivery | Result]:
        """Each message ready to send, in order; a message that cannot even be built
        ends the list as its failed attempt."""
        assert isinstance(target, Webhook)
        built: list[Delivery | Result] = []
        started = time.perf_counter()
        try:
            secrets = signing_secrets(target)
            for message in messages:
                built.append(delivery_of(target, message, secrets))
        except Exception as error:  # recorded, and retried on the schedule
            log.exception("could not build a delivery for webhook %s", target.id)
            failure = describe_failure(error, target.url)
            built.append(
                Result(
                    delivered=False,
                    duration_ms=round((time.perf_counter() - started) * 1000),
                    error=failure.words,
                    error_detail=f"Could not build the request: {failure.detail}",
                )
            )
        return built
