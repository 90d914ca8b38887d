"""Telemetry reports as the ingest API takes them: one report or {"reports": [...]}
of up to 1,000, each checked field by field. Any bad report refuses the whole
batch, with errors keyed by index ("reports[3].latitude").

A report timed before the reports' retention window (FLEETHOOK_KEEP_REPORTS_DAYS)
is refused as too old: the sweeper deletes reports by the same time and cutoff
(outbox/retention.py), so a replay of a report already deleted cannot pass the
duplicate check as new."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context

from core.config import MAX_BATCH_REPORTS
from core.database import MAX_ID
from core.errors import ValidationError
from core.times import parse_rfc3339
from fleet.vin import normalise_vin, vin_problems

MAX_BATCH = MAX_BATCH_REPORTS  # core/config.py: the quota's burst must hold one
# Device clocks drift; a report from further in the future is a broken clock.
MAX_FUTURE = timedelta(minutes=5)

REPORT_TYPES = ("position", "heartbeat", "dvir", "driver_assignment")
SAFETY_STATUSES = ("safe", "unsafe")

_BASE = {"vin", "vehicle_id", "time", "type"}
_POSITION_REQUIRED = {"latitude", "longitude", "speed_mph", "heading", "ignition"}
_POSITION_OPTIONAL = {
    "odometer_mi",
    "posted_speed_mph",
    "engine_hours",
    "fuel_level_pct",
    "temperatures",
    "fault_codes",
}
_FIELDS = {
    "position": _POSITION_REQUIRED | _POSITION_OPTIONAL,
    "heartbeat": set(),
    "dvir": {"driver", "defects", "safety_status"},
    "driver_assignment": {"driver"},
}
_RANGES = {
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 180.0),
    "speed_mph": (0.0, 250.0),
    "heading": (0.0, 360.0),
    "odometer_mi": (0.0, 10_000_000.0),
    "posted_speed_mph": (0.0, 120.0),
    "engine_hours": (0.0, 1_000_000.0),
    "fuel_level_pct": (0.0, 100.0),
}


@dataclass(frozen=True)
class Report:
    """A checked report; `fields` holds the type's own values."""

    vin: str | None
    vehicle_id: int | None
    time: datetime
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) <= limit


def _check_list(value: Any, name: str, limit: int, item_fields: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        return [f"{name}: a list of at most {limit} items."]
    problems = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) != set(item_fields):
            keys = ", ".join(item_fields)
            problems.append(f"{name}[{index}]: an object with {keys}.")
            continue
        for key, check in item_fields.items():
            if not check(item[key]):
                problems.append(f"{name}[{index}].{key} is not valid.")
    return problems


