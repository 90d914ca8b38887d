"""Portal pages of the webhooks blueprint: the Webhook Manager."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.get("/")
@login_required
def manager() -> str:
    """The Webhook Manager: available webhooks, the webhooks grid, integrations."""
    return render_template("webhooks/manager.html")
