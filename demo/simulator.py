"""A demo fleet on the road: N vehicles driving a loop through demo landmarks near
Chicago, posting telemetry to the ingest API (`POST /api/v1/telemetry`) like a
device gateway would. `flask --app app simulate` runs it; `make run` starts it for
the demo account.

The world. Four landmarks: the depot in Bedford Park (a polygon whose hole is the
warehouse building), its loading dock (a small circle inside the depot polygon, so
vehicles at the dock are in two landmarks at once), a customer in Fulton Market (a
circle) and a yard in Elk Grove Village (a circle). Each vehicle starts parked in
the depot, moves to the dock (a short trip: ignition on, off), loads, idles with the
engine running (reefer pre-cooling, paperwork), then drives a loop over surface
streets, I-55, the Kennedy, the Jane Addams and the Tri-State: even vehicles
dock → customer → yard → dock, odd ones the other way round. At the customer the
engine idles while unloading; at the yard the ignition goes off, the driver files a
post-trip DVIR, hands over to a second driver (`driver_assignment`) who files a
pre-trip DVIR; back at the dock the trip ends and, after a break, the loop starts
again. Speeds follow the posted limit of each road segment plus the traffic flow
there and the driver's own habit (some stretches are driven above 70 mph and more
than 10 mph over the limit), with acceleration, braking ahead of slower segments,
red lights and the odd slowdown. The odometer advances with the distance driven,
engine hours while the ignition is on, the fuel level falls. Vehicles with an even
index carry a reefer whose two sensors report every 5 simulated minutes and warm up
while the doors are open. Fault codes appear now and then (about once per running
hour); every device sends a heartbeat when it starts, when it goes to sleep for the
break at the end of each loop, and daily.

Time. The detector works on report times: an idle period of N minutes needs report
times N minutes apart, and the ingest refuses times more than 5 minutes in the
future. So the simulator keeps a simulated clock that starts `lead` (one hour) in
the past and runs `--time-scale` times faster than real time (default 10), but
never ahead of the real now: once it has caught up (after lead / (scale − 1) real
seconds, 6⅔ minutes at the defaults) it runs at real time. Every report is
stamped with the simulated clock, so a 12-minute idle stop takes 72 real seconds
at first. Each vehicle reports every N × scale / rate simulated seconds while the
clock is ahead of itself and every N / rate seconds once it runs at real time, so
the rate (reports per second overall) holds throughout, and the whole sequence of
reports is a function of the seed and the settings alone (`--seed` makes it
deterministic; only the absolute start time comes from the wall clock).

A vehicle's state on the server forbids going back in time: reports older than its
newest only count as locations. The simulator therefore remembers in a state file
(instance/simulator-clock.json for the CLI) the newest time it sent to a URL, and
a later run starts its clock there if that is less than an hour ago — with less
room to run fast, since its clock still may not pass the real now.

HTTP. One `requests.Session`; batches of up to 1,000 reports about once a second.
A 4xx (other than 408 and 429) or a 3xx answer is a bug: `SimulatorError` carries
the problem body and the CLI exits non-zero. 5xx, 408, 429 (honouring
Retry-After), timeouts and refused connections are waited out and the same batch
is sent again (the ingest ignores a repeated report as a duplicate).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from fleet.vin import check_digit
from outbox.schedule import parse_retry_after

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_VEHICLES = 5
DEFAULT_RATE = 5.0  # reports per second, all vehicles together
DEFAULT_TIME_SCALE = 10.0  # simulated seconds per real second
DEFAULT_LEAD = timedelta(hours=1)  # how far in the past the simulated clock starts
MAX_VEHICLES = 200
MAX_REPORTS_PER_VEHICLE_SECOND = 100  # so two reports of a vehicle never share a time
MAX_BATCH = 1000
BATCH_SECONDS = 1.0
STATUS_SECONDS = 60.0
MAX_RETRY_SECONDS = 30.0
USER_AGENT = "Fleethook-Simulator/1"

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


# --- the demo world --------------------------------------------------------------

DEPOT = "Demo Depot (Bedford Park)"
DOCK = "Demo Depot Loading Dock"
CUSTOMER = "Demo Customer (Fulton Market Cold Storage)"
YARD = "Demo Yard (Elk Grove Village)"


def _ring(*points: tuple[float, float]) -> list[list[float]]:
    """A closed GeoJSON ring of (latitude, longitude) points, as [lon, lat]."""
    return [[lon, lat] for lat, lon in (*points, points[0])]


# Landmarks as POST /api/v1/landmarks takes them. The depot's outline runs
# counter-clockwise and its hole (the warehouse building) clockwise (RFC 7946).
LANDMARKS: tuple[dict[str, Any], ...] = (
    {
        "name": DEPOT,
        "polygon": {
            "type": "Polygon",
            "coordinates": [
                _ring(
                    (41.7800, -87.7710),
                    (41.7800, -87.7630),
                    (41.7860, -87.7630),
                    (41.7860, -87.7710),
                ),
                _ring(
                    (41.7820, -87.7690),
                    (41.7840, -87.7690),
                    (41.7840, -87.7650),
                    (41.7820, -87.7650),
                ),
            ],
        },
    },
    {"name": DOCK, "circle": {"latitude": 41.7846, "longitude": -87.7660, "radius_m": 40}},
    {"name": CUSTOMER, "circle": {"latitude": 41.8868, "longitude": -87.6525, "radius_m": 200}},
    {"name": YARD, "circle": {"latitude": 42.0060, "longitude": -87.9700, "radius_m": 250}},
)


@dataclass(frozen=True)
class Segment:
    limit_mph: float  # the posted limit
    flow_mph: float  # how fast traffic there usually drives against the limit
    name: str


@dataclass(frozen=True)
class Road:
    """A polyline of (latitude, longitude) points; segment i joins point i and i + 1;
    `lights` are the indices of points with a traffic light."""

    points: tuple[tuple[float, float], ...]
    segments: tuple[Segment, ...]
    lights: frozenset[int] = frozenset()

    def reversed(self) -> Road:
        last = len(self.points) - 1
        return Road(
            self.points[::-1], self.segments[::-1], frozenset(last - i for i in self.lights)
        )


def _road(start: tuple[float, float], *steps: tuple[float, float, float, float, str]) -> Road:
    """A road from its start and (latitude, longitude, limit, flow, name) steps; a
    name ending in "*" puts a traffic light at the step's end."""
    points = [start]
    segments = []
    lights = set()
    for latitude, longitude, limit, flow, name in steps:
        points.append((latitude, longitude))
        segments.append(Segment(limit, flow, name.rstrip("*")))
        if name.endswith("*"):
            lights.add(len(points) - 1)
    return Road(tuple(points), tuple(segments), frozenset(lights))


