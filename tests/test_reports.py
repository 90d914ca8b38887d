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


def test_list_problems_are_worded_by_item():
    _, errors = check_report(
        {
            **POSITION,
            "temperatures": [{"sensor": "a"}, {"sensor": "b", "fahrenheit": 500}],
            "fault_codes": [{"code": "P0420", "description": "ok"}] * 65,
        },
        NOW,
    )
    assert errors == {
        "temperatures": [
            "temperatures[0]: an object with sensor, fahrenheit.",
            "temperatures[1].fahrenheit is not valid.",
        ],
        "fault_codes": ["fault_codes: a list of at most 64 items."],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reports": []}, "From 1 to 1,000 reports."),
        ({"reports": [POSITION] * (MAX_BATCH + 1)}, "From 1 to 1,000 reports."),
        ({"reports": "x"}, '{"reports": [report, …]} and nothing else.'),
        ({"reports": [POSITION], "extra": 1}, '{"reports": [report, …]} and nothing else.'),
    ],
)
def test_a_batch_that_is_not_one_says_so_in_words(body, message):
    with pytest.raises(ValidationError) as refused:
        check_batch(body, NOW)
    assert refused.value.errors == {"reports": [message]}


@pytest.mark.parametrize(
    ("field", "taken", "refused"),
    [
        ("latitude", -90, -90.01),
        ("longitude", 180, 180.5),
        ("speed_mph", 250, 250.1),
        ("heading", 359.99, 360),
        ("posted_speed_mph", 120, 121),
        ("odometer_mi", 10_000_000, -0.1),
        ("engine_hours", 1_000_000, 1_000_001),
        ("fuel_level_pct", 100, 100.5),
        ("speed_mph", 58, True),
    ],
)
def test_each_range_ends_where_it_says(field, taken, refused):
    assert check_report({**POSITION, field: taken}, NOW)[1] == {}
    assert field in check_report({**POSITION, field: refused}, NOW)[1]


def test_a_report_keeps_its_values_as_sent():
    report, _ = check_report({**POSITION, "vin": None, "vehicle_id": 7, "heading": 225}, NOW)
    assert report.vehicle_id == 7 and report.vin is None
    assert report.fields["heading"] == 225 and isinstance(report.fields["heading"], int)


def test_a_batch_names_each_bad_report_as_one_report_would_be_named():
    bad = {**POSITION, "latitude": "north", "colour": "red", "time": "2026-05-14T15:48:00Z"}
    _, alone = check_report(bad, NOW)
    with pytest.raises(ValidationError) as refused:
        check_batch({"reports": [POSITION] * 999 + [bad]}, NOW)
    assert refused.value.errors == {f"reports[999].{key}": words for key, words in alone.items()}
    assert alone == {
        "colour": ["Not a field of position reports."],
        "latitude": ["A number from -90 to 90."],
        "time": ["More than 5 minutes in the future: check the device clock."],
    }
