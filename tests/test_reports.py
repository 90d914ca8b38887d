"""Checking telemetry reports: every field's rule, and a batch refused whole,
with errors by index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ValidationError
from fleet.reports import MAX_BATCH, check_batch, check_report

NOW = datetime(2026, 5, 14, 15, 42, 7, tzinfo=UTC)
POSITION = {
    "vin": "1FUJGLDR3CLBP8834",
    "time": "2026-05-14T15:42:05Z",
    "type": "position",
    "latitude": 41.525,
    "longitude": -88.0817,
    "speed_mph": 58.2,
    "heading": 225,
    "ignition": True,
}


def test_a_position_with_every_optional_field_is_accepted():
    report, errors = check_report(
        {
            **POSITION,
            "vin": "1fujgldr3clbp8834",
            "odometer_mi": 128463.2,
            "posted_speed_mph": 55,
            "engine_hours": 4012.5,
            "fuel_level_pct": 61,
            "temperatures": [{"sensor": "reefer-1", "fahrenheit": 36.5}],
            "fault_codes": [{"code": "P0420", "description": "Catalyst efficiency low"}],
        },
        NOW,
    )
    assert errors == {}
    assert report.vin == "1FUJGLDR3CLBP8834" and report.type == "position"
    assert report.time == NOW - timedelta(seconds=2)
    assert report.fields["temperatures"][0]["fahrenheit"] == 36.5


@pytest.mark.parametrize(
    "report",
    [
        {"vehicle_id": 7, "time": "2026-05-14T15:00:00+02:00", "type": "heartbeat"},
        {
            "vin": "1FUJGLDR3CLBP8834",
            "time": "2026-05-14T15:00:00Z",
            "type": "dvir",
            "driver": "Dana Whitfield",
            "safety_status": "unsafe",
            "defects": [{"component": "Brakes", "description": "Air leak"}],
        },
        {
            "vin": "1FUJGLDR3CLBP8834",
            "time": "2026-05-14T15:00:00Z",
            "type": "driver_assignment",
            "driver": "Sam Ortega",
        },
    ],
)
def test_the_other_report_types_are_accepted(report):
    assert check_report(report, NOW)[1] == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "teleport"}, "type"),
        ({"vin": None}, "vin"),
        ({"vehicle_id": 3}, "vin"),
        ({"vin": "1FUJGLDR3CLBP88I4"}, "vin"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-05-14T15:42:05"}, "time"),
        ({"time": "2026-05-14T15:48:00Z"}, "time"),
        ({"latitude": 91}, "latitude"),
        ({"longitude": -180.5}, "longitude"),
        ({"speed_mph": -1}, "speed_mph"),
        ({"speed_mph": "58"}, "speed_mph"),
        ({"heading": 360}, "heading"),
        ({"ignition": "on"}, "ignition"),
        ({"fuel_level_pct": 101}, "fuel_level_pct"),
        ({"temperatures": [{"sensor": "a"}]}, "temperatures"),
        ({"fault_codes": "P0420"}, "fault_codes"),
        ({"colour": "red"}, "colour"),
        ({"latitude": None}, "latitude"),
    ],
)
def test_each_bad_field_is_named(change, field):
    raw = {key: value for key, value in {**POSITION, **change}.items() if value is not None}
    report, errors = check_report(raw, NOW)
    assert report is None and field in errors


def test_a_dvir_needs_its_driver_and_safety_status():
    _, errors = check_report(
        {
            "vin": "1FUJGLDR3CLBP8834",
            "time": "2026-05-14T15:00:00Z",
            "type": "dvir",
            "defects": ["brakes"],
            "safety_status": "fine",
        },
        NOW,
    )
    assert set(errors) == {"driver", "defects", "safety_status"}


def test_a_batch_with_one_bad_report_is_refused_whole_with_its_index():
    good = dict(POSITION)
    with pytest.raises(ValidationError) as refused:
        check_batch({"reports": [good, {**POSITION, "latitude": 200}, good]}, NOW)
    assert refused.value.errors == {"reports[1].latitude": ["A number from -90 to 90."]}
    assert check_batch({"reports": [good, good]}, NOW)[1] is True
    assert len(check_batch({"reports": [good, good]}, NOW)[0]) == 2
    assert check_batch(good, NOW)[1] is False
    assert len(check_batch(good, NOW)[0]) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"reports": []},
        {"reports": [POSITION] * (MAX_BATCH + 1)},
        {"reports": "x"},
        {"reports": [POSITION], "extra": 1},
    ],
)
def test_batch_shape_is_checked(body):
    with pytest.raises(ValidationError) as refused:
        check_batch(body, NOW)
    assert "reports" in refused.value.errors
