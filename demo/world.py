"""The demo world the simulated fleet drives in: its landmarks, roads and loops,
and the names, defects and fault codes its drivers and vehicles report.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial compass bearing from a to b, in [0, 360)."""
    phi1, phi2 = math.radians(a[0]), math.radians(b[0])
    dlambda = math.radians(b[1] - a[1])
    x = math.sin(dlambda) * math.cos(phi2)
    y = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlambda)
    return math.degrees(math.atan2(x, y)) % 360
