"""REST API of the webhooks blueprint: the event catalogue, and webhooks —
list, create, read, change, delete, pause, resume, rotate the secret — and
their messages. What each route takes and answers is in webhooks/schemas.py."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for

from accounts.api_access import admin_only, api_blueprint, api_user
from core.api import (
    DEFAULT_PAGE_SIZE,
    ApiProblem,
    PageQuery,
    json_object,
    page_arguments,
    page_json,
    query_arguments,
)
from core.contract import answer, checked, operation, page_of, with_fields
from core.database import MAX_BIG_ID
from core.extensions import db
from events.catalogue import EVENT_TYPES
from outbox.feed import feed_page
from outbox.models import OutboxMessage
from outbox.recovery import (
    find_message,
    pruned_since,
    redeliver,
    target_messages,
)
from webhooks import schemas
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
from webhooks.replay import asked_replay, recover_replay
from webhooks.sender import ordering_headers
from webhooks.wire import ORDERING_KEY_HEADER, SEQUENCE_HEADER

bp = api_blueprint("webhooks_api", __name__)

NOT_FOUND = {404: "No such webhook in this account."}
MESSAGE_NOT_FOUND = {404: "No such webhook in this account, or no such message of it."}


def _own_webhook(webhook_id: int) -> Webhook:
    webhook = get_account_webhook(api_user().account_id, webhook_id)
    if webhook is None:
        raise ApiProblem(404, "Not Found", "No such webhook in this account.")
    return webhook


@bp.get("/event-types")
@operation("The event catalogue", {200: schemas.EventTypes})
def list_event_types() -> Response:
    """The 14 event types, each with its setting and an example payload."""
    return answer(schemas.EventTypes, {"event_types": list(EVENT_TYPES.values())})


@bp.get("/webhooks")
@operation(
    "The account's webhooks, by id, a page at a time",
    {200: page_of("webhooks", schemas.Webhook)},
    query=PageQuery,
)
def list_webhooks() -> Response:
    """The account's webhooks by id, a page at a time (`limit`, `cursor`)."""
    limit, cursor = page_arguments()
    found = account_webhooks(api_user().account_id, after_id=cursor, limit=limit + 1)
    return page_json("webhooks", found, limit, schemas.Webhook)


@bp.post("/webhooks")
@admin_only
@operation("Create a webhook", {201: schemas.WebhookWithSecret}, body=schemas.WebhookCreate)
def create() -> Response:
    """Create a webhook; its `secret` is in this response only."""
    webhook, secret = create_webhook(api_user().account_id, json_object())
    db.session.commit()
    location = url_for("webhooks_api.get", webhook_id=webhook.id)
    return answer(schemas.WebhookWithSecret, webhook, 201, {"Location": location}, secret=secret)


@bp.get("/webhooks/<int:webhook_id>")
@operation("One webhook", {200: schemas.Webhook}, problems=NOT_FOUND)
def get(webhook_id: int) -> Response:
    """One webhook."""
    return answer(schemas.Webhook, _own_webhook(webhook_id))


@bp.patch("/webhooks/<int:webhook_id>")
@admin_only
@operation(
    "Change some fields",
    {200: schemas.ChangedWebhook},
    body=schemas.WebhookChange,
    problems=NOT_FOUND,
)
def patch(webhook_id: int) -> Response:
    """Change some fields of a webhook; the others stay. `warnings` says what else
    changed with them (a custom header removed by a move to another host)."""
    webhook = _own_webhook(webhook_id)
    warnings = update_webhook(webhook, json_object())
    db.session.commit()
    return answer(schemas.ChangedWebhook, webhook, warnings=warnings)


