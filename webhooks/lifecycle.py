"""Creating, changing, pausing, resuming, re-keying and deleting webhooks. Every
rule about a webhook's fields lives in `clean_fields`, which the portal's forms and
the API both call; each change adds its audit event; callers commit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select

from accounts.audit import HIDDEN, record
from accounts.quotas import check_room
from core.contract import check_fields
from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from events.catalogue import (
    EVENT_TYPES,
    EXAMPLE_VEHICLE,
    SPEEDING_EVENT_TYPES,
    DetectedEvent,
    EventType,
    SpeedingEvents,
    example_event,
)
from events.redaction import path_problems
from outbox.fanout import fan_out
from outbox.feed import keep_for_feed
from outbox.models import OutboxMessage, TargetStatus
from outbox.status import activate, needs_fixing, pause
from webhooks.areas import clean_area
from webhooks.models import Webhook
from webhooks.schemas import (
    LATEST_WINS_EVENT_TYPES,
    SKIP_LATE_EVENT_TYPES,
    WebhookChange,
    WebhookCreate,
)
from webhooks.tracks import TRACK_EVENT_TYPES, close_all_windows
from webhooks.url_safety import Resolver, resolve_host, url_problems
from webhooks.wire import RESERVED_HEADERS, ContentType, new_secret

# What the API shows of the engine's state; nobody sets them.
READ_ONLY_FIELDS = ("in_flight", "window", "throttled_until")
# How long a rotated-out secret keeps signing beside the new one.
SECRET_OVERLAP = timedelta(hours=24)
# What a webhook's URL may change without its custom header going: the origin.
DEFAULT_PORTS = {"http": 80, "https": 443}
HEADER_CLEARED = (
    "The URL now points at another host, so its custom header was removed: the value "
    "was a credential for the old host. Re-enter it if the new host needs it."
)


def _resolver() -> Resolver:
    # Tests put a stub resolver here; nothing else should.
    resolver: Resolver = current_app.config.get("FLEETHOOK_RESOLVER") or resolve_host
    return resolver


def _url_problems(url: str) -> list[str]:
    allow_local = current_app.config["FLEETHOOK_ALLOW_LOCAL_NETWORK"]
    allowed = current_app.config["FLEETHOOK_ALLOWED_NETWORKS"]
    return url_problems(url, allow_local, _resolver(), allowed)


def _setting_problems(event_type: EventType, name: str, value: int) -> list[str]:
    setting = event_type.setting
    if setting is None or setting.field != name:
        takers = [e.key for e in EVENT_TYPES.values() if e.setting and e.setting.field == name]
        return [f"Only {' and '.join(takers)} webhooks take this setting."]
    if not setting.minimum <= value <= setting.maximum:
        return [f"Between {setting.minimum} and {setting.maximum} {setting.unit}."]
    return []


def _contact_email(value: str | None) -> tuple[str | None, list[str]]:
    if not value:
        return None, []
    try:
        validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        return None, [str(error)]
    return value.strip().lower(), []


def _header_problems(header: Mapping[str, str]) -> dict[str, list[str]]:
    if header["name"].lower() in RESERVED_HEADERS:
        return {"custom_header.name": [f"{header['name']} is set by Fleethook; choose another."]}
    problem = header_value_problem(header["value"])
    return {"custom_header.value": [problem]} if problem else {}


def header_value_problem(value: str) -> str | None:
    """Why HTTP cannot carry this header value, or None. A field value is visible
    ASCII, spaces and Latin-1 (RFC 9110, section 5.5), which is also all the
    sender encodes; anything else could never be sent."""
    for char in value:
        code = ord(char)
        if code < 32 or 127 <= code < 160:
            return "No line breaks or control characters."
        if code > 255:
            return f"Use plain ASCII text; {char} cannot be sent in an HTTP header."
    return None


def _joined_problems(event_type: EventType, cleaned: Mapping[str, Any]) -> dict[str, list[str]]:
    """The rules that join a field to the webhook's event type."""
    errors: dict[str, list[str]] = {}
    for name in ("threshold_mph", "idle_minutes"):
        setting = event_type.setting
        applies = setting is not None and setting.field == name
        if name not in cleaned or (cleaned[name] is None and not applies):
            continue
        if cleaned[name] is None and setting is not None:
            errors[name] = [f"A whole number of {setting.unit}."]
        else:
            problems = _setting_problems(event_type, name, cleaned[name])
            if problems:
                errors[name] = problems
    if cleaned.get("latest_wins") and event_type.key not in LATEST_WINS_EVENT_TYPES:
        errors["latest_wins"] = [
            f"Only {' and '.join(LATEST_WINS_EVENT_TYPES)} webhooks may drop older "
            "messages; every other event must arrive."
        ]
    if cleaned.get("skip_late") and event_type.key not in SKIP_LATE_EVENT_TYPES:
        errors["skip_late"] = [
            f"Only {' and '.join(SKIP_LATE_EVENT_TYPES)} webhooks skip late events; every "
            'other event arrives, late or not, marked "late": true.'
        ]
    if cleaned.get("track") and event_type.key not in TRACK_EVENT_TYPES:
        errors["track"] = [f"Only {' and '.join(TRACK_EVENT_TYPES)} webhooks send tracks."]
    problems = path_problems(cleaned.get("drop_fields", ()), [event_type])
    if problems:
        errors["drop_fields"] = problems
    speeding = cleaned.get("speeding_events", SpeedingEvents.EVERY_REPORT)
    if speeding != SpeedingEvents.EVERY_REPORT and event_type.key not in SPEEDING_EVENT_TYPES:
        errors["speeding_events"] = [
            f"Only {' and '.join(SPEEDING_EVENT_TYPES)} webhooks have speeding episodes."
        ]
    return errors


