"""Which landmarks contain a point, without looking at every landmark: an STRtree
(shapely) of the shapes' bounding areas narrows the candidates, then the exact
test decides. Building costs O(n log n) once; a lookup costs about O(log n).

Each process caches an index per account and rebuilds it when the account's
landmarks_version, bumped in the same transaction as any landmark change, moves."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shapely import STRtree
from shapely.geometry import Point, box
from sqlalchemy import select, update

from accounts.models import Account
from core.extensions import db
from fleet.geometry import Area, Shape, parse_circle, parse_polygon
from fleet.models import Landmark


def shape_of(stored: Mapping[str, Any]) -> Shape:
    """The shape of a landmark as stored: {"circle": {...}} or {"polygon": {...}}."""
    if "circle" in stored:
        return parse_circle(stored["circle"])
    return parse_polygon(stored["polygon"])


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

    def shape(self, landmark_id: int) -> Shape | None:
        """The landmark's shape; None when the account has no such landmark."""
        try:
            return self._shapes[self._ids.index(landmark_id)]
        except ValueError:
            return None

    def containing(self, latitude: float, longitude: float) -> set[int]:
        """The ids of the landmarks that contain the point (edges included)."""
        found = set()
        for position in self._tree.query(Point(longitude, latitude), predicate="intersects"):
            if self._shapes[position].contains(latitude, longitude):
                found.add(self._ids[position])
        return found


def landmarks_changed(account_id: int) -> None:
    """Mark the account's landmarks as changed, in the caller's transaction; every
    process rebuilds its index of them before the next lookup."""
    db.session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(landmarks_version=Account.landmarks_version + 1)
    )


@dataclass(frozen=True)
class AccountLandmarks:
    version: int
    index: LandmarkIndex
    names: dict[int, str]


# Per process: account id → its landmarks as of a version. Threads of one process
# share it; other processes keep their own and notice changes by the version.
_cache: dict[int, AccountLandmarks] = {}
_cache_lock = threading.Lock()


def account_landmarks_index(account_id: int) -> AccountLandmarks:
    """The account's landmark index, rebuilt only when its landmarks changed since
    this process last built it (one small read of the version otherwise)."""
    version = db.session.scalar(select(Account.landmarks_version).where(Account.id == account_id))
    cached = _cache.get(account_id)
    if cached is not None and cached.version == version:
        return cached
    with _cache_lock:
        cached = _cache.get(account_id)
        if cached is not None and cached.version == version:
            return cached
        rows = db.session.execute(
            select(Landmark.id, Landmark.name, Landmark.shape).where(
                Landmark.account_id == account_id
            )
        ).all()
        built = AccountLandmarks(
            version=version or 0,
            index=LandmarkIndex((row.id, shape_of(row.shape)) for row in rows),
            names={row.id: row.name for row in rows},
        )
        _cache[account_id] = built
        return built
