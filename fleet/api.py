"""REST API of the fleet: vehicles, drivers, landmarks and the telemetry ingest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, jsonify

from accounts.api_access import admin_only, api_blueprint, api_user, requires
from accounts.models import Scope
from accounts.quotas import ReportQuotaExceeded
from core.api import ApiProblem, iso_time, json_object, page_arguments, page_json
from core.errors import problem
from core.extensions import db
from core.times import utcnow
from fleet import records
from fleet.detector import assign_driver
from fleet.ingest import ingest
from fleet.models import Driver, Landmark, Vehicle

bp = api_blueprint("fleet_api", __name__)


def vehicle_json(vehicle: Vehicle) -> dict[str, Any]:
    driver = db.session.get(Driver, vehicle.driver_id) if vehicle.driver_id else None
    location = None
    if vehicle.last_fix_at is not None:
        location = {
            "latitude": vehicle.last_latitude,
            "longitude": vehicle.last_longitude,
            "fix_time": iso_time(vehicle.last_fix_at),
        }
    return {
        "id": vehicle.id,
        "name": vehicle.name,
        "vin": vehicle.vin,
        "plate": vehicle.plate,
        "group": vehicle.group_name,
        "driver": {"id": driver.id, "name": driver.name} if driver else None,
        "odometer_mi": vehicle.odometer_mi,
        "engine_hours": vehicle.engine_hours,
        "fuel_level_pct": vehicle.fuel_level_pct,
        "last_location": location,
        "last_dvir": vehicle.last_dvir,
        "created_at": iso_time(vehicle.created_at),
    }


def driver_json(driver: Driver) -> dict[str, Any]:
    return {
        "id": driver.id,
        "name": driver.name,
        "external_id": driver.external_id,
        "created_at": iso_time(driver.created_at),
    }


def landmark_json(landmark: Landmark) -> dict[str, Any]:
    return {
        "id": landmark.id,
        "name": landmark.name,
        **landmark.shape,
        "created_at": iso_time(landmark.created_at),
    }


# What each collection is made of: its model, JSON, and records functions.
_KINDS: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]] = {
    "vehicles": (Vehicle, vehicle_json),
    "drivers": (Driver, driver_json),
    "landmarks": (Landmark, landmark_json),
}


def _listing(plural: str) -> Response | tuple[Response, int]:
    model, render = _KINDS[plural]
    limit, cursor = page_arguments()
    rows = records.account_page(model, api_user().account_id, cursor, limit + 1)
    return page_json(plural, rows, limit, render)


def _own(plural: str, object_id: int) -> Any:
    model, _ = _KINDS[plural]
    found = db.session.get(model, object_id)
    if found is None or found.account_id != api_user().account_id:
        raise ApiProblem(404, "Not Found", f"No such {plural[:-1]} in your account.")
    return found


@bp.get("/vehicles")
def list_vehicles() -> Response | tuple[Response, int]:
    """The account's vehicles by id, a page at a time."""
    return _listing("vehicles")


@bp.post("/vehicles")
@admin_only
def add_vehicle() -> tuple[Response, int] | Response:
    """Add a vehicle; a doubtful check digit comes back as a warning."""
    vehicle, warnings = records.create_vehicle(api_user().account_id, json_object())
    db.session.commit()
    return jsonify({**vehicle_json(vehicle), "warnings": warnings}), 201


@bp.get("/vehicles/<int:vehicle_id>")
def get_vehicle(vehicle_id: int) -> Response:
    return jsonify(vehicle_json(_own("vehicles", vehicle_id)))


@bp.patch("/vehicles/<int:vehicle_id>")
@admin_only
def change_vehicle(vehicle_id: int) -> Response | tuple[Response, int]:
    """Change name, plate, group or driver (`driver_id`, null for none); the VIN stays."""
    vehicle = _own("vehicles", vehicle_id)
    current = {
        "name": vehicle.name,
        "plate": vehicle.plate,
        "group": vehicle.group_name,
        "driver_id": vehicle.driver_id,
    }
    driver = records.update_vehicle(vehicle, {**current, **json_object()})
    if (driver.id if driver else None) != vehicle.driver_id:
        assign_driver(vehicle, driver, at=utcnow(), source="api")
    db.session.commit()
    return jsonify(vehicle_json(vehicle))


