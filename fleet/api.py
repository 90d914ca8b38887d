"""REST API of the fleet: vehicles, drivers, landmarks and the telemetry ingest.
What each route takes and answers is in fleet/schemas.py."""

from __future__ import annotations

from typing import Any

from flask import Response

from accounts.api_access import admin_only, api_blueprint, api_user, requires
from accounts.models import Scope
from accounts.quotas import ReportQuotaExceeded
from core.api import ApiProblem, PageQuery, json_object, page_arguments, page_json
from core.contract import Answer, answer, operation, page_of
from core.errors import problem
from core.extensions import db
from core.times import utcnow
from fleet import records, schemas
from fleet.detector import assign_driver
from fleet.ingest import ingest
from fleet.models import Driver, Landmark, Vehicle

bp = api_blueprint("fleet_api", __name__)

VEHICLE_NOT_FOUND = {404: "No such vehicle in this account."}
DRIVER_NOT_FOUND = {404: "No such driver in this account."}
LANDMARK_NOT_FOUND = {404: "No such landmark in this account."}


def _page(key: str, model: Any, item: type[Answer]) -> Response:
    """A page of the account's vehicles, drivers or landmarks, by id."""
    limit, cursor = page_arguments()
    rows = records.account_page(model, api_user().account_id, cursor, limit + 1)
    return page_json(key, rows, limit, item)


def _own(model: Any, object_id: int) -> Any:
    found = db.session.get(model, object_id)
    if found is None or found.account_id != api_user().account_id:
        raise ApiProblem(404, "Not Found", f"No such {model.__name__.lower()} in your account.")
    return found


@bp.get("/vehicles")
@operation(
    "The account's vehicles, by id, a page at a time",
    {200: page_of("vehicles", schemas.Vehicle)},
    query=PageQuery,
)
def list_vehicles() -> Response:
    """The account's vehicles by id, a page at a time (`limit`, `cursor`)."""
    return _page("vehicles", Vehicle, schemas.Vehicle)


@bp.post("/vehicles")
@admin_only
@operation("Add a vehicle", {201: schemas.AddedVehicle}, body=schemas.VehicleCreate)
def add_vehicle() -> Response:
    """Add a vehicle; a doubtful check digit comes back as a warning."""
    vehicle, warnings = records.create_vehicle(api_user().account_id, json_object())
    db.session.commit()
    return answer(schemas.AddedVehicle, vehicle, 201, warnings=warnings)


@bp.get("/vehicles/<int:vehicle_id>")
@operation("One vehicle", {200: schemas.Vehicle}, problems=VEHICLE_NOT_FOUND)
def get_vehicle(vehicle_id: int) -> Response:
    """One vehicle, with its driver and what its reports said last."""
    return answer(schemas.Vehicle, _own(Vehicle, vehicle_id))


@bp.patch("/vehicles/<int:vehicle_id>")
@admin_only
@operation(
    "Change a vehicle",
    {200: schemas.Vehicle},
    body=schemas.VehicleChange,
    problems=VEHICLE_NOT_FOUND,
)
def change_vehicle(vehicle_id: int) -> Response:
    """Change name, plate, group or driver (`driver_id`, null for none); the VIN stays."""
    vehicle = _own(Vehicle, vehicle_id)
    driver = records.update_vehicle(vehicle, json_object())
    if (driver.id if driver else None) != vehicle.driver_id:
        assign_driver(vehicle, driver, at=utcnow(), source="api")
    db.session.commit()
    return answer(schemas.Vehicle, vehicle)


@bp.delete("/vehicles/<int:vehicle_id>")
@admin_only
@operation("Delete a vehicle", {204: "Deleted."}, problems=VEHICLE_NOT_FOUND)
def remove_vehicle(vehicle_id: int) -> tuple[str, int]:
    """Delete a vehicle, with its reports, state and driver history."""
    records.delete_vehicle(_own(Vehicle, vehicle_id))
    db.session.commit()
    return "", 204


@bp.get("/drivers")
@operation(
    "The account's drivers, by id, a page at a time",
    {200: page_of("drivers", schemas.Driver)},
    query=PageQuery,
)
def list_drivers() -> Response:
    """The account's drivers by id, a page at a time (`limit`, `cursor`)."""
    return _page("drivers", Driver, schemas.Driver)


