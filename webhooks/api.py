"""REST API of the webhooks blueprint: the event catalogue, and webhooks —
list, create, read, change, delete, pause, resume, rotate the secret."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from accounts.api_access import admin_only, api_blueprint, api_user
from core.api import ApiProblem, iso_time, json_object, page_arguments, page_json
from core.database import MAX_BIG_ID
from core.encryption import mask
from core.errors import ValidationError, validation_problem
from core.extensions import db
from core.times import parse_rfc3339
from events.catalogue import EVENT_TYPES, EventType, example_event
from outbox.models import OPEN_STATUSES, MessageStatus, OutboxMessage
from outbox.recovery import (
    find_message,
    pruned_since,
    recover_since,
    redeliver,
    target_messages,
)
from webhooks.lifecycle import (
    account_webhooks,
    create_webhook,
    delete_webhook,
    expire_previous_secret,
    get_account_webhook,
    pause_webhook,
    resume_webhook,
    rotate_secret,
    send_demo,
    update_webhook,
)
from webhooks.models import Webhook

bp = api_blueprint("webhooks_api", __name__)


def event_type_json(event_type: EventType) -> dict[str, Any]:
    setting = event_type.setting
    return {
        "key": event_type.key,
        "name": event_type.name,
        "description": event_type.description,
        "setting": None
        if setting is None
        else {
            "field": setting.field,
            "label": setting.label,
            "unit": setting.unit,
            "minimum": setting.minimum,
            "maximum": setting.maximum,
            "default": setting.default,
        },
        "example": example_event(event_type),
    }


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    header = None
    if webhook.custom_header_name and webhook.custom_header_value:
        header = {"name": webhook.custom_header_name, "value": mask(webhook.custom_header_value)}
    return {
        "id": webhook.id,
        "event_type": webhook.event_type,
        "name": webhook.name,
        "url": webhook.url,
        "content_type": webhook.content_type,
        "threshold_mph": webhook.threshold_mph,
        "idle_minutes": webhook.idle_minutes,
        "contact_email": webhook.contact_email,
        "vehicle_group": webhook.vehicle_group,
        "custom_header": header,
        "ordering": webhook.ordering,
        "max_in_flight": webhook.max_in_flight,
        "rate_limit": webhook.rate_limit,
        "latest_wins": webhook.latest_wins,
        "speeding_events": webhook.speeding_events,
        "in_flight": webhook.in_flight,
        "window": webhook.send_window,
        "throttled_until": iso_time(webhook.throttled_until),
        "status": webhook.status,
        "status_reason": webhook.status_reason,
        "queue_depth": webhook.queue_depth,
        "total_messages": webhook.total_messages,
        "previous_secret_expires_at": iso_time(webhook.previous_secret_expires_at),
        "created_at": iso_time(webhook.created_at),
        "updated_at": iso_time(webhook.updated_at),
    }


def _own_webhook(webhook_id: int) -> Webhook:
    webhook = get_account_webhook(api_user().account_id, webhook_id)
    if webhook is None:
        raise ApiProblem(404, "Not Found", "No such webhook in this account.")
    return webhook


@bp.get("/event-types")
def list_event_types() -> Response:
    """The 14 event types, each with its setting and an example payload."""
    return jsonify({"event_types": [event_type_json(e) for e in EVENT_TYPES.values()]})


@bp.get("/webhooks")
def list_webhooks() -> Response | tuple[Response, int]:
    """The account's webhooks by id, a page at a time (`limit`, `cursor`)."""
    limit, cursor = page_arguments()
    found = account_webhooks(api_user().account_id, after_id=cursor, limit=limit + 1)
    return page_json("webhooks", found, limit, webhook_json)


@bp.post("/webhooks")
@admin_only
def create() -> tuple[Response, int, dict[str, str]] | Response:
    """Create a webhook; its `secret` is in this response only."""
    webhook, secret = create_webhook(api_user().account_id, json_object())
    db.session.commit()
    location = url_for("webhooks_api.get", webhook_id=webhook.id)
    return jsonify({**webhook_json(webhook), "secret": secret}), 201, {"Location": location}


@bp.get("/webhooks/<int:webhook_id>")
def get(webhook_id: int) -> Response:
    """One webhook."""
    return jsonify(webhook_json(_own_webhook(webhook_id)))


@bp.patch("/webhooks/<int:webhook_id>")
@admin_only
def patch(webhook_id: int) -> Response:
    """Change some fields of a webhook; the others stay. `warnings` says what else
    changed with them (a custom header removed by a move to another host)."""
    webhook = _own_webhook(webhook_id)
    warnings = update_webhook(webhook, json_object())
    db.session.commit()
    return jsonify({**webhook_json(webhook), "warnings": warnings})


