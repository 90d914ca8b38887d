"""The wire format of a webhook POST (DESIGN.md, "Wire format"): the JSON and form
bodies, Standard Webhooks signatures and the request headers. The sender and the
portal's example both call these, so the example is what a receiver gets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode

from core.encryption import mask
from events.catalogue import EventType, build_event, example_detected
from events.redaction import NO_REDACTION, Redaction, redact
from outbox.models import MESSAGE_ID_PREFIX
from webhooks.tracks import example_feature

try:
    USER_AGENT = f"Fleethook-Webhooks/{version('fleethook')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    USER_AGENT = "Fleethook-Webhooks/dev"

# The lane a message is ordered in, and its number there (docs/receiving.md).
ORDERING_KEY_HEADER = "fleethook-ordering-key"
SEQUENCE_HEADER = "fleethook-sequence"

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks allows 24 to 64

# Signs the portal's examples; it signs nothing real and is shown on purpose.
PLACEHOLDER_SECRET = SECRET_PREFIX + base64.b64encode(b"example only; not your secret!!!").decode()

# Headers a webhook's custom header may not replace: ours, or the transport's.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "expect",
        "te",
        "upgrade",
        "trailer",
        "keep-alive",
        ORDERING_KEY_HEADER,
        SEQUENCE_HEADER,
    }
)


class ContentType(StrEnum):
    JSON = "json"
    FORM = "form"

    @property
    def media_type(self) -> str:
        if self is ContentType.JSON:
            return "application/json"
        return "application/x-www-form-urlencoded"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _form_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false, and numbers exactly as JSON writes them


def form_fields(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`type`, `timestamp`, then every leaf of `data` by its dotted path
    (`vehicle.vin`, `temperatures.0.fahrenheit`)."""
    fields = [("type", _form_value(event["type"])), ("timestamp", _form_value(event["timestamp"]))]

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        else:
            fields.append((prefix, _form_value(value)))

    walk("", event["data"])
    return fields


def encode_body(event: Mapping[str, Any], content_type: ContentType) -> bytes:
    """The exact bytes POSTed, and signed."""
    if content_type is ContentType.JSON:
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    return urlencode(form_fields(event)).encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being the
    base64-decoded part of `whsec_…`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def request_headers(
    content_type: ContentType,
    message_id: str,
    timestamp: int,
    body: bytes,
    signing_secrets: Sequence[str],
    custom_header: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The headers of one attempt; one `v1,` signature per secret that still signs
    (two while a rotated-out secret overlaps the new one)."""
    headers = {
        "content-type": content_type.media_type,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(secret, message_id, timestamp, body) for secret in signing_secrets
        ),
        "user-agent": USER_AGENT,
    }
    if custom_header is not None:
        headers[custom_header[0]] = custom_header[1]
    return headers


# The example's message id and attempt time: fixed, so the example is reproducible.
EXAMPLE_MESSAGE_ID = MESSAGE_ID_PREFIX + "2f9c41d07ab35e6a18c0d4b7"
EXAMPLE_ATTEMPT_TIMESTAMP = 1778773329


def example_request(
    event_type: EventType,
    content_type: ContentType,
    setting_value: int | None = None,
    custom_header: tuple[str, str] | None = None,
    redaction: Redaction = NO_REDACTION,
    track: bool = False,
) -> tuple[dict[str, str], bytes]:
    """The headers and body a receiver would get for an example event of this type
    (or, sent as tracks, an example window), redacted as the webhook's `redaction`
    says and signed with the placeholder secret; a custom header's value is
    masked."""
    if track:
        built = example_feature(redaction)
        content_type = ContentType.JSON  # a Feature has no form encoding
    else:
        event = redact(example_detected(event_type, setting_value), redaction)
        built = build_event(
            event_type, event.occurred_at, event.vehicle, event.details, event.received_at
        )
    body = encode_body(built, content_type)
    shown_header = (custom_header[0], mask(custom_header[1])) if custom_header else None
    headers = request_headers(
        content_type,
        EXAMPLE_MESSAGE_ID,
        EXAMPLE_ATTEMPT_TIMESTAMP,
        body,
        [PLACEHOLDER_SECRET],
        shown_header,
    )
    return headers, body
