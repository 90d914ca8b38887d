"""Portal pages of the webhooks blueprint: the Webhook Manager (available types,
the live grid), the create/edit/delete dialogs, the example preview and the detail
page."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from wtforms import SelectChoice

from core.database import whole_number
from core.encryption import mask
from core.errors import ValidationError
from core.extensions import db
from core.portal import (
    EmptyForm,
    admin_required,
    after_change,
    is_htmx_request,
    render_dialog,
    show_errors,
)
from core.times import utcnow
from events.catalogue import EVENT_TYPES, SPEEDING_EVENT_TYPES, EventType
from events.redaction import Redaction
from fleet.records import account_landmarks, vehicle_groups
from outbox.activity import target_activity
from outbox.models import MessageStatus, OutboxMessage
from outbox.recovery import (
    find_message,
    pruned_since,
    redeliver,
    status_counts,
    target_messages,
)
from webhooks.areas import describe_area
from webhooks.forms import ORDERING_CHOICES, RecoverForm, WebhookForm, example_redaction
from webhooks.lifecycle import (
    create_webhook,
    expire_previous_secret,
    get_account_webhook,
    rotate_secret,
    send_demo,
    update_webhook,
)
from webhooks.models import Webhook
from webhooks.replay import asked_replay, recover_replay
from webhooks.schemas import LATEST_WINS_EVENT_TYPES, SKIP_LATE_EVENT_TYPES
from webhooks.tracks import DEFAULT_TRACK, TRACK_EVENT_TYPES
from webhooks.url_safety import is_plain_http
from webhooks.wire import ContentType, encode_body, example_request

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# Raised on the page (HX-Trigger) after a change: the webhooks grid refreshes at once.
CHANGED = "webhooks-changed"
# Messages shown in the live feed and per page of the messages panel.
FEED_SIZE = 15
MESSAGES_PAGE = 50


def _event_type(key: str | None) -> EventType:
    if key not in EVENT_TYPES:
        abort(404)
    return EVENT_TYPES[key]


def _own_webhook(webhook_id: int) -> Webhook:
    webhook = get_account_webhook(current_user.account_id, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


def _own_message(webhook_id: int, message_id: str) -> tuple[Webhook, OutboxMessage]:
    """The account's webhook and its message with this webhook-id, or 404."""
    webhook = _own_webhook(webhook_id)
    found = find_message(webhook.id, message_id)
    if found is None:
        abort(404)
    return webhook, found


def _form_dialog(
    form: WebhookForm, event_type: EventType, webhook: Webhook | None = None, status: int = 200
) -> Response:
    setting_value = None
    setting = event_type.setting
    if setting is not None:
        setting_field = getattr(form, setting.field)
        setting_field.label.text = f"{setting.label} ({setting.unit})"
        setting_field.description = f"{setting.help} {setting.minimum}–{setting.maximum}."
        # A number field (a number pad on phones); the server still checks it.
        setting_field.render_kw = {
            "type": "number",
            "inputmode": "numeric",
            "step": 1,
            "min": setting.minimum,
            "max": setting.maximum,
        }
        setting_value = whole_number(setting_field.data)
    # The portal's one look into the fleet: the groups its vehicles are in.
    groups = vehicle_groups(current_user.account_id)
    chosen_group = form.vehicle_group.data or (webhook.vehicle_group if webhook else None)
    if chosen_group and chosen_group not in groups:
        groups.append(chosen_group)
    form.vehicle_group.choices = [SelectChoice("", "All vehicles")] + [
        SelectChoice(name, name) for name in groups
    ]
    form.offer_areas(account_landmarks(current_user.account_id), webhook)
    chosen = form.content_type.data
    headers, body = example_request(
        event_type,
        ContentType(chosen) if chosen in set(ContentType) else ContentType.JSON,
        setting_value,
        _example_header(form.custom_header_name.data, webhook),
        example_redaction(
            {
                "drop_driver_name": form.drop_driver_name.data,
                "coordinate_decimals": form.coordinate_decimals.data,
                "drop_fields": form.drop_fields.data,
            }
        ),
        track=bool(form.track.data),
    )
    return render_dialog(
        "webhooks/_webhook_form.html",
        f"Edit webhook {webhook.id}" if webhook else f"Create {event_type.name} Webhook",
        status,
        form=form,
        event_type=event_type,
        webhook=webhook,
        example_headers=headers,
        example_body=body.decode(),
        plain_http=is_plain_http(form.url.data or ""),
        offers_latest_wins=event_type.key in LATEST_WINS_EVENT_TYPES,
        offers_skip_late=event_type.key in SKIP_LATE_EVENT_TYPES,
        offers_track=event_type.key in TRACK_EVENT_TYPES,
        speeding_event_types=SPEEDING_EVENT_TYPES,
    )