BAY = (41.7812, -87.7660)  # where vehicles park in the depot
DOCK_POINT = (41.7846, -87.7660)
CUSTOMER_POINT = (41.8868, -87.6525)
YARD_POINT = (42.0062, -87.9705)

# The depot's own lanes stay east of the warehouse (the polygon's hole).
YARD_MOVE = _road(
    BAY,
    (41.7812, -87.7642, 10, 0, "depot lane"),
    (41.7846, -87.7642, 10, 0, "depot lane"),
    (*DOCK_POINT, 10, 0, "dock apron"),
)
DOCK_TO_CUSTOMER = _road(
    DOCK_POINT,
    (41.7846, -87.7642, 10, 0, "dock apron"),
    (41.7870, -87.7642, 15, 0, "depot gate*"),
    (41.7935, -87.7435, 35, 3, "Archer Ave*"),
    (41.8005, -87.7410, 45, 0, "I-55 ramp"),
    (41.8110, -87.7240, 55, 8, "I-55 Stevenson"),
    (41.8300, -87.6860, 55, 12, "I-55 Stevenson"),
    (41.8470, -87.6470, 55, 8, "I-55 Stevenson"),
    (41.8600, -87.6440, 55, 5, "I-90/94 Dan Ryan"),
    (41.8780, -87.6430, 55, 10, "I-90/94 Kennedy"),
    (41.8850, -87.6440, 45, 0, "I-90/94 Kennedy exit"),
    (41.8856, -87.6480, 30, 0, "Lake St*"),
    (41.8866, -87.6505, 25, 0, "Fulton Market*"),
    (*CUSTOMER_POINT, 15, 0, "customer lot"),
)
CUSTOMER_TO_YARD = _road(
    CUSTOMER_POINT,
    (41.8890, -87.6500, 25, 0, "Fulton Market*"),
    (41.8905, -87.6470, 45, 0, "Kennedy ramp"),
    (41.9050, -87.6650, 55, 5, "I-90/94 Kennedy"),
    (41.9200, -87.6880, 55, 10, "I-90/94 Kennedy express lanes"),
    (41.9440, -87.7210, 55, 10, "I-90/94 Kennedy express lanes"),
    (41.9700, -87.7620, 55, 6, "I-90 Kennedy"),
    (41.9790, -87.7900, 55, 4, "I-90 Kennedy"),
    (41.9850, -87.8300, 60, 5, "I-90 Kennedy"),
    (41.9870, -87.8700, 60, 5, "I-90 Kennedy"),
    (41.9930, -87.9050, 70, 3, "I-90 Jane Addams Tollway"),
    (41.9990, -87.9350, 70, 5, "I-90 Jane Addams Tollway"),
    (42.0030, -87.9570, 45, 0, "Elmhurst Rd ramp*"),
    (42.0050, -87.9660, 30, 0, "Busse Rd*"),
    (*YARD_POINT, 10, 0, "yard lane"),
)
YARD_TO_DOCK = _road(
    YARD_POINT,
    (42.0050, -87.9660, 15, 0, "yard lane*"),
    (42.0030, -87.9570, 30, 0, "Busse Rd*"),
    (41.9990, -87.9350, 45, 0, "Elmhurst Rd ramp"),
    (41.9880, -87.8920, 70, 4, "I-90 Jane Addams Tollway"),
    (41.9600, -87.8870, 55, 5, "I-294 ramp"),
    (41.9200, -87.8980, 70, 5, "I-294 Tri-State Tollway"),
    (41.8800, -87.9080, 70, 6, "I-294 Tri-State Tollway"),
    (41.8400, -87.9050, 70, 4, "I-294 Tri-State Tollway"),
    (41.8100, -87.8850, 70, 3, "I-294 Tri-State Tollway"),
    (41.8030, -87.8500, 55, 8, "I-55 Stevenson"),
    (41.7990, -87.8100, 55, 8, "I-55 Stevenson"),
    (41.7960, -87.7800, 55, 5, "I-55 Stevenson"),
    (41.7920, -87.7700, 35, 0, "Harlem Ave*"),
    (41.7870, -87.7642, 25, 0, "depot gate*"),
    (41.7846, -87.7642, 10, 0, "depot lane"),
    (*DOCK_POINT, 10, 0, "dock apron"),
)
# Even vehicles drive the loop this way, odd ones the other way round.
LOOP = ((DOCK_TO_CUSTOMER, "customer"), (CUSTOMER_TO_YARD, "yard"), (YARD_TO_DOCK, "dock"))
REVERSE_LOOP = (
    (YARD_TO_DOCK.reversed(), "yard"),
    (CUSTOMER_TO_YARD.reversed(), "customer"),
    (DOCK_TO_CUSTOMER.reversed(), "dock"),
)

