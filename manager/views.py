"""Portal pages of the Webhook Manager: the page, its grids (one partial for every
kind of target, polled), and pause, resume and delete for any target of the
account. What differs by kind — the grid's own columns and buttons, the words of
the delete dialog, what pausing or deleting does — comes from the kind's entry in
`KINDS` and its `<kind>s/_manager.html` macros."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import select

from core.extensions import db
from core.portal import (
    EmptyForm,
    admin_required,
    after_change,
    is_htmx_request,
    render_dialog,
    render_page_or_fragment,
)
from core.times import utcnow
from events.catalogue import EVENT_TYPES
from integrations.lifecycle import (
    account_integrations,
    delete_integration,
    pause_integration,
    summary,
)
from integrations.providers import PROVIDERS
from integrations.views import CHANGED as INTEGRATIONS_CHANGED
from integrations.views import resume_or_release
from outbox.activity import account_activity
from outbox.models import Target
from webhooks.lifecycle import account_webhooks, delete_webhook, pause_webhook, resume_webhook
from webhooks.views import CHANGED as WEBHOOKS_CHANGED

bp = Blueprint("manager", __name__)


@dataclass(frozen=True)
class TargetKindPages:
    """What the Webhook Manager needs of one kind of target."""

    kind: str  # Target.kind
    noun: str  # "Webhook": flash messages and the delete dialog's title
    changed: str  # the htmx event that refreshes the kind's grid at once
    targets: Callable[[int], Sequence[Any]]  # the account's, in grid order
    pause: Callable[[Any], None]
    resume: Callable[[Any], Response | None]  # a dialog to show instead, if any
    delete: Callable[[Any], None]
    detail_endpoint: str
    detail_argument: str
    # The kind's macros: its own headers and cells, buttons, empty grid and the
    # delete dialog's words (templates/<kind>s/_manager.html).
    macros: str

    def detail_url(self, target: Any) -> str:
        return url_for(self.detail_endpoint, **{self.detail_argument: target.id})


KINDS: dict[str, TargetKindPages] = {
    pages.kind: pages
    for pages in [
        TargetKindPages(
            "webhook",
            "Webhook",
            WEBHOOKS_CHANGED,
            account_webhooks,
            pause_webhook,
            resume_webhook,
            delete_webhook,
            "webhooks.detail",
            "webhook_id",
            "webhooks/_manager.html",
        ),
        TargetKindPages(
            "integration",
            "Integration",
            INTEGRATIONS_CHANGED,
            account_integrations,
            pause_integration,
            resume_or_release,
            delete_integration,
            "integrations.detail",
            "integration_id",
            "integrations/_manager.html",
        ),
    ]
}


def _context(kinds: Sequence[str]) -> dict[str, Any]:
    # One query for each kind's targets (with their counters and latest results)
    # and one for the last hour of activity of them all, however many messages.
    account_id = current_user.account_id
    return {
        "kinds": KINDS,
        "targets": {kind: KINDS[kind].targets(account_id) for kind in kinds},
        "activity": account_activity(account_id, utcnow()),
        "event_types": EVENT_TYPES,
        "providers": PROVIDERS,
        "summary": summary,
        "button": EmptyForm(),
    }


@bp.get("/webhooks/")
@login_required
def page() -> str:
    """The Webhook Manager: event types and webhooks, then providers and integrations."""
    return render_template("manager/page.html", **_context(list(KINDS)))


@bp.get("/manager/webhook/grid", defaults={"kind": "webhook"})
@bp.get("/manager/integration/grid", defaults={"kind": "integration"})
@login_required
def grid(kind: str) -> Response:
    """One kind's grid, for its polling; the whole page without htmx."""
    kinds = [kind] if is_htmx_request() else list(KINDS)
    return render_page_or_fragment(
        "manager/page.html", "manager/_grid.html", pages=KINDS[kind], **_context(kinds)
    )


def _own_target(target_id: int) -> tuple[Any, TargetKindPages]:
    """The account's target with this id (as its kind's class) and its kind's pages;
    another account's id finds nothing."""
    target = db.session.scalar(
        select(Target).where(Target.id == target_id, Target.account_id == current_user.account_id)
    )
    if target is None or target.kind not in KINDS:
        abort(404)
    return target, KINDS[target.kind]


def _after_change(message: str, pages: TargetKindPages, target: Any | None) -> ResponseReturnValue:
    # Buttons on the target's own page bring one back there.
    back = pages.detail_url(target) if target and request.form.get("back") == "detail" else None
    return after_change(message, pages.changed, back)


@bp.post("/manager/targets/<int:target_id>/pause")
@admin_required
def pause(target_id: int) -> ResponseReturnValue:
    """Pause: messages queue up and nothing is sent."""
    target, pages = _own_target(target_id)
    pages.pause(target)
    db.session.commit()
    return _after_change(f"{pages.noun} {target.id} paused.", pages, target)


@bp.post("/manager/targets/<int:target_id>/resume")
@admin_required
def resume(target_id: int) -> ResponseReturnValue:
    """Send again, after a pause or after Fleethook held it: the backlog goes out in
    order. An integration whose release form is unsigned gets the form instead."""
    target, pages = _own_target(target_id)
    dialog = pages.resume(target)
    if dialog is not None:
        # The button posts without a target: the dialog goes where dialogs go.
        dialog.headers.update({"HX-Retarget": "#dialog-host", "HX-Reswap": "innerHTML"})
        return dialog
    db.session.commit()
    return _after_change(f"{pages.noun} {target.id} resumed.", pages, target)


@bp.get("/manager/targets/<int:target_id>/delete")
@admin_required
def confirm_delete(target_id: int) -> Response:
    """Ask before deleting."""
    target, pages = _own_target(target_id)
    return render_dialog(
        "manager/_confirm_delete.html",
        f"Delete {pages.noun.lower()} {target.id}?",
        target=target,
        pages=pages,
        providers=PROVIDERS,
        button=EmptyForm(),
    )


@bp.post("/manager/targets/<int:target_id>/delete")
@admin_required
def delete(target_id: int) -> ResponseReturnValue:
    """Delete the target and everything queued for it (and what its kind cleans up
    besides, e.g. a Salesforce token)."""
    target, pages = _own_target(target_id)
    if not EmptyForm().validate():
        abort(400)
    pages.delete(target)
    db.session.commit()
    return _after_change(f"{pages.noun} {target_id} deleted.", pages, None)
