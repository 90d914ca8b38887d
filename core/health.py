"""`GET /healthz`: whether this process can reach the database and Redis, and so
whether a load balancer should send it requests."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from core.extensions import db, redis_client

bp = Blueprint("health", __name__)


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as error:  # any failure means "not healthy", never a 500
        db.session.rollback()
        return f"unavailable: {error.__class__.__name__}"


def _check_redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except Exception as error:
        return f"unavailable: {error.__class__.__name__}"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database answers, 503 when it does not. Without Redis the answer
    is still 200, "degraded": telemetry and the portal still work (the outbox is in
    the database; the sweeper queues the drains once Redis is back), so a load
    balancer must not turn the process away."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    if checks["database"] != "ok":
        return jsonify({"status": "unavailable", **checks}), 503
    return jsonify({"status": "ok" if checks["redis"] == "ok" else "degraded", **checks}), 200
