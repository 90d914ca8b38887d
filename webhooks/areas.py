"""A webhook's area, its geo filter: only events whose position — the event's own
`data.latitude`/`data.longitude` — lies inside one of the account's landmarks,
inside a polygon, or within a distance of a point (a circle) reach it. Checked at
fan-out with the shapes and containment rules of the landmarks (fleet/geometry.py);
a landmark's shape comes from the account's landmark index, so a changed landmark
moves the area with it. An event without a position is outside every area. A Demo
event always goes, as it does past a vehicle group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from core.contract import Says
from core.database import MAX_ID
from core.errors import ValidationError
from core.extensions import db
from events.catalogue import VehicleSnapshot
from fleet import schemas as fleet_schemas
from fleet.geometry import Circle, Shape, ShapeError, parse_polygon, stored_shape
from fleet.landmark_index import account_landmarks_index, shape_of
from fleet.models import Landmark
from fleet.records import get_account_landmark
from fleet.schemas import CIRCLE_FORMAT, POLYGON_FORMAT
from webhooks.models import Webhook

AREA_FORMAT = (
    'An area is {"landmark_id": …}, {"circle": {"latitude", "longitude", "radius_m"}} or '
    '{"polygon": GeoJSON Polygon}, or null for everywhere.'
)


class Area(TypedDict, total=False):
    """Exactly one of: one of the account's landmarks, a circle (within radius_m
    metres of a point) or a GeoJSON polygon."""

    __pydantic_config__ = ConfigDict(  # type: ignore[misc]
        strict=True, extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    landmark_id: Annotated[
        int,
        Field(ge=1, le=MAX_ID, description="Inside this landmark (its shape as it is now)."),
        Says("One of your landmarks (its id)."),
    ]
    circle: Annotated[fleet_schemas.Circle, Says(CIRCLE_FORMAT)]
    polygon: Annotated[fleet_schemas.Polygon, Says(POLYGON_FORMAT)]


AreaSetting = Annotated[
    Area | None,
    Field(
        description="Only events whose position (data.latitude, data.longitude) is inside "
        "this area: a landmark, a circle or a polygon, edges included; an event without a "
        "position is outside. null: everywhere."
    ),
    Says(AREA_FORMAT),
]


def clean_area(account_id: int, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """The webhook's columns for an area as the API takes it (webhooks/schemas.Area,
    checked): `area_landmark_id` and `area`, at most one of them set. A
    landmark must be the account's; a shape is stored rebuilt from its numbers, as
    a landmark's is. Raises ValidationError naming `area`."""
    if value is None:
        return {"area_landmark_id": None, "area": None}
    if len(value) != 1:
        raise ValidationError({"area": [AREA_FORMAT]})
    (kind,) = value
    if kind == "landmark_id":
        if get_account_landmark(account_id, value[kind]) is None:
            raise ValidationError({"area.landmark_id": ["Not one of your landmarks."]})
        return {"area_landmark_id": value[kind], "area": None}
    try:
        shape = Circle(**value[kind]) if kind == "circle" else parse_polygon(value[kind])
    except ShapeError as error:
        raise ValidationError({f"area.{kind}": [str(error)]}) from error
    return {"area_landmark_id": None, "area": stored_shape(shape)}


def shown_area(webhook: Webhook) -> dict[str, Any] | None:
    """The area as the API shows it and takes it back."""
    if webhook.area_landmark_id is not None:
        return {"landmark_id": webhook.area_landmark_id}
    return webhook.area


# Each loaded webhook's parsed shape (a polygon of thousands of points is parsed
# once per fan-out batch, not once per event), with what it was parsed from.
_parsed: WeakKeyDictionary[Webhook, tuple[Any, int | None, Shape | None]] = WeakKeyDictionary()


def _shape(webhook: Webhook) -> Shape | None:
    cached = _parsed.get(webhook)
    if cached is not None and cached[0] is webhook.area and cached[1] == webhook.area_landmark_id:
        return cached[2]
    if webhook.area_landmark_id is not None:
        landmarks = account_landmarks_index(webhook.account_id)
        shape = landmarks.index.shape(webhook.area_landmark_id)
    else:
        shape = shape_of(webhook.area) if webhook.area else None
    _parsed[webhook] = (webhook.area, webhook.area_landmark_id, shape)
    return shape


def has_area(webhook: Webhook) -> bool:
    return webhook.area_landmark_id is not None or webhook.area is not None


def in_area(webhook: Webhook, vehicle: VehicleSnapshot) -> bool:
    """Whether an event at the vehicle's position (as the event shows it) reaches a
    webhook with an area."""
    if vehicle.latitude is None or vehicle.longitude is None:
        return False
    shape = _shape(webhook)
    return shape is not None and shape.contains(vehicle.latitude, vehicle.longitude)


def describe_area(webhook: Webhook) -> str:
    """The area in words, for the webhook's page."""
    if webhook.area_landmark_id is not None:
        landmark = db.session.get(Landmark, webhook.area_landmark_id)
        return f"inside the landmark “{landmark.name if landmark else '?'}”"
    if webhook.area is None:
        return "everywhere"
    if "circle" in webhook.area:
        circle = webhook.area["circle"]
        return f"within {circle['radius_m']:,} m of {circle['latitude']}, {circle['longitude']}"
    points = len(webhook.area["polygon"]["coordinates"][0]) - 1
    return f"inside a polygon of {points} points"
