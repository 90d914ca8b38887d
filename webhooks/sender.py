"""The webhook kind of target for the outbox: which events a webhook wants, and
the signed HTTP POSTs that deliver them over the outbound session (outbox/http.py),
with a capped response read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import requests

from encryption import mask
from outbox.http import connection_error_text, elapsed_ms, failed_result, outbound_session
from outbox.models import OutboxMessage, Target
from outbox.queues import DELIVERIES
from outbox.registry import Result, send_in_order
from outbox.schedule import parse_retry_after
from webhooks.events import EVENT_TYPES, DetectedEvent, build_event
from webhooks.lifecycle import signing_secrets
from webhooks.models import Webhook
from webhooks.wire import ContentType, encode_body, request_headers

# What we keep of a response body.
MAX_RESPONSE_BYTES = 4096
# Answers that ask us to slow down; their Retry-After is honoured.
THROTTLING = frozenset({429, 502, 503, 504})
GONE = 410
LANDMARK_CROSSINGS = ("landmark_enter", "landmark_leave")


def wanted_payload(webhook: Webhook, event: DetectedEvent) -> dict[str, Any] | None:
    """The body this webhook gets for `event`, or None when it does not want it
    (another type, or below its threshold)."""
    key = event.event_type.key
    if webhook.event_type != key and not (
        webhook.event_type == "landmark_change" and key in LANDMARK_CROSSINGS
    ):
        return None
    if webhook.vehicle_group and not event.is_test:
        if event.vehicle.group != webhook.vehicle_group:
            return None
    details = dict(event.details)
    if webhook.event_type == "speed" and not event.is_test:
        if (event.vehicle.speed_mph or 0) < (webhook.threshold_mph or 0):
            return None
    if webhook.event_type == "posted_speed" and not event.is_test:
        if details.get("over_limit_mph", 0) < (webhook.threshold_mph or 0):
            return None
    if webhook.event_type == "idle" and not event.is_test:
        before, now = event.idle_window_s or (0.0, 0.0)
        if not before < (webhook.idle_minutes or 0) * 60 <= now:
            return None
    if "threshold_mph" in details:
        details["threshold_mph"] = webhook.threshold_mph
    if "idle_minutes" in details:
        details["idle_minutes"] = webhook.idle_minutes
    body = build_event(EVENT_TYPES[webhook.event_type], event.occurred_at, event.vehicle, details)
    if event.is_test:
        body["test"] = True
    return body


def post(
    session: requests.Session, webhook: Webhook, message: OutboxMessage, secrets: list[str]
) -> Result:
    """One signed attempt at one message."""
    content_type = ContentType(webhook.content_type)
    body = encode_body(message.payload, content_type)
    custom = None
    if webhook.custom_header_name and webhook.custom_header_value:
        custom = (webhook.custom_header_name, webhook.custom_header_value)
    headers = request_headers(
        content_type, message.message_id, int(time.time()), body, secrets, custom
    )
    shown = dict(headers)
    if custom is not None:
        shown[custom[0]] = mask(custom[1])
    started = time.perf_counter()
    try:
        response = session.post(webhook.url, data=body, headers=headers, stream=True)
        try:
            content = next(response.iter_content(MAX_RESPONSE_BYTES), b"")
        finally:
            response.close()
    except requests.Timeout:
        return failed_result(started, shown, "timed out")
    except requests.ConnectionError as error:
        return failed_result(started, shown, connection_error_text(error))
    except requests.RequestException as error:  # the address filter, bad URLs
        return failed_result(started, shown, f"{type(error).__name__}: {error}"[:500])
    status = response.status_code
    return Result(
        delivered=200 <= status < 300,
        status_code=status,
        duration_ms=elapsed_ms(started),
        error=None if 200 <= status < 300 else f"HTTP {status}",
        retry_after=parse_retry_after(response.headers.get("Retry-After"))
        if status in THROTTLING
        else None,
        gone=status == GONE,
        request_headers=shown,
        response_headers={k.lower(): v for k, v in response.headers.items()},
        response_body=content[:MAX_RESPONSE_BYTES].decode("utf-8", "replace"),
    )


class WebhookKind:
    """Registered with the outbox as the kind "webhook"."""

    kind = "webhook"
    queue = DELIVERIES

    def payload_for(self, target: Target, event: Any) -> dict[str, Any] | None:
        if not isinstance(target, Webhook) or not isinstance(event, DetectedEvent):
            return None
        return wanted_payload(target, event)

    def send(
        self, target: Target, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        assert isinstance(target, Webhook)
        secrets = signing_secrets(target)
        session = outbound_session()
        return send_in_order(
            messages, stop_at, lambda message: post(session, target, message, secrets)
        )