FIRST_NAMES = (
    "Dana",
    "Sam",
    "Alex",
    "Jordan",
    "Maria",
    "Luis",
    "Priya",
    "Kofi",
    "Mei",
    "Tomasz",
    "Aisha",
    "Carlos",
    "Grace",
    "Ivan",
    "Keisha",
    "Marcus",
    "Nadia",
    "Omar",
    "Rosa",
    "Wes",
)
LAST_NAMES = (
    "Whitfield",
    "Ortega",
    "Kowalski",
    "Nguyen",
    "Okafor",
    "Brennan",
    "Patel",
    "Schultz",
    "Haddad",
    "Moreno",
    "Lindqvist",
    "Jackson",
    "Romano",
    "Sato",
    "Fischer",
    "Delgado",
    "Mbeki",
    "O'Neill",
    "Novak",
    "Reyes",
)
MINOR_DEFECTS = (
    ("Lights", "Right rear marker lamp out"),
    ("Mirrors", "Driver-side convex mirror cracked"),
    ("Wipers", "Passenger wiper blade torn"),
    ("Reefer unit", "Door seal worn at the lower left corner"),
)
MAJOR_DEFECTS = (
    ("Brakes", "Air leak at the rear axle"),
    ("Tires", "Left steer tire tread below 4/32 in"),
    ("Coupling devices", "Fifth-wheel locking jaw worn"),
)
FAULT_CODES = (
    ("P0128", "Coolant thermostat below regulating temperature"),
    ("P0299", "Turbocharger underboost condition"),
    ("P2459", "Diesel particulate filter regeneration frequency"),
    ("P0087", "Fuel rail pressure too low"),
    ("P20EE", "SCR NOx catalyst efficiency below threshold"),
    ("U0100", "Lost communication with ECM/PCM"),
)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points."""
    phi1, phi2 = math.radians(a[0]), math.radians(b[0])
    dphi, dlambda = phi2 - phi1, math.radians(b[1] - a[1])
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial compass bearing from a to b, in [0, 360)."""
    phi1, phi2 = math.radians(a[0]), math.radians(b[0])
    dlambda = math.radians(b[1] - a[1])
    x = math.sin(dlambda) * math.cos(phi2)
    y = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlambda)
    return math.degrees(math.atan2(x, y)) % 360


