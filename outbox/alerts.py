"""Telling people a target needs them: an email to the webhook's contact address
(when SMTP is configured) when its queue passes the cap and it is paused.

Mail goes over TLS whose certificate is checked (the system's CAs, plus
FLEETHOOK_SMTP_CA_FILE), and a password only ever over TLS: config.parse_smtp_url
refuses a user name on plain smtp:// at start-up, and a server that does not
offer STARTTLS gets no password (smtplib raises before AUTH)."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import redis
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.config import SMTP_TLS_SCHEMES
from core.extensions import db, queue
from outbox.models import Target

log = logging.getLogger(__name__)

# Auto-pause alerts of the session's transaction, sent when it commits.
_PENDING_ALERTS = "fleethook.pending_alerts"


def alert_auto_paused(target: Target) -> None:
    """Queue the email once the pause commits (never before: a rolled-back pause
    must send nothing, and the job must find the paused row); the portal shows
    the reason on the target's status."""
    db.session.info.setdefault(_PENDING_ALERTS, {})[target.id] = target.status_reason


@event.listens_for(Session, "after_commit")
def _queue_committed_alerts(session: Session) -> None:
    # No SQL here: the transaction is over; the reasons were taken before commit.
    pending = session.info.pop(_PENDING_ALERTS, None)
    for target_id, reason in sorted((pending or {}).items()):
        log.warning("target %s paused: %s", target_id, reason)
        if not current_app.config.get("FLEETHOOK_SMTP_URL"):
            continue
        try:
            queue("maintenance").enqueue("outbox.alerts.send_auto_pause_email", target_id)
        except redis.exceptions.RedisError:  # the pause stands; the grid still says why
            log.warning("could not queue the auto-pause email of target %s", target_id)


@event.listens_for(Session, "after_rollback")
def _forget_alerts(session: Session) -> None:
    session.info.pop(_PENDING_ALERTS, None)


def send_auto_pause_email(target_id: int) -> None:
    """Job: email the contact address of an auto-paused webhook."""
    target = db.session.get(Target, target_id)
    contact = getattr(target, "contact_email", None)
    if target is None or not contact:
        return
    message = EmailMessage()
    message["From"] = current_app.config["FLEETHOOK_MAIL_FROM"]
    message["To"] = contact
    message["Subject"] = f"Fleethook paused {getattr(target, 'name', target.kind)} ({target.id})"
    message.set_content(
        f"{target.status_reason}\n\nMessages keep queueing and nothing is lost; Resume "
        "delivers the backlog in order."
    )
    url = urlsplit(current_app.config["FLEETHOOK_SMTP_URL"])
    if url.username and url.scheme not in SMTP_TLS_SCHEMES:
        # config.parse_smtp_url refuses this at start-up; an app built another way
        # (tests, a shell) still never sends the password in clear text.
        log.error(
            "not emailing %s: FLEETHOOK_SMTP_URL has a user name but no TLS "
            "(use smtp+starttls:// or smtps://)",
            contact,
        )
        return
    host, context = url.hostname or "localhost", smtp_tls_context()
    smtp: smtplib.SMTP
    if url.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(host, url.port or 465, timeout=10, context=context)
    else:
        smtp = smtplib.SMTP(host, url.port or 25, timeout=10)
    with smtp:
        if url.scheme == "smtp+starttls":
            # Raises SMTPNotSupportedError when the server offers no STARTTLS (or
            # a man in the middle strips it): the password below is never sent.
            smtp.starttls(context=context)
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(message)


def smtp_tls_context() -> ssl.SSLContext:
    """Certificate and host name checked against the system's CAs and, when set,
    the operator's own (FLEETHOOK_SMTP_CA_FILE, for a mail server a private CA signed)."""
    context = ssl.create_default_context()
    ca_file = current_app.config.get("FLEETHOOK_SMTP_CA_FILE")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