def _track_problems(cleaned: Mapping[str, Any], current: Webhook | None) -> dict[str, list[str]]:
    """A track is GeoJSON, sent whole: JSON only, and none of it may be dropped."""
    tracks = cleaned["track"] if "track" in cleaned else (current and current.track_points)
    if not tracks:
        return {}
    content_type = cleaned.get("content_type") or (current and current.content_type)
    latest_wins = (
        cleaned["latest_wins"]
        if "latest_wins" in cleaned
        else (current is not None and current.latest_wins)
    )
    errors = {}
    if content_type == ContentType.FORM:
        errors["content_type"] = ["A track is a GeoJSON Feature: choose json."]
    if latest_wins:
        errors["latest_wins"] = [
            "A track's windows are parts of one path: none may be dropped for a newer one."
        ]
    return errors


def clean_fields(
    account_id: int, values: Mapping[str, Any], current: Webhook | None = None
) -> dict[str, Any]:
    """Check fields for a new webhook of the account (`current` None: event_type,
    name and url are required; webhooks/schemas.WebhookCreate) or for a change
    (only the fields given; WebhookChange). Returns the cleaned fields, as the
    webhook's columns; raises ValidationError naming every bad field."""
    shape = WebhookCreate if current is None else WebhookChange
    cleaned, errors = check_fields(shape, values, unknown="Not a webhook field.")
    for name in set(READ_ONLY_FIELDS) & set(errors):
        errors[name] = ["Set by Fleethook as it sends; read-only."]

    if current is not None:
        event_type: EventType | None = EVENT_TYPES[current.event_type]
        if cleaned.pop("event_type", current.event_type) != current.event_type:
            errors["event_type"] = [
                "A webhook keeps its event type; create another webhook for another type."
            ]
    else:
        event_type = EVENT_TYPES.get(cleaned.get("event_type", ""))
        cleaned.setdefault("content_type", ContentType.JSON.value)
        setting = event_type.setting if event_type else None
        if setting is not None and setting.field not in values:
            cleaned[setting.field] = setting.default
    if "url" in cleaned:
        problems = _url_problems(cleaned["url"])
        if problems:
            errors["url"] = problems
    if event_type is not None:
        errors.update(_joined_problems(event_type, cleaned))
    if "contact_email" in cleaned:
        cleaned["contact_email"], problems = _contact_email(cleaned["contact_email"])
        if problems:
            errors["contact_email"] = problems
    if "vehicle_group" in cleaned:
        cleaned["vehicle_group"] = cleaned["vehicle_group"] or None
    errors.update(_track_problems(cleaned, current))
    if "track" in cleaned:
        track = cleaned.pop("track") or {}
        cleaned["track_points"] = track.get("points")
        cleaned["track_seconds"] = track.get("seconds")
        cleaned["track_min_distance_m"] = track.get("min_distance_m")
    if "area" in cleaned:
        try:
            cleaned.update(clean_area(account_id, cleaned.pop("area")))
        except ValidationError as error:
            errors.update(error.errors)
    if cleaned.get("custom_header"):
        errors.update(_header_problems(cleaned["custom_header"]))
        header = cleaned["custom_header"]
        cleaned["custom_header"] = (header["name"], header["value"])
    elif "custom_header" not in values and current is not None and current.custom_header_value:
        # Saved before values HTTP cannot carry were refused: every change asks for
        # a new one, or the engine would stop on it again.
        problem = header_value_problem(current.custom_header_value)
        if problem:
            errors["custom_header.value"] = [
                f"The stored value cannot be sent: enter a new one, or remove the header. {problem}"
            ]
    if errors:
        raise ValidationError(errors)
    return cleaned


