"""The event catalogue: the 14 event types with their portal names, descriptions
and per-webhook settings, and `build_event`, the one builder of event bodies. The
detector, the Demo button and the portal's examples all build through it, so what
the portal shows is what receivers get."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from core.times import format_rfc3339


@dataclass(frozen=True)
class Setting:
    """A number each webhook of a type chooses, e.g. the mph of a Speed webhook, and
    which events reach a webhook for the number it chose. The detector makes an
    event whenever it could reach some webhook (at the setting's minimum); each
    webhook gets its chosen number in the event's `field`."""

    field: str  # its API and form name, and the event's field that carries it
    label: str
    unit: str
    minimum: int
    maximum: int
    default: int
    help: str
    reaches: Callable[[DetectedEvent, int], bool]  # (event, the webhook's number)


@dataclass(frozen=True)
class EventType:
    key: str  # stable API name
    name: str  # what the portal shows
    description: str
    setting: Setting | None = None
    # The event's own fields in an example, beside the common vehicle and fix fields.
    example_details: Mapping[str, Any] = field(default_factory=dict)
    example_speed_mph: float = 58.0
    # A webhook's message of this type older than this ends stale instead of being
    # tried again: a position is worth little after minutes. None: the retention.
    ttl: timedelta | None = None


@dataclass(frozen=True)
class VehicleSnapshot:
    """What is known of a vehicle when an event happens; unknown values are None
    and left out of the payload."""

    vehicle_id: int
    name: str
    vin: str
    driver: Mapping[str, Any] | None = None  # {"id", "name"}
    latitude: float | None = None
    longitude: float | None = None
    heading: int | None = None
    speed_mph: float | None = None
    odometer_mi: float | None = None
    fix_time: datetime | None = None
    # Not in payloads: lets a webhook limited to one vehicle group skip the rest.
    group: str | None = None


@dataclass(frozen=True)
class DetectedEvent:
    """An event as the detector (or the Demo button) hands it to the outbox."""

    event_type: EventType
    occurred_at: datetime
    vehicle: VehicleSnapshot
    details: Mapping[str, Any] = field(default_factory=dict)
    is_test: bool = False  # a Demo event; receivers see "test": true
    # When the platform received the report it comes from (None: made by the
    # platform itself, e.g. a Demo or an idle timer, so received as it is made).
    received_at: datetime | None = None
    # Idle events: the idle seconds at the vehicle's previous report and at this
    # one. A webhook with N minutes takes the event whose window N crosses, so each
    # idle period reaches it once.
    idle_window_s: tuple[float, float] | None = None
    # Speed and posted_speed events: the value the threshold is compared with (the
    # speed, or the mph over the posted limit) at the vehicle's previous position;
    # None when there was none. A webhook sending once per episode takes the event
    # only when its threshold lies above this value: the vehicle has just reached it.
    previous_mph: float | None = None
    # Location events: the position report's own values (engine_hours,
    # fuel_level_pct, fault_codes) and what the vehicle had before it
    # (previous_odometer_mi, previous_fix_time, previous_fault_codes: None when
    # unknown), for the integrations that sync them; not in payloads. A late report
    # (its fix older than previous_fix_time) changes none of the vehicle's state.
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ordering_key(self) -> str:
        """The lane this event's messages go in, its vehicle's (the
        fleethook-ordering-key header)."""
        return f"vehicle:{self.vehicle.vehicle_id}"


class SpeedingEvents(StrEnum):
    """When a speed or posted-speed webhook gets an event."""

    EVERY_REPORT = "every_report"  # each position report at or over the threshold
    EPISODE_START = "episode_start"  # the first of them, again only after a drop below


SPEEDING_EVENT_TYPES = ("speed", "posted_speed")


SPEED_THRESHOLD = Setting(
    "threshold_mph",
    "Speed threshold",
    "mph",
    5,
    200,
    70,
    "Every position report at or over this speed makes an event (or only the first of"
    " each speeding episode: see below).",
    lambda event, mph: (event.vehicle.speed_mph or 0) >= mph,
)
POSTED_SPEED_MARGIN = Setting(
    "threshold_mph",
    "Over the posted limit by",
    "mph",
    1,
    100,
    10,
    "Every position report this many mph or more over the posted limit makes an event (or"
    " only the first of each episode: see below).",
    lambda event, mph: (event.details.get("over_limit_mph") or 0) >= mph,
)
IDLE_MINUTES = Setting(
    "idle_minutes",
    "Idle for",
    "minutes",
    1,
    1440,
    5,
    "Send an event when the ignition is on and the vehicle has not moved for this long.",
    # Each idle period reaches a webhook once: in the report whose window crosses it.
    lambda event, minutes: _crosses(event.idle_window_s, minutes * 60),
)


def _crosses(window: tuple[float, float] | None, seconds: float) -> bool:
    before, now = window or (0.0, 0.0)
    return before < seconds <= now


_EXAMPLE_TIME = datetime(2026, 5, 14, 15, 42, 7, tzinfo=UTC)
_LANDMARK = {"id": 311, "name": "Joliet Distribution Center"}
_DRIVER = {"id": 17, "name": "Dana Whitfield"}


# Not an event anyone subscribes to: a vehicle's state as it is now, which an
# integration gets once per vehicle when it starts (integrations/base.py).
# How long a message stays worth sending (EventType.ttl; README, "Delivery").
POSITION_TTL = timedelta(minutes=15)
SPEEDING_TTL = timedelta(hours=2)

CURRENT_STATE = EventType(
    "current_state",
    "Current state",
    "The vehicle's last position, odometer and open fault codes, sent to an "
    "integration when it is connected.",
)


EVENT_TYPES: dict[str, EventType] = {
    event.key: event
    for event in [
        EventType("location", "Location", "Every position the vehicle reports.", ttl=POSITION_TTL),
        EventType(
            "speed",
            "Speed",
            "The vehicle reports a speed at or over the threshold you set.",
            SPEED_THRESHOLD,
            {"threshold_mph": 70},
            74.6,
            ttl=SPEEDING_TTL,
        ),
        EventType(
            "posted_speed",
            "Posted Speed",
            "The vehicle reports a speed over the posted limit by the margin you set or more.",
            POSTED_SPEED_MARGIN,
            {"posted_speed_mph": 55, "over_limit_mph": 13.4, "threshold_mph": 10},
            68.4,
            ttl=SPEEDING_TTL,
        ),
        EventType(
            "heartbeat",
            "Heartbeat",
            "The device checks in (about daily), with its last known position.",
            ttl=POSITION_TTL,
        ),
        EventType(
            "trip_complete",
            "Trip Complete",
            "A trip ends (ignition on, then off), with its summary.",
            None,
            {
                "trip": {
                    "started_at": format_rfc3339(_EXAMPLE_TIME - timedelta(minutes=47, seconds=12)),
                    "ended_at": format_rfc3339(_EXAMPLE_TIME),
                    "duration_s": 2832,
                    "distance_mi": 31.7,
                    "distance_source": "odometer",
                    "max_speed_mph": 67.0,
                    "average_speed_mph": 40.3,
                    "idle_s": 240,
                    "start": {"latitude": 41.8781, "longitude": -87.6298},
                    "end": {"latitude": 41.5250, "longitude": -88.0817},
                }
            },
            0.0,
        ),
        EventType(
            "ignition_on",
            "Ignition On",
            "The ignition is switched on.",
            None,
            {"ignition": True},
            0.0,
        ),
        EventType(
            "ignition_off",
            "Ignition Off",
            "The ignition is switched off.",
            None,
            {"ignition": False},
            0.0,
        ),
        EventType(
            "landmark_enter",
            "Landmark Enter",
            "The vehicle enters one of your landmarks.",
            None,
            {"landmark": _LANDMARK, "transition": "enter"},
        ),
        EventType(
            "landmark_leave",
            "Landmark Leave",
            "The vehicle leaves one of your landmarks.",
            None,
            {"landmark": _LANDMARK, "transition": "leave"},
        ),
        EventType(
            "landmark_change",
            "Landmark Change",
            "The vehicle enters or leaves one of your landmarks.",
            None,
            {"landmark": _LANDMARK, "transition": "enter"},
        ),
        EventType(
            "idle",
            "Idle",
            "The ignition is on and the vehicle stands still for the minutes you set.",
            IDLE_MINUTES,
            {
                "idle_minutes": 10,
                "idle_since": format_rfc3339(_EXAMPLE_TIME - timedelta(minutes=10)),
                "idle_duration_s": 600,
            },
            0.0,
        ),
        EventType(
            "temperature",
            "Temperature",
            "A temperature reading arrives from a sensor.",
            None,
            {
                "temperatures": [
                    {"sensor": "reefer-1", "fahrenheit": 36.5},
                    {"sensor": "reefer-2", "fahrenheit": 38.1},
                ]
            },
        ),
        EventType(
            "dvir",
            "DVIR",
            "A driver files a vehicle inspection report.",
            None,
            {
                "dvir": {
                    "driver": "Dana Whitfield",
                    "defects": [
                        {"component": "Brakes", "description": "Air leak at the rear axle"}
                    ],
                    "safety_status": "unsafe",
                }
            },
        ),
        EventType(
            "driver_assignment",
            "Driver Assignment",
            "A driver is assigned to the vehicle.",
            None,
            {"previous_driver": {"id": 9, "name": "Sam Ortega"}},
        ),
    ]
}


class UnknownEventField(ValueError):
    """A builder was given a field its event type does not carry."""


def build_event(
    event_type: EventType,
    occurred_at: datetime,
    vehicle: VehicleSnapshot,
    details: Mapping[str, Any],
    received_at: datetime | None = None,
    late_after: timedelta | None = None,
) -> dict[str, Any]:
    """The body every receiver gets: `{"type", "timestamp", "data"}`.

    `data` holds the vehicle, the driver and position fields that are known, when
    the platform received the report (`received_at`) and whether that was more than
    `late_after` after the event (`late`: store-and-forward after a dead zone), then
    the event's own fields, which must be the ones its catalogue entry names."""
    unknown = set(details) - set(event_type.example_details)
    if unknown:
        raise UnknownEventField(f"{event_type.key} events carry no {', '.join(sorted(unknown))}")
    data: dict[str, Any] = {
        "vehicle": {"id": vehicle.vehicle_id, "name": vehicle.name, "vin": vehicle.vin}
    }
    known = {
        "driver": vehicle.driver,
        "latitude": vehicle.latitude,
        "longitude": vehicle.longitude,
        "heading": vehicle.heading,
        "speed_mph": vehicle.speed_mph,
        "odometer_mi": vehicle.odometer_mi,
        "fix_time": format_rfc3339(vehicle.fix_time) if vehicle.fix_time else None,
    }
    data.update({name: value for name, value in known.items() if value is not None})
    received = received_at or occurred_at
    data["received_at"] = format_rfc3339(received)
    data["late"] = late_after is not None and received - occurred_at > late_after
    # In the catalogue's order, whoever added them in whichever order.
    data.update({name: details[name] for name in event_type.example_details if name in details})
    return {"type": event_type.key, "timestamp": format_rfc3339(occurred_at), "data": data}


EXAMPLE_VEHICLE = VehicleSnapshot(
    vehicle_id=1042,
    name="Truck 42",
    vin="1FUJGLDR3CLBP8834",
    driver=_DRIVER,
    latitude=41.5250,
    longitude=-88.0817,
    heading=225,
    speed_mph=58.0,
    odometer_mi=128463.2,
    fix_time=_EXAMPLE_TIME - timedelta(seconds=2),
)


def example_event(event_type: EventType, setting_value: int | None = None) -> dict[str, Any]:
    """A realistic event body of this type, built like a real one. `setting_value`
    is the webhook's own threshold; the example then shows an event that would pass
    it."""
    event = example_detected(event_type, setting_value)
    return build_event(
        event_type, event.occurred_at, event.vehicle, event.details, event.received_at
    )


def example_detected(event_type: EventType, setting_value: int | None = None) -> DetectedEvent:
    """The event `example_event` shows, as the detector would hand it over."""
    details = dict(event_type.example_details)
    speed = event_type.example_speed_mph
    if event_type.setting is not None and setting_value is not None:
        details[event_type.setting.field] = setting_value
        if event_type.key == "speed":
            speed = setting_value + 4.6
        elif event_type.key == "posted_speed":
            details["over_limit_mph"] = round(setting_value + 3.4, 1)
            speed = details["posted_speed_mph"] + details["over_limit_mph"]
        elif event_type.key == "idle":
            details["idle_duration_s"] = setting_value * 60
            details["idle_since"] = format_rfc3339(_EXAMPLE_TIME - timedelta(minutes=setting_value))
    vehicle = replace(EXAMPLE_VEHICLE, speed_mph=round(speed, 1))
    received = _EXAMPLE_TIME + timedelta(seconds=1)
    return DetectedEvent(event_type, _EXAMPLE_TIME, vehicle, details, received_at=received)