def _secret_dialog(webhook: Webhook, secret: str, rotated: bool) -> Response:
    """The signing secret, shown once: a new webhook's (its grid refreshes) or a
    rotated one's."""
    return render_dialog(
        "webhooks/_secret.html",
        f"New secret for webhook {webhook.id}" if rotated else f"Webhook {webhook.id} added",
        trigger=None if rotated else CHANGED,
        webhook=webhook,
        secret=secret,
        rotated=rotated,
    )


def _example_header(name: str | None, webhook: Webhook | None) -> tuple[str, str] | None:
    name = (name or "").strip()
    if not name:
        return None
    stored = webhook.custom_header_value if webhook and webhook.custom_header_value else None
    return name, stored or ""


@bp.get("/new")
@admin_required
def new() -> Response:
    """The Create Webhook dialog for one event type."""
    event_type = _event_type(request.args.get("event_type"))
    form = WebhookForm(formdata=None, event_type=event_type.key)
    if event_type.setting is not None:
        getattr(form, event_type.setting.field).data = str(event_type.setting.default)
    return _form_dialog(form, event_type)


@bp.post("/new")
@admin_required
def create() -> Response:
    """Add Webhook: save it and show its signing secret, once."""
    form = WebhookForm()
    event_type = _event_type(form.event_type.data)
    try:
        webhook, secret = create_webhook(
            current_user.account_id, form.values(event_type, editing=False, has_header=False)
        )
    except ValidationError as error:
        show_errors(form, error)
        return _form_dialog(form, event_type, status=422)
    db.session.commit()
    return _secret_dialog(webhook, secret, rotated=False)


@bp.get("/example")
@login_required
def example() -> str:
    """The example headers and body for the dialog's current choices."""
    event_type = _event_type(request.args.get("event_type"))
    content_type = request.args.get("content_type", ContentType.JSON.value)
    if content_type not in set(ContentType):
        abort(400, "content_type is json or form")
    setting_value = None
    if event_type.setting is not None:
        setting_value = whole_number(request.args.get(event_type.setting.field))
    webhook_id = whole_number(request.args.get("webhook_id"))
    webhook = _own_webhook(webhook_id) if webhook_id is not None else None
    track = request.args.get("track") == "y" and event_type.key in TRACK_EVENT_TYPES
    headers, body = example_request(
        event_type,
        ContentType(content_type),
        setting_value,
        _example_header(request.args.get("custom_header_name"), webhook),
        example_redaction(request.args),
        track=track,
    )
    return render_template(
        "webhooks/_example.html",
        example_headers=headers,
        example_body=body.decode(),
        plain_http=is_plain_http(request.args.get("url", "")),
    )


