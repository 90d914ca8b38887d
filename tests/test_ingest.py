"""The ingest API and the detector: for every event type a scripted sequence of
reports and exactly the events expected, as the subscribed webhooks' outbox
messages show them; duplicates, late reports, whole-batch refusal, tenancy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES
from fleet.models import Driver, DriverAssignment, TelemetryReport, Vehicle, VehicleState
from outbox.models import OutboxMessage
from tests.conftest import bearer, make_user
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook

VIN = "1FUJGLDR3CLBP8834"
T0 = utcnow().replace(microsecond=0) - timedelta(hours=3)
DEPOT = {"latitude": 41.8800, "longitude": -87.6300, "radius_m": 200}
# A square yard west of the depot with a square hole in the middle.
YARD = {
    "type": "Polygon",
    "coordinates": [
        [[-87.70, 41.87], [-87.68, 41.87], [-87.68, 41.89], [-87.70, 41.89], [-87.70, 41.87]],
        [
            [-87.695, 41.875],
            [-87.685, 41.875],
            [-87.685, 41.885],
            [-87.695, 41.885],
            [-87.695, 41.875],
        ],
    ],
}
SETTINGS = {
    "speed": {"threshold_mph": 70},
    "posted_speed": {"threshold_mph": 10},
    "idle": {"idle_minutes": 5},
}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def position(
    seconds: float,
    speed: float = 30.0,
    ignition: bool = True,
    latitude: float = 41.95,
    longitude: float = -87.80,
    **extra: Any,
) -> dict:
    return {
        "vin": VIN,
        "type": "position",
        "time": at(seconds),
        "latitude": latitude,
        "longitude": longitude,
        "speed_mph": speed,
        "heading": 90,
        "ignition": ignition,
        **extra,
    }


class Fleet:
    """An account with one vehicle, two landmarks and a webhook per event type."""

    def __init__(self, client: Any) -> None:
        self.client = client
        user = make_user()
        self.account_id = user.account_id
        self.headers = bearer(user)
        created = client.post(
            "/api/v1/vehicles",
            headers=self.headers,
            json={"name": "Truck 42", "vin": VIN, "group": "North"},
        )
        self.vehicle_id = created.json["id"]
        self.depot = self.landmark({"name": "Depot", "circle": DEPOT})
        self.yard = self.landmark({"name": "Yard", "polygon": YARD})
        self.webhooks = {}
        for key in EVENT_TYPES:
            webhook, _ = create_webhook(
                self.account_id,
                {
                    "event_type": key,
                    "name": key,
                    "url": f"https://hooks.example.com/{key}",
                    **SETTINGS.get(key, {}),
                },
            )
            self.webhooks[key] = webhook
        db.session.commit()
        self.webhooks = {key: webhook.id for key, webhook in self.webhooks.items()}

    def landmark(self, body: dict) -> int:
        response = self.client.post("/api/v1/landmarks", json=body, headers=self.headers)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def post(self, *reports: dict, expect: int = 202) -> dict:
        body = reports[0] if len(reports) == 1 else {"reports": list(reports)}
        response = self.client.post("/api/v1/telemetry", json=body, headers=self.headers)
        assert response.status_code == expect, response.json
        return response.json

    def received(self, key: str) -> list[dict]:
        """The data of each message the `key` webhook got, oldest first."""
        return self.received_by(self.webhooks[key])

    def received_by(self, webhook_id: int) -> list[dict]:
        """The data of each message the webhook got, oldest first."""
        db.session.expire_all()
        return [
            message.payload["data"]
            for message in db.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.target_id == webhook_id)
                .order_by(OutboxMessage.sequence)
            )
        ]

    def counts(self) -> dict[str, int]:
        return {key: len(self.received(key)) for key in EVENT_TYPES if self.received(key)}


def subscribe(fleet: Fleet, key: str, **settings: Any) -> Webhook:
    """Another webhook of the account, with its own settings."""
    url = f"https://hooks.example.com/{key}/another"
    webhook, _ = create_webhook(
        fleet.account_id, {"event_type": key, "name": "Another", "url": url, **settings}
    )
    db.session.commit()
    return webhook


@pytest.fixture
def fleet(client):
    return Fleet(client)


def test_a_position_makes_a_location_event_with_the_fix(fleet):
    answer = fleet.post(position(0, speed=30, odometer_mi=1000.5, fuel_level_pct=61.0))
    assert answer == {"accepted": 1, "duplicates": 0, "events": 1, "messages": 1}
    [data] = fleet.received("location")
    assert data["vehicle"] == {"id": fleet.vehicle_id, "name": "Truck 42", "vin": VIN}
    assert (data["latitude"], data["longitude"], data["speed_mph"]) == (41.95, -87.80, 30)
    assert data["odometer_mi"] == 1000.5 and data["fix_time"] == at(0)
    assert fleet.counts() == {"location": 1}
    vehicle = db.session.get(Vehicle, fleet.vehicle_id)
    assert (vehicle.odometer_mi, vehicle.fuel_level_pct, vehicle.last_fix_at) == (1000.5, 61.0, T0)


def test_speed_reaches_each_webhooks_own_threshold(fleet):
    fleet.post(position(0, speed=69.9), position(10, speed=70), position(20, speed=82.5))
    assert [d["speed_mph"] for d in fleet.received("speed")] == [70, 82.5]
    assert all(d["threshold_mph"] == 70 for d in fleet.received("speed"))
    # Another webhook with its own X takes its own share of the same positions.
    webhook = subscribe(fleet, "speed", threshold_mph=80)
    db.session.commit()
    fleet.post(position(30, speed=79), position(40, speed=80.1))
    db.session.expire_all()
    eighty = db.session.scalars(select(OutboxMessage).where(OutboxMessage.target_id == webhook.id))
    assert [
        (m.payload["data"]["speed_mph"], m.payload["data"]["threshold_mph"]) for m in eighty
    ] == [(80.1, 80)]
    assert [d["speed_mph"] for d in fleet.received("speed")] == [70, 82.5, 79, 80.1]


def test_posted_speed_counts_the_margin_over_the_limit(fleet):
    fleet.post(
        position(0, speed=64, posted_speed_mph=55),  # 9 over: below the 10 of the webhook
        position(10, speed=65, posted_speed_mph=55),  # 10 over
        position(20, speed=80),  # no posted limit known: never posted_speed
    )
    [data] = fleet.received("posted_speed")
    assert (data["posted_speed_mph"], data["over_limit_mph"], data["threshold_mph"]) == (
        55,
        10.0,
        10,
    )
    assert data["speed_mph"] == 65 and data["fix_time"] == at(10)


def speeds_of(webhook: Webhook, field: str = "speed_mph") -> list[float]:
    db.session.expire_all()
    messages = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.target_id == webhook.id)
        .order_by(OutboxMessage.sequence)
    )
    return [m.payload["data"][field] for m in messages]


def test_speed_once_per_episode_sends_when_a_vehicle_first_reaches_the_threshold(fleet):
    every = subscribe(fleet, "speed", threshold_mph=60)
    once = subscribe(fleet, "speed", threshold_mph=60, speeding_events="episode_start")
    speeds = [65, 70, 61, 55, 62, 80, 59.9, 60, 40]
    fleet.post(*[position(10 * n, speed=speed) for n, speed in enumerate(speeds)])
    assert speeds_of(every) == [65, 70, 61, 62, 80, 60]
    # The first position counts as coming from below; then one per episode.
    assert speeds_of(once) == [65, 62, 60]
    # A late position over the threshold starts no episode (where it falls among
    # the others is not known); the every-report webhook still gets it.
    fleet.post(position(5, speed=90))
    assert speeds_of(once) == [65, 62, 60] and speeds_of(every)[-1] == 90
    # Each webhook's own threshold: 70 was reached by 80 (after 62 below it).
    seventy = subscribe(fleet, "speed", threshold_mph=70, speeding_events="episode_start")
    fleet.post(position(100, speed=69), position(110, speed=75), position(120, speed=76))
    assert speeds_of(seventy) == [75] and speeds_of(once) == [65, 62, 60, 69]


def test_posted_speed_once_per_episode_follows_the_margin_over_the_limit(fleet):
    once = subscribe(fleet, "posted_speed", threshold_mph=10, speeding_events="episode_start")
    fleet.post(
        position(0, speed=66, posted_speed_mph=55),  # 11 over: an episode starts
        position(10, speed=70, posted_speed_mph=55),  # 15 over: goes on
        position(20, speed=70, posted_speed_mph=65),  # 5 over: below, it ends
        position(30, speed=76, posted_speed_mph=65),  # 11 over: a new one
        position(40, speed=76),  # no limit known: no event, and the episode ends
        position(50, speed=77, posted_speed_mph=65),  # 12 over: a new one
    )
    assert speeds_of(once, "over_limit_mph") == [11.0, 11.0, 12.0]
    assert len(fleet.received("posted_speed")) == 4  # every report 10 or more over


def test_ignition_changes_and_a_trip_with_its_summary(fleet):
    fleet.post(position(0, speed=0, ignition=False, odometer_mi=100.0))  # first: sets state
    assert "ignition_on" not in fleet.counts()
    fleet.post(
        position(60, speed=0, ignition=True, odometer_mi=100.0),
        position(120, speed=0, latitude=41.95, odometer_mi=100.0),  # idle a minute
        position(180, speed=40, latitude=41.96, odometer_mi=100.7),
        position(300, speed=55, latitude=41.98, odometer_mi=102.1),
        position(420, speed=0, ignition=False, latitude=41.99, odometer_mi=103.0),
    )
    assert [d["ignition"] for d in fleet.received("ignition_on")] == [True]
    assert [d["fix_time"] for d in fleet.received("ignition_on")] == [at(60)]
    assert [d["fix_time"] for d in fleet.received("ignition_off")] == [at(420)]
    [trip] = [d["trip"] for d in fleet.received("trip_complete")]
    assert trip == {
        "started_at": at(60),
        "ended_at": at(420),
        "duration_s": 360,
        "distance_mi": 3.0,
        "distance_source": "odometer",
        "max_speed_mph": 55,
        "average_speed_mph": 30.0,
        "idle_s": 120,
        "start": {"latitude": 41.95, "longitude": -87.80},
        "end": {"latitude": 41.99, "longitude": -87.80},
    }
    fleet.post(position(480, speed=0, ignition=False))  # off stays off: nothing
    assert len(fleet.received("ignition_off")) == 1


def test_a_trip_without_odometer_measures_its_path(fleet):
    fleet.post(
        position(0, ignition=False, speed=0),
        position(10, speed=20),
        position(70, latitude=42.05, speed=60),
        position(130, latitude=42.05, ignition=False, speed=0),
    )
    [trip] = [d["trip"] for d in fleet.received("trip_complete")]
    # 0.1° of latitude is about 6.9 miles.
    assert trip["distance_source"] == "path" and trip["distance_mi"] == 6.9
    assert trip["max_speed_mph"] == 60 and trip["duration_s"] == 120 and trip["idle_s"] == 0


def test_idle_makes_one_event_per_period_when_it_crosses_each_webhooks_minutes(fleet):
    ten = subscribe(fleet, "idle", idle_minutes=10)
    stopped = [position(60 * m, speed=0.4, latitude=41.9512) for m in range(1, 13)]
    fleet.post(position(0, speed=25), *stopped)
    [five] = fleet.received("idle")
    assert five["idle_since"] == at(60) and five["idle_duration_s"] == 300
    assert five["idle_minutes"] == 5 and five["fix_time"] == at(360)
    assert (five["latitude"], five["longitude"]) == (41.9512, -87.80)
    db.session.expire_all()
    [message] = db.session.scalars(select(OutboxMessage).where(OutboxMessage.target_id == ten.id))
    assert message.payload["data"]["idle_duration_s"] == 600
    # Moving ends the period; the next stop is a new period with its own event.
    fleet.post(position(800, speed=12), *[position(800 + 60 * m, speed=0) for m in range(1, 7)])
    assert [d["idle_since"] for d in fleet.received("idle")] == [at(60), at(860)]


def test_ignition_off_ends_an_idle_period(fleet):
    fleet.post(
        position(0, speed=0),
        position(200, speed=0),
        position(240, speed=0, ignition=False),
        position(400, speed=0, ignition=False),
    )
    assert fleet.received("idle") == []


def test_landmark_enter_leave_and_change(fleet):
    outside = {"latitude": 41.95, "longitude": -87.80}
    in_depot = {"latitude": 41.8801, "longitude": -87.6301}
    in_yard = {"latitude": 41.871, "longitude": -87.69}
    in_hole = {"latitude": 41.88, "longitude": -87.69}
    fleet.post(
        *[
            position(60 * n, **place)
            for n, place in enumerate([outside, in_depot, outside, in_yard, in_hole, in_yard])
        ]
    )
    names = [(d["landmark"]["name"], d["transition"]) for d in fleet.received("landmark_change")]
    assert names == [
        ("Depot", "enter"),
        ("Depot", "leave"),
        ("Yard", "enter"),
        ("Yard", "leave"),
        ("Yard", "enter"),
    ]
    assert [d["landmark"] for d in fleet.received("landmark_enter")] == [
        {"id": fleet.depot, "name": "Depot"},
        {"id": fleet.yard, "name": "Yard"},
        {"id": fleet.yard, "name": "Yard"},
    ]
    assert len(fleet.received("landmark_leave")) == 2
    assert fleet.received("landmark_enter")[0]["fix_time"] == at(60)


def test_a_first_position_inside_a_landmark_sets_membership_silently(fleet):
    fleet.post(position(0, latitude=41.8801, longitude=-87.6301))
    assert fleet.received("landmark_change") == []
    fleet.post(position(60))
    assert [d["transition"] for d in fleet.received("landmark_change")] == ["leave"]


def test_a_vehicle_in_two_overlapping_landmarks_enters_both(fleet):
    near = fleet.landmark({"name": "Depot gate", "circle": {**DEPOT, "radius_m": 50}})
    fleet.post(position(0), position(60, latitude=41.8800, longitude=-87.6300))
    assert sorted(d["landmark"]["id"] for d in fleet.received("landmark_enter")) == sorted(
        [fleet.depot, near]
    )


def test_a_landmark_added_after_startup_is_seen_by_the_next_report(fleet):
    fleet.post(position(0))
    fleet.post(position(60, latitude=42.10, longitude=-87.90))
    assert fleet.received("landmark_enter") == []
    fresh = fleet.landmark(
        {"name": "New site", "circle": {"latitude": 42.10, "longitude": -87.90, "radius_m": 100}}
    )
    fleet.post(position(120, latitude=42.10, longitude=-87.90))
    assert [d["landmark"]["id"] for d in fleet.received("landmark_enter")] == [fresh]


def test_temperature_dvir_heartbeat_and_driver_assignment(fleet):
    readings = [{"sensor": "reefer-1", "fahrenheit": 36.5}]
    fleet.post(position(0, temperatures=readings))
    assert [d["temperatures"] for d in fleet.received("temperature")] == [readings]

    dvir = {
        "vin": VIN,
        "type": "dvir",
        "time": at(30),
        "driver": "Dana Whitfield",
        "defects": [{"component": "Brakes", "description": "Air leak"}],
        "safety_status": "unsafe",
    }
    fleet.post(dvir)
    [data] = fleet.received("dvir")
    assert data["dvir"] == {key: dvir[key] for key in ("driver", "defects", "safety_status")}
    assert (data["latitude"], data["longitude"]) == (41.95, -87.80)  # last known place
    assert db.session.get(Vehicle, fleet.vehicle_id).last_dvir["safety_status"] == "unsafe"

    fleet.post({"vin": VIN, "type": "heartbeat", "time": at(40)})
    [beat] = fleet.received("heartbeat")
    assert beat["fix_time"] == at(0) and beat["latitude"] == 41.95

    assign = {"vin": VIN, "type": "driver_assignment", "time": at(50), "driver": "Dana Whitfield"}
    fleet.post(assign)
    fleet.post({**assign, "time": at(60), "driver": "Sam Ortega"})
    first, second = fleet.received("driver_assignment")
    dana = db.session.scalar(select(Driver).where(Driver.name == "Dana Whitfield"))
    assert first["driver"] == {"id": dana.id, "name": "Dana Whitfield"}
    assert first["previous_driver"] is None
    assert second["previous_driver"] == {"id": dana.id, "name": "Dana Whitfield"}
    assert second["driver"]["name"] == "Sam Ortega"
    # Events after the assignment name the driver.
    fleet.post(position(70))
    assert fleet.received("location")[-1]["driver"]["name"] == "Sam Ortega"


def test_a_repeated_report_is_a_duplicate(fleet):
    fleet.post(position(0, ignition=False, speed=0))
    answer = fleet.post(position(60, speed=75), position(60, speed=75), position(0))
    assert answer["accepted"] == 1 and answer["duplicates"] == 2
    assert answer == {"accepted": 1, "duplicates": 2, "events": 3, "messages": 3}
    assert fleet.counts() == {"location": 2, "speed": 1, "ignition_on": 1}
    assert fleet.post(position(60, speed=75))["duplicates"] == 1
    assert db.session.scalar(select(func.count()).select_from(TelemetryReport)) == 2


def test_a_late_report_emits_location_but_no_transition(fleet):
    fleet.post(
        position(0, speed=0, ignition=False, odometer_mi=50.0),
        position(120, speed=20, ignition=True, odometer_mi=51.0),
    )
    # Reported late: the ignition was off at 60 s, and it was in the depot.
    late = position(
        60,
        speed=72,
        ignition=False,
        latitude=41.8801,
        longitude=-87.6301,
        odometer_mi=50.5,
        temperatures=[{"sensor": "t", "fahrenheit": 40}],
    )
    answer = fleet.post(late)
    assert answer["accepted"] == 1
    assert [d["fix_time"] for d in fleet.received("location")] == [at(0), at(120), at(60)]
    assert len(fleet.received("speed")) == 1 and len(fleet.received("temperature")) == 1
    assert fleet.received("ignition_off") == [] and fleet.received("landmark_change") == []
    assert fleet.received("trip_complete") == []
    vehicle = db.session.get(Vehicle, fleet.vehicle_id)
    assert vehicle.odometer_mi == 51.0 and vehicle.last_fix_at == T0 + timedelta(seconds=120)
    state = db.session.get(VehicleState, fleet.vehicle_id)
    assert state.ignition is True and state.landmark_ids == []


def test_a_late_driver_assignment_is_kept_but_changes_nothing(fleet):
    assign = {"vin": VIN, "type": "driver_assignment", "time": at(100), "driver": "Dana"}
    fleet.post(assign)
    fleet.post({**assign, "time": at(50), "driver": "Sam"})
    assert [d["driver"]["name"] for d in fleet.received("driver_assignment")] == ["Dana"]
    assert db.session.scalar(select(func.count()).select_from(DriverAssignment)) == 2
    vehicle = db.session.get(Vehicle, fleet.vehicle_id)
    assert db.session.get(Driver, vehicle.driver_id).name == "Dana"


def test_a_batch_is_detected_in_time_order(fleet):
    fleet.post(
        position(120, speed=0, ignition=False),
        position(0, speed=0, ignition=False),
        position(60, speed=10),
    )
    assert [d["fix_time"] for d in fleet.received("location")] == [at(0), at(60), at(120)]
    assert len(fleet.received("ignition_on")) == 1 and len(fleet.received("ignition_off")) == 1


def rows() -> dict[str, int]:
    db.session.expire_all()
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model))
        for model in (TelemetryReport, OutboxMessage, VehicleState, Driver)
    }


def test_a_batch_with_one_bad_report_writes_nothing(fleet):
    before = rows()
    answer = fleet.post(
        position(0),
        {**position(60), "speed_mph": -1},
        {"vin": VIN, "type": "driver_assignment", "time": at(70), "driver": "New Driver"},
        expect=422,
    )
    assert answer["errors"] == {"reports[1].speed_mph": ["A number from 0 to 250."]}
    assert rows() == before


def test_an_unknown_vehicle_refuses_the_batch(fleet):
    before = rows()
    answer = fleet.post(
        position(0),
        {**position(10), "vin": "1M8GDM9AXKP042788"},
        {**position(20), "vin": None, "vehicle_id": 99999},
        expect=422,
    )
    assert set(answer["errors"]) == {"reports[1].vin", "reports[2].vehicle_id"}
    assert rows() == before
    assert fleet.post({**position(0), "vin": None, "vehicle_id": fleet.vehicle_id})["accepted"] == 1


def test_another_accounts_vehicle_is_unknown(fleet, client):
    other = bearer(make_user("Other Co", "admin@other.example.com"))
    response = client.post("/api/v1/telemetry", json=position(0), headers=other)
    assert response.status_code == 422 and "vin" in response.json["errors"]
    by_id = {**position(0), "vin": None, "vehicle_id": fleet.vehicle_id}
    response = client.post("/api/v1/telemetry", json=by_id, headers=other)
    assert response.status_code == 422 and "vehicle_id" in response.json["errors"]
    assert rows()["TelemetryReport"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [("not json", 415), ({"reports": []}, 422), ({"reports": "x"}, 422), ([1, 2], 400)],
)
def test_malformed_bodies_are_refused(fleet, body, status):
    if body == "not json":
        response = fleet.client.post("/api/v1/telemetry", data=body, headers=fleet.headers)
    else:
        response = fleet.client.post("/api/v1/telemetry", json=body, headers=fleet.headers)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


def test_members_cannot_ingest(fleet, client):
    from accounts.models import Role, User

    admin = db.session.get(User, db.session.scalar(select(User.id)))
    member = bearer(make_user(email="m@acme.example.com", role=Role.MEMBER, admin=admin))
    assert client.post("/api/v1/telemetry", json=position(0), headers=member).status_code == 403


def test_a_group_webhook_takes_only_its_groups_vehicles(fleet):
    south = subscribe(fleet, "location", vehicle_group="South")
    north = subscribe(fleet, "location", vehicle_group="North")
    fleet.post(position(0))
    db.session.expire_all()
    assert db.session.get(Webhook, south.id).total_messages == 0
    assert db.session.get(Webhook, north.id).total_messages == 1


def test_state_lives_in_the_database_across_app_instances(fleet, make_app):
    fleet.post(position(0, speed=0, ignition=False))
    second = make_app().test_client()  # another process starts from the database alike
    response = second.post("/api/v1/telemetry", json=position(60), headers=fleet.headers)
    assert response.status_code == 202
    assert len(fleet.received("ignition_on")) == 1


def test_the_same_batch_posted_concurrently_is_detected_once(fleet, make_app):
    batch = {
        "reports": [position(0, speed=0, ignition=False)]
        + [position(10 * n, speed=40) for n in range(1, 20)]
    }
    clients = [make_app().test_client() for _ in range(4)]
    with ThreadPoolExecutor(len(clients)) as pool:
        posts = [
            pool.submit(c.post, "/api/v1/telemetry", json=batch, headers=fleet.headers)
            for c in clients
        ]
        answers = [post.result() for post in posts]
    assert [answer.status_code for answer in answers] == [202] * 4
    assert sum(answer.json["accepted"] for answer in answers) == 20
    assert sum(answer.json["duplicates"] for answer in answers) == 60
    assert len(fleet.received("location")) == 20
    assert len(fleet.received("ignition_on")) == 1
