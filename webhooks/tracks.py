"""Track batches: a Location webhook that sends tracks gets one POST per vehicle per
window — at most `track_points` positions or `track_seconds`, whichever comes
first — whose body is a GeoJSON Feature: a LineString of the window's positions (a
Point when it holds one) with each position's time, speed and heading in
`properties.coordinateProperties` (docs/receiving.md, "Track batches").

Positions wait in `track_point`, as the webhook's filters and redaction let them
out. A window closes at its `track_points`-th position; before a position whose
fix is `track_seconds` or more after the window's first (that position opens the
next window); or when the sweeper finds it open `track_seconds` after its first
position arrived (so a vehicle that stops reporting still gets its last positions
sent). A closed window becomes an event for the outbox like any other (fan_out),
in its vehicle's lane: ordered, retried, signed, in the feed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from pydantic import Field
from sqlalchemy import delete, func, select
from typing_extensions import TypedDict

from core.contract import REQUEST_CONFIG, Says
from core.extensions import db
from core.times import format_rfc3339
from events.catalogue import (
    EVENT_TYPES,
    EXAMPLE_VEHICLE,
    DetectedEvent,
    EventType,
    VehicleSnapshot,
    example_detected,
)
from events.redaction import NO_REDACTION, Redaction, redact
from fleet.geometry import distance_m
from outbox.fanout import fan_out
from webhooks.models import TrackPoint, Webhook

TRACK_EVENT = EventType(
    "location_track",
    "Location track",
    "A vehicle's positions over a window, as one GeoJSON Feature.",
)
# A window's size: positions (at least 2: a line), seconds, and the distance under
# which a position adds nothing to the line.
TRACK_POINTS_RANGE = (2, 1000)
TRACK_SECONDS_RANGE = (10, 3600)
TRACK_MIN_DISTANCE_RANGE = (0, 10_000)
DEFAULT_TRACK = {"points": 100, "seconds": 60, "min_distance_m": 0}


class Track(TypedDict, total=False):
    """Positions sent as tracks: one POST per vehicle per window, a GeoJSON Feature
    (docs/receiving.md, "Track batches"); each left out takes its default."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    points: Annotated[
        int,
        Field(
            ge=TRACK_POINTS_RANGE[0],
            le=TRACK_POINTS_RANGE[1],
            default=DEFAULT_TRACK["points"],
            description="A window closes at this many positions.",
        ),
        Says("A whole number of positions from {} to {}.".format(*TRACK_POINTS_RANGE)),
    ]
    seconds: Annotated[
        int,
        Field(
            ge=TRACK_SECONDS_RANGE[0],
            le=TRACK_SECONDS_RANGE[1],
            default=DEFAULT_TRACK["seconds"],
            description="… or this many seconds after its first position (by fix time, "
            "or by the clock when the vehicle stops reporting), whichever comes first.",
        ),
        Says("A whole number of seconds from {} to {}.".format(*TRACK_SECONDS_RANGE)),
    ]
    min_distance_m: Annotated[
        int,
        Field(
            ge=TRACK_MIN_DISTANCE_RANGE[0],
            le=TRACK_MIN_DISTANCE_RANGE[1],
            default=DEFAULT_TRACK["min_distance_m"],
            description="A position closer than this to the last one kept in its window is "
            "left out (0: every position).",
        ),
        Says("A whole number of metres from {} to {:,}.".format(*TRACK_MIN_DISTANCE_RANGE)),
    ]


TRACK_EVENT_TYPES = ("location",)
TrackSetting = Annotated[
    Track | None,
    Field(
        description="location webhooks only, JSON only: send positions as tracks; null: "
        "each position is its own event."
    ),
    Says('An object {"points", "seconds", "min_distance_m"}, or null for one event per position.'),
]


def is_track(webhook: Webhook) -> bool:
    return webhook.track_points is not None


def shown_track(webhook: Webhook) -> dict[str, Any] | None:
    """The webhook's track settings as the API shows them and takes them back."""
    if not is_track(webhook):
        return None
    return {
        "points": webhook.track_points,
        "seconds": webhook.track_seconds,
        "min_distance_m": webhook.track_min_distance_m,
    }