@bp.get("/<int:webhook_id>")
@login_required
def detail(webhook_id: int) -> str:
    """One webhook: its settings, its secret, its messages (newest first, a page
    at a time: ?before=<the last one's number>)."""
    webhook = _own_webhook(webhook_id)
    status = request.args.get("status")
    if status not in set(MessageStatus):
        status = None
    before = request.args.get("before", type=int)
    messages = target_messages(webhook.id, status, before_id=before, limit=MESSAGES_PAGE + 1)
    return render_template(
        "webhooks/detail.html",
        webhook=webhook,
        event_type=EVENT_TYPES[webhook.event_type],
        ordering_choices=ORDERING_CHOICES,
        area=describe_area(webhook),
        redaction=Redaction.of(webhook).in_words(),
        offers_latest_wins=webhook.event_type in LATEST_WINS_EVENT_TYPES,
        skip_late_types=SKIP_LATE_EVENT_TYPES,
        masked_header=mask(webhook.custom_header_value) if webhook.custom_header_value else None,
        button=EmptyForm(),
        messages=messages[:MESSAGES_PAGE],
        older_than=messages[MESSAGES_PAGE - 1].id if len(messages) > MESSAGES_PAGE else None,
        before=before,
        counts=status_counts(webhook.id),
        activity=target_activity(webhook.id, utcnow()),
        status_filter=status,
        statuses=list(MessageStatus),
        recover_form=RecoverForm().offer(webhook.account_id),
    )


@bp.get("/<int:webhook_id>/edit")
@admin_required
def edit(webhook_id: int) -> Response:
    """The Edit Webhook dialog."""
    webhook = _own_webhook(webhook_id)
    form = WebhookForm(formdata=None, obj=webhook)
    form.custom_header_value.data = ""  # never sent back to the browser
    form.drop_fields.data = ", ".join(webhook.drop_fields)
    decimals = webhook.coordinate_decimals
    form.coordinate_decimals.data = "" if decimals is None else str(decimals)
    form.track.data = webhook.track_points is not None
    for name, default in DEFAULT_TRACK.items():
        stored = getattr(webhook, f"track_{name}")
        getattr(form, f"track_{name}").data = str(default if stored is None else stored)
    event_type = EVENT_TYPES[webhook.event_type]
    if event_type.setting is not None:
        value = getattr(webhook, event_type.setting.field)
        getattr(form, event_type.setting.field).data = "" if value is None else str(value)
    # 5, not 5.0; and every digit it has, so saving the dialog again changes nothing.
    rate = webhook.rate_limit
    form.rate_limit.data = "" if rate is None else str(rate).removesuffix(".0")
    return _form_dialog(form, event_type, webhook)


@bp.post("/<int:webhook_id>/edit")
@admin_required
def update(webhook_id: int) -> ResponseReturnValue:
    """Save the Edit Webhook dialog."""
    webhook = _own_webhook(webhook_id)
    form = WebhookForm()
    event_type = EVENT_TYPES[webhook.event_type]
    values = form.values(event_type, editing=True, has_header=bool(webhook.custom_header_name))
    try:
        warnings = update_webhook(webhook, values)
    except ValidationError as error:
        show_errors(form, error)
        return _form_dialog(form, event_type, webhook, status=422)
    db.session.commit()
    if warnings:
        # Worth a full page load (htmx follows HX-Redirect), where the warning shows.
        flash(f"Webhook {webhook.id} saved.", "success")
        for warning in warnings:
            flash(warning, "warning")
        target = url_for("manager.page")
        if is_htmx_request():
            return Response(status=204, headers={"HX-Redirect": target})
        return redirect(target)
    return after_change(f"Webhook {webhook.id} saved.", CHANGED)


@bp.post("/<int:webhook_id>/rotate-secret")
@admin_required
def rotate(webhook_id: int) -> Response:
    """A new signing secret, shown once; the old one signs beside it for 24 hours."""
    webhook = _own_webhook(webhook_id)
    secret = rotate_secret(webhook)
    db.session.commit()
    return _secret_dialog(webhook, secret, rotated=True)