@bp.delete("/vehicles/<int:vehicle_id>")
@admin_only
def remove_vehicle(vehicle_id: int) -> tuple[str, int]:
    records.delete_vehicle(_own("vehicles", vehicle_id))
    db.session.commit()
    return "", 204


@bp.get("/drivers")
def list_drivers() -> Response | tuple[Response, int]:
    """The account's drivers by id, a page at a time."""
    return _listing("drivers")


@bp.post("/drivers")
@admin_only
def add_driver() -> tuple[Response, int] | Response:
    """Add a driver: a name unique in the account, and optionally the customer's id."""
    driver = records.create_driver(api_user().account_id, json_object())
    db.session.commit()
    return jsonify(driver_json(driver)), 201


@bp.get("/drivers/<int:driver_id>")
def get_driver(driver_id: int) -> Response:
    return jsonify(driver_json(_own("drivers", driver_id)))


@bp.patch("/drivers/<int:driver_id>")
@admin_only
def change_driver(driver_id: int) -> Response | tuple[Response, int]:
    driver = _own("drivers", driver_id)
    current = {"name": driver.name, "external_id": driver.external_id}
    records.update_driver(driver, {**current, **json_object()})
    db.session.commit()
    return jsonify(driver_json(driver))


@bp.delete("/drivers/<int:driver_id>")
@admin_only
def remove_driver(driver_id: int) -> tuple[str, int]:
    """Delete a driver; vehicles they drove are left without a driver."""
    records.delete_driver(_own("drivers", driver_id))
    db.session.commit()
    return "", 204


@bp.get("/landmarks")
def list_landmarks() -> Response | tuple[Response, int]:
    """The account's landmarks by id, a page at a time."""
    return _listing("landmarks")


@bp.post("/landmarks")
@admin_only
def add_landmark() -> tuple[Response, int] | Response:
    """Add a landmark: a circle or a GeoJSON polygon."""
    landmark = records.create_landmark(api_user().account_id, json_object())
    db.session.commit()
    return jsonify(landmark_json(landmark)), 201


@bp.get("/landmarks/<int:landmark_id>")
def get_landmark(landmark_id: int) -> Response:
    return jsonify(landmark_json(_own("landmarks", landmark_id)))


@bp.patch("/landmarks/<int:landmark_id>")
@admin_only
def change_landmark(landmark_id: int) -> Response | tuple[Response, int]:
    """Rename, or give a new shape (`circle` or `polygon`, replacing the old one)."""
    landmark = _own("landmarks", landmark_id)
    body = json_object()
    shape = {} if {"circle", "polygon"} & set(body) else dict(landmark.shape)
    records.update_landmark(landmark, {"name": landmark.name, **shape, **body})
    db.session.commit()
    return jsonify(landmark_json(landmark))


@bp.delete("/landmarks/<int:landmark_id>")
@admin_only
def remove_landmark(landmark_id: int) -> tuple[str, int]:
    records.delete_landmark(_own("landmarks", landmark_id))
    db.session.commit()
    return "", 204


@bp.post("/telemetry")
@requires(Scope.TELEMETRY_WRITE)  # a device gateway's token needs no more; admin has it too
def post_telemetry() -> Response | tuple[Response, int]:
    """Ingest one report or {"reports": [...]}: 202 with the counts; 422 with errors
    by index, or 429 past the account's report quota, with nothing written."""
    try:
        result = ingest(api_user().account_id, json_object(), utcnow())
    except ReportQuotaExceeded as over:
        limits = over.limits
        return problem(
            429,
            "Too Many Requests",
            f"Your account may send {limits.reports_per_second:g} reports a second, in "
            f"bursts of up to {limits.reports_burst:,}; these {over.reports:,} reports are "
            f"over that. Nothing was stored: send them again in {over.retry_after} s.",
            headers={"Retry-After": str(over.retry_after)},
        )
    # The ingest committed each chunk of the batch as it went.
    return jsonify(
        accepted=result.accepted,
        duplicates=result.duplicates,
        events=result.events,
        messages=result.messages,
    ), 202
