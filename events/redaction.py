"""Redaction: what a target leaves out of, or blurs in, every event before it goes
out — the driver's name, coordinates rounded to a number of decimals, fields
dropped by their path in the event body (`data.odometer_mi`, `data.trip.start`).

It is applied to the event itself (the DetectedEvent), after the target's filters
(a vehicle group, an area: they see the true position) and before its kind makes
what it sends. So a webhook's body, its feed, the portal's example of it, and an
integration's calls to its provider all see the same redacted event; a path is
named as the webhook body shows the field (docs/receiving.md, "Redaction")."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from core.contract import Says
from events.catalogue import EventType, VehicleSnapshot, example_event

MAX_DECIMALS = 6  # a micro-degree: about 11 cm, finer than any fix
MAX_DROPPED_FIELDS = 20
PATH_PATTERN = r"^data(\.[a-z0-9_]+)+$"

# The body's fields that come from the vehicle as the event shows it; the others
# under `data` are the event type's own.
SNAPSHOT_FIELDS = (
    "driver",
    "latitude",
    "longitude",
    "heading",
    "speed_mph",
    "odometer_mi",
    "fix_time",
)
# What every event carries whatever the redaction: what it is about and when it came.
ALWAYS_SENT = ("data.vehicle", "data.received_at", "data.late")
# Keys under which an event names a driver (a name, or {"id", "name"}).
DRIVER_KEYS = ("driver", "previous_driver")

DropDriverName = Annotated[
    bool,
    Field(
        description="Leave out every driver's name: data.driver and data.previous_driver "
        "keep only their id, a DVIR's driver is left out."
    ),
    Says("true or false."),
]
CoordinateDecimals = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_DECIMALS,
        description="Round every latitude and longitude to this many decimals (3: about "
        "110 m; 2: about 1.1 km); null: as the device reported them.",
    ),
    Says(f"A whole number of decimals from 0 to {MAX_DECIMALS}, or empty (null) for all."),
]
DropFields = Annotated[
    list[Annotated[str, StringConstraints(strip_whitespace=True, pattern=PATH_PATTERN)]],
    Field(
        max_length=MAX_DROPPED_FIELDS,
        description="Fields left out, by their path in the webhook body: data.odometer_mi, "
        "data.trip.start, data.dvir.defects.description (a path through a list drops "
        "the field from each item). data.vehicle, data.received_at and data.late are "
        "always sent.",
    ),
    Says(
        f'A list of at most {MAX_DROPPED_FIELDS} paths in the event body, like "data.odometer_mi".'
    ),
]


@dataclass(frozen=True)
class Redaction:
    """A target's redaction (outbox Target's columns of the same names)."""

    drop_driver_name: bool = False
    coordinate_decimals: int | None = None
    drop_fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, target: Any) -> Redaction:
        return cls(
            bool(target.drop_driver_name),
            target.coordinate_decimals,
            tuple(target.drop_fields or ()),
        )

    def in_words(self) -> str:
        """For the target's page: "none", or each part that applies."""
        parts = []
        if self.drop_driver_name:
            parts.append("drivers' names left out")
        if self.coordinate_decimals is not None:
            parts.append(f"coordinates rounded to {self.coordinate_decimals} decimals")
        if self.drop_fields:
            parts.append("left out: " + ", ".join(self.drop_fields))
        return " · ".join(parts) or "none"

    def __bool__(self) -> bool:
        return (
            self.drop_driver_name or self.coordinate_decimals is not None or any(self.drop_fields)
        )


NO_REDACTION = Redaction()


def redact(event: Any, redaction: Redaction) -> Any:
    """The event (a DetectedEvent) as `redaction` lets it out; itself when there is
    nothing to redact."""
    if not redaction:
        return event
    vehicle: VehicleSnapshot = event.vehicle
    details = copy.deepcopy(dict(event.details))
    if redaction.drop_driver_name:
        vehicle = replace(vehicle, driver=_without(vehicle.driver, "name"))
        details = _without_names(details)
    decimals = redaction.coordinate_decimals
    if decimals is not None:
        vehicle = replace(
            vehicle,
            latitude=_rounded(vehicle.latitude, decimals),
            longitude=_rounded(vehicle.longitude, decimals),
        )
        details = _coordinates_rounded(details, decimals)
    for path in redaction.drop_fields:
        first, *rest = path.split(".")[1:]
        if first == "driver" and rest:
            vehicle = replace(vehicle, driver=_without(vehicle.driver, rest[0]))
        elif first in SNAPSHOT_FIELDS:
            left_out: dict[str, Any] = {first: None}
            vehicle = replace(vehicle, **left_out)
        else:
            _drop(details, [first, *rest])
    return replace(event, vehicle=vehicle, details=details)


def _without(value: Mapping[str, Any] | None, key: str) -> dict[str, Any] | None:
    return None if value is None else {k: v for k, v in value.items() if k != key}


def _rounded(value: float | None, decimals: int) -> float | None:
    return None if value is None else round(value, decimals)


def _without_names(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_names(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    kept = {}
    for key, item in value.items():
        if key in DRIVER_KEYS and isinstance(item, str):
            continue  # a name alone (a DVIR's driver)
        if key in DRIVER_KEYS and isinstance(item, Mapping):
            item = _without(item, "name")
        kept[key] = _without_names(item)
    return kept


def _coordinates_rounded(value: Any, decimals: int) -> Any:
    if isinstance(value, list):
        return [_coordinates_rounded(item, decimals) for item in value]
    if not isinstance(value, Mapping):
        return value
    return {
        key: round(item, decimals)
        if key in ("latitude", "longitude") and isinstance(item, int | float)
        else _coordinates_rounded(item, decimals)
        for key, item in value.items()
    }


def _drop(value: Any, path: list[str]) -> None:
    """Remove the field at `path` from `value`, in place; through a list, from
    each of its items."""
    if isinstance(value, list):
        for item in value:
            _drop(item, path)
    elif isinstance(value, dict):
        if len(path) == 1:
            value.pop(path[0], None)
        elif path[0] in value:
            _drop(value[path[0]], path[1:])


def paths_of(text: str | None) -> list[str]:
    """Paths typed in one form field, separated by commas, spaces or lines."""
    return [path for path in re.split(r"[,\s]+", text or "") if path]


def path_problems(paths: Iterable[str], event_types: Iterable[EventType]) -> list[str]:
    """Why some of `paths` name nothing the events of `event_types` carry (their
    examples are the reference), or a field always sent; empty when all are fine."""
    types = list(event_types)
    examples = [example_event(event_type)["data"] for event_type in types]
    which = f"no {types[0].key} event" if len(types) == 1 else "no event"
    problems = []
    for path in paths:
        kept = any(path == field or path.startswith(field + ".") for field in ALWAYS_SENT)
        if kept:
            problems.append(f"{path}: always sent (the vehicle, received_at and late).")
        elif not any(_carries(data, path.split(".")[1:]) for data in examples):
            problems.append(f"{path}: {which} carries it.")
    return problems


def _carries(value: Any, path: list[str]) -> bool:
    if not path:
        return True
    if isinstance(value, list):
        return any(_carries(item, path) for item in value)
    return isinstance(value, Mapping) and path[0] in value and _carries(value[path[0]], path[1:])
