"""Landmark shapes: a circle ({"latitude", "longitude", "radius_m"}) or a GeoJSON
Polygon (holes allowed), checked on the way in, tested for containing a point, and
drawn as a small SVG.

Containment rules: a point on a polygon's edge is inside (so is one on a hole's
edge, which is the polygon's boundary too); a circle contains the points whose
great-circle distance to its centre is at most its radius.

What is stored is `stored_shape` of the parsed shape — only the numbers these
rules read, never the JSON a client sent — so every later reader (the landmark
pages, the detector's index) gets plain [longitude, latitude] positions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Point, Polygon
from shapely.validation import explain_validity

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
MIN_RADIUS_M = 1
MAX_RADIUS_M = 100_000
# Degrees of a position (WGS 84), in landmarks and telemetry alike.
LATITUDE_RANGE = (-90, 90)
LONGITUDE_RANGE = (-180, 180)
MAX_POLYGON_POINTS = 10_000


class ShapeError(ValueError):
    """A landmark shape that cannot be used, with the reason in words."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def _coordinate(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ShapeError(f"{name} must be a number.")
    if not low <= value <= high:
        raise ShapeError(f"{name} must be between {low:g} and {high:g}.")
    return float(value)


@dataclass(frozen=True)
class Circle:
    latitude: float
    longitude: float
    radius_m: float

    def contains(self, latitude: float, longitude: float) -> bool:
        return distance_m(self.latitude, self.longitude, latitude, longitude) <= self.radius_m

    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat), a little generous."""
        dlat = math.degrees(self.radius_m / EARTH_RADIUS_M)
        dlon = dlat / max(math.cos(math.radians(self.latitude)), 1e-6)
        return (
            self.longitude - dlon,
            self.latitude - dlat,
            self.longitude + dlon,
            self.latitude + dlat,
        )


@dataclass(frozen=True)
class Area:
    polygon: Polygon

    def contains(self, latitude: float, longitude: float) -> bool:
        return bool(self.polygon.covers(Point(longitude, latitude)))

    def bounds(self) -> tuple[float, float, float, float]:
        min_x, min_y, max_x, max_y = self.polygon.bounds
        return (min_x, min_y, max_x, max_y)


Shape = Circle | Area


def parse_circle(value: Any) -> Circle:
    if not isinstance(value, Mapping) or set(value) != {"latitude", "longitude", "radius_m"}:
        raise ShapeError('A circle is {"latitude": …, "longitude": …, "radius_m": …}.')
    radius = value["radius_m"]
    if isinstance(radius, bool) or not isinstance(radius, int | float):
        raise ShapeError("radius_m must be a number of metres.")
    if not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
        raise ShapeError(f"radius_m must be between {MIN_RADIUS_M:,} and {MAX_RADIUS_M:,} metres.")
    return Circle(
        _coordinate(value["latitude"], "latitude", *LATITUDE_RANGE),
        _coordinate(value["longitude"], "longitude", *LONGITUDE_RANGE),
        float(radius),
    )


def _position(value: Any) -> tuple[float, float]:
    """A GeoJSON position: [longitude, latitude], or with an altitude third, which
    a geofence has no use for and is dropped."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ShapeError("A position is [longitude, latitude] (an altitude third is allowed).")
    if len(value) == 3:
        _coordinate(value[2], "altitude", -math.inf, math.inf)
    return (
        _coordinate(value[0], "longitude", *LONGITUDE_RANGE),
        _coordinate(value[1], "latitude", *LATITUDE_RANGE),
    )


def parse_polygon(value: Any) -> Area:
    """A GeoJSON Polygon: [longitude, latitude] rings, the first the outline, the
    rest holes; each ring closed (first point repeated last)."""
    if not isinstance(value, Mapping) or value.get("type") != "Polygon":
        raise ShapeError('A polygon is GeoJSON: {"type": "Polygon", "coordinates": [rings]}.')
    rings = value.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise ShapeError("coordinates must be a list of rings, the outline first.")
    parsed: list[list[tuple[float, float]]] = []
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 4:
            raise ShapeError("Each ring needs at least 4 positions, the first repeated last.")
        if sum(map(len, parsed)) + len(ring) > MAX_POLYGON_POINTS:
            raise ShapeError(f"At most {MAX_POLYGON_POINTS:,} positions in all.")
        positions = [_position(position) for position in ring]
        if positions[0] != positions[-1]:
            raise ShapeError("Each ring must end where it starts.")
        parsed.append(positions)
    polygon = Polygon(parsed[0], parsed[1:])
    if not polygon.is_valid:
        raise ShapeError(f"The polygon is not valid: {explain_validity(polygon)}.")
    if polygon.area == 0:
        raise ShapeError("The polygon has no area.")
    return Area(polygon)


def _plain(number: float) -> float | int:
    """A whole number as an int, so 400 is stored and shown as 400, not 400.0."""
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def stored_shape(shape_: Shape) -> dict[str, Any]:
    """The shape as a landmark stores it and the API shows it: {"circle": {...}} or
    {"polygon": GeoJSON}, rebuilt from the parsed numbers."""
    if isinstance(shape_, Circle):
        return {
            "circle": {
                "latitude": _plain(shape_.latitude),
                "longitude": _plain(shape_.longitude),
                "radius_m": _plain(shape_.radius_m),
            }
        }
    rings = [shape_.polygon.exterior, *shape_.polygon.interiors]
    coordinates = [[[_plain(lon), _plain(lat)] for lon, lat in ring.coords] for ring in rings]
    return {"polygon": {"type": "Polygon", "coordinates": coordinates}}


def svg(shape_: Shape, size: int = 120) -> str:
    """A small SVG of the shape (north up), for the landmark pages."""
    min_x, min_y, max_x, max_y = shape_.bounds()
    span = max(max_x - min_x, max_y - min_y) or 1.0
    pad = span * 0.1

    def xy(lon: float, lat: float) -> str:
        x = (lon - min_x + pad) / (span + 2 * pad) * size
        y = (max_y - lat + pad) / (span + 2 * pad) * size
        return f"{x:.1f},{y:.1f}"

    if isinstance(shape_, Circle):
        centre = xy(shape_.longitude, shape_.latitude).split(",")
        radius = (shape_.bounds()[3] - shape_.latitude) / (span + 2 * pad) * size
        body = f'<circle cx="{centre[0]}" cy="{centre[1]}" r="{radius:.1f}"/>'
    else:
        rings = [shape_.polygon.exterior, *shape_.polygon.interiors]
        path = " ".join(
            "M" + " L".join(xy(lon, lat) for lon, lat in ring.coords) + " Z" for ring in rings
        )
        body = f'<path d="{path}" fill-rule="evenodd"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}" class="landmark-shape" role="img">{body}</svg>'
    )


def area_m2(area: Area) -> float:
    """The polygon's area on the ground (holes excluded), projected around its own
    latitude: within a fraction of a percent for geofence-sized shapes."""
    metres_per_degree = math.radians(1) * EARTH_RADIUS_M
    squeeze = math.cos(math.radians(area.polygon.centroid.y))  # a degree of longitude shrinks
    return float(area.polygon.area) * metres_per_degree**2 * squeeze