def _apply(webhook: Webhook, cleaned: Mapping[str, Any]) -> None:
    for name, value in cleaned.items():
        if name == "custom_header":
            webhook.custom_header_name, webhook.custom_header_value = value or (None, None)
        else:
            setattr(webhook, name, value)
    if "max_in_flight" in cleaned:
        # The window never exceeds the maximum: a new webhook starts with all of it;
        # a raised maximum is grown into by successes, as after a push-back.
        window = webhook.send_window or cleaned["max_in_flight"]
        webhook.send_window = min(window, cleaned["max_in_flight"])


def _stored_value(webhook: Webhook, name: str) -> Any:
    if name == "custom_header":
        if webhook.custom_header_name is None:
            return None
        return webhook.custom_header_name, webhook.custom_header_value
    return getattr(webhook, name)


def _audit_details(cleaned: Mapping[str, Any]) -> dict[str, Any]:
    """Cleaned fields as the audit log keeps them: the custom header's value hidden."""
    details = dict(cleaned)
    if details.get("custom_header"):
        details["custom_header"] = {"name": details["custom_header"][0], "value": HIDDEN}
    return details


def create_webhook(account_id: int, values: Mapping[str, Any]) -> tuple[Webhook, str]:
    """A new, active webhook and its signing secret (shown once, stored encrypted)."""
    check_room(account_id, "webhooks", Webhook)
    cleaned = clean_fields(account_id, values)
    secret = new_secret()
    webhook = Webhook(
        account_id=account_id, status=TargetStatus.ACTIVE.value, signing_secret=secret
    )
    _apply(webhook, cleaned)
    db.session.add(webhook)
    record(account_id, "webhook.created", webhook, _audit_details(cleaned))
    return webhook, secret


def url_origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the scheme's own port when none is written):
    where a request with the webhook's custom header ends up."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a checked URL has none this bad; compare it as unknown
        port = None
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def update_webhook(webhook: Webhook, values: Mapping[str, Any]) -> list[str]:
    """Change the fields given; the audit log gets those whose value changed. A
    webhook the engine stopped on a setting it could not send (needs attention)
    is active again: the person has fixed it, and its backlog goes out.

    A new URL of another origin (scheme, host or port) removes the custom header
    unless the same change gives it again: otherwise whoever may edit the URL could
    point it at their own host and receive the stored credential. Returns what the
    person should know (that removal), for the portal and the API to say."""
    cleaned = clean_fields(webhook.account_id, values, current=webhook)
    notes = []
    if (
        "url" in cleaned
        and "custom_header" not in cleaned
        and webhook.custom_header_name is not None
        and url_origin(cleaned["url"]) != url_origin(webhook.url)
    ):
        cleaned["custom_header"] = None
        notes.append(HEADER_CLEARED)
    changed = {k: v for k, v in cleaned.items() if v != _stored_value(webhook, k)}
    if "track_points" in changed or "track_seconds" in changed:
        close_all_windows(webhook)  # sent as they are; the next open by the new rules
    _apply(webhook, cleaned)
    if changed.get("pull_only"):
        db.session.flush()
        keep_for_feed(webhook.id)  # what waits to be pushed is the feed's now
    if needs_fixing(webhook):
        activate(webhook)
        changed["status"] = webhook.status
    if changed:
        record(webhook.account_id, "webhook.updated", webhook, _audit_details(changed))
    return notes


