"""The simulated vehicles: each one's day (parking, idling, driving a road with
acceleration, braking and red lights, DVIRs, driver changes, faults), the reports
it makes, and the fleet's report schedule. Deterministic for a seed."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from demo.world import (
    BAY,
    FAULT_CODES,
    FIRST_NAMES,
    LAST_NAMES,
    LOOP,
    MAJOR_DEFECTS,
    MINOR_DEFECTS,
    REVERSE_LOOP,
    YARD_MOVE,
    Road,
    bearing,
)
from fleet.geometry import distance_m
from fleet.vin import check_digit

MPH = 0.44704  # metres per second
METRES_PER_MILE = 1609.344
EARTH_RADIUS_M = 6_371_008.8

ACCELERATION = 0.7  # m/s², a loaded truck
BRAKING = 1.2  # m/s², planned (comfortable) braking
HARD_BRAKING = 3.0  # m/s², the most the model ever uses
GOVERNOR_MPH = 78.0  # speed limiter
LOOK_AHEAD_M = 2500.0
STEP_SECONDS = 1.0  # physics sub-step

HEARTBEAT_SECONDS = 24 * 3600.0
TEMPERATURE_SECONDS = 300.0
FAULT_MEAN_SECONDS = 3600.0  # running time between fault codes, on average


@dataclass(frozen=True)
class DemoVehicle:
    index: int
    name: str
    vin: str
    plate: str
    group: str
    reefer_setpoint_f: float | None  # None: no reefer

    def api_body(self) -> dict[str, Any]:
        return {"name": self.name, "vin": self.vin, "plate": self.plate, "group": self.group}


def demo_vin(index: int) -> str:
    """A valid VIN (North-American check digit included) for demo vehicle `index`,
    the same in every run, so runs find the vehicles they made before."""
    body = f"1FUJGLDR0NLD{10001 + index:05d}"
    return body[:8] + check_digit(body) + body[9:]


def demo_vehicles(count: int) -> list[DemoVehicle]:
    vehicles = []
    for index in range(count):
        setpoint = (36.0 if index % 4 == 0 else -5.0) if index % 2 == 0 else None
        vehicles.append(
            DemoVehicle(
                index=index,
                name=f"Demo Truck {index + 1:02d}",
                vin=demo_vin(index),
                plate=f"IL DEMO{index + 1:03d}",
                group="Reefers" if setpoint is not None else "Dry vans",
                reefer_setpoint_f=setpoint,
            )
        )
    return vehicles


def driver_name(number: int) -> str:
    """Distinct names for drivers 0 … 399."""
    return f"{FIRST_NAMES[number % 20]} {LAST_NAMES[(number + number // 20) % 20]}"


# --- one vehicle's behaviour -------------------------------------------------------


@dataclass
class Park:
    """Standing with the ignition off."""

    seconds: float
    doors_open: bool = False
    ignition = False


@dataclass
class Idle:
    """Standing with the engine running."""

    seconds: float
    doors_open: bool = False
    ignition = True


@dataclass
class Instant:
    """A report that is not a position (heartbeat, DVIR, driver assignment)."""

    report: dict[str, Any]
    ignition = False  # never the current activity when a position is reported
    doors_open = False


@dataclass
class Drive:
    """Driving a road from its first point to its last, stopping at red lights."""

    road: Road
    targets: list[float]  # m/s per segment
    red_seconds: dict[int, float]  # point index → seconds of red light still to wait
    lengths: list[float] = field(default_factory=list)
    segment: int = 0
    along: float = 0.0  # metres into the current segment
    waiting: float = 0.0
    ignition = True
    doors_open = False

    def __post_init__(self) -> None:
        self.lengths = [
            distance_m(*a, *b) for a, b in zip(self.road.points, self.road.points[1:], strict=False)
        ]

    def position(self) -> tuple[float, float]:
        a = self.road.points[self.segment]
        b = self.road.points[self.segment + 1]
        fraction = self.along / self.lengths[self.segment]
        return (a[0] + (b[0] - a[0]) * fraction, a[1] + (b[1] - a[1]) * fraction)

    def heading(self) -> float:
        return bearing(self.road.points[self.segment], self.road.points[self.segment + 1])

    def _allowed(self) -> tuple[float, float, int | None]:
        """The speed allowed here (to brake in time for slower segments and stops
        ahead), the distance to the next stop and the index of its point."""
        allowed = self.targets[self.segment]
        ahead = self.lengths[self.segment] - self.along
        index = self.segment
        last = len(self.road.points) - 1
        while True:
            end = index + 1
            if end == last or self.red_seconds.get(end, 0) > 0:
                return min(allowed, math.sqrt(2 * BRAKING * max(ahead, 0.0))), ahead, end
            allowed = min(allowed, math.sqrt(self.targets[end] ** 2 + 2 * BRAKING * ahead))
            if ahead > LOOK_AHEAD_M:
                return allowed, math.inf, None
            index = end
            ahead += self.lengths[index]

    def step(self, speed: float, seconds: float) -> tuple[float, float, bool]:
        """(new speed, metres moved, arrived) after `seconds`."""
        if self.waiting > 0:
            self.waiting = max(0.0, self.waiting - seconds)
            if self.waiting == 0:
                self._pass_point()
            return 0.0, 0.0, False
        allowed, to_stop, stop_point = self._allowed()
        if allowed > speed:
            new_speed = min(allowed, speed + ACCELERATION * seconds)
        else:
            new_speed = max(allowed, speed - HARD_BRAKING * seconds, 0.0)
        moved = (speed + new_speed) / 2 * seconds
        if stop_point is not None and (moved >= to_stop or (to_stop < 2.0 and new_speed < 1.0)):
            # Stop exactly at the point: the end of the segment before it.
            self.segment = stop_point - 1
            self.along = self.lengths[self.segment]
            if stop_point == len(self.road.points) - 1:
                return 0.0, to_stop, True
            self.waiting = self.red_seconds.pop(stop_point)
            return 0.0, to_stop, False
        self._advance(moved)
        return new_speed, moved, False

    def _advance(self, metres: float) -> None:
        self.along += metres
        while self.along > self.lengths[self.segment] and self.segment < len(self.lengths) - 1:
            self.along -= self.lengths[self.segment]
            self.segment += 1
        self.along = min(self.along, self.lengths[self.segment])

    def _pass_point(self) -> None:
        if self.along >= self.lengths[self.segment] and self.segment < len(self.lengths) - 1:
            self.along = 0.0
            self.segment += 1


Activity = Park | Idle | Instant | Drive


class VehicleModel:
    """One vehicle: its plan (an endless sequence of activities), its physics and
    the reports its device sends. Deterministic given its seed."""

    def __init__(
        self,
        vehicle: DemoVehicle,
        start: datetime,
        seed: int,
        odometer_mi: float | None = None,
        engine_hours: float | None = None,
        fuel_level_pct: float | None = None,
    ):
        self.vehicle = vehicle
        self.start = start
        self.rng = random.Random(f"{seed}:{vehicle.index}")
        self.t = 0.0  # simulated seconds since start
        self.last_report_t: float | None = None
        self.position = BAY
        self.heading = 0.0
        self.speed = 0.0  # m/s
        self.posted_mph = YARD_MOVE.segments[0].limit_mph
        self.odometer_mi = odometer_mi or round(self.rng.uniform(18_000, 180_000), 1)
        self.engine_hours = engine_hours or round(self.odometer_mi / 38, 1)
        self.fuel_pct = fuel_level_pct or round(self.rng.uniform(55, 95), 1)
        # How this vehicle's drivers drive against the traffic flow; vehicle 0 is the
        # lead foot that makes speeding events show up early in every demo.
        self.habit_mph = 4.0 if vehicle.index == 0 else self.rng.uniform(-3.0, 5.0)
        setpoint = vehicle.reefer_setpoint_f
        self.cargo_f = setpoint if setpoint is not None else 0.0
        self.next_temperature = 0.0
        self.next_heartbeat = 0.0
        self.drivers = (driver_name(2 * vehicle.index), driver_name(2 * vehicle.index + 1))
        self.plan: Iterator[Activity] = self._plan()
        self.activity: Activity = next(self.plan)
        self.elapsed_in_activity = 0.0

    # -- the plan --

    def _stamp(self, t: float) -> str:
        return rfc3339(self.start + timedelta(seconds=t))

    def _instant(self, kind: str, **fields: Any) -> Instant:
        return Instant({"vin": self.vehicle.vin, "type": kind, **fields})

    def _dvir(self, driver: str, when: str, defect_now: bool = False) -> Instant:
        defects: list[dict[str, str]] = []
        status = "safe"
        chance = self.rng.random()
        if defect_now or chance < 0.1:
            component, description = self.rng.choice(MINOR_DEFECTS)
            defects.append({"component": component, "description": description})
        elif when == "post-trip" and chance < 0.15:
            component, description = self.rng.choice(MAJOR_DEFECTS)
            defects.append({"component": component, "description": description})
            status = "unsafe"  # fixed in the workshop during the break
        return self._instant("dvir", driver=driver, defects=defects, safety_status=status)

    def _drive(self, road: Road) -> Drive:
        targets = []
        for segment in road.segments:
            if segment.limit_mph <= 15:
                mph = segment.limit_mph
            else:
                mph = segment.limit_mph + segment.flow_mph + self.habit_mph
                mph += self.rng.uniform(-2.0, 2.0)
                if segment.flow_mph < 10 and self.rng.random() < 0.12:
                    mph = self.rng.uniform(12, 30)  # a slowdown
            targets.append(max(5.0, min(GOVERNOR_MPH, mph)) * MPH)
        red = {
            point: self.rng.uniform(15, 75)
            for point in sorted(road.lights)
            if self.rng.random() < 0.5
        }
        return Drive(road, targets, red)

    def _plan(self) -> Iterator[Activity]:
        first, second = self.drivers
        index = self.vehicle.index
        # Parked in the depot: the driver arrives, files a pre-trip DVIR (vehicle 0's
        # first one lists a defect) and moves the truck to the dock.
        yield self._instant("driver_assignment", driver=first)
        yield Park(15 + index * 80 + self.rng.uniform(0, 30))
        yield self._dvir(first, "pre-trip", defect_now=index == 0)
        yield Park(15)
        yield Idle(self.rng.uniform(20, 45))
        yield self._drive(YARD_MOVE)
        loop = LOOP if index % 2 == 0 else REVERSE_LOOP
        cycle = 0
        while True:
            first, second = self.drivers
            if cycle:
                yield self._instant("driver_assignment", driver=first)
                yield Park(60)
                yield self._dvir(first, "pre-trip")
            # Loading at the dock, then the paperwork with the engine running.
            yield Park(self.rng.uniform(180, 300), doors_open=True)
            yield Idle(self.rng.uniform(660, 780))
            for road, place in loop:
                yield self._drive(road)
                if place == "customer":
                    # Unloading with the engine (and the reefer) running.
                    yield Idle(self.rng.uniform(720, 960), doors_open=True)
                elif place == "yard":
                    yield Park(120)
                    yield self._dvir(first, "post-trip")
                    yield Park(60)
                    yield self._instant("driver_assignment", driver=second)
                    yield Park(60)
                    yield self._dvir(second, "pre-trip")
                    yield Park(self.rng.uniform(60, 180))
                    yield Idle(self.rng.uniform(60, 120))
                    first, second = second, first
                else:
                    yield Park(90)
                    yield self._dvir(first, "post-trip")
                    yield Park(300)
                    # Parked for the break, the device goes to sleep and checks in.
                    yield self._instant("heartbeat")
                    yield Park(self.rng.uniform(600, 1200))
                    if self.fuel_pct < 30:
                        self.fuel_pct = round(self.rng.uniform(92, 98), 1)
            cycle += 1

    # -- physics --

    def _step(self, seconds: float) -> float:
        """Advance the current activity by at most `seconds`; the time used."""
        activity = self.activity
        if isinstance(activity, Instant):
            return 0.0
        if isinstance(activity, Drive):
            self.speed, moved, arrived = activity.step(self.speed, seconds)
            if moved:
                self.odometer_mi += moved / METRES_PER_MILE
                self.fuel_pct -= moved / METRES_PER_MILE * 0.1  # ≈ 1,000 miles a tank
            self.position = activity.position()
            self.heading = activity.heading() if self.speed > 0 or moved else self.heading
            self.posted_mph = activity.road.segments[activity.segment].limit_mph
            used = seconds
            if arrived:
                self.speed = 0.0
                self._next_activity()
        else:
            used = min(seconds, activity.seconds - self.elapsed_in_activity)
            self.elapsed_in_activity += used
            self.speed = 0.0
            if self.elapsed_in_activity >= activity.seconds - 1e-9:
                self._next_activity()
        if activity.ignition:
            self.engine_hours += used / 3600
            if self.speed == 0:
                self.fuel_pct -= used / 3600 * 0.6  # idling
        self.fuel_pct = max(self.fuel_pct, 5.0)
        self._reefer(used, activity.doors_open)
        return used

    def _next_activity(self) -> None:
        self.activity = next(self.plan)
        self.elapsed_in_activity = 0.0

    def _reefer(self, seconds: float, doors_open: bool) -> None:
        setpoint = self.vehicle.reefer_setpoint_f
        if setpoint is None or seconds <= 0:
            return
        goal, minutes = (setpoint + 18, 9.0) if doors_open else (setpoint, 12.0)
        self.cargo_f += (goal - self.cargo_f) * (1 - math.exp(-seconds / (minutes * 60)))

    def advance(self, until: float) -> list[dict[str, Any]]:
        """Run the vehicle to `until` (simulated seconds since start): the reports of
        what happened since the last call, its position at `until` last."""
        reports: list[dict[str, Any]] = []
        while True:
            while isinstance(self.activity, Instant):
                reports.append({**self.activity.report, "time": self._stamp(self.t)})
                self._next_activity()
            if self.t >= until:
                break
            self.t += self._step(min(STEP_SECONDS, until - self.t))
            if until - self.t < 1e-6:
                self.t = until
        if self.t >= self.next_heartbeat:
            reports.append(
                {"vin": self.vehicle.vin, "time": self._stamp(self.t), "type": "heartbeat"}
            )
            self.next_heartbeat = self.t + HEARTBEAT_SECONDS
        reports.append(self._position_report())
        self.last_report_t = self.t
        return reports

    def _position_report(self) -> dict[str, Any]:
        ignition = self.activity.ignition
        mph = 0.0
        if self.speed > 0.05:
            noisy = self.speed / MPH + self.rng.uniform(-0.8, 0.8)
            mph = round(min(max(noisy, 0.0), GOVERNOR_MPH), 1)
        report: dict[str, Any] = {
            "vin": self.vehicle.vin,
            "time": self._stamp(self.t),
            "type": "position",
            "latitude": round(self.position[0], 6),
            "longitude": round(self.position[1], 6),
            "speed_mph": mph,
            "heading": round(self.heading) % 360,
            "ignition": ignition,
            "odometer_mi": round(self.odometer_mi, 1),
            "posted_speed_mph": self.posted_mph,
            "engine_hours": round(self.engine_hours, 2),
            "fuel_level_pct": round(self.fuel_pct, 1),
        }
        setpoint = self.vehicle.reefer_setpoint_f
        if setpoint is not None and self.t >= self.next_temperature:
            noise = self.rng.uniform(-0.4, 0.4)
            report["temperatures"] = [
                {"sensor": "reefer-1", "fahrenheit": round(self.cargo_f + noise, 1)},
                {"sensor": "reefer-2", "fahrenheit": round(self.cargo_f - 2.2 + noise, 1)},
            ]
            self.next_temperature = self.t + TEMPERATURE_SECONDS
        since = self.t - self.last_report_t if self.last_report_t is not None else 0.0
        if ignition and self.rng.random() < 1 - math.exp(-since / FAULT_MEAN_SECONDS):
            code, description = self.rng.choice(FAULT_CODES)
            report["fault_codes"] = [{"code": code, "description": description}]
        return report


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the fleet and its report schedule ------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When each vehicle reports, in simulated seconds since the start: every
    N × scale / rate seconds while the simulated clock runs ahead of itself, every
    N / rate seconds once it has caught up with the real now (`catch_up`)."""

    vehicles: int
    rate: float
    time_scale: float
    lead_seconds: float

    @property
    def fast_interval(self) -> float:
        return self.vehicles * self.time_scale / self.rate

    @property
    def real_interval(self) -> float:
        return self.vehicles / self.rate

    @property
    def catch_up(self) -> float:
        """The simulated second at which the clock reaches the real now."""
        if self.time_scale <= 1:
            return math.inf if self.lead_seconds > 0 else 0.0
        return self.lead_seconds * self.time_scale / (self.time_scale - 1)

    def first(self, index: int) -> float:
        return index * self.fast_interval / self.vehicles

    def after(self, t: float) -> float:
        return t + (self.fast_interval if t < self.catch_up else self.real_interval)


