"""Portal pages of the accounts blueprint: log in and out, the account overview,
API tokens, users and the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_url, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from accounts import login_throttle
from accounts.audit import account_events
from accounts.forms import LoginForm, TokenForm, UserForm
from accounts.models import User
from accounts.sessions import close_session, open_session, session_is_live
from accounts.tokens import account_tokens, get_account_token, issue_token, revoke_token
from accounts.users import (
    account_users,
    add_user,
    authenticate,
    get_account_user,
    normalise_email,
    remove_user,
)
from core.database import whole_number
from core.errors import ValidationError
from core.extensions import db, login_manager
from core.portal import EmptyForm, admin_required, or_404, show_errors

bp = Blueprint("accounts", __name__)

Page = tuple[str, int]

# Events per page of the audit log.
AUDIT_PAGE = 50


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and "\\" not in target:
            return target
    return url_for("accounts.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    """Log in with email and password; failures are rate-limited."""
    if current_user.is_authenticated:
        return redirect(url_for("accounts.overview"))
    form = LoginForm()
    if form.validate_on_submit():
        email = normalise_email(form.email.data)
        # The client's address, as ProxyFix gives it behind FLEETHOOK_TRUSTED_PROXIES.
        address = request.remote_addr or "unknown"
        wait = login_throttle.admit_attempt(email, address)
        if wait:
            form.form_errors.append(
                f"Too many failed attempts. Try again in {max(1, round(wait / 60))} min."
            )
            page = render_template("accounts/login.html", form=form)
            return page, 429, {"Retry-After": str(wait)}
        user = authenticate(email, form.password.data)
        if user is None:
            form.form_errors.append("Wrong email address or password.")
        else:
            login_throttle.forget_failures(email, address)
            next_path = _safe_next(request.args.get("next"))
            # A fresh session: nothing set before login (by whoever) survives it.
            session.clear()
            login_user(user)
            open_session(user.id)
            return redirect(next_path)
    return render_template("accounts/login.html", form=form)


@bp.post("/logout")
def logout() -> Response:
    """Log out, ending the session on the server too, and go back to the login page."""
    logout_user()
    close_session()
    flash("You are logged out.", "info")
    return redirect(url_for("accounts.login"))


@bp.get("/")
@login_required
def overview() -> str:
    """The account at a glance, with the way to the Webhook Manager."""
    return render_template("accounts/overview.html")


def _records_page(template: str, form: FlaskForm, status: int, **records: Any) -> Page:
    """A page of the account's tokens or users: the records, the form that adds one,
    and the empty form whose CSRF token the rows' buttons carry."""
    return render_template(template, form=form, button=EmptyForm(), **records), status


def _tokens_page(form: TokenForm, new_token: str | None = None, status: int = 200) -> Page:
    tokens = account_tokens(current_user.account_id)
    return _records_page("accounts/tokens.html", form, status, tokens=tokens, new_token=new_token)


@bp.get("/account/tokens")
@login_required
def tokens() -> Page:
    """The account's API tokens."""
    return _tokens_page(TokenForm(formdata=None))


@bp.post("/account/tokens")
@admin_required
def create_token() -> Page:
    """Create an API token (scope, optional expiry) and show it, this once."""
    form = TokenForm()
    try:
        expires_at = form.expiry()
        _, clear = issue_token(
            current_user, form.name.data or "", form.scope.data or None, expires_at
        )
    except ValidationError as error:
        show_errors(form, error)
        return _tokens_page(form, status=422)
    db.session.commit()
    return _tokens_page(TokenForm(formdata=None), new_token=clear)


@bp.post("/account/tokens/<int:token_id>/revoke")
@admin_required
def revoke(token_id: int) -> Response:
    """Revoke one of the account's API tokens."""
    token = or_404(get_account_token(current_user.account_id, token_id))
    revoke_token(token)
    db.session.commit()
    flash(f"Token “{token.name}” revoked.", "success")
    return redirect(url_for("accounts.tokens"))


def _users_page(form: UserForm, status: int = 200) -> Page:
    users = account_users(current_user.account_id)
    return _records_page("accounts/users.html", form, status, users=users)


@bp.get("/account/users")
@login_required
def users() -> Page:
    """The account's users."""
    return _users_page(UserForm(formdata=None))


@bp.post("/account/users")
@admin_required
def add() -> Response | Page:
    """Add a user to the account."""
    form = UserForm()
    try:
        user = add_user(
            current_user.account,
            form.email.data or "",
            form.password.data or "",
            form.role.data or "",
        )
    except ValidationError as error:
        show_errors(form, error)
        return _users_page(form, status=422)
    db.session.commit()
    flash(f"{user.email} can now log in as {user.role}.", "success")
    return redirect(url_for("accounts.users"))


@bp.post("/account/users/<int:user_id>/remove")
@admin_required
def remove(user_id: int) -> Response:
    """Remove a user of the account (never the last admin)."""
    user = or_404(get_account_user(current_user.account_id, user_id))
    try:
        remove_user(user)
    except ValidationError as error:
        flash(error.errors["user"][0], "error")
        return redirect(url_for("accounts.users"))
    db.session.commit()
    flash(f"{user.email} removed.", "success")
    return redirect(url_for("accounts.users"))


@bp.get("/account/audit")
@admin_required
def audit() -> str:
    """The account's audit log, newest first, a page at a time (`cursor`)."""
    cursor = whole_number(request.args.get("cursor"))
    found = account_events(current_user.account_id, before_id=cursor, limit=AUDIT_PAGE + 1)
    events = found[:AUDIT_PAGE]
    next_cursor = events[-1].id if len(found) > AUDIT_PAGE else None
    return render_template(
        "accounts/audit.html", events=events, next_cursor=next_cursor, paged=cursor is not None
    )


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The signed-in user, while the cookie's server-side session lives."""
    if not session_is_live(user_id):
        return None
    return db.session.get(User, int(user_id))


@login_manager.unauthorized_handler
def unauthorized() -> Response:
    """To the login page, and back here after it. An htmx request (a grid polling
    when the session has ended) gets the whole page sent there: a redirect would
    swap the login form into the grid."""
    flash(login_manager.login_message, login_manager.login_message_category)
    if request.headers.get("HX-Request") == "true":
        here = urlsplit(request.headers.get("HX-Current-URL", ""))
        page = here.path + (f"?{here.query}" if here.query else "")
        target = login_url("accounts.login", _safe_next(page))
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(login_url("accounts.login", request.url))
