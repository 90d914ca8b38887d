"""The fleet's part of the API contract: the rules of the fields of vehicles,
drivers, landmarks and telemetry reports, with the constants they come from, and
what the API answers about them. `fleet.records` checks the portal's forms, the
CSV import and the API's bodies against these shapes, and `fleet.reports` the
ingest's reports; the rules that need the database (a VIN or a driver's name taken,
a driver of the account), join fields (a vehicle named once, by vin or vehicle_id)
or the clock (a report's time) stay there, as does a polygon's geometry
(fleet/geometry.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic import ValidationError as PydanticError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from typing_extensions import TypeAliasType, TypedDict

from core.config import MAX_BATCH_REPORTS
from core.contract import REQUEST_CONFIG, Answer, Says, Timestamp, with_fields
from core.database import MAX_ID
from core.extensions import db
from fleet.geometry import LATITUDE_RANGE, LONGITUDE_RANGE, MAX_RADIUS_M, MIN_RADIUS_M
from fleet.models import Driver as DriverRow
from fleet.vin import VIN_PATTERN

# Vehicles, drivers and landmarks: their columns' lengths (fleet/models.py).
MAX_NAME_LENGTH = 100
MAX_PLATE_LENGTH = 20
MAX_GROUP_LENGTH = 60
MAX_EXTERNAL_ID_LENGTH = 60

NOT_A_FIELD = "Not a field here."
DRIVER_CHOICE = "Choose one of the account's drivers, or no driver."
CIRCLE_FORMAT = 'A circle is {"latitude": …, "longitude": …, "radius_m": …}.'
POLYGON_FORMAT = 'A polygon is GeoJSON: {"type": "Polygon", "coordinates": [rings]}.'

# Telemetry: the most reports one request may carry (the quota's burst must hold
# one: core/config.py), and each field's range, in its unit.
MAX_BATCH = MAX_BATCH_REPORTS
SPEED_MPH = (0, 250)
HEADING = (0, 360)  # 360 itself is 0
ODOMETER_MI = (0, 10_000_000)
POSTED_SPEED_MPH = (0, 120)
ENGINE_HOURS = (0, 1_000_000)
FUEL_LEVEL_PCT = (0, 100)
FAHRENHEIT = (-100, 400)
MAX_TEMPERATURES = 32
MAX_FAULT_CODES = 64
MAX_DEFECTS = 50
MAX_SENSOR_LENGTH = 50
MAX_CODE_LENGTH = 16
MAX_FAULT_DESCRIPTION_LENGTH = 200
MAX_COMPONENT_LENGTH = 100
MAX_DEFECT_DESCRIPTION_LENGTH = 500

REPORT_OBJECT = "A report is a JSON object."
TIME_FORMAT = "An RFC 3339 time with its offset, e.g. 2026-05-14T15:42:07Z."
POSITION_REQUIRED = "Required in position reports."
BATCH_FORMAT = '{"reports": [report, …]} and nothing else.'
BATCH_SIZE = f"From 1 to {MAX_BATCH:,} reports."


def _blank_is_none(text: str) -> str | None:
    return text or None


def _null_is_blank(value: Any) -> Any:
    return "" if value is None else value


def _required(limit: int) -> Says:
    return Says(
        "Required.",
        when={"string_type": "A string.", "string_too_long": f"At most {limit} characters."},
    )


def _optional(limit: int) -> Says:
    return Says("A string.", when={"string_too_long": f"At most {limit} characters."})


def _trimmed(limit: int, min_length: int | None = None) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=limit)


# Optional text is trimmed, and blank or null is none; required text is "Required."
# when left blank or null.
BLANK_IS_NONE = AfterValidator(_blank_is_none)
NULL_IS_BLANK = BeforeValidator(_null_is_blank)

Name = Annotated[str, _trimmed(MAX_NAME_LENGTH, 1), NULL_IS_BLANK, _required(MAX_NAME_LENGTH)]
Plate = Annotated[
    Annotated[str, _trimmed(MAX_PLATE_LENGTH), BLANK_IS_NONE] | None,
    _optional(MAX_PLATE_LENGTH),
]
Group = Annotated[
    Annotated[str, _trimmed(MAX_GROUP_LENGTH), BLANK_IS_NONE] | None,
    Field(description="Webhooks can be limited to the vehicles of one group."),
    _optional(MAX_GROUP_LENGTH),
]
ExternalId = Annotated[
    Annotated[str, _trimmed(MAX_EXTERNAL_ID_LENGTH), BLANK_IS_NONE] | None,
    Field(description="Your own reference: employee number, technician id…"),
    _optional(MAX_EXTERNAL_ID_LENGTH),
]
DriverId = Annotated[
    Annotated[int, Field(ge=1, le=MAX_ID)] | None,
    Field(
        description="Assign one of the account's drivers (null: none); a change makes a "
        "driver_assignment event."
    ),
    Says(DRIVER_CHOICE),
]


# A shape's required keys are those of a total class, its optional ones those of a
# total=False one: hence the pairs of classes. Only the last of each is validated,
# and so names its config.


class _NewVehicle(TypedDict):
    name: Name
    vin: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1),
        Field(description="17 characters, no I, O or Q; fixed once added."),
        Says("Required: the 17-character VIN."),
    ]


class VehicleCreate(_NewVehicle, total=False):
    """A new vehicle: its name and VIN, and any plate and group."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    plate: Plate
    group: Group


