"""Detection: one accepted report, the vehicle's stored state, and the events it
makes. The rules, where the catalogue leaves room:

- A report older than the vehicle's newest position is *late*: it is stored and
  makes the events that describe the report alone (location, speed,
  posted_speed, temperature, heartbeat, dvir) but changes no state, so it never
  makes an ignition, trip, idle or landmark transition, nor moves the vehicle's
  last location or odometer. A driver assignment older than the newest one is
  kept in the history without changing the driver or making an event.
- A vehicle's first position sets its state silently: ignition and landmark
  membership are known from then on, and only changes from a known state are
  events. If the ignition is on in that first position, the trip is counted from
  there.
- speed and posted_speed events are made for every position at or above the
  lowest setting a webhook can have; each webhook takes those at or above its own
  X — all of them, or, sending once per episode, those whose previous position
  was below X (a vehicle's first position counts as coming from below; a late
  one starts no episode). Idle: ignition on and speed below 1 mph; an idle period ends with movement
  or ignition off; each webhook takes the period's event once, at the first
  report where the period reaches its N minutes.
- Trip distance is the odometer delta when the trip's first and last positions
  both carry one, else the length of the reported path. Average speed is distance
  over duration. Idle time inside the trip counts the intervals that started
  idle.
- Landmark crossings compare the landmarks containing the new position with those
  containing the previous one (edges count as inside). A deleted landmark is
  dropped from the membership without a leave event; a landmark created around a
  vehicle makes an enter event at its next position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.database import write_unless_taken
from core.extensions import db
from core.times import format_rfc3339
from events.catalogue import (
    CURRENT_STATE,
    EVENT_TYPES,
    IDLE_MINUTES,
    POSTED_SPEED_MARGIN,
    SPEED_THRESHOLD,
    DetectedEvent,
    VehicleSnapshot,
)
from fleet.geometry import distance_m
from fleet.landmark_index import AccountLandmarks
from fleet.models import Driver, DriverAssignment, Vehicle, VehicleState
from fleet.reports import Report
from outbox.fanout import account_targets, fan_out

STATIONARY_MPH = 1.0
METRES_PER_MILE = 1609.344


def _driver_ref(driver: Driver | None) -> dict[str, Any] | None:
    return {"id": driver.id, "name": driver.name} if driver is not None else None


def current_driver(vehicle: Vehicle) -> Driver | None:
    return db.session.get(Driver, vehicle.driver_id) if vehicle.driver_id else None


def snapshot(
    vehicle: Vehicle,
    state: VehicleState,
    position: Mapping[str, Any] | None = None,
    fix_time: datetime | None = None,
) -> VehicleSnapshot:
    """The vehicle as an event shows it: at `position` when the event comes from
    a position report, else at its last known position."""
    if position is not None:
        latitude, longitude = position["latitude"], position["longitude"]
        speed, heading = position["speed_mph"], position["heading"]
        odometer = position.get("odometer_mi", vehicle.odometer_mi)
    else:
        latitude, longitude = vehicle.last_latitude, vehicle.last_longitude
        speed, heading, odometer = state.speed_mph, state.heading, vehicle.odometer_mi
        fix_time = vehicle.last_fix_at
    return VehicleSnapshot(
        vehicle_id=vehicle.id,
        name=vehicle.name,
        vin=vehicle.vin,
        driver=_driver_ref(current_driver(vehicle)),
        latitude=latitude,
        longitude=longitude,
        heading=int(heading) if heading is not None else None,
        speed_mph=speed,
        odometer_mi=odometer,
        fix_time=fix_time,
        group=vehicle.group_name,
    )


@dataclass
class Detection:
    """The events of one report."""

    events: list[DetectedEvent] = field(default_factory=list)

    def add(self, key: str, when: datetime, vehicle: VehicleSnapshot, **details: Any) -> None:
        self.events.append(DetectedEvent(EVENT_TYPES[key], when, vehicle, details))


def detect(
    report: Report, vehicle: Vehicle, state: VehicleState, landmarks: AccountLandmarks
) -> list[DetectedEvent]:
    """The events of an accepted, non-duplicate report; updates `state` and the
    vehicle's attributes in the session (the caller commits)."""
    found = Detection()
    if report.type == "position":
        _position(report, vehicle, state, landmarks, found)
    elif report.type == "heartbeat":
        found.add("heartbeat", report.time, snapshot(vehicle, state))
    elif report.type == "dvir":
        dvir = {key: report.fields.get(key, []) for key in ("driver", "defects", "safety_status")}
        if vehicle.last_dvir is None or vehicle.last_dvir["time"] <= format_rfc3339(report.time):
            vehicle.last_dvir = {"time": format_rfc3339(report.time), **dvir}
        found.add("dvir", report.time, snapshot(vehicle, state), dvir=dvir)
    elif report.type == "driver_assignment":
        driver = driver_named(vehicle.account_id, report.fields["driver"])
        event = record_assignment(vehicle, state, driver, report.time, "report")
        if event is not None:
            found.events.append(event)
    return found.events