def pause_webhook(webhook: Webhook) -> None:
    """Stop sending; messages keep queueing until it is resumed."""
    pause(webhook)
    record(webhook.account_id, "webhook.paused", webhook)


def resume_webhook(webhook: Webhook) -> None:
    """Send again, after a pause or after Fleethook disabled it: the backlog goes
    out in order."""
    activate(webhook)
    record(webhook.account_id, "webhook.resumed", webhook)


def rotate_secret(webhook: Webhook, now: datetime | None = None) -> str:
    """A new signing secret; the old one keeps signing beside it for 24 hours."""
    now = now or utcnow()
    webhook.previous_signing_secret = webhook.signing_secret
    webhook.previous_secret_expires_at = now + SECRET_OVERLAP
    webhook.signing_secret = new_secret()
    record(webhook.account_id, "webhook.secret_rotated", webhook)
    return webhook.signing_secret


def expire_previous_secret(webhook: Webhook, now: datetime | None = None) -> bool:
    """Stop the rotated-out secret signing now, before its overlap ends (it leaked,
    or every receiver has switched): the next attempt carries only the current
    signature. The old secret is dropped, not kept. False when none is signing."""
    if len(signing_secrets(webhook, now)) < 2:
        return False
    webhook.previous_signing_secret = None
    webhook.previous_secret_expires_at = None
    record(webhook.account_id, "webhook.previous_secret_expired", webhook)
    return True


def signing_secrets(webhook: Webhook, now: datetime | None = None) -> list[str]:
    """The secrets that sign an attempt now: the current one, and the previous one
    while its overlap lasts."""
    now = now or utcnow()
    secrets = [webhook.signing_secret]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_signing_secret and expires is not None and now < expires:
        secrets.append(webhook.previous_signing_secret)
    return secrets


def delete_webhook(webhook: Webhook) -> None:
    record(webhook.account_id, "webhook.deleted", webhook)
    db.session.delete(webhook)


def send_demo(webhook: Webhook) -> OutboxMessage:
    """Queue a realistic test event of the webhook's type (marked "test": true)
    through the real pipeline; the caller commits."""
    event_type = EVENT_TYPES[webhook.event_type]
    setting = event_type.setting
    example = example_event(event_type, getattr(webhook, setting.field) if setting else None)
    details = {k: v for k, v in example["data"].items() if k in event_type.example_details}
    event = DetectedEvent(
        event_type, utcnow(), replace(EXAMPLE_VEHICLE, fix_time=utcnow()), details, is_test=True
    )
    vehicle_speed = example["data"].get("speed_mph")
    event = replace(event, vehicle=replace(event.vehicle, speed_mph=vehicle_speed))
    ((message,),) = fan_out([event], [webhook])
    return message


def get_account_webhook(account_id: int, webhook_id: int) -> Webhook | None:
    """The account's webhook with this id; another account's id finds nothing."""
    return db.session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.account_id == account_id)
    )


def account_webhooks(
    account_id: int, after_id: int | None = None, limit: int | None = None
) -> list[Webhook]:
    """The account's webhooks by id, optionally from after `after_id`."""
    query = select(Webhook).where(Webhook.account_id == account_id).order_by(Webhook.id)
    if after_id is not None:
        query = query.where(Webhook.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))
