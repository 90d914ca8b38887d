"""The landmark index answers what a scan of every landmark answers."""

from __future__ import annotations

import random

from fleet.geometry import parse_circle, parse_polygon
from fleet.landmark_index import LandmarkIndex
from tests.test_fleet_shapes import HOLE, OUTLINE


def shapes(count: int, seed: int = 7):
    rng = random.Random(seed)
    made = []
    for landmark_id in range(count):
        lat, lon = 41.5 + rng.random(), -88.5 + rng.random()
        if landmark_id % 2:
            made.append(
                (
                    landmark_id,
                    parse_circle(
                        {"latitude": lat, "longitude": lon, "radius_m": rng.uniform(50, 3000)}
                    ),
                )
            )
        else:
            d = rng.uniform(0.001, 0.03)
            ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
            made.append((landmark_id, parse_polygon({"type": "Polygon", "coordinates": [ring]})))
    return made


def test_the_index_agrees_with_a_full_scan():
    landmarks = shapes(400)
    index = LandmarkIndex(landmarks)
    rng = random.Random(11)
    hits = 0
    for _ in range(1000):
        lat, lon = 41.5 + rng.random(), -88.5 + rng.random()
        expected = {i for i, shape in landmarks if shape.contains(lat, lon)}
        assert index.containing(lat, lon) == expected
        hits += bool(expected)
    assert hits > 10  # the sample does land inside landmarks


def test_edges_holes_and_overlaps():
    polygon = parse_polygon({"type": "Polygon", "coordinates": [OUTLINE, HOLE]})
    circle = parse_circle({"latitude": 41.872, "longitude": -87.638, "radius_m": 300})
    index = LandmarkIndex([(1, polygon), (2, circle)])
    assert index.containing(41.87, -87.63) == {1}  # on the outline's edge
    assert index.containing(41.88, -87.63) == set()  # in the hole
    assert index.containing(41.8722, -87.6381) == {1, 2}  # in both
    assert len(index) == 2


def test_an_empty_index_finds_nothing():
    assert LandmarkIndex([]).containing(41.88, -87.63) == set()
