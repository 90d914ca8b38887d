"""Adding and listing an account's vehicles and landmarks, with every rule on
their fields; the API (and later the portal) call these. Callers commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from errors import ValidationError
from extensions import db
from fleet.geometry import ShapeError, parse_circle, parse_polygon
from fleet.landmark_index import landmarks_changed
from fleet.models import Landmark, Vehicle
from fleet.vin import check_digit_warning, normalise_vin, vin_problems

VEHICLE_FIELDS = ("name", "vin", "plate", "group")
LANDMARK_FIELDS = ("name", "circle", "polygon")


def _text(
    values: Mapping[str, Any], field: str, limit: int, required: bool
) -> tuple[Any, list[str]]:
    value = values.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, (["Required."] if required else [])
    if not isinstance(value, str):
        return None, ["A string."]
    if len(value.strip()) > limit:
        return None, [f"At most {limit} characters."]
    return value.strip(), []


def _unknown(values: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, list[str]]:
    return {name: ["Not a field here."] for name in sorted(set(values) - set(known))}


def create_vehicle(account_id: int, values: Mapping[str, Any]) -> tuple[Vehicle, list[str]]:
    """A new vehicle and the warnings worth showing (a doubtful check digit)."""
    errors = _unknown(values, VEHICLE_FIELDS)
    cleaned: dict[str, Any] = {}
    for field, limit, required in (("name", 100, True), ("plate", 20, False), ("group", 60, False)):
        cleaned[field], problems = _text(values, field, limit, required)
        if problems:
            errors[field] = problems
    given_vin = values.get("vin")
    vin = normalise_vin(given_vin) if isinstance(given_vin, str) else ""
    if not vin:
        errors["vin"] = ["Required: the 17-character VIN."]
    else:
        problems = vin_problems(vin)
        if not problems and db.session.scalar(
            select(Vehicle.id).where(Vehicle.account_id == account_id, Vehicle.vin == vin)
        ):
            problems = ["This account already has a vehicle with this VIN."]
        if problems:
            errors["vin"] = problems
    if errors:
        raise ValidationError(errors)
    vehicle = Vehicle(
        account_id=account_id,
        name=cleaned["name"],
        vin=vin,
        plate=cleaned["plate"],
        group_name=cleaned["group"],
    )
    db.session.add(vehicle)
    warning = check_digit_warning(vin)
    return vehicle, [warning] if warning else []


def create_landmark(account_id: int, values: Mapping[str, Any]) -> Landmark:
    errors = _unknown(values, LANDMARK_FIELDS)
    name, problems = _text(values, "name", 100, True)
    if problems:
        errors["name"] = problems
    given = [kind for kind in ("circle", "polygon") if values.get(kind) is not None]
    if len(given) != 1:
        errors["shape"] = ['Give exactly one of "circle" or "polygon".']
    else:
        kind = given[0]
        try:
            (parse_circle if kind == "circle" else parse_polygon)(values[kind])
        except ShapeError as error:
            errors[kind] = [str(error)]
    if errors:
        raise ValidationError(errors)
    landmark = Landmark(account_id=account_id, name=name, shape={kind: values[kind]})
    db.session.add(landmark)
    landmarks_changed(account_id)
    return landmark


def account_vehicles(account_id: int, after_id: int | None, limit: int) -> list[Vehicle]:
    query = select(Vehicle).where(Vehicle.account_id == account_id).order_by(Vehicle.id)
    if after_id is not None:
        query = query.where(Vehicle.id > after_id)
    return list(db.session.scalars(query.limit(limit)))


def account_landmarks(account_id: int, after_id: int | None, limit: int) -> list[Landmark]:
    query = select(Landmark).where(Landmark.account_id == account_id).order_by(Landmark.id)
    if after_id is not None:
        query = query.where(Landmark.id > after_id)
    return list(db.session.scalars(query.limit(limit)))


def vehicle_groups(account_id: int) -> list[str]:
    """The names of the groups the account's vehicles are in, sorted."""
    return list(
        db.session.scalars(
            select(Vehicle.group_name)
            .where(Vehicle.account_id == account_id, Vehicle.group_name.is_not(None))
            .distinct()
            .order_by(Vehicle.group_name)
        )
    )