@bp.post("/<int:webhook_id>/expire-previous-secret")
@admin_required
def expire_previous(webhook_id: int) -> ResponseReturnValue:
    """End a rotation's overlap now: only the current secret signs from here on."""
    webhook = _own_webhook(webhook_id)
    if expire_previous_secret(webhook):
        db.session.commit()
        flash("The previous secret no longer signs: only the current one does.", "success")
    else:
        flash("No previous secret is signing: nothing to expire.", "info")
    return redirect(url_for("webhooks.detail", webhook_id=webhook.id))


@bp.post("/<int:webhook_id>/demo")
@admin_required
def demo(webhook_id: int) -> Response:
    """Demo: send a test event and open the live feed of the webhook's messages."""
    webhook = _own_webhook(webhook_id)
    test = send_demo(webhook)
    db.session.commit()
    return render_dialog(
        "webhooks/_feed_panel.html",
        f"Live feed · {webhook.name}",
        trigger=CHANGED,
        webhook=webhook,
        test=test,
        messages=target_messages(webhook.id, limit=FEED_SIZE),
    )


@bp.get("/<int:webhook_id>/feed")
@login_required
def feed(webhook_id: int) -> str:
    """The live feed: the latest messages as they are sent and answered, and the
    Demo's test message (?test=<webhook-id>) pinned above them, however busy the
    webhook is."""
    webhook = _own_webhook(webhook_id)
    test_id = request.args.get("test", "")
    return render_template(
        "webhooks/_feed.html",
        webhook=webhook,
        test=find_message(webhook.id, test_id) if test_id else None,
        messages=target_messages(webhook.id, limit=FEED_SIZE),
    )


@bp.get("/<int:webhook_id>/messages/<message_id>")
@login_required
def message(webhook_id: int, message_id: str) -> str:
    """One message: what was sent, and every attempt with its answer."""
    webhook, found = _own_message(webhook_id, message_id)
    body = encode_body(found.payload, ContentType(webhook.content_type)).decode()
    return render_template(
        "_message.html",
        message=found,
        back={"url": url_for("webhooks.detail", webhook_id=webhook.id), "name": webhook.name},
        body_title="Body sent",
        body=body,
        redeliver=url_for(
            "webhooks.redeliver_message", webhook_id=webhook.id, message_id=message_id
        ),
        button=EmptyForm(),
    )


@bp.post("/<int:webhook_id>/messages/<message_id>/redeliver")
@admin_required
def redeliver_message(webhook_id: int, message_id: str) -> ResponseReturnValue:
    """Send a finished message again, with the same webhook-id."""
    webhook, found = _own_message(webhook_id, message_id)
    if redeliver(webhook, found):
        db.session.commit()
        flash(f"{message_id} queued again.", "success")
    else:
        flash(f"{message_id} is still on its way.", "info")
    return redirect(url_for("webhooks.detail", webhook_id=webhook.id))


@bp.post("/<int:webhook_id>/recover")
@admin_required
def recover(webhook_id: int) -> ResponseReturnValue:
    """Send again every dead or expired message since a time, of every vehicle or of
    one vehicle, group or driver."""
    webhook = _own_webhook(webhook_id)
    form = RecoverForm()
    if not form.validate_on_submit():
        flash("Choose a date and time (UTC) to recover from.", "error")
        return redirect(url_for("webhooks.detail", webhook_id=webhook.id))
    try:
        replay = asked_replay(webhook.account_id, form.values())
    except ValidationError as error:
        problems = [message for messages in error.errors.values() for message in messages]
        flash(" ".join(problems), "error")
        return redirect(url_for("webhooks.detail", webhook_id=webhook.id))
    count = recover_replay(webhook, replay)
    db.session.commit()
    flash(f"{count} dead or expired messages queued again.", "success")
    pruned_before = pruned_since(webhook, replay.since)
    if pruned_before is not None:
        flash(
            f"Dead or expired messages created up to {pruned_before:%Y-%m-%d %H:%M} UTC were "
            "deleted after the retention window and cannot be recovered.",
            "info",
        )
    return redirect(url_for("webhooks.detail", webhook_id=webhook.id))
