"""Telemetry reports as the ingest API takes them: one report or {"reports": [...]}
of up to 1,000. Any bad report refuses the whole batch, with errors keyed by index
("reports[3].latitude").

Each field's rule is the report type's shape (fleet/schemas.py: TelemetryReport,
TelemetryBatch); this module adds the rules a shape cannot say: a report names its
vehicle once, by vin or by vehicle_id; a VIN is a VIN (fleet/vin.py); a report's
time is an RFC 3339 time, neither from the future nor too old.

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
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from core.contract import check_fields
from core.errors import ValidationError
from core.times import parse_rfc3339
from fleet.schemas import (
    BATCH_FORMAT,
    BATCH_SIZE,
    REPORT_OBJECT,
    REPORT_SHAPES,
    REPORT_TYPE,
    TIME_FORMAT,
    TelemetryBatch,
)
from fleet.schemas import MAX_BATCH as MAX_BATCH  # where the tests and quotas look for it
from fleet.vin import normalise_vin, vin_problems

# Device clocks drift; a report from further in the future is a broken clock.
MAX_FUTURE = timedelta(minutes=5)
ONE_VEHICLE = "Name the vehicle by vin or by vehicle_id (one of them)."

# What every report has; the rest are its type's own fields (Report.fields).
_BASE = ("vin", "vehicle_id", "time", "type")
_OWN_FIELDS = {
    kind: tuple(name for name in shape.__annotations__ if name not in _BASE)
    for kind, shape in REPORT_SHAPES.items()
}
# A report, or a batch, is checked whole in one pass; only one that fails is
# checked again field by field (check_fields), for the words of each problem.
_BATCH = TypeAdapter(TelemetryBatch)
_REPORT = {kind: TypeAdapter(shape) for kind, shape in REPORT_SHAPES.items()}


@dataclass(frozen=True)
class Report:
    """A checked report; `fields` holds the type's own values."""

    vin: str | None
    vehicle_id: int | None
    time: datetime
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def _report(
    raw: Mapping[str, Any],
    now: datetime,
    oldest: datetime | None,
    errors: dict[str, list[str]],
) -> Report | None:
    """The Report of `raw`, whose fields keep their shape's rules except those in
    `errors`, or None with the problems of the rules no shape can say added."""
    vin, vehicle_id = raw.get("vin"), raw.get("vehicle_id")
    if (vin is None) == (vehicle_id is None):
        errors["vin"] = [ONE_VEHICLE]
    elif vin is not None and "vin" not in errors:
        problems = vin_problems(vin)
        if problems:
            errors["vin"] = problems
        vin = normalise_vin(vin)
    when = None
    if "time" not in errors:
        when = parse_rfc3339(raw["time"])
        problem = _time_problem(when, now, oldest)
        if problem:
            errors["time"] = [problem]
    if errors or when is None:
        return None
    kind = raw["type"]
    # The values as sent, not as the shape cleaned them: a heading of 225 stays 225
    # in the stored report and the events made of it.
    values = {name: raw[name] for name in _OWN_FIELDS[kind] if name in raw}
    return Report(vin, vehicle_id, when, kind, values)


def _time_problem(when: datetime | None, now: datetime, oldest: datetime | None) -> str | None:
    if when is None:
        return TIME_FORMAT
    if when > now + MAX_FUTURE:
        return "More than 5 minutes in the future: check the device clock."
    if oldest is not None and when < oldest:
        return (
            f"Older than {_days(now - oldest)}, the reports' retention window "
            "(FLEETHOOK_KEEP_REPORTS_DAYS): too old to be taken."
        )
    return None


def check_report(
    raw: Any, now: datetime, oldest: datetime | None = None
) -> tuple[Report | None, dict[str, list[str]]]:
    """A Report, or the errors by field; one timed before `oldest` is too old."""
    if not isinstance(raw, Mapping):
        return None, {"": [REPORT_OBJECT]}
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in REPORT_SHAPES:
        return None, {"type": [REPORT_TYPE]}
    errors: dict[str, list[str]] = {}
    try:
        _REPORT[kind].validate_python(raw)
    except PydanticError:
        shape = REPORT_SHAPES[kind]
        _, errors = check_fields(shape, raw, unknown=f"Not a field of {kind} reports.")
    report = _report(raw, now, oldest, errors)
    return report, errors


def error_key(batched: bool, index: int, field: str) -> str:
    """Where an error is: "reports[3].latitude" in a batch, "latitude" alone."""
    where = f"reports[{index}]" if batched else ""
    return ".".join(part for part in (where, field) if part) or "report"


def _days(window: timedelta) -> str:
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


def _misshapen(body: Mapping[str, Any]) -> set[int]:
    """The indexes of the batch's reports that break their shape's rules; or
    ValidationError, if the batch itself is not {"reports": [1 to 1,000 reports]}."""
    try:
        _BATCH.validate_python(body)
    except PydanticError as error:
        problems = error.errors(include_url=False)
    else:
        return set()
    # Problems of the batch itself: a key beside "reports", or "reports" not a list
    # of 1 to 1,000; then its reports are not looked at.
    envelope = {
        problem["type"]
        for problem in problems
        if problem["loc"][:1] != ("reports",) or len(problem["loc"]) == 1
    }
    if envelope:
        sized = envelope <= {"too_short", "too_long"}
        raise ValidationError({"reports": [BATCH_SIZE if sized else BATCH_FORMAT]})
    return {int(problem["loc"][1]) for problem in problems}


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
        raw_reports, misshapen = body["reports"], _misshapen(body)
    else:
        raw_reports, misshapen = [body], {0}
    reports, errors = [], {}
    for index, raw in enumerate(raw_reports):
        if index in misshapen:
            report, problems = check_report(raw, now, oldest)
        else:
            problems = {}
            report = _report(raw, now, oldest, problems)
        for key, messages in problems.items():
            errors[error_key(batched, index, key)] = messages
        if report is not None:
            reports.append(report)
    if errors:
        raise ValidationError(errors)
    return reports, batched