def _position(
    report: Report,
    vehicle: Vehicle,
    state: VehicleState,
    landmarks: AccountLandmarks,
    found: Detection,
) -> None:
    values, when = report.fields, report.time
    here = snapshot(vehicle, state, values, when)
    speed = values["speed_mph"]
    # What integrations sync beside the position (the odometer is in the snapshot;
    # the previous reading, fix time and fault codes tell what changed since).
    extras: dict[str, Any] = {
        key: values[key]
        for key in ("engine_hours", "fuel_level_pct", "fault_codes")
        if key in values
    }
    extras["previous_odometer_mi"] = vehicle.odometer_mi
    extras["previous_fix_time"] = state.position_at
    extras["previous_fault_codes"] = state.fault_codes
    found.events.append(DetectedEvent(EVENT_TYPES["location"], when, here, report=extras))
    posted = values.get("posted_speed_mph")
    over = round(speed - posted, 1) if posted is not None else None
    # A late position starts no speeding episode: its "previous" is its own value.
    late = state.position_at is not None and when < state.position_at
    if speed >= SPEED_THRESHOLD.minimum:
        found.events.append(
            DetectedEvent(
                EVENT_TYPES["speed"],
                when,
                here,
                previous_mph=speed if late else state.speed_mph,
            )
        )
    if over is not None and over >= POSTED_SPEED_MARGIN.minimum:
        found.events.append(
            DetectedEvent(
                EVENT_TYPES["posted_speed"],
                when,
                here,
                {"posted_speed_mph": posted, "over_limit_mph": over},
                previous_mph=over if late else state.over_limit_mph,
            )
        )
    if values.get("temperatures"):
        found.add("temperature", when, here, temperatures=values["temperatures"])

    if state.position_at is not None and when < state.position_at:
        return  # late: see the module's rules
    first = state.position_at is None
    ignition = values["ignition"]
    inside = landmarks.index.containing(values["latitude"], values["longitude"])

    if not first:
        previous_inside = {i for i in state.landmark_ids if i in landmarks.names}
        for landmark_id in sorted(inside - previous_inside):
            ref = {"id": landmark_id, "name": landmarks.names[landmark_id]}
            found.add("landmark_enter", when, here, landmark=ref, transition="enter")
        for landmark_id in sorted(previous_inside - inside):
            ref = {"id": landmark_id, "name": landmarks.names[landmark_id]}
            found.add("landmark_leave", when, here, landmark=ref, transition="leave")
        if ignition and not state.ignition:
            found.add("ignition_on", when, here, ignition=True)
        elif state.ignition and not ignition:
            found.add("ignition_off", when, here, ignition=False)

    was_on = bool(state.ignition) and not first
    if was_on:
        _advance_trip(state, values, when)
    if ignition and not was_on:
        state.trip = {
            "started_at": format_rfc3339(when),
            "start": {"latitude": values["latitude"], "longitude": values["longitude"]},
            "start_odometer_mi": values.get("odometer_mi"),
            "last": {"latitude": values["latitude"], "longitude": values["longitude"]},
            "path_mi": 0.0,
            "max_speed_mph": speed,
            "idle_s": 0.0,
        }
    elif was_on and not ignition and state.trip is not None:
        found.add("trip_complete", when, here, trip=_trip_summary(state.trip, values, when))
        state.trip = None

    if ignition and speed < STATIONARY_MPH:
        if state.idle_since is None:
            state.idle_since = when
            state.idle_latitude, state.idle_longitude = values["latitude"], values["longitude"]
        elif not first and state.position_at is not None:
            before = (state.position_at - state.idle_since).total_seconds()
            idle_s = (when - state.idle_since).total_seconds()
            if idle_s >= IDLE_MINUTES.minimum * 60:
                at_start = replace(
                    here, latitude=state.idle_latitude, longitude=state.idle_longitude
                )
                found.events.append(
                    DetectedEvent(
                        EVENT_TYPES["idle"],
                        when,
                        at_start,
                        {
                            "idle_since": format_rfc3339(state.idle_since),
                            "idle_duration_s": int(idle_s),
                        },
                        idle_window_s=(before, idle_s),
                    )
                )
    else:
        state.idle_since = state.idle_latitude = state.idle_longitude = None

    state.position_at = when
    state.ignition = ignition
    state.speed_mph = speed
    state.over_limit_mph = over
    state.heading = int(values["heading"])
    state.landmark_ids = sorted(inside)
    if "fault_codes" in values:
        state.fault_codes = list(values["fault_codes"])
    vehicle.last_latitude, vehicle.last_longitude = values["latitude"], values["longitude"]
    vehicle.last_fix_at = when
    for name in ("odometer_mi", "engine_hours", "fuel_level_pct"):
        if name in values:
            setattr(vehicle, name, values[name])