@bp.delete("/webhooks/<int:webhook_id>")
@admin_only
@operation("Delete a webhook", {204: "Deleted."}, problems=NOT_FOUND)
def delete(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook and what is queued for it."""
    delete_webhook(_own_webhook(webhook_id))
    db.session.commit()
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/pause")
@admin_only
@operation("Pause: messages queue up, nothing is sent", {200: schemas.Webhook}, problems=NOT_FOUND)
def pause(webhook_id: int) -> Response:
    """Stop sending; messages queue up."""
    webhook = _own_webhook(webhook_id)
    pause_webhook(webhook)
    db.session.commit()
    return answer(schemas.Webhook, webhook)


@bp.post("/webhooks/<int:webhook_id>/resume")
@admin_only
@operation("Resume sending", {200: schemas.Webhook}, problems=NOT_FOUND)
def resume(webhook_id: int) -> Response:
    """Send again."""
    webhook = _own_webhook(webhook_id)
    resume_webhook(webhook)
    db.session.commit()
    return answer(schemas.Webhook, webhook)


@bp.post("/webhooks/<int:webhook_id>/rotate-secret")
@admin_only
@operation(
    "New secret (shown once); the old one signs 24 h more",
    {200: schemas.WebhookWithSecret},
    problems=NOT_FOUND,
)
def rotate(webhook_id: int) -> Response:
    """A new secret, in this response only; the old one signs beside it for 24 h."""
    webhook = _own_webhook(webhook_id)
    secret = rotate_secret(webhook)
    db.session.commit()
    return answer(schemas.WebhookWithSecret, webhook, secret=secret)


@bp.post("/webhooks/<int:webhook_id>/expire-previous-secret")
@admin_only
@operation(
    "End a rotation's overlap now: only the current secret signs",
    {200: schemas.Webhook},
    problems={**NOT_FOUND, 409: "No previous secret is signing."},
)
def expire_previous(webhook_id: int) -> Response:
    """End a rotation's overlap now: only the current secret signs from here on."""
    webhook = _own_webhook(webhook_id)
    if not expire_previous_secret(webhook):
        raise ApiProblem(409, "Conflict", "No previous secret is signing: rotate the secret first.")
    db.session.commit()
    return answer(schemas.Webhook, webhook)


def _own_message(webhook: Webhook, message_id: str) -> OutboxMessage:
    message = find_message(webhook.id, message_id)
    if message is None:
        raise ApiProblem(404, "Not Found", "No such message for this webhook.")
    return message


@bp.post("/webhooks/<int:webhook_id>/demo")
@admin_only
@operation(
    'Send a test event ("test": true) through the real pipeline',
    {202: schemas.Message},
    problems=NOT_FOUND,
)
def demo(webhook_id: int) -> Response:
    """Send a test event of the webhook's type through the real pipeline."""
    message = send_demo(_own_webhook(webhook_id))
    db.session.commit()
    return answer(schemas.Message, message, 202)


@bp.get("/webhooks/<int:webhook_id>/messages")
@operation(
    "The webhook's messages, newest first",
    {200: page_of("messages", schemas.Message)},
    query=schemas.MessagesQuery,
    problems=NOT_FOUND,
)
def list_messages(webhook_id: int) -> Response:
    """The webhook's messages, newest first (`status`, `limit`, `cursor`)."""
    webhook = _own_webhook(webhook_id)
    limit, cursor = page_arguments(MAX_BIG_ID)
    status = query_arguments(schemas.MessagesQuery).get("status")
    found = target_messages(webhook.id, status, before_id=cursor, limit=limit + 1)
    return page_json("messages", found, limit, schemas.Message)


@bp.get("/webhooks/<int:webhook_id>/messages/<message_id>")
@operation(
    "One message, its payload and every attempt",
    {200: schemas.MessageDetail},
    problems=MESSAGE_NOT_FOUND,
)
def get_message(webhook_id: int, message_id: str) -> Response:
    """One message: its payload and every attempt."""
    message = _own_message(_own_webhook(webhook_id), message_id)
    return answer(schemas.MessageDetail, message)


@bp.post("/webhooks/<int:webhook_id>/messages/<message_id>/redeliver")
@admin_only
@operation(
    "Send a finished message again (same webhook-id)",
    {202: schemas.Message},
    problems={**MESSAGE_NOT_FOUND, 409: "The message is still on its way."},
)
def redeliver_message(webhook_id: int, message_id: str) -> Response:
    """Send a delivered, dead or expired message again, with the same webhook-id."""
    webhook = _own_webhook(webhook_id)
    message = _own_message(webhook, message_id)
    if not redeliver(webhook, message):
        raise ApiProblem(409, "Conflict", "The message is still on its way; nothing to redo.")
    db.session.commit()
    db.session.refresh(message)
    return answer(schemas.Message, message, 202)


@bp.get("/webhooks/<int:webhook_id>/feed")
@operation(
    "The webhook's messages to pull, in the order its receiver gets them",
    {200: schemas.Feed},
    query=schemas.FeedQuery,
    problems=NOT_FOUND,
)
def feed(webhook_id: int) -> Response:
    """Every message the webhook was given to send, after `after`, whatever its
    status: the same webhook-id, ordering headers and body a push carries."""
    webhook = _own_webhook(webhook_id)
    asked = query_arguments(schemas.FeedQuery)
    after = asked.get("after", 0)
    found = feed_page(webhook.id, after, asked.get("limit", DEFAULT_PAGE_SIZE))
    messages = [_as_pushed(webhook, message) for message in found]
    next_cursor = str(found[-1].sequence if found else after)
    return answer(schemas.Feed, {"messages": messages, "next_cursor": next_cursor})


def _as_pushed(webhook: Webhook, message: OutboxMessage) -> Any:
    headers = ordering_headers(webhook, message)
    # The ordering headers depend on the webhook's ordering, not on the message.
    return with_fields(
        message,
        ordering_key=headers[ORDERING_KEY_HEADER],
        sequence=int(headers[SEQUENCE_HEADER]),
    )


@bp.post("/webhooks/<int:webhook_id>/recover")
@admin_only
@operation(
    "Send again every dead or expired message since a time (of one vehicle, group or driver)",
    {202: schemas.Recovered},
    body=schemas.Recover,
    problems=NOT_FOUND,
)
def recover(webhook_id: int) -> Response:
    """Send again every dead or expired message since `since` (RFC 3339): all, or only
    those of `vehicle_id`, `vehicle_group` or `driver_id`."""
    webhook = _own_webhook(webhook_id)
    replay = asked_replay(webhook.account_id, checked(schemas.Recover, json_object()))
    count = recover_replay(webhook, replay)
    db.session.commit()
    pruned_before = pruned_since(webhook, replay.since)
    if pruned_before is None:
        return answer(schemas.Recovered, {"recovered": count}, 202)
    # The retention deleted some of the window's messages: say so, not just 0.
    return answer(
        schemas.Recovered,
        {
            "recovered": count,
            "pruned_before": pruned_before,
            "detail": "Dead or expired messages created up to pruned_before were deleted "
            "after the retention window (FLEETHOOK_KEEP_ENDED_DAYS) and cannot be recovered.",
        },
        202,
    )