def check_report(
    raw: Any, now: datetime, oldest: datetime | None = None
) -> tuple[Report | None, dict[str, list[str]]]:
    """A Report, or the errors by field; one timed before `oldest` is too old."""
    if not isinstance(raw, Mapping):
        return None, {"": ["A report is a JSON object."]}
    errors: dict[str, list[str]] = {}
    kind = raw.get("type")
    if kind not in REPORT_TYPES:
        return None, {"type": ["One of: " + ", ".join(REPORT_TYPES) + "."]}
    for unknown in sorted(set(raw) - _BASE - _FIELDS[kind]):
        errors[unknown] = [f"Not a field of {kind} reports."]

    vin = raw.get("vin")
    vehicle_id = raw.get("vehicle_id")
    if (vin is None) == (vehicle_id is None):
        errors["vin"] = ["Name the vehicle by vin or by vehicle_id (one of them)."]
    elif vin is not None:
        if not isinstance(vin, str) or vin_problems(vin):
            errors["vin"] = vin_problems(vin) if isinstance(vin, str) else ["A string."]
        else:
            vin = normalise_vin(vin)
    elif (
        not isinstance(vehicle_id, int)
        or isinstance(vehicle_id, bool)
        or not 1 <= vehicle_id <= MAX_ID
    ):
        errors["vehicle_id"] = ["A vehicle id (a positive whole number)."]

    when = parse_rfc3339(raw.get("time"))
    if when is None:
        errors["time"] = ["An RFC 3339 time with its offset, e.g. 2026-05-14T15:42:07Z."]
    elif when > now + MAX_FUTURE:
        errors["time"] = ["More than 5 minutes in the future: check the device clock."]
    elif oldest is not None and when < oldest:
        errors["time"] = [
            f"Older than {_days(now - oldest)}, the reports' retention window "
            "(FLEETHOOK_KEEP_REPORTS_DAYS): too old to be taken."
        ]

    values = {key: raw[key] for key in _FIELDS[kind] if key in raw}
    if kind == "position":
        for key in sorted(_POSITION_REQUIRED - set(values)):
            errors[key] = ["Required in position reports."]
    for key, (low, high) in _RANGES.items():
        if key in values:
            value = values[key]
            if (
                not _number(value)
                or not low <= value <= high
                or (key == "heading" and value == 360)
            ):
                errors[key] = [f"A number from {low:g} to {high:g}."]
    if "ignition" in values and not isinstance(values["ignition"], bool):
        errors["ignition"] = ["true or false."]
    if "temperatures" in values:
        problems = _check_list(
            values["temperatures"],
            "temperatures",
            32,
            {
                "sensor": lambda v: _text(v, 50),
                "fahrenheit": lambda v: _number(v) and -100 <= v <= 400,
            },
        )
        if problems:
            errors["temperatures"] = problems
    if "fault_codes" in values:
        problems = _check_list(
            values["fault_codes"],
            "fault_codes",
            64,
            {"code": lambda v: _text(v, 16), "description": lambda v: _text(v, 200)},
        )
        if problems:
            errors["fault_codes"] = problems
    if kind in ("dvir", "driver_assignment") and not _text(values.get("driver"), 100):
        errors["driver"] = ["The driver's name, at most 100 characters."]
    if kind == "dvir":
        defect = {"component": lambda v: _text(v, 100), "description": lambda v: _text(v, 500)}
        problems = _check_list(values.get("defects", []), "defects", 50, defect)
        if problems:
            errors["defects"] = problems
        if values.get("safety_status") not in SAFETY_STATUSES:
            errors["safety_status"] = ['"safe" or "unsafe".']

    if errors or when is None:
        return None, errors
    return Report(vin, vehicle_id, when, kind, values), {}


def error_key(batched: bool, index: int, field: str) -> str:
    """Where an error is: "reports[3].latitude" in a batch, "latitude" alone."""
    where = f"reports[{index}]" if batched else ""
    return ".".join(part for part in (where, field) if part) or "report"


def _days(window: timedelta) -> str:
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


def check_batch(
    body: Any, now: datetime, oldest: datetime | None = None
) -> tuple[list[Report], bool]:
    """All reports of a body, and whether it was a batch ({"reports": [...]}), or
    ValidationError naming every bad field by index. Within the app, reports
    timed before the retention window are refused unless `oldest` says otherwise."""
    if oldest is None and has_app_context():
        oldest = now - current_app.config["FLEETHOOK_KEEP_REPORTS"]
    batched = isinstance(body, Mapping) and "reports" in body
    if batched:
        raw_reports = body["reports"]
        if set(body) != {"reports"} or not isinstance(raw_reports, list):
            raise ValidationError({"reports": ['{"reports": [report, …]} and nothing else.']})
        if not 1 <= len(raw_reports) <= MAX_BATCH:
            raise ValidationError({"reports": [f"From 1 to {MAX_BATCH:,} reports."]})
    else:
        raw_reports = [body]
    reports, errors = [], {}
    for index, raw in enumerate(raw_reports):
        report, problems = check_report(raw, now, oldest)
        for key, messages in problems.items():
            errors[error_key(batched, index, key)] = messages
        if report is not None:
            reports.append(report)
    if errors:
        raise ValidationError(errors)
    return reports, batched