class Fleet:
    """All simulated vehicles; `reports_until(t)` hands out, in time order, every
    report due up to simulated second t."""

    def __init__(self, models: list[VehicleModel], schedule: Schedule):
        self.models = models
        self.schedule = schedule
        self._due = [(schedule.first(m.vehicle.index), m.vehicle.index) for m in models]
        heapq.heapify(self._due)
        self._by_index = {m.vehicle.index: m for m in models}

    def next_due(self) -> float:
        return self._due[0][0] if self._due else math.inf

    def reports_until(self, until: float) -> list[dict[str, Any]]:
        stamped: list[tuple[float, int, dict[str, Any]]] = []
        while self._due and self._due[0][0] <= until:
            t, index = heapq.heappop(self._due)
            for report in self._by_index[index].advance(t):
                stamped.append((t, len(stamped), report))
            heapq.heappush(self._due, (self.schedule.after(t), index))
        # Time order across vehicles; a vehicle's own reports keep their order.
        stamped.sort(key=lambda item: (item[2]["time"], item[1]))
        return [report for _, _, report in stamped]


def build_fleet(
    count: int,
    start: datetime,
    seed: int,
    schedule: Schedule,
    server_vehicles: dict[str, dict[str, Any]] | None = None,
) -> Fleet:
    """The fleet of `count` demo vehicles; their odometers, engine hours and fuel
    continue from what the server knows of them."""
    models = []
    for vehicle in demo_vehicles(count):
        known = (server_vehicles or {}).get(vehicle.vin, {})
        models.append(
            VehicleModel(
                vehicle,
                start,
                seed,
                known.get("odometer_mi"),
                known.get("engine_hours"),
                known.get("fuel_level_pct"),
            )
        )
    return Fleet(models, schedule)


# --- the simulated clock ----------------------------------------------------------------
