"""The vehicle attributes an integration can keep in sync (odometer, engine hours,
fuel level, last location, last DVIR): the form's choice of one, the value an event
brings, and the value now (from the initial sync). Asana and Agile Fleet send them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.times import format_rfc3339, parse_rfc3339
from integrations.base import CURRENT_STATE, Field

VEHICLE_ATTRIBUTES = (
    ("odometer", "Odometer (mi)"),
    ("engine_hours", "Engine hours"),
    ("fuel_level", "Fuel level (%)"),
    ("location", "Last location"),
    ("last_dvir", "Last DVIR"),
)
VEHICLE_ATTRIBUTE = Field(
    "vehicle_attribute",
    "Vehicle Attribute",
    "select",
    "The one vehicle attribute this integration keeps in sync; add another integration "
    "for another attribute.",
    choices=VEHICLE_ATTRIBUTES,
)


def is_late(event: Any) -> bool:
    """A position report older than the vehicle's newest: it must not overwrite
    the newer value (an attribute's value is the vehicle's latest)."""
    previous = event.report.get("previous_fix_time")
    return previous is not None and event.occurred_at < previous


def attribute_value(attribute: str | None, event: Any) -> Any:
    """The value of `attribute` this event brings, or None: odometer, engine hours
    and fuel level from location events (the odometer only when it advanced), the
    location as "lat, lon" text, the last DVIR as a one-line summary. A late
    position report brings none."""
    key = event.event_type.key
    if key == "location":
        if is_late(event):
            return None
        value = _reported(attribute, event)
        before = event.report.get("previous_odometer_mi")
        if attribute == "odometer" and value is not None and before is not None:
            return value if value > before else None
        return value
    if key == "dvir" and attribute == "last_dvir":
        return dvir_summary(format_rfc3339(event.occurred_at), event.details.get("dvir") or {})
    return None


def current_value(attribute: str | None, event: Any) -> Any:
    """The attribute's value now, from the initial-sync event (CURRENT_STATE), or
    None when it is not known. The last DVIR comes from `report["last_dvir"]` in
    the vehicle's own shape ({"time", "driver", "defects", "safety_status"})."""
    if attribute == "last_dvir":
        last = event.report.get("last_dvir")
        if isinstance(last, Mapping) and parse_rfc3339(last.get("time")) is not None:
            return dvir_summary(str(last["time"]), last)
        return None
    return _reported(attribute, event)


def event_value(attribute: str | None, event: Any) -> Any:
    """The attribute's value for this event: its value now from the initial sync's
    event (CURRENT_STATE), else the value the event brings."""
    if event.event_type.key == CURRENT_STATE:
        return current_value(attribute, event)
    return attribute_value(attribute, event)


def _reported(attribute: str | None, event: Any) -> Any:
    """The odometer, engine hours, fuel level or location as the event's vehicle and
    report hold them; None for another attribute."""
    vehicle, report = event.vehicle, event.report
    if attribute == "odometer":
        return vehicle.odometer_mi
    if attribute == "engine_hours":
        return report.get("engine_hours")
    if attribute == "fuel_level":
        return report.get("fuel_level_pct")
    if attribute == "location":
        return location_text(vehicle)
    return None


def location_text(vehicle: Any) -> str | None:
    if vehicle.latitude is None or vehicle.longitude is None:
        return None
    return f"{vehicle.latitude}, {vehicle.longitude}"


def defect_lines(defects: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        ": ".join(str(part) for part in (d.get("component"), d.get("description")) if part)
        for d in defects
    ]


def dvir_summary(when: str, dvir: Mapping[str, Any]) -> str:
    """One line for the Last DVIR field, e.g. "2026-05-14T15:42:07Z — unsafe —
    Dana Whitfield — 1 defect: Brakes: Air leak at the rear axle"."""
    defects = list(dvir.get("defects") or [])
    parts = [when]
    parts += [str(dvir[key]) for key in ("safety_status", "driver") if dvir.get(key)]
    if defects:
        count = f"{len(defects)} defect" + ("s" if len(defects) > 1 else "")
        parts.append(f"{count}: " + "; ".join(defect_lines(defects)))
    else:
        parts.append("no defects")
    return " — ".join(parts)