class VehicleChange(TypedDict, total=False):
    """The fields given change; the VIN never does."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Name
    plate: Plate
    group: Group
    driver_id: DriverId


class _NewDriver(TypedDict):
    name: Annotated[Name, Field(description="Unique in the account: reports name drivers by it.")]


class DriverCreate(_NewDriver, total=False):
    """A new driver: a name unique in the account, and any reference of yours."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    external_id: ExternalId


class DriverChange(TypedDict, total=False):
    """The fields given change; a new name must be unique in the account too."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Name
    external_id: ExternalId


def _between(name: str, low: float, high: float, unit: str = "") -> Says:
    """A circle's field's words, as fleet/geometry.py words them."""
    unit_ = f" {unit}" if unit else ""
    return Says(
        f"{name} must be a number{' of ' + unit if unit else ''}.",
        when={
            "greater_than_equal": f"{name} must be between {low:,g} and {high:,g}{unit_}.",
            "less_than_equal": f"{name} must be between {low:,g} and {high:,g}{unit_}.",
            "missing": CIRCLE_FORMAT,
        },
    )


def _within(low: float, high: float, *, below_high: bool = False) -> FieldInfo:
    """A finite number from `low` to `high` (`below_high`: to just under it)."""
    if below_high:
        return Field(ge=low, lt=high, allow_inf_nan=False)
    return Field(ge=low, le=high, allow_inf_nan=False)


class Circle(TypedDict):
    """A centre, in degrees, and a radius in metres."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    latitude: Annotated[float, _within(*LATITUDE_RANGE), _between("latitude", *LATITUDE_RANGE)]
    longitude: Annotated[float, _within(*LONGITUDE_RANGE), _between("longitude", *LONGITUDE_RANGE)]
    radius_m: Annotated[
        float,
        _within(MIN_RADIUS_M, MAX_RADIUS_M),
        _between("radius_m", MIN_RADIUS_M, MAX_RADIUS_M, "metres"),
    ]


class Polygon(TypedDict):
    """GeoJSON Polygon: [longitude, latitude] rings, outline first, then holes."""

    # fleet/geometry.py parse_polygon checks the rings and their positions.
    # GeoJSON's foreign members (a bbox…) are taken and dropped: only the parsed
    # rings are stored.
    __pydantic_config__ = ConfigDict(strict=True, extra="allow")  # type: ignore[misc]

    type: Annotated[Literal["Polygon"], Says(POLYGON_FORMAT)]
    coordinates: Annotated[
        list[Any],
        Field(
            description="Rings of [longitude, latitude] positions (an altitude third is "
            "dropped): the outline, then any holes; each ring ends where it starts."
        ),
        Says("coordinates must be a list of rings, the outline first."),
    ]


LandmarkCircle = Annotated[
    Circle | None, Field(description="A circle; null: not a circle."), Says(CIRCLE_FORMAT)
]
LandmarkPolygon = Annotated[
    Polygon | None, Field(description="A polygon; null: not a polygon."), Says(POLYGON_FORMAT)
]


class _NewLandmark(TypedDict):
    name: Name


class LandmarkCreate(_NewLandmark, total=False):
    """A new landmark: its name and exactly one of circle or polygon."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    circle: LandmarkCircle
    polygon: LandmarkPolygon


class LandmarkChange(TypedDict, total=False):
    """A new name, or a new shape (one of circle or polygon) replacing the old."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Name
    circle: LandmarkCircle
    polygon: LandmarkPolygon


# Telemetry reports


def _number_from(low: float, high: float) -> Says:
    return Says(f"A number from {low:g} to {high:g}.", when={"missing": POSITION_REQUIRED})


class Temperature(TypedDict):
    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    sensor: Annotated[str, _trimmed(MAX_SENSOR_LENGTH, 1)]
    fahrenheit: Annotated[float, _within(*FAHRENHEIT)]