@dataclass
class _Window:
    """An open window as this transaction knows it."""

    count: int = 0
    first_fix: datetime | None = None
    last: tuple[float, float] | None = None  # the last position kept


# Each webhook's open windows, read once per transaction (two queries, whatever the
# number of vehicles), then kept as positions are added: a fan-out batch adds many
# positions and asks nothing more for them.
_windows: WeakKeyDictionary[Any, dict[int, dict[str, _Window]]] = WeakKeyDictionary()


def _transaction() -> Any:
    session = db.session()
    return session.get_transaction() or session.begin()


def _window(webhook: Webhook, lane: str) -> _Window:
    known = _windows.setdefault(_transaction(), {})
    if webhook.id not in known:
        lanes = db.session.execute(
            select(
                TrackPoint.ordering_key,
                func.count(),
                func.min(TrackPoint.fix_time),
                func.max(TrackPoint.id),
            )
            .where(TrackPoint.webhook_id == webhook.id)
            .group_by(TrackPoint.ordering_key)
        ).all()
        last = {
            row.id: (row.latitude, row.longitude)
            for row in db.session.execute(
                select(TrackPoint.id, TrackPoint.latitude, TrackPoint.longitude).where(
                    TrackPoint.id.in_([last_id for *_, last_id in lanes])
                )
            )
        }
        known[webhook.id] = {
            key: _Window(count, first_fix, last.get(last_id))
            for key, count, first_fix, last_id in lanes
        }
    return known[webhook.id].setdefault(lane, _Window())


def add_position(webhook: Webhook, event: DetectedEvent) -> dict[str, Any] | None:
    """Keep a position (an event the webhook takes, redacted) in its vehicle's
    window; the Feature of the window it closed, if it closed one."""
    vehicle = event.vehicle
    if vehicle.latitude is None or vehicle.longitude is None:
        return None  # nothing to draw: its position was left out
    lane = event.ordering_key
    window = _window(webhook, lane)
    closed = None
    seconds = timedelta(seconds=webhook.track_seconds or 0)
    if window.first_fix is not None and event.occurred_at - window.first_fix >= seconds:
        closed = take_window(webhook.id, lane)  # this position opens the next window
        window = _window(webhook, lane)
    elif window.last is not None and webhook.track_min_distance_m:
        moved = distance_m(*window.last, vehicle.latitude, vehicle.longitude)
        if moved < webhook.track_min_distance_m:
            return None  # adds nothing to the line
    point = _as_point(event)
    point.webhook_id, point.ordering_key = webhook.id, lane
    db.session.add(point)
    window.count += 1
    window.first_fix = min(window.first_fix or event.occurred_at, event.occurred_at)
    window.last = (vehicle.latitude, vehicle.longitude)
    if closed is None and window.count >= (webhook.track_points or 0):
        closed = take_window(webhook.id, lane)
    return feature(closed) if closed else None