# --- vehicles --------------------------------------------------------------------


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
            distance_m(a, b) for a, b in zip(self.road.points, self.road.points[1:], strict=False)
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


class SimClock:
    """Simulated seconds since `start`: `time_scale` times real time, but never
    ahead of the real now."""

    def __init__(self, start: datetime, time_scale: float, now: datetime | None = None):
        self.start = start
        self.time_scale = time_scale
        self.lead = ((now or datetime.now(UTC)) - start).total_seconds()
        self._began = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._began

    def now(self) -> float:
        elapsed = self.elapsed()
        wall = (datetime.now(UTC) - self.start).total_seconds()
        return min(self.time_scale * elapsed, self.lead + elapsed, wall)

    def real_seconds_until(self, t: float) -> float:
        elapsed = self.elapsed()
        return max(0.0, t / self.time_scale - elapsed, t - self.lead - elapsed)


# --- the API ----------------------------------------------------------------------------


class SimulatorError(Exception):
    """The API refused a request: a bug in the simulator or the server."""


class Stopped(Exception):
    """Asked to stop while waiting."""


class Api:
    """The few calls the simulator makes, over one keep-alive session; waits out
    server errors and refused connections, stops at client errors."""

    def __init__(
        self,
        url: str,
        token: str,
        stop: threading.Event,
        log: Callable[[str], None],
        timeout: float = 30.0,
    ):
        self.base = url.rstrip("/") + "/api/v1"
        self.stop = stop
        self.log = log
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT})

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        delay = 1.0
        while True:
            wait = delay
            try:
                response = self.session.request(
                    method,
                    self.base + path,
                    json=body,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = f"no answer ({error.__class__.__name__})"
            else:
                status = response.status_code
                if status < 300:
                    return response.json() if response.content else None
                if status < 500 and status not in (408, 429):
                    raise SimulatorError(
                        f"{method} {self.base + path} answered {status}: {response.text.strip()}"
                    )
                problem = f"answered {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    wait = max(wait, retry_after)
            if self.stop.is_set():
                raise Stopped()
            self.log(f"{method} {path} {problem}; trying again in {wait:g} s")
            if self.stop.wait(wait):
                raise Stopped()
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def all_pages(self, path: str, key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = f"?limit=200&cursor={cursor}" if cursor else "?limit=200"
            page = self.request("GET", path + query)
            rows.extend(page[key])
            cursor = page.get("next_cursor")
            if not cursor:
                return rows


def ensure_fleet(api: Api, count: int) -> dict[str, dict[str, Any]]:
    """Make sure the account has the demo landmarks (by name) and vehicles (by VIN);
    the vehicles as the server knows them, by VIN."""
    landmarks = {row["name"] for row in api.all_pages("/landmarks", "landmarks")}
    for landmark in LANDMARKS:
        if landmark["name"] not in landmarks:
            api.request("POST", "/landmarks", landmark)
    vehicles = {row["vin"]: row for row in api.all_pages("/vehicles", "vehicles")}
    for vehicle in demo_vehicles(count):
        if vehicle.vin not in vehicles:
            vehicles[vehicle.vin] = api.request("POST", "/vehicles", vehicle.api_body())
    return vehicles


# --- running -------------------------------------------------------------------------


@dataclass
class Settings:
    url: str
    token: str
    vehicles: int = DEFAULT_VEHICLES
    rate: float = DEFAULT_RATE
    time_scale: float = DEFAULT_TIME_SCALE
    duration: float | None = None  # real seconds; None: until stopped
    seed: int = 0
    lead: timedelta = DEFAULT_LEAD
    state_file: Path | None = None
    batch_seconds: float = BATCH_SECONDS

    def check(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise SimulatorError(f"--url must be an http:// or https:// URL, not {self.url!r}")
        if not 1 <= self.vehicles <= MAX_VEHICLES:
            raise SimulatorError(f"--vehicles must be from 1 to {MAX_VEHICLES}")
        if not 0 < self.rate <= self.vehicles * MAX_REPORTS_PER_VEHICLE_SECOND:
            raise SimulatorError(
                f"--rate must be above 0 and at most {MAX_REPORTS_PER_VEHICLE_SECOND} "
                "reports per second per vehicle"
            )
        if self.time_scale < 1:
            raise SimulatorError("--time-scale must be at least 1")


@dataclass
class Summary:
    reports: int = 0
    batches: int = 0
    events: int = 0
    duplicates: int = 0
    simulated_until: datetime | None = None


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return sum(_count(item) for item in value.values())
    if isinstance(value, list):
        return len(value)
    return 0


def _read_state(path: Path | None, url: str) -> datetime | None:
    if path is None or not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        value = state.get(url) if isinstance(state, dict) else None
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except (OSError, ValueError, AttributeError):
        return None


def _write_state(path: Path | None, url: str, newest: str) -> None:
    if path is None:
        return
    try:
        state = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    state[url] = newest
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(partial, path)


def start_time(settings: Settings, now: datetime) -> datetime:
    """Where the simulated clock starts: `lead` ago, or later if a previous run to
    the same URL already sent reports after that."""
    start = now - settings.lead if settings.time_scale > 1 else now
    previous = _read_state(settings.state_file, settings.url)
    if previous is not None and previous > start:
        start = min(previous + timedelta(milliseconds=1), now)
    return start


def run(
    settings: Settings,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
    sim_limit: float | None = None,
) -> Summary:
    """Drive the fleet until `stop` is set, `settings.duration` real seconds have
    passed or (tests) every report up to `sim_limit` simulated seconds is sent."""
    settings.check()
    stop = stop or threading.Event()
    say = log or (lambda line: print(f"simulator: {line}", flush=True))
    api = Api(settings.url, settings.token, stop, say)
    summary = Summary()
    try:
        known = ensure_fleet(api, settings.vehicles)
        now = datetime.now(UTC)
        start = start_time(settings, now)
        clock = SimClock(start, settings.time_scale, now)
        schedule = Schedule(settings.vehicles, settings.rate, settings.time_scale, clock.lead)
        fleet = build_fleet(settings.vehicles, start, settings.seed, schedule, known)
        say(
            f"{settings.vehicles} vehicles and {len(LANDMARKS)} landmarks ready; "
            f"{settings.rate:g} reports/s to {settings.url}, seed {settings.seed}, clock from "
            f"{rfc3339(start)} at ×{settings.time_scale:g} until it reaches the real time "
            f"(in {schedule.catch_up / settings.time_scale:.0f} s)"
        )
        _drive(settings, api, clock, fleet, summary, stop, say, sim_limit)
    except Stopped:
        pass
    finally:
        api.close()
    return summary


def _drive(
    settings: Settings,
    api: Api,
    clock: SimClock,
    fleet: Fleet,
    summary: Summary,
    stop: threading.Event,
    say: Callable[[str], None],
    sim_limit: float | None,
) -> None:
    next_status = STATUS_SECONDS
    while True:
        began = clock.elapsed()
        finished = settings.duration is not None and began >= settings.duration
        until = clock.now() if sim_limit is None else min(clock.now(), sim_limit)
        reports = fleet.reports_until(until)
        for first in range(0, len(reports), MAX_BATCH):
            batch = reports[first : first + MAX_BATCH]
            answer = api.request("POST", "/telemetry", {"reports": batch})
            summary.batches += 1
            summary.reports += len(batch)
            if isinstance(answer, dict):
                summary.events += _count(answer.get("events"))
                summary.duplicates += _count(answer.get("duplicates"))
            newest = batch[-1]["time"]
            summary.simulated_until = datetime.fromisoformat(newest.replace("Z", "+00:00"))
            _write_state(settings.state_file, settings.url, newest)
        if finished or (sim_limit is not None and until >= sim_limit):
            return
        if clock.elapsed() >= next_status:
            next_status += STATUS_SECONDS
            at = rfc3339(summary.simulated_until) if summary.simulated_until else "-"
            say(f"{summary.reports:,} reports sent, {summary.events:,} events, clock at {at}")
        # Send about once per batch period, or when the next report is due if later.
        pause = max(
            settings.batch_seconds - (clock.elapsed() - began),
            clock.real_seconds_until(fleet.next_due()),
        )
        if sim_limit is not None:
            pause = min(pause, clock.real_seconds_until(sim_limit))
        if settings.duration is not None:
            pause = min(pause, settings.duration - clock.elapsed())
        if stop.wait(max(pause, 0.0)):
            return


# --- the command ------------------------------------------------------------------------


@click.command("simulate")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="Fleethook's base URL.")
@click.option(
    "--token",
    envvar="FLEETHOOK_SIMULATOR_TOKEN",
    help="An admin's API token of the account to fill (or FLEETHOOK_SIMULATOR_TOKEN, which "
    "keeps it out of the process list).",
)
@click.option(
    "--vehicles",
    type=click.IntRange(1, MAX_VEHICLES),
    default=DEFAULT_VEHICLES,
    show_default=True,
    help="How many demo vehicles drive.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_RATE,
    show_default=True,
    help="Reports per second, all vehicles together.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIME_SCALE,
    show_default=True,
    help="Simulated seconds per real second, until the simulated clock (which starts an hour "
    "ago) reaches the real time.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option("--seed", type=int, default=None, help="Make the run repeatable.")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the newest report time per URL is kept between runs "
    "[default: instance/simulator-clock.json].",
)
@with_appcontext
def simulate_command(
    url: str,
    token: str | None,
    vehicles: int,
    rate: float,
    time_scale: float,
    duration: float | None,
    seed: int | None,
    state_file: Path | None,
) -> None:
    """Drive demo vehicles and post their telemetry to the ingest API."""
    if not token:
        raise click.UsageError("Give an API token: --token or FLEETHOOK_SIMULATOR_TOKEN.")
    if seed is None:
        seed = random.SystemRandom().randrange(1_000_000)
    settings = Settings(
        url=url,
        token=token,
        vehicles=vehicles,
        rate=rate,
        time_scale=time_scale,
        duration=duration,
        seed=seed,
        state_file=state_file or Path(current_app.instance_path) / "simulator-clock.json",
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run(settings, stop)
    except SimulatorError as error:
        raise click.ClickException(str(error)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(
        f"simulator: stopped after {summary.reports:,} reports in {summary.batches:,} batches "
        f"({summary.events:,} events)."
    )
