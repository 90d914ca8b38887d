"""Adding, changing, deleting and listing an account's vehicles, drivers and
landmarks, and the CSV import of vehicles; the API and the portal call these.
Their fields are checked against the shapes of fleet/schemas.py, then by the rules
a shape cannot say: a VIN (fleet/vin.py) not yet in the account, a driver's name
unique in it, a driver of the account, exactly one shape per landmark and its
geometry (fleet/geometry.py). Callers commit."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.contract import check_fields
from core.database import write_unless_taken
from core.errors import ValidationError
from core.extensions import db
from fleet.geometry import (
    Area,
    Circle,
    ShapeError,
    area_m2,
    parse_polygon,
    stored_shape,
    svg,
)
from fleet.landmark_index import landmarks_changed, shape_of
from fleet.models import Driver, Landmark, Vehicle
from fleet.schemas import (
    DRIVER_CHOICE,
    NOT_A_FIELD,
    DriverChange,
    DriverCreate,
    LandmarkChange,
    LandmarkCreate,
    VehicleChange,
    VehicleCreate,
)
from fleet.vin import check_digit_warning, normalise_vin, vin_problems

# The CSV import's columns: a new vehicle's fields, in their order. (A vehicle's VIN
# is its identity, which events and integrations name: VehicleChange has none.)
VEHICLE_FIELDS = tuple(VehicleCreate.__annotations__)
# A vehicle's field and its column, where they differ.
VEHICLE_COLUMNS = {"group": "group_name"}
LANDMARK_SHAPES = ("circle", "polygon")

VIN_TAKEN = "This account already has a vehicle with this VIN."
DRIVER_NAME_TAKEN = "This account already has a driver with this name."

# The CSV import: a file this large at most, and this many vehicles (lines after the header).
MAX_IMPORT_BYTES = 1024 * 1024
MAX_IMPORT_ROWS = 5000


def _check_vehicle(
    values: Mapping[str, Any], duplicate: Callable[[str], str | None]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The cleaned fields of a new vehicle and the problems of each; `duplicate`
    says why a well-formed VIN is taken, or None."""
    cleaned, errors = check_fields(VehicleCreate, values, unknown=NOT_A_FIELD)
    if "vin" in cleaned:
        vin = cleaned["vin"] = normalise_vin(cleaned["vin"])
        problems = vin_problems(vin)
        taken = None if problems else duplicate(vin)
        if taken:
            problems = [taken]
        if problems:
            errors["vin"] = problems
    return cleaned, errors


def _new_vehicle(account_id: int, cleaned: Mapping[str, Any]) -> Vehicle:
    return Vehicle(
        account_id=account_id,
        name=cleaned["name"],
        vin=cleaned["vin"],
        plate=cleaned.get("plate"),
        group_name=cleaned.get("group"),
    )


def _account_vin_taken(account_id: int) -> Callable[[str], str | None]:
    def taken(vin: str) -> str | None:
        found = db.session.scalar(
            select(Vehicle.id).where(Vehicle.account_id == account_id, Vehicle.vin == vin)
        )
        return VIN_TAKEN if found else None

    return taken


def create_vehicle(account_id: int, values: Mapping[str, Any]) -> tuple[Vehicle, list[str]]:
    """A new vehicle and the warnings worth showing (a doubtful check digit)."""
    cleaned, errors = _check_vehicle(values, _account_vin_taken(account_id))
    if errors:
        raise ValidationError(errors)
    vehicle = _new_vehicle(account_id, cleaned)
    # The check above and this insert are not one step: a request adding the same
    # VIN may commit in between. The database's unique key then decides, and this
    # request gets the answer of any duplicate.
    if not write_unless_taken(db.session, lambda: db.session.add(vehicle)):
        raise ValidationError({"vin": [VIN_TAKEN]})
    warning = check_digit_warning(cleaned["vin"])
    return vehicle, [warning] if warning else []


def update_vehicle(vehicle: Vehicle, values: Mapping[str, Any]) -> Driver | None:
    """Change the fields given of a vehicle (name, plate, group; the others stay),
    and check the driver it should have: `driver_id`, one of the account's drivers
    or None for no driver; left out, the driver it has.

    The driver is returned, not set: `fleet.detector.assign_driver` records the
    change and its event, and only when it is a change."""
    cleaned, errors = check_fields(VehicleChange, values, unknown=NOT_A_FIELD)
    driver = db.session.get(Driver, vehicle.driver_id) if vehicle.driver_id else None
    if "driver_id" in cleaned:
        driver_id = cleaned.pop("driver_id")
        driver = None if driver_id is None else get_account_driver(vehicle.account_id, driver_id)
        if driver_id is not None and driver is None:
            errors["driver_id"] = [DRIVER_CHOICE]
    if errors:
        raise ValidationError(errors)
    for field, value in cleaned.items():
        setattr(vehicle, VEHICLE_COLUMNS.get(field, field), value)
    return driver


