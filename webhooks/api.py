"""REST API of the webhooks blueprint: the event catalogue, and webhooks —
list, create, read, change, delete, pause, resume, rotate the secret."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from api import ApiProblem, admin_only, api_blueprint, api_user, json_object
from encryption import mask
from errors import ValidationError, validation_problem
from extensions import db
from webhooks.events import EVENT_TYPES, EventType, example_event
from webhooks.lifecycle import (
    account_webhooks,
    create_webhook,
    delete_webhook,
    get_account_webhook,
    pause_webhook,
    resume_webhook,
    rotate_secret,
    update_webhook,
)
from webhooks.models import Webhook

bp = api_blueprint("webhooks_api", __name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


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
        "custom_header": header,
        "status": webhook.status,
        "status_reason": webhook.status_reason,
        "queue_depth": webhook.queue_depth,
        "total_messages": webhook.total_messages,
        "previous_secret_expires_at": _iso(webhook.previous_secret_expires_at),
        "created_at": _iso(webhook.created_at),
        "updated_at": _iso(webhook.updated_at),
    }


def _own_webhook(webhook_id: int) -> Webhook:
    webhook = get_account_webhook(api_user().account_id, webhook_id)
    if webhook is None:
        raise ApiProblem(404, "Not Found", "No such webhook in this account.")
    return webhook


def _page_arguments() -> tuple[int, int | None]:
    errors: dict[str, list[str]] = {}
    limit_text = request.args.get("limit", str(DEFAULT_PAGE_SIZE))
    cursor_text = request.args.get("cursor")
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        errors["limit"] = [f"A whole number from 1 to {MAX_PAGE_SIZE}."]
    if cursor_text is not None and not cursor_text.isdigit():
        errors["cursor"] = ["Pass the next_cursor of the previous page, unchanged."]
    if errors:
        raise ValidationError(errors)
    return limit, int(cursor_text) if cursor_text is not None else None


@bp.get("/event-types")
def list_event_types() -> Response:
    """The 14 event types, each with its setting and an example payload."""
    return jsonify({"event_types": [event_type_json(e) for e in EVENT_TYPES.values()]})


@bp.get("/webhooks")
def list_webhooks() -> Response | tuple[Response, int]:
    """The account's webhooks by id, a page at a time (`limit`, `cursor`)."""
    try:
        limit, cursor = _page_arguments()
    except ValidationError as error:
        return validation_problem(error.errors)
    # One more than asked tells whether another page follows.
    found = account_webhooks(api_user().account_id, after_id=cursor, limit=limit + 1)
    page = found[:limit]
    next_cursor = str(page[-1].id) if len(found) > limit else None
    return jsonify({"webhooks": [webhook_json(w) for w in page], "next_cursor": next_cursor})


@bp.post("/webhooks")
@admin_only
def create() -> tuple[Response, int, dict[str, str]] | Response:
    """Create a webhook; its `secret` is in this response only."""
    try:
        webhook, secret = create_webhook(api_user().account_id, json_object())
    except ValidationError as error:
        return validation_problem(error.errors)
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
    """Change some fields of a webhook; the others stay."""
    webhook = _own_webhook(webhook_id)
    try:
        update_webhook(webhook, json_object())
    except ValidationError as error:
        return validation_problem(error.errors)
    db.session.commit()
    return jsonify(webhook_json(webhook))


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
