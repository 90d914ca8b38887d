"""Which landmarks contain a point, without looking at every landmark: an STRtree
(shapely) of the shapes' bounding areas narrows the candidates, then the exact
test decides. Building costs O(n log n) once; a lookup costs about O(log n)."""

from __future__ import annotations

from collections.abc import Iterable

from shapely import STRtree
from shapely.geometry import Point, box

from fleet.geometry import Area, Shape


class LandmarkIndex:
    def __init__(self, landmarks: Iterable[tuple[int, Shape]]):
        self._ids: list[int] = []
        self._shapes: list[Shape] = []
        geometries = []
        for landmark_id, shape in landmarks:
            self._ids.append(landmark_id)
            self._shapes.append(shape)
            geometries.append(shape.polygon if isinstance(shape, Area) else box(*shape.bounds()))
        self._tree = STRtree(geometries)

    def __len__(self) -> int:
        return len(self._ids)

    def containing(self, latitude: float, longitude: float) -> set[int]:
        """The ids of the landmarks that contain the point (edges included)."""
        found = set()
        for position in self._tree.query(Point(longitude, latitude), predicate="intersects"):
            if self._shapes[position].contains(latitude, longitude):
                found.add(self._ids[position])
        return found