def delete_vehicle(vehicle: Vehicle) -> None:
    """Delete a vehicle; its reports, state and assignment history go with it."""
    db.session.delete(vehicle)


def get_account_vehicle(account_id: int, vehicle_id: int) -> Vehicle | None:
    """The vehicle if it belongs to the account; None otherwise, as if it did not exist."""
    return db.session.scalar(
        select(Vehicle).where(Vehicle.id == vehicle_id, Vehicle.account_id == account_id)
    )


def vehicles_with_drivers(account_id: int) -> list[tuple[Vehicle, Driver | None]]:
    """Every vehicle of the account by name, with its current driver."""
    rows = db.session.execute(
        select(Vehicle, Driver)
        .outerjoin(Driver, Vehicle.driver_id == Driver.id)
        .where(Vehicle.account_id == account_id)
        .order_by(func.lower(Vehicle.name), Vehicle.id)
    )
    return [(vehicle, driver) for vehicle, driver in rows]


def import_vehicles_csv(account_id: int, data: bytes) -> tuple[list[Vehicle], list[str]]:
    """Add every vehicle of a CSV file (header `name,vin,plate,group`, plate and
    group optional; UTF-8 with or without a BOM), or none: any bad line refuses
    the whole file. Errors are keyed "line 3: vin", lines counted from 1 with the
    header as line 1; whole-file problems are keyed "file". Warnings (a doubtful
    check digit) start with their line too."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationError(
            {"file": [f"At most 1 MiB; this file has {len(data) / 1024 / 1024:.1f} MiB."]}
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValidationError(
            {"file": [f"Line {line} is not UTF-8 text. Save the file as CSV (UTF-8)."]}
        ) from None
    try:
        header, rows = _csv_rows(text)
    except csv.Error as error:
        raise ValidationError({"file": [f"Not a CSV file this can read: {error}."]}) from None
    errors = _header_problems(header)
    if errors:
        raise ValidationError(errors)
    if not rows:
        raise ValidationError({"file": ["No vehicles: put one per line after the header."]})
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError(
            {"file": [f"At most {MAX_IMPORT_ROWS:,} vehicles in one file; this has {len(rows):,}."]}
        )

    existing = set(db.session.scalars(select(Vehicle.vin).where(Vehicle.account_id == account_id)))
    first_line: dict[str, int] = {}

    def duplicate(vin: str) -> str | None:
        if vin in existing:
            return VIN_TAKEN
        if vin in first_line:
            return f"The same VIN as line {first_line[vin]}."
        return None

    checked = []
    for line, cells in rows:
        if len(cells) > len(header):
            errors[f"line {line}: row"] = [
                f"{len(cells)} values, but the header names {len(header)} columns."
            ]
            continue
        values = dict(zip(header, cells, strict=False))
        cleaned, problems = _check_vehicle(values, duplicate)
        for field, messages in problems.items():
            errors[f"line {line}: {field}"] = messages
        if "vin" in cleaned and "vin" not in problems:
            first_line[cleaned["vin"]] = line
        checked.append((line, cleaned))
    if errors:
        raise ValidationError(errors)

    vehicles = [_new_vehicle(account_id, cleaned) for _, cleaned in checked]
    if not write_unless_taken(db.session, lambda: db.session.add_all(vehicles)):
        raise ValidationError(_taken_meanwhile(account_id, checked))
    warnings = []
    for line, cleaned in checked:
        warning = check_digit_warning(cleaned["vin"])
        if warning:
            warnings.append(f"Line {line} ({cleaned['vin']}): {warning}")
    return vehicles, warnings


def _taken_meanwhile(
    account_id: int, checked: list[tuple[int, dict[str, Any]]]
) -> dict[str, list[str]]:
    """The lines whose VIN a concurrent request added after the file was checked."""
    vins = [cleaned["vin"] for _, cleaned in checked]
    taken = set(
        db.session.scalars(
            select(Vehicle.vin).where(Vehicle.account_id == account_id, Vehicle.vin.in_(vins))
        )
    )
    errors = {
        f"line {line}: vin": [VIN_TAKEN] for line, cleaned in checked if cleaned["vin"] in taken
    }
    return errors or {"file": ["Vehicles were added meanwhile with some of these VINs; try again."]}


def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (column names, trimmed and lower-cased) and each non-blank row
    with the line it starts on (a quoted value may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    previous_end = 0
    for cells in reader:
        line, previous_end = previous_end + 1, reader.line_num
        if line == 1:
            header = [cell.strip().lower() for cell in cells]
        elif any(cell.strip() for cell in cells):
            rows.append((line, cells))
    return header, rows


def _header_problems(header: list[str]) -> dict[str, list[str]]:
    expected = ", ".join(VEHICLE_FIELDS)
    if not any(header):
        return {"line 1: header": [f"The first line must be the header: {expected}."]}
    problems = []
    for column in ("name", "vin"):
        if column not in header:
            problems.append(f"No “{column}” column: the header is {expected}.")
    for column in sorted(set(header) - set(VEHICLE_FIELDS)):
        if column:
            problems.append(f"Unknown column “{column}”: the columns are {expected}.")
        else:
            problems.append("A column without a name (a stray comma?).")
    for column in sorted({c for c in header if header.count(c) > 1}):
        problems.append(f"The column “{column}” appears twice.")
    return {"line 1: header": problems} if problems else {}


def _check_driver(
    account_id: int, values: Mapping[str, Any], driver: Driver | None
) -> dict[str, Any]:
    """The cleaned fields of a new driver (`driver` None) or of a change to one, or
    ValidationError; a name is unique in the account."""
    shape = DriverCreate if driver is None else DriverChange
    cleaned, errors = check_fields(shape, values, unknown=NOT_A_FIELD)
    if "name" in cleaned:
        same_name = select(Driver.id).where(
            Driver.account_id == account_id, Driver.name == cleaned["name"]
        )
        if driver is not None:
            same_name = same_name.where(Driver.id != driver.id)
        if db.session.scalar(same_name):
            errors["name"] = [DRIVER_NAME_TAKEN]
    if errors:
        raise ValidationError(errors)
    return cleaned


def create_driver(account_id: int, values: Mapping[str, Any]) -> Driver:
    """A new driver: a name unique in the account, and optionally the customer's own id."""
    driver = Driver(account_id=account_id, **_check_driver(account_id, values, None))
    # As for a vehicle's VIN: a driver of this name may be committed meanwhile.
    if not write_unless_taken(db.session, lambda: db.session.add(driver)):
        raise ValidationError({"name": [DRIVER_NAME_TAKEN]})
    return driver