@bp.post("/drivers")
@admin_only
@operation("Add a driver", {201: schemas.Driver}, body=schemas.DriverCreate)
def add_driver() -> Response:
    """Add a driver: a name unique in the account, and optionally the customer's id."""
    driver = records.create_driver(api_user().account_id, json_object())
    db.session.commit()
    return answer(schemas.Driver, driver, 201)


@bp.get("/drivers/<int:driver_id>")
@operation("One driver", {200: schemas.Driver}, problems=DRIVER_NOT_FOUND)
def get_driver(driver_id: int) -> Response:
    """One driver."""
    return answer(schemas.Driver, _own(Driver, driver_id))


@bp.patch("/drivers/<int:driver_id>")
@admin_only
@operation(
    "Change a driver",
    {200: schemas.Driver},
    body=schemas.DriverChange,
    problems=DRIVER_NOT_FOUND,
)
def change_driver(driver_id: int) -> Response:
    """Change a driver's name or external id; the others stay."""
    driver = _own(Driver, driver_id)
    records.update_driver(driver, json_object())
    db.session.commit()
    return answer(schemas.Driver, driver)


@bp.delete("/drivers/<int:driver_id>")
@admin_only
@operation("Delete a driver", {204: "Deleted."}, problems=DRIVER_NOT_FOUND)
def remove_driver(driver_id: int) -> tuple[str, int]:
    """Delete a driver; vehicles they drove are left without a driver."""
    records.delete_driver(_own(Driver, driver_id))
    db.session.commit()
    return "", 204


@bp.get("/landmarks")
@operation(
    "The account's landmarks, by id, a page at a time",
    {200: page_of("landmarks", schemas.Landmark)},
    query=PageQuery,
)
def list_landmarks() -> Response:
    """The account's landmarks by id, a page at a time (`limit`, `cursor`)."""
    return _page("landmarks", Landmark, schemas.Landmark)


@bp.post("/landmarks")
@admin_only
@operation("Add a landmark", {201: schemas.Landmark}, body=schemas.LandmarkCreate)
def add_landmark() -> Response:
    """Add a landmark: a circle or a GeoJSON polygon."""
    landmark = records.create_landmark(api_user().account_id, json_object())
    db.session.commit()
    return answer(schemas.Landmark, landmark, 201)


@bp.get("/landmarks/<int:landmark_id>")
@operation("One landmark", {200: schemas.Landmark}, problems=LANDMARK_NOT_FOUND)
def get_landmark(landmark_id: int) -> Response:
    """One landmark."""
    return answer(schemas.Landmark, _own(Landmark, landmark_id))


@bp.patch("/landmarks/<int:landmark_id>")
@admin_only
@operation(
    "Change a landmark",
    {200: schemas.Landmark},
    body=schemas.LandmarkChange,
    problems=LANDMARK_NOT_FOUND,
)
def change_landmark(landmark_id: int) -> Response:
    """Rename, or give a new shape (`circle` or `polygon`, replacing the old one)."""
    landmark = _own(Landmark, landmark_id)
    records.update_landmark(landmark, json_object())
    db.session.commit()
    return answer(schemas.Landmark, landmark)


@bp.delete("/landmarks/<int:landmark_id>")
@admin_only
@operation(
    "Delete a landmark",
    {204: "Deleted."},
    problems={**LANDMARK_NOT_FOUND, 409: "A webhook's area is this landmark."},
)
def remove_landmark(landmark_id: int) -> tuple[str, int]:
    """Delete a landmark; vehicles inside it make no Landmark Leave event for it."""
    try:
        records.delete_landmark(_own(Landmark, landmark_id))
    except records.LandmarkInUse as error:
        raise ApiProblem(409, "Conflict", str(error)) from error
    db.session.commit()
    return "", 204


@bp.post("/telemetry")
@requires(Scope.TELEMETRY_WRITE)  # a device gateway's token needs no more; admin has it too
@operation(
    "Ingest one report or a batch of up to 1,000 (scope telemetry:write or admin)",
    {202: schemas.IngestResult},
    body=schemas.TelemetryReport | schemas.TelemetryBatch,
    problems={
        422: 'A report is invalid ("reports[3].latitude") or names a vehicle the account '
        "does not have; nothing was written.",
        429: "More reports than the account's quota allows (reports a second, in bursts); "
        "nothing was written. Retry-After: the seconds until the same request fits.",
    },
)
def post_telemetry() -> Response:
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
    return answer(schemas.IngestResult, result, 202)