def take_window(webhook_id: int, lane: str) -> list[Any]:
    """The window's positions, oldest fix first, taken out of the table: of two
    processes closing one window, one gets them and the other nothing."""
    db.session.flush()
    _windows.get(_transaction(), {}).get(webhook_id, {}).pop(lane, None)
    taken = db.session.execute(
        delete(TrackPoint)
        .where(TrackPoint.webhook_id == webhook_id, TrackPoint.ordering_key == lane)
        .returning(
            TrackPoint.id,
            TrackPoint.fix_time,
            TrackPoint.latitude,
            TrackPoint.longitude,
            TrackPoint.speed_mph,
            TrackPoint.heading,
            TrackPoint.vehicle,
            TrackPoint.driver,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(taken, key=lambda point: (point.fix_time, point.id))


def feature(points: Sequence[Any], is_test: bool = False) -> dict[str, Any]:
    """A window's positions as the GeoJSON Feature a receiver gets."""
    positions = [[point.longitude, point.latitude] for point in points]
    geometry: dict[str, Any] = (
        {"type": "LineString", "coordinates": positions}
        if len(positions) > 1
        else {"type": "Point", "coordinates": positions[0]}
    )
    per_point: dict[str, list[Any]] = {"times": [format_rfc3339(p.fix_time) for p in points]}
    for name in ("speed_mph", "heading"):
        values = [getattr(point, name) for point in points]
        if any(value is not None for value in values):  # left out by the redaction
            per_point[name] = values
    last = points[-1]
    properties: dict[str, Any] = {"event_type": TRACK_EVENT.key, "vehicle": last.vehicle}
    if last.driver:
        properties["driver"] = last.driver
    properties |= {
        "started_at": per_point["times"][0],
        "ended_at": per_point["times"][-1],
        "points": len(points),
        "coordinateProperties": per_point,
    }
    if is_test:
        properties["test"] = True
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def example_feature(redaction: Redaction = NO_REDACTION, is_test: bool = False) -> dict[str, Any]:
    """The example vehicle's last minute as a track, redacted: the portal's
    example, and what Demo sends a track webhook."""
    location = example_detected(EVENT_TYPES["location"])
    end, latitude, longitude = (
        location.occurred_at,
        EXAMPLE_VEHICLE.latitude or 0.0,
        (EXAMPLE_VEHICLE.longitude or 0.0),
    )
    points = []
    for back in (2, 1, 0):
        fix_time = end - timedelta(seconds=30 * back)
        vehicle = replace(
            location.vehicle,
            latitude=round(latitude + 0.0011 * back, 4),
            longitude=round(longitude - 0.0011 * back, 4),
            fix_time=fix_time,
        )
        event = redact(replace(location, occurred_at=fix_time, vehicle=vehicle), redaction)
        points.append(_as_point(event))
    return feature(points, is_test)


def _as_point(event: DetectedEvent) -> TrackPoint:
    vehicle = event.vehicle
    return TrackPoint(
        fix_time=event.occurred_at,
        latitude=vehicle.latitude,
        longitude=vehicle.longitude,
        speed_mph=vehicle.speed_mph,
        heading=vehicle.heading,
        vehicle={"id": vehicle.vehicle_id, "name": vehicle.name, "vin": vehicle.vin},
        driver=dict(vehicle.driver) if vehicle.driver else None,
    )


def window_event(points: Sequence[Any]) -> DetectedEvent:
    """A closed window as an event for fan_out: in its vehicle's lane, carrying its
    Feature (WebhookKind.payload_for hands it to the one webhook it is for)."""
    last = points[-1]
    vehicle = VehicleSnapshot(last.vehicle["id"], last.vehicle["name"], last.vehicle["vin"])
    return DetectedEvent(TRACK_EVENT, last.fix_time, vehicle, {"feature": feature(points)})


def close_due_windows(now: datetime) -> int:
    """Sweeper job: close every window open `track_seconds` by the clock (its
    first position arrived that long ago), each in its own transaction; how many."""
    opened = db.session.execute(
        select(
            TrackPoint.webhook_id,
            TrackPoint.ordering_key,
            func.min(TrackPoint.created_at),
            Webhook.track_seconds,
        )
        .join(Webhook, Webhook.id == TrackPoint.webhook_id)
        .group_by(TrackPoint.webhook_id, TrackPoint.ordering_key, Webhook.track_seconds)
    ).all()
    db.session.rollback()
    closed = 0
    for webhook_id, lane, first_arrived, seconds in opened:
        if now - first_arrived < timedelta(seconds=seconds or 0):
            continue
        closed += close_window(webhook_id, lane)
    return closed


def close_window(webhook_id: int, lane: str) -> int:
    """Send a window as it is now (1), unless another process took it first (0)."""
    webhook = db.session.get(Webhook, webhook_id)
    points = take_window(webhook_id, lane)
    if webhook is None or not points:
        db.session.rollback()
        return 0
    fan_out([window_event(points)], [webhook])
    db.session.commit()
    return 1


def close_all_windows(webhook: Webhook) -> None:
    """Send every open window of the webhook now, in the caller's transaction (its
    tracks were switched off or resized)."""
    lanes = db.session.scalars(
        select(TrackPoint.ordering_key).where(TrackPoint.webhook_id == webhook.id).distinct()
    ).all()
    for lane in lanes:
        points = take_window(webhook.id, lane)
        if points:
            fan_out([window_event(points)], [webhook])