def update_driver(driver: Driver, values: Mapping[str, Any]) -> None:
    """Change the fields given of a driver (name, external id), by the rules of
    `create_driver`; the others stay."""
    cleaned = _check_driver(driver.account_id, values, driver)

    def rename() -> None:
        for field, value in cleaned.items():
            setattr(driver, field, value)

    if not write_unless_taken(db.session, rename):
        raise ValidationError({"name": [DRIVER_NAME_TAKEN]})


def delete_driver(driver: Driver) -> None:
    """Delete a driver; the database leaves the vehicles they drove without a
    driver (the foreign key is ON DELETE SET NULL)."""
    db.session.delete(driver)


def get_account_driver(account_id: int, driver_id: int) -> Driver | None:
    """The driver if it belongs to the account; None otherwise, as if it did not exist."""
    return db.session.scalar(
        select(Driver).where(Driver.id == driver_id, Driver.account_id == account_id)
    )


def account_drivers(account_id: int) -> list[Driver]:
    """Every driver of the account by name."""
    return _by_name(Driver, account_id)


def _by_name(model: Any, account_id: int) -> list[Any]:
    return list(
        db.session.scalars(
            select(model)
            .where(model.account_id == account_id)
            .order_by(func.lower(model.name), model.id)
        )
    )


def drivers_with_vehicles(account_id: int) -> list[tuple[Driver, list[Vehicle]]]:
    """Every driver of the account by name, with the vehicles assigned to them now."""
    drivers = account_drivers(account_id)
    assigned: dict[int, list[Vehicle]] = {driver.id: [] for driver in drivers}
    for vehicle in db.session.scalars(
        select(Vehicle)
        .where(Vehicle.account_id == account_id, Vehicle.driver_id.is_not(None))
        .order_by(func.lower(Vehicle.name), Vehicle.id)
    ):
        assigned.setdefault(vehicle.driver_id or 0, []).append(vehicle)
    return [(driver, assigned[driver.id]) for driver in drivers]