@bp.delete("/webhooks/<int:webhook_id>")
@admin_only
def delete(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook and what is queued for it."""
    delete_webhook(_own_webhook(webhook_id))
    db.session.commit()
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/pause")
@admin_only
def pause(webhook_id: int) -> Response:
    """Stop sending; messages queue up."""
    webhook = _own_webhook(webhook_id)
    pause_webhook(webhook)
    db.session.commit()
    return jsonify(webhook_json(webhook))


@bp.post("/webhooks/<int:webhook_id>/resume")
@admin_only
def resume(webhook_id: int) -> Response:
    """Send again."""
    webhook = _own_webhook(webhook_id)
    resume_webhook(webhook)
    db.session.commit()
    return jsonify(webhook_json(webhook))


@bp.post("/webhooks/<int:webhook_id>/rotate-secret")
@admin_only
def rotate(webhook_id: int) -> Response:
    """A new secret, in this response only; the old one signs beside it for 24 h."""
    webhook = _own_webhook(webhook_id)
    secret = rotate_secret(webhook)
    db.session.commit()
    return jsonify({**webhook_json(webhook), "secret": secret})


@bp.post("/webhooks/<int:webhook_id>/expire-previous-secret")
@admin_only
def expire_previous(webhook_id: int) -> Response:
    """End a rotation's overlap now: only the current secret signs from here on."""
    webhook = _own_webhook(webhook_id)
    if not expire_previous_secret(webhook):
        raise ApiProblem(409, "Conflict", "No previous secret is signing: rotate the secret first.")
    db.session.commit()
    return jsonify(webhook_json(webhook))


def message_json(message: OutboxMessage, full: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message.message_id,
        "sequence": message.sequence,
        "event_type": message.event_type,
        "test": message.is_test,
        "status": message.status,
        "attempts": message.attempts,
        "last_status_code": message.last_status_code,
        "last_latency_ms": message.last_latency_ms,
        "last_error": message.last_error,
        "created_at": iso_time(message.created_at),
        "next_attempt_at": iso_time(message.next_attempt_at)
        if message.status in OPEN_STATUSES
        else None,
        "finished_at": iso_time(message.finished_at),
    }
    if full:
        body["payload"] = message.payload
        body["attempt_log"] = [
            {
                "attempted_at": iso_time(a.attempted_at),
                "outcome": a.outcome,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "error_detail": a.error_detail,
                "request_headers": a.request_headers,
                "response_headers": a.response_headers,
                "response_body": a.response_body,
            }
            for a in message.attempt_records
        ]
    return body


def _own_message(webhook: Webhook, message_id: str) -> OutboxMessage:
    message = find_message(webhook.id, message_id)
    if message is None:
        raise ApiProblem(404, "Not Found", "No such message for this webhook.")
    return message


@bp.post("/webhooks/<int:webhook_id>/demo")
@admin_only
def demo(webhook_id: int) -> tuple[Response, int]:
    """Send a test event of the webhook's type through the real pipeline."""
    message = send_demo(_own_webhook(webhook_id))
    db.session.commit()
    return jsonify(message_json(message)), 202


@bp.get("/webhooks/<int:webhook_id>/messages")
def list_messages(webhook_id: int) -> Response | tuple[Response, int]:
    """The webhook's messages, newest first (`status`, `limit`, `cursor`)."""
    webhook = _own_webhook(webhook_id)
    status = request.args.get("status")
    limit, cursor = page_arguments(MAX_BIG_ID)
    if status is not None and status not in set(MessageStatus):
        raise ValidationError({"status": ["One of: " + ", ".join(MessageStatus) + "."]})
    found = target_messages(webhook.id, status, before_id=cursor, limit=limit + 1)
    return page_json("messages", found, limit, message_json)


@bp.get("/webhooks/<int:webhook_id>/messages/<message_id>")
def get_message(webhook_id: int, message_id: str) -> Response:
    """One message: its payload and every attempt."""
    message = _own_message(_own_webhook(webhook_id), message_id)
    return jsonify(message_json(message, full=True))


@bp.post("/webhooks/<int:webhook_id>/messages/<message_id>/redeliver")
@admin_only
def redeliver_message(webhook_id: int, message_id: str) -> tuple[Response, int]:
    """Send a delivered, dead or expired message again, with the same webhook-id."""
    webhook = _own_webhook(webhook_id)
    message = _own_message(webhook, message_id)
    if not redeliver(webhook, message):
        raise ApiProblem(409, "Conflict", "The message is still on its way; nothing to redo.")
    db.session.commit()
    db.session.refresh(message)
    return jsonify(message_json(message)), 202


@bp.post("/webhooks/<int:webhook_id>/recover")
@admin_only
def recover(webhook_id: int) -> tuple[Response, int]:
    """Send again every dead or expired message since `since` (RFC 3339)."""
    webhook = _own_webhook(webhook_id)
    since = parse_rfc3339(json_object().get("since"))
    if since is None:
        return validation_problem({"since": ["An RFC 3339 time, e.g. 2026-05-14T00:00:00Z."]}), 422
    count = recover_since(webhook, since)
    db.session.commit()
    answer: dict[str, Any] = {"recovered": count}
    pruned_before = pruned_since(webhook, since)
    if pruned_before is not None:
        # The retention deleted some of the window's messages: say so, not just 0.
        answer["pruned_before"] = iso_time(pruned_before)
        answer["detail"] = (
            "Dead or expired messages created up to pruned_before were deleted after "
            "the retention window (FLEETHOOK_KEEP_ENDED_DAYS) and cannot be recovered."
        )
    return jsonify(answer), 202