class FaultCode(TypedDict):
    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    code: Annotated[str, _trimmed(MAX_CODE_LENGTH, 1)]
    description: Annotated[str, _trimmed(MAX_FAULT_DESCRIPTION_LENGTH, 1)]


class Defect(TypedDict):
    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    component: Annotated[str, _trimmed(MAX_COMPONENT_LENGTH, 1)]
    description: Annotated[str, _trimmed(MAX_DEFECT_DESCRIPTION_LENGTH, 1)]


def _by_index(name: str, limit: int, item: Any) -> WrapValidator:
    """A list's problems worded by item, as the API always has: "temperatures[2]:
    an object with sensor, fahrenheit.", "temperatures[0].fahrenheit is not valid."
    (check_fields adds the full stop)."""
    keys = ", ".join(item.__annotations__)

    def _item_messages(problems: list[ErrorDetails]) -> list[str]:
        if any(not problem["loc"] for problem in problems):  # not a list, or too long
            return [f"{name}: a list of at most {limit} items"]
        # An item that is not an object of exactly these keys is said to be one;
        # otherwise each of its bad values is named.
        unlike = {
            problem["loc"][0]
            for problem in problems
            if len(problem["loc"]) == 1 or problem["type"] in ("missing", "extra_forbidden")
        }
        messages: list[str] = []
        for problem in problems:
            index = problem["loc"][0]
            message = (
                f"{name}[{index}]: an object with {keys}"
                if index in unlike
                else f"{name}[{index}].{problem['loc'][1]} is not valid"
            )
            if message not in messages:
                messages.append(message)
        return messages

    def word(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except PydanticError as error:
            problems = error.errors(include_url=False)
        raise PydanticError.from_exception_data(
            name,
            [
                InitErrorDetails(type=PydanticCustomError("list_item", message), input=value)
                for message in _item_messages(problems)
            ],
        )

    return WrapValidator(word)


DriverName = Annotated[
    str,
    _trimmed(MAX_NAME_LENGTH, 1),
    Says(f"The driver's name, at most {MAX_NAME_LENGTH} characters."),
]
SafetyStatus = Literal["safe", "unsafe"]


class _Timed(TypedDict):
    time: Annotated[
        str,
        Field(
            json_schema_extra={"format": "date-time"},
            description="RFC 3339 with its offset; at most 5 minutes in the future, and "
            "not older than the reports' retention window (FLEETHOOK_KEEP_REPORTS_DAYS).",
        ),
        Says(TIME_FORMAT),
    ]


class _Report(_Timed, total=False):
    vin: Annotated[
        str | None,
        Field(description="The vehicle, by its VIN; or name it by vehicle_id (one of them)."),
        Says("A string."),
    ]
    vehicle_id: Annotated[
        Annotated[int, Field(ge=1, le=MAX_ID)] | None,
        Field(description="The vehicle, by its id here; or name it by vin (one of them)."),
        Says("A vehicle id (a positive whole number)."),
    ]


class _Position(_Report):
    type: Literal["position"]
    latitude: Annotated[float, _within(*LATITUDE_RANGE), _number_from(*LATITUDE_RANGE)]
    longitude: Annotated[float, _within(*LONGITUDE_RANGE), _number_from(*LONGITUDE_RANGE)]
    speed_mph: Annotated[float, _within(*SPEED_MPH), _number_from(*SPEED_MPH)]
    heading: Annotated[
        float,
        _within(*HEADING, below_high=True),
        Field(description="Degrees clockwise from north."),
        _number_from(*HEADING),
    ]
    ignition: Annotated[bool, Says("true or false.", when={"missing": POSITION_REQUIRED})]


class PositionReport(_Position, total=False):
    """Where a vehicle is and how fast it goes; the rest when the device has it."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    odometer_mi: Annotated[float, _within(*ODOMETER_MI), _number_from(*ODOMETER_MI)]
    posted_speed_mph: Annotated[
        float,
        _within(*POSTED_SPEED_MPH),
        Field(description="The speed limit where the vehicle is."),
        _number_from(*POSTED_SPEED_MPH),
    ]
    engine_hours: Annotated[float, _within(*ENGINE_HOURS), _number_from(*ENGINE_HOURS)]
    fuel_level_pct: Annotated[float, _within(*FUEL_LEVEL_PCT), _number_from(*FUEL_LEVEL_PCT)]
    temperatures: Annotated[
        list[Temperature],
        Field(max_length=MAX_TEMPERATURES),
        _by_index("temperatures", MAX_TEMPERATURES, Temperature),
    ]
    fault_codes: Annotated[
        list[FaultCode],
        Field(max_length=MAX_FAULT_CODES),
        _by_index("fault_codes", MAX_FAULT_CODES, FaultCode),
    ]


class HeartbeatReport(_Report):
    """The device is alive; nothing more."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    type: Literal["heartbeat"]


class _Dvir(_Report):
    type: Literal["dvir"]
    driver: DriverName
    safety_status: Annotated[SafetyStatus, Says('"safe" or "unsafe".')]


class DvirReport(_Dvir, total=False):
    """A driver's vehicle inspection report."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    defects: Annotated[
        list[Defect], Field(max_length=MAX_DEFECTS), _by_index("defects", MAX_DEFECTS, Defect)
    ]


class DriverAssignmentReport(_Report):
    """Who drives the vehicle now (a new name adds the driver)."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    type: Literal["driver_assignment"]
    driver: DriverName


# Each report type's shape, by its `type`.
REPORT_SHAPES: dict[str, Any] = {
    "position": PositionReport,
    "heartbeat": HeartbeatReport,
    "dvir": DvirReport,
    "driver_assignment": DriverAssignmentReport,
}
REPORT_TYPE = "One of: " + ", ".join(REPORT_SHAPES) + "."

TelemetryReport = TypeAliasType(
    "TelemetryReport",
    Annotated[
        PositionReport | HeartbeatReport | DvirReport | DriverAssignmentReport,
        Field(
            discriminator="type",
            description="One report, naming its vehicle by vin or vehicle_id. A report "
            "repeated (same vehicle, type and time) is a duplicate; one older than the "
            "vehicle's newest position makes only the events of the report itself, never a "
            "transition.",
        ),
    ],
)


class TelemetryBatch(TypedDict):
    """Up to 1,000 reports; one bad report refuses them all, and nothing is written."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    reports: Annotated[list[TelemetryReport], Field(min_length=1, max_length=MAX_BATCH)]


# Answers


class AssignedDriver(Answer):
    id: int
    name: str


class Location(Answer):
    latitude: float
    longitude: float
    fix_time: Timestamp


class Vehicle(Answer):
    """The vehicle."""

    id: int
    name: str
    vin: Annotated[str, Field(pattern=f"^{VIN_PATTERN.pattern}$")]
    plate: str | None
    group: str | None
    driver: AssignedDriver | None
    odometer_mi: float | None
    engine_hours: float | None
    fuel_level_pct: float | None
    last_location: Annotated[Location | None, Field(description="Of its newest position.")]
    last_dvir: Annotated[dict[str, Any] | None, Field(description="Its newest DVIR report.")]
    created_at: Timestamp

    @classmethod
    def read(cls, value: Any) -> Any:
        location = None
        if value.last_fix_at is not None:
            location = {
                "latitude": value.last_latitude,
                "longitude": value.last_longitude,
                "fix_time": value.last_fix_at,
            }
        # The session's identity map reads a page's repeated drivers once.
        driver = db.session.get(DriverRow, value.driver_id) if value.driver_id else None
        return with_fields(value, group=value.group_name, driver=driver, last_location=location)


class AddedVehicle(Vehicle):
    """The vehicle added; `warnings` says what may be wrong with it (a doubtful check digit)."""

    warnings: list[str]


class Driver(Answer):
    """The driver."""

    id: int
    name: str
    external_id: str | None
    created_at: Timestamp


# A landmark's shape is read and shown as stored (fleet/geometry.py stored_shape):
# it was checked on the way in, and its whole numbers stay as written (400, not the
# 400.0 a float field would make). Unannotated lambdas keep the shape's schema.
READ_AS_STORED = WrapValidator(lambda shape, _: shape)
SHOWN_AS_STORED = PlainSerializer(lambda shape: shape)


class Landmark(Answer):
    """The landmark: a circle or a polygon."""

    id: int
    name: str
    # Never null: a landmark has the one of its kind, and the other is left out.
    circle: Annotated[
        Circle,
        READ_AS_STORED,
        SHOWN_AS_STORED,
        Field(default=None, description="A circle's only."),
    ]
    polygon: Annotated[
        Polygon,
        READ_AS_STORED,
        SHOWN_AS_STORED,
        Field(default=None, description="A polygon's only."),
    ]
    created_at: Timestamp

    @classmethod
    def read(cls, value: Any) -> Any:
        return with_fields(value, **value.shape)


class IngestResult(Answer):
    """Stored; events queued."""

    accepted: Annotated[int, Field(description="Reports stored and detected.")]
    duplicates: Annotated[int, Field(description="Reports seen before.")]
    events: Annotated[
        int,
        Field(
            description="Events detected (speed, posted_speed and idle counted when a "
            "webhook's threshold took them)."
        ),
    ]
    messages: Annotated[int, Field(description="Outbox messages queued.")]
