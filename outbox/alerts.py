"""Telling people a target needs them: an email to the webhook's contact address
(when SMTP is configured) when its queue passes the cap and it is paused."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from flask import current_app

from extensions import db, queue
from outbox.models import Target

log = logging.getLogger(__name__)


def alert_auto_paused(target: Target) -> None:
    """Queue the email; the portal shows the reason on the target's status."""
    log.warning("target %s paused: %s", target.id, target.status_reason)
    if current_app.config.get("FLEETHOOK_SMTP_URL"):
        queue("maintenance").enqueue("outbox.alerts.send_auto_pause_email", target.id)


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
    smtp_class = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
    with smtp_class(url.hostname or "localhost", url.port or 25, timeout=10) as smtp:
        if url.scheme == "smtp+starttls":
            smtp.starttls()
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(message)
