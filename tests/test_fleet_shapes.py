"""VINs and landmark shapes: the checks on the way in and point-in-landmark,
on polygon edges and holes, near a circle's radius, and across overlaps."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from fleet.geometry import ShapeError, distance_m, parse_circle, parse_polygon, svg
from fleet.vin import check_digit, check_digit_warning, vin_problems

# A square of 0.02° around (41.88, -87.63) with a square hole in its middle.
OUTLINE = [[-87.64, 41.87], [-87.62, 41.87], [-87.62, 41.89], [-87.64, 41.89], [-87.64, 41.87]]
HOLE = [
    [-87.635, 41.875],
    [-87.625, 41.875],
    [-87.625, 41.885],
    [-87.635, 41.885],
    [-87.635, 41.875],
]


def test_a_valid_vin_passes_with_its_check_digit():
    assert vin_problems("1FUJGLDR3CLBP8834") == []
    assert check_digit("1FUJGLDR3CLBP8834") == "3"
    assert check_digit_warning(" 1fujgldr3clbp8834 ") is None


def test_a_wrong_check_digit_is_a_warning_not_a_refusal():
    assert vin_problems("1FUJGLDR5CLBP8834") == []
    warning = check_digit_warning("1FUJGLDR5CLBP8834")
    assert warning is not None and "is 5, not 3" in warning


@pytest.mark.parametrize(
    ("vin", "message"),
    [
        ("1FUJGLDR3CLBP883", "17 characters; this has 16"),
        ("1FUJGLDR3CLBP88345", "this has 18"),
        ("1FUJGLDR3CLBP88I4", "never contains I"),
        ("1FUJGLDROCLBPQ834", "never contains O, Q"),
        ("1FUJGLDR3CLBP88-4", "only letters and digits"),
    ],
)
def test_malformed_vins_are_refused_with_a_reason(vin, message):
    (problem,) = vin_problems(vin)
    assert message in problem


def test_the_check_digit_can_be_x():
    vin = "1M8GDM9A_KP042788"
    digit = check_digit(vin.replace("_", "0"))
    assert digit == "X"
    assert check_digit_warning(vin.replace("_", "X")) is None


def polygon():
    return parse_polygon({"type": "Polygon", "coordinates": [OUTLINE, HOLE]})


@pytest.mark.parametrize(
    ("latitude", "longitude", "inside"),
    [
        (41.872, -87.638, True),  # in the ring between outline and hole
        (41.88, -87.63, False),  # in the hole
        (41.87, -87.63, True),  # on the outline's edge
        (41.89, -87.64, True),  # on the outline's corner
        (41.875, -87.63, True),  # on the hole's edge: the boundary is part of the landmark
        (41.8699, -87.63, False),  # just outside
        (41.90, -87.60, False),
    ],
)
def test_polygon_membership_on_edges_and_holes(latitude, longitude, inside):
    assert polygon().contains(latitude, longitude) is inside


def test_circle_membership_near_its_radius():
    circle = parse_circle({"latitude": 41.88, "longitude": -87.63, "radius_m": 500})
    # About 1 m inside and 1 m outside the radius, due north (1° latitude ≈ 111,195 m).
    metres_per_degree = distance_m(41.88, -87.63, 42.88, -87.63)
    assert circle.contains(41.88 + 499 / metres_per_degree, -87.63)
    assert not circle.contains(41.88 + 501 / metres_per_degree, -87.63)
    assert circle.contains(41.88, -87.63)


def test_a_point_in_two_overlapping_landmarks_is_in_both():
    circle = parse_circle({"latitude": 41.872, "longitude": -87.638, "radius_m": 300})
    point = (41.8722, -87.6381)
    assert circle.contains(*point) and polygon().contains(*point)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"latitude": 41.8, "longitude": -87.6}, "A circle is"),
        ({"latitude": 91, "longitude": 0, "radius_m": 10}, "latitude must be between"),
        ({"latitude": 0, "longitude": 181, "radius_m": 10}, "longitude must be between"),
        ({"latitude": 0, "longitude": 0, "radius_m": 0}, "radius_m must be between"),
        ({"latitude": "41", "longitude": 0, "radius_m": 10}, "latitude must be a number"),
        ({"latitude": 0, "longitude": 0, "radius_m": True}, "radius_m must be a number"),
    ],
)
def test_bad_circles_are_refused(value, message):
    with pytest.raises(ShapeError, match=message):
        parse_circle(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": "Point", "coordinates": [0, 0]}, "A polygon is GeoJSON"),
        ({"type": "Polygon", "coordinates": []}, "list of rings"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "at least 4"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "end where"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]}, "longitude"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "not valid",
        ),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}, "not valid"),
    ],
)
def test_bad_polygons_are_refused(value, message):
    with pytest.raises(ShapeError, match=message):
        parse_polygon(value)


def test_shapes_draw_as_small_svgs():
    for shape_ in (
        polygon(),
        parse_circle({"latitude": 41.88, "longitude": -87.63, "radius_m": 250}),
    ):
        drawing = ElementTree.fromstring(svg(shape_))
        assert drawing.tag.endswith("svg") and drawing.get("viewBox") == "0 0 120 120"
        assert len(drawing) == 1
    path = ElementTree.fromstring(svg(polygon()))[0]
    assert path.get("d").count("M") == 2  # the outline and its hole
