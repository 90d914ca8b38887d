"""REST API of the fleet: vehicles, landmarks and the telemetry ingest."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from api import admin_only, api_blueprint, api_user, json_object, page_arguments
from database import utcnow
from errors import ValidationError, validation_problem
from extensions import db
from fleet.ingest import ingest
from fleet.models import Landmark, Vehicle
from fleet.records import account_landmarks, account_vehicles, create_landmark, create_vehicle

bp = api_blueprint("fleet_api", __name__)


def vehicle_json(vehicle: Vehicle) -> dict[str, Any]:
    return {
        "id": vehicle.id,
        "name": vehicle.name,
        "vin": vehicle.vin,
        "plate": vehicle.plate,
        "group": vehicle.group_name,
        "odometer_mi": vehicle.odometer_mi,
        "engine_hours": vehicle.engine_hours,
        "fuel_level_pct": vehicle.fuel_level_pct,
        "created_at": vehicle.created_at.isoformat(),
    }


def landmark_json(landmark: Landmark) -> dict[str, Any]:
    return {"id": landmark.id, "name": landmark.name, **landmark.shape,
            "created_at": landmark.created_at.isoformat()}  # fmt: skip


def _page(rows: list[Any], limit: int, render: Any, key: str) -> Response:
    page = rows[:limit]
    next_cursor = str(page[-1].id) if len(rows) > limit else None
    return jsonify({key: [render(row) for row in page], "next_cursor": next_cursor})


@bp.get("/vehicles")
def list_vehicles() -> Response | tuple[Response, int]:
    """The account's vehicles by id, a page at a time."""
    try:
        limit, cursor = page_arguments()
    except ValidationError as error:
        return validation_problem(error.errors)
    rows = account_vehicles(api_user().account_id, cursor, limit + 1)
    return _page(rows, limit, vehicle_json, "vehicles")


@bp.post("/vehicles")
@admin_only
def add_vehicle() -> tuple[Response, int] | Response:
    """Add a vehicle; a doubtful check digit comes back as a warning."""
    try:
        vehicle, warnings = create_vehicle(api_user().account_id, json_object())
    except ValidationError as error:
        return validation_problem(error.errors)
    db.session.commit()
    return jsonify({**vehicle_json(vehicle), "warnings": warnings}), 201


@bp.get("/landmarks")
def list_landmarks() -> Response | tuple[Response, int]:
    """The account's landmarks by id, a page at a time."""
    try:
        limit, cursor = page_arguments()
    except ValidationError as error:
        return validation_problem(error.errors)
    rows = account_landmarks(api_user().account_id, cursor, limit + 1)
    return _page(rows, limit, landmark_json, "landmarks")


@bp.post("/landmarks")
@admin_only
def add_landmark() -> tuple[Response, int] | Response:
    """Add a landmark: a circle or a GeoJSON polygon."""
    try:
        landmark = create_landmark(api_user().account_id, json_object())
    except ValidationError as error:
        return validation_problem(error.errors)
    db.session.commit()
    return jsonify(landmark_json(landmark)), 201


@bp.post("/telemetry")
@admin_only
def post_telemetry() -> Response | tuple[Response, int]:
    """Ingest one report or {"reports": [...]}: 202 with the counts, or 422 with
    errors by index and nothing written."""
    try:
        result = ingest(api_user().account_id, json_object(), utcnow())
    except ValidationError as error:
        return validation_problem(error.errors)
    db.session.commit()
    return jsonify(
        accepted=result.accepted,
        duplicates=result.duplicates,
        events=result.events,
        messages=result.messages,
    ), 202
