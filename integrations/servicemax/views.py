"""The portal pages only ServiceMax has: Connect with Salesforce (the OAuth
web-server flow with PKCE, its `state` and encrypted code verifier kept in the
user's session), the callback Salesforce sends the user back to, and the form
mapping drivers to technicians. The callback's path is part of the connected app's
registration (the setup steps show it): it stays /integrations/servicemax/callback."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from accounts.audit import record
from accounts.quotas import check_room
from core.database import whole_number
from core.errors import ValidationError
from core.extensions import db
from core.portal import EmptyForm, admin_required
from integrations.base import ProviderRejected
from integrations.lifecycle import audit_details
from integrations.models import Integration
from integrations.servicemax.provider import SERVICEMAX, connect_integration, reconnect_integration
from integrations.servicemax.signin import (
    SignIn,
    authorize_url,
    callback_url,
    login_host_from,
    login_host_of,
    start_sign_in,
    state_matches,
)
from integrations.servicemax.technicians import set_technicians
from integrations.views import own_integration

bp = Blueprint("servicemax", __name__, url_prefix="/integrations/servicemax")

OAUTH_STATE = "salesforce_oauth_state"
OAUTH_RECONNECT = "salesforce_oauth_integration"


def flash_errors(error: ValidationError) -> None:
    """Each of the error's messages as a flash on the page redirected to."""
    for messages in error.errors.values():
        for message in messages:
            flash(message, "error")


@bp.get("/connect")
@admin_required
def connect() -> ResponseReturnValue:
    """Start the OAuth web-server flow with PKCE at the chosen login host
    (`login_host`, `my_domain`; signing in again, the integration's own unless
    another is chosen): a state and a code verifier only this session knows (the
    verifier encrypted in it), then Salesforce's login page."""
    # Signing in again for an existing integration (its tokens were refused).
    again = whole_number(request.args.get("integration"))
    existing = own_integration(again) if again is not None else None
    if existing is not None and existing.provider != SERVICEMAX.key:
        existing = None
    back = (
        url_for("integrations.detail", integration_id=existing.id)
        if existing is not None
        else url_for("manager.page")
    )
    try:
        if existing is None:  # a new integration: not sent to Salesforce past the quota
            check_room(current_user.account_id, "integrations", Integration)
        if existing is not None and "login_host" not in request.args:
            login = login_host_of(existing)
        else:
            login = login_host_from(request.args)
        sign_in = start_sign_in(login, _callback_url())
    except ValidationError as error:
        flash_errors(error)
        return redirect(back)
    except ProviderRejected as refused:
        flash(str(refused), "error")
        return redirect(back)
    session[OAUTH_STATE] = sign_in.for_session()
    if existing is not None:
        session[OAUTH_RECONNECT] = existing.id
    else:
        session.pop(OAUTH_RECONNECT, None)
    return redirect(authorize_url(sign_in))


def _callback_url() -> str:
    """FLEETHOOK_PUBLIC_URL and the callback's path (signin.callback_url)."""
    return callback_url(
        url_for("servicemax.callback"),
        url_for("servicemax.callback", _external=True),
    )


@bp.get("/callback")
@admin_required
def callback() -> ResponseReturnValue:
    """Salesforce sends the user back here with a code; a wrong or replayed state
    is refused, and the code is exchanged with the sign-in's own verifier, login
    host and redirect_uri."""
    sign_in = SignIn.from_session(session.pop(OAUTH_STATE, None))
    expected = sign_in.state if sign_in is not None else None
    if sign_in is None or not state_matches(expected, request.args.get("state")):
        abort(400, "This Salesforce sign-in was not started here (its state does not match).")
    if request.args.get("error") or not request.args.get("code"):
        reason = request.args.get("error_description") or request.args.get("error") or "no code"
        flash(f"Salesforce did not connect: {reason}", "error")
        return redirect(url_for("manager.page"))
    again = session.pop(OAUTH_RECONNECT, None)
    try:
        if again is not None:
            integration = own_integration(again)
            reconnect_integration(integration, request.args["code"], sign_in)
            record(integration.account_id, "integration.reconnected", integration)
        else:
            integration = connect_integration(
                current_user.account_id, request.args["code"], sign_in
            )
            record(
                integration.account_id,
                "integration.created",
                integration,
                audit_details(integration),
            )
    except ProviderRejected as rejected:
        flash(str(rejected), "error")
        return redirect(url_for("manager.page"))
    except ValidationError as error:  # the quota was reached during the sign-in
        flash_errors(error)
        return redirect(url_for("manager.page"))
    db.session.commit()
    if again is not None:
        flash("Salesforce connected again; the queued locations are on their way.", "success")
        return redirect(url_for("integrations.detail", integration_id=integration.id))
    flash("Salesforce connected. Sign the release form to start sending.", "success")
    return redirect(url_for("integrations.release", integration_id=integration.id))


@bp.post("/<int:integration_id>/technicians")
@admin_required
def technicians(integration_id: int) -> ResponseReturnValue:
    """ServiceMax: which technician each driver is."""
    integration = own_integration(integration_id)
    if integration.provider != SERVICEMAX.key or not EmptyForm().validate():
        abort(404)
    try:
        set_technicians(integration, request.form.get("technicians", ""))
    except ValidationError as error:
        flash_errors(error)
        return redirect(url_for("integrations.detail", integration_id=integration.id))
    mapped = len(integration.options.get("technicians") or {})
    record(integration.account_id, "integration.updated", integration, {"technicians": mapped})
    db.session.commit()
    flash("Technicians saved.", "success")
    return redirect(url_for("integrations.detail", integration_id=integration.id))