def _advance_trip(state: VehicleState, values: Mapping[str, Any], when: datetime) -> None:
    """Add the stretch from the previous position to this one to the trip."""
    trip = dict(state.trip or {})
    if not trip or state.position_at is None:
        return
    last = trip["last"]
    trip["path_mi"] += (
        distance_m(last["latitude"], last["longitude"], values["latitude"], values["longitude"])
        / METRES_PER_MILE
    )
    trip["last"] = {"latitude": values["latitude"], "longitude": values["longitude"]}
    trip["max_speed_mph"] = max(trip["max_speed_mph"], values["speed_mph"])
    if state.idle_since is not None:
        trip["idle_s"] += (when - state.position_at).total_seconds()
    state.trip = trip


def _trip_summary(trip: Mapping[str, Any], values: Mapping[str, Any], when: datetime) -> dict:
    started = datetime.fromisoformat(trip["started_at"].replace("Z", "+00:00"))
    duration_s = max((when - started).total_seconds(), 0.0)
    start_odometer, end_odometer = trip.get("start_odometer_mi"), values.get("odometer_mi")
    if start_odometer is not None and end_odometer is not None and end_odometer >= start_odometer:
        distance, source = end_odometer - start_odometer, "odometer"
    else:
        distance, source = trip["path_mi"], "path"
    return {
        "started_at": trip["started_at"],
        "ended_at": format_rfc3339(when),
        "duration_s": int(duration_s),
        "distance_mi": round(distance, 1),
        "distance_source": source,
        "max_speed_mph": trip["max_speed_mph"],
        "average_speed_mph": round(distance / (duration_s / 3600), 1) if duration_s else 0.0,
        "idle_s": int(trip["idle_s"]),
        "start": trip["start"],
        "end": {"latitude": values["latitude"], "longitude": values["longitude"]},
    }


def driver_named(account_id: int, name: str) -> Driver:
    """The account's driver of this name, added if reports name a new one."""
    name = name.strip()
    driver = db.session.scalar(
        select(Driver).where(Driver.account_id == account_id, Driver.name == name)
    )
    if driver is None:
        new = Driver(account_id=account_id, name=name)
        # A report naming the same new driver may be committed by another request
        # meanwhile (the unique key refuses the second): that driver is this one.
        if write_unless_taken(db.session, lambda: db.session.add(new)):
            return new
        driver = db.session.scalars(
            select(Driver).where(Driver.account_id == account_id, Driver.name == name)
        ).one()
    return driver


def current_states(account_id: int, at: datetime) -> list[DetectedEvent]:
    """Each of the account's vehicles as it is now, as a CURRENT_STATE event: its
    last position, odometer and driver, and in `report` its engine hours, fuel
    level and the fault codes open now (what integrations bring up to date)."""
    events = []
    vehicles = db.session.scalars(
        select(Vehicle).where(Vehicle.account_id == account_id).order_by(Vehicle.id)
    )
    for vehicle in vehicles:
        state = db.session.get(VehicleState, vehicle.id) or VehicleState(vehicle_id=vehicle.id)
        report: dict[str, Any] = {"fault_codes": list(state.fault_codes or [])}
        for name in ("engine_hours", "fuel_level_pct", "last_dvir"):
            if getattr(vehicle, name) is not None:
                report[name] = getattr(vehicle, name)
        here = snapshot(vehicle, state)
        events.append(DetectedEvent(CURRENT_STATE, here.fix_time or at, here, report=report))
    return events


def vehicle_state(vehicle: Vehicle) -> VehicleState:
    state = db.session.get(VehicleState, vehicle.id)
    if state is None:
        state = VehicleState(vehicle_id=vehicle.id, landmark_ids=[])
        db.session.add(state)
    return state


def record_assignment(
    vehicle: Vehicle, state: VehicleState, driver: Driver | None, at: datetime, source: str
) -> DetectedEvent | None:
    """Keep the assignment in the history; unless it is older than the newest
    one, make it the vehicle's driver and return its event."""
    db.session.add(
        DriverAssignment(
            vehicle_id=vehicle.id,
            driver_id=driver.id if driver else None,
            assigned_at=at,
            source=source,
        )
    )
    if state.assignment_at is not None and at < state.assignment_at:
        return None
    previous = current_driver(vehicle)
    vehicle.driver_id = driver.id if driver else None
    state.assignment_at = at
    return DetectedEvent(
        EVENT_TYPES["driver_assignment"],
        at,
        snapshot(vehicle, state),
        {"previous_driver": _driver_ref(previous)},
    )


def assign_driver(vehicle: Vehicle, driver: Driver | None, at: datetime, source: str) -> None:
    """Assign a driver from the portal or the API, with its event; the caller commits."""
    event = record_assignment(vehicle, vehicle_state(vehicle), driver, at, source)
    if event is not None:
        fan_out([event], account_targets(vehicle.account_id))