def _check_landmark(values: Mapping[str, Any], landmark: Landmark | None) -> dict[str, Any]:
    """The name and stored shape of a new landmark (`landmark` None), or those given
    for a change to one; or ValidationError. A new landmark has exactly one of
    circle or polygon (null: not that one), and so does a change that names either."""
    rules = LandmarkCreate if landmark is None else LandmarkChange
    cleaned, problems = check_fields(rules, values, unknown=NOT_A_FIELD)
    # A circle's or polygon's problems are named by the shape, as they always were
    # ("circle": ["radius_m must be between …"]), not by its field.
    errors: dict[str, list[str]] = {}
    for key, messages in problems.items():
        kind = key.split(".")[0]
        target = errors.setdefault(kind if kind in LANDMARK_SHAPES else key, [])
        target.extend(message for message in messages if message not in target)
    changed = {"name": cleaned["name"]} if "name" in cleaned else {}
    if landmark is None or set(LANDMARK_SHAPES) & set(values):
        given = [kind for kind in LANDMARK_SHAPES if values.get(kind) is not None]
        if len(given) != 1:
            # The first thing to put right; what is wrong inside either waits.
            for kind in LANDMARK_SHAPES:
                errors.pop(kind, None)
            errors["shape"] = ['Give exactly one of "circle" or "polygon".']
        elif given[0] in cleaned:
            kind = given[0]
            try:
                # Stored as rebuilt from the checked numbers, never as sent (an altitude
                # or a stray key would reach every later reader).
                parsed = (
                    Circle(**cleaned[kind]) if kind == "circle" else parse_polygon(cleaned[kind])
                )
                changed["shape"] = stored_shape(parsed)
            except ShapeError as error:
                errors[kind] = [str(error)]
    if errors:
        raise ValidationError(errors)
    return changed


def create_landmark(account_id: int, values: Mapping[str, Any]) -> Landmark:
    landmark = Landmark(account_id=account_id, **_check_landmark(values, None))
    db.session.add(landmark)
    landmarks_changed(account_id)
    return landmark


def update_landmark(landmark: Landmark, values: Mapping[str, Any]) -> None:
    """Change a landmark's name or shape (a new circle or polygon replaces the old),
    by the rules of `create_landmark`; what is not given stays."""
    for field, value in _check_landmark(values, landmark).items():
        setattr(landmark, field, value)
    landmarks_changed(landmark.account_id)


class LandmarkInUse(Exception):
    """A landmark that a webhook's area names: it stays until the webhook's area
    changes, or the webhook would start getting every vehicle's events."""

    def __init__(self, landmark: Landmark):
        super().__init__(
            f"“{landmark.name}” is the area of a webhook: give that webhook another area "
            "(or none) first."
        )


def delete_landmark(landmark: Landmark) -> None:
    """Delete a landmark, unless a webhook's area is it (LandmarkInUse; the
    database's foreign key says so, nothing is changed)."""
    try:
        with db.session.begin_nested():
            db.session.delete(landmark)
            db.session.flush()
    except IntegrityError as error:
        raise LandmarkInUse(landmark) from error
    landmarks_changed(landmark.account_id)


def get_account_landmark(account_id: int, landmark_id: int) -> Landmark | None:
    """The landmark if it belongs to the account; None otherwise, as if it did not exist."""
    return db.session.scalar(
        select(Landmark).where(Landmark.id == landmark_id, Landmark.account_id == account_id)
    )


@dataclass(frozen=True)
class LandmarkSummary:
    """What the landmark pages show of a landmark besides its name."""

    landmark: Landmark
    kind: str  # "circle" or "polygon"
    radius_m: float | None
    area_m2: float | None
    svg: str


def landmark_summaries(account_id: int, svg_size: int) -> list[LandmarkSummary]:
    """Every landmark of the account by name, with its kind, size and SVG drawing."""
    landmarks = db.session.scalars(
        select(Landmark)
        .where(Landmark.account_id == account_id)
        .order_by(func.lower(Landmark.name), Landmark.id)
    )
    summaries = []
    for landmark in landmarks:
        shape = shape_of(landmark.shape)
        summaries.append(
            LandmarkSummary(
                landmark=landmark,
                kind="circle" if isinstance(shape, Circle) else "polygon",
                radius_m=shape.radius_m if isinstance(shape, Circle) else None,
                area_m2=area_m2(shape) if isinstance(shape, Area) else None,
                svg=svg(shape, svg_size),
            )
        )
    return summaries


def account_page(model: Any, account_id: int, after_id: int | None, limit: int) -> list[Any]:
    """A page of the account's vehicles, drivers or landmarks by id, after `after_id`."""
    query = select(model).where(model.account_id == account_id).order_by(model.id)
    if after_id is not None:
        query = query.where(model.id > after_id)
    return list(db.session.scalars(query.limit(limit)))


def account_landmarks(account_id: int) -> list[Landmark]:
    """Every landmark of the account by name."""
    return _by_name(Landmark, account_id)


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
