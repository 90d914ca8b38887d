"""`GET /healthz`: whether this process can reach the database and Redis."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from extensions import db, redis_client

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
    """200 when the database and Redis answer, 503 otherwise."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(result == "ok" for result in checks.values())
    return jsonify(
        {"status": "ok" if healthy else "unavailable", **checks}
    ), 200 if healthy else 503
