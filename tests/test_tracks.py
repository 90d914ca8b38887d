"""Track batches: a Location webhook that sends tracks gets one signed POST per
vehicle per window, a GeoJSON Feature. Telemetry goes in through the ingest API,
windows close at N positions, at T seconds of fix time, or by the sweeper's clock,
and a real drain sends them to a real receiver on loopback: the receiver verifies
every signature with the standardwebhooks package and rebuilds each vehicle's path
point for point. Then down-sampling, redaction, the API's and the form's rules."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from standardwebhooks.webhooks import Webhook as StandardWebhook

from core.extensions import db
from core.times import format_rfc3339, utcnow
from outbox.drain import drain_target
from outbox.models import OutboxMessage
from outbox.sweeper import sweep
from tests.conftest import bearer, csrf_token, make_user
from webhooks.lifecycle import create_webhook, update_webhook
from webhooks.models import TrackPoint, Webhook
from webhooks.tracks import close_window

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
VINS = ["1FUJGLDR3CLBP8834", "3AKJHHDR7JSJY2214", "1M8GDM9AXKP042788"]


class Fleet:
    """An account with three vehicles, posting positions through the API."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.user = make_user()
        self.headers = bearer(self.user)
        self.vehicle_ids = []
        for n, vin in enumerate(VINS):
            created = client.post(
                "/api/v1/vehicles", headers=self.headers, json={"name": f"Truck {n}", "vin": vin}
            )
            assert created.status_code == 201, created.json
            self.vehicle_ids.append(created.json["id"])

    def track_webhook(self, url: str, **settings: Any) -> tuple[Webhook, str]:
        values = {"event_type": "location", "name": "Tracks", "url": url, **settings}
        values.setdefault("track", {"points": 5, "seconds": 120})
        webhook, secret = create_webhook(self.user.account_id, values)
        db.session.commit()
        return webhook, secret

    def post(self, reports: list[dict]) -> None:
        for start in range(0, len(reports), 100):
            answer = self.client.post(
                "/api/v1/telemetry",
                json={"reports": reports[start : start + 100]},
                headers=self.headers,
            )
            assert answer.status_code == 202, answer.json


def position(vin: str, seconds: float, n: int, **values: Any) -> dict[str, Any]:
    """The n-th position of a vehicle's drive: each one its own place, speed, heading."""
    return {
        "vin": vin,
        "type": "position",
        "time": format_rfc3339(T0 + timedelta(seconds=seconds)),
        "latitude": round(41.80 + 0.001 * n, 6),
        "longitude": round(-87.70 + 0.0013 * n, 6),
        "speed_mph": float(20 + n % 40),
        "heading": (15 * n) % 360,
        "ignition": True,
        **values,
    }


@pytest.fixture
def fleet(client):
    return Fleet(client)


def as_point(report: dict) -> tuple:
    return (report["time"], report["longitude"], report["latitude"], report["speed_mph"])


def rebuilt_paths(received: list, secret: str) -> dict[int, list[tuple]]:
    """Each vehicle's positions as a receiver rebuilds them from the Features it got,
    every signature verified, windows in their lane's order."""
    windows = defaultdict(list)
    for request in received:
        feature = StandardWebhook(secret).verify(request.body, dict(request.headers))
        assert feature["type"] == "Feature"
        lane = request.headers["fleethook-ordering-key"]
        windows[lane].append((int(request.headers["fleethook-sequence"]), feature))
    paths = {}
    for lane, features in windows.items():
        points = []
        for _, feature in sorted(features, key=lambda pair: pair[0]):
            geometry, per_point = feature["geometry"], feature["properties"]["coordinateProperties"]
            positions = (
                geometry["coordinates"]
                if geometry["type"] == "LineString"
                else [geometry["coordinates"]]
            )
            assert len(positions) == len(per_point["times"]) == feature["properties"]["points"]
            points += [
                (time, lon, lat, speed)
                for (lon, lat), time, speed in zip(
                    positions, per_point["times"], per_point["speed_mph"], strict=True
                )
            ]
        paths[int(lane.removeprefix("vehicle:"))] = points
    return paths


def test_a_receiver_rebuilds_every_vehicles_path_point_for_point(fleet, receiver):
    webhook, secret = fleet.track_webhook(receiver.url("/ok"))
    # 23 positions per vehicle, 10 s apart, the vehicles' reports interleaved.
    reports = [position(vin, 10 * n, n) for n in range(23) for vin in VINS]
    fleet.post(reports)
    # Windows of 5 closed as the positions came: 4 per vehicle; 3 positions wait.
    assert db.session.scalar(select(func.count()).select_from(TrackPoint)) == 3 * 3
    sweep_at(utcnow() + timedelta(seconds=121))  # the clock ends the last windows
    assert db.session.scalar(select(func.count()).select_from(TrackPoint)) == 0
    drain_target(webhook.id)
    assert len(receiver.received) == 3 * 5
    paths = rebuilt_paths(receiver.received, secret)
    assert paths == {
        vehicle_id: [as_point(r) for r in reports if r["vin"] == vin]
        for vehicle_id, vin in zip(fleet.vehicle_ids, VINS, strict=True)
    }
    # Every Feature names its vehicle and its window's first and last time.
    first = json.loads(receiver.received[0].body)["properties"]
    assert first["vehicle"]["vin"] in VINS and first["event_type"] == "location_track"
    assert first["started_at"] == first["coordinateProperties"]["times"][0]


def sweep_at(moment):
    """The sweeper, as if it ran at `moment`."""
    from outbox import sweeper

    original = sweeper.utcnow
    sweeper.utcnow = lambda: moment
    try:
        sweep()
    finally:
        sweeper.utcnow = original


def features(webhook_id: int) -> list[dict]:
    db.session.expire_all()
    return [
        message.payload
        for message in db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == webhook_id)
            .order_by(OutboxMessage.sequence)
        )
    ]


def test_a_window_closes_before_a_position_its_seconds_after_its_first(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"), track={"points": 100, "seconds": 120})
    vin = VINS[0]
    fleet.post([position(vin, s, n) for n, s in enumerate([0, 50, 100, 130, 140])])
    [window] = features(webhook.id)
    times = window["properties"]["coordinateProperties"]["times"]
    assert times == [format_rfc3339(T0 + timedelta(seconds=s)) for s in (0, 50, 100)]
    assert window["geometry"]["type"] == "LineString"
    # 130 and 140 wait in the next window; the sweeper's clock has not ended it yet.
    sweep_at(utcnow() + timedelta(seconds=60))
    assert len(features(webhook.id)) == 1
    sweep_at(utcnow() + timedelta(seconds=121))
    assert len(features(webhook.id)) == 2


def test_a_window_of_one_position_is_a_point(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"))
    fleet.post([position(VINS[0], 0, 7)])
    sweep_at(utcnow() + timedelta(seconds=121))
    [window] = features(webhook.id)
    report = position(VINS[0], 0, 7)
    assert window["geometry"] == {
        "type": "Point",
        "coordinates": [report["longitude"], report["latitude"]],
    }
    assert window["properties"]["points"] == 1


def test_positions_closer_than_the_minimum_distance_are_left_out(fleet, receiver):
    webhook, _ = fleet.track_webhook(
        receiver.url("/ok"), track={"points": 4, "seconds": 600, "min_distance_m": 50}
    )
    vin = VINS[0]
    # Steps of about 11 m north: only every fifth is 50 m or more from the last kept.
    reports = [
        {**position(vin, 10 * n, 0), "latitude": round(41.80 + 0.0001 * n, 6)} for n in range(16)
    ]
    fleet.post(reports)
    [window] = features(webhook.id)
    kept = [lat for _, lat in window["geometry"]["coordinates"]]
    assert kept == [41.80, 41.8005, 41.801, 41.8015]


def test_a_tracks_positions_are_redacted_like_events(fleet, receiver):
    webhook, _ = fleet.track_webhook(
        receiver.url("/ok"),
        track={"points": 2, "seconds": 600},
        coordinate_decimals=2,
        drop_fields=["data.speed_mph"],
    )
    fleet.post([position(VINS[0], 0, 1), position(VINS[0], 10, 2)])
    [window] = features(webhook.id)
    assert window["geometry"]["coordinates"] == [[-87.7, 41.8], [-87.7, 41.8]]
    assert set(window["properties"]["coordinateProperties"]) == {"times", "heading"}


def test_closing_a_window_twice_sends_it_once(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"))
    fleet.post([position(VINS[0], 0, 1), position(VINS[0], 10, 2)])
    lane = f"vehicle:{fleet.vehicle_ids[0]}"
    assert (close_window(webhook.id, lane), close_window(webhook.id, lane)) == (1, 0)
    assert len(features(webhook.id)) == 1


def test_switching_tracks_off_sends_the_open_windows(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"))
    fleet.post([position(VINS[0], 0, 1), position(VINS[1], 0, 2), position(VINS[0], 10, 3)])
    update_webhook(webhook, {"track": None})
    db.session.commit()
    sent = features(webhook.id)
    assert sorted(w["properties"]["points"] for w in sent) == [1, 2]
    fleet.post([position(VINS[0], 20, 4)])  # now each position is its own event
    assert features(webhook.id)[-1]["type"] == "location"


def test_demo_sends_an_example_track_marked_test(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"))
    answer = fleet.client.post(f"/api/v1/webhooks/{webhook.id}/demo", headers=fleet.headers)
    assert answer.status_code in (200, 201, 202)
    [window] = features(webhook.id)
    assert window["properties"]["test"] is True and window["properties"]["points"] == 3


def test_the_feed_and_the_message_show_a_tracks_feature(fleet, receiver):
    webhook, _ = fleet.track_webhook(receiver.url("/ok"), track={"points": 2, "seconds": 60})
    fleet.post([position(VINS[0], 0, 1), position(VINS[0], 10, 2)])
    feed = fleet.client.get(f"/api/v1/webhooks/{webhook.id}/feed", headers=fleet.headers).json
    [message] = feed["messages"]
    assert message["event"]["type"] == "Feature" and message["event_type"] == "location_track"
    detail = fleet.client.get(
        f"/api/v1/webhooks/{webhook.id}/messages/{message['id']}", headers=fleet.headers
    )
    assert detail.status_code == 200 and detail.json["payload"] == message["event"]


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({"event_type": "speed", "track": {}}, "track", "Only location webhooks"),
        ({"track": {}, "content_type": "form"}, "content_type", "GeoJSON Feature"),
        ({"track": {}, "latest_wins": True}, "latest_wins", "parts of one path"),
        ({"track": {"points": 1}}, "track.points", "from 2 to 1000"),
        ({"track": {"seconds": 5}}, "track.seconds", "from 10 to 3600"),
        ({"track": {"min_distance_m": -1}}, "track.min_distance_m", "metres"),
        ({"track": {"points": "5"}}, "track.points", "from 2 to 1000"),
        ({"track": {"window": 5}}, "track", ""),
        ({"track": 5}, "track", "An object"),
    ],
)
def test_the_api_refuses_a_bad_track_by_name_and_changes_nothing(fleet, client, fields, key, words):
    body = {"event_type": "location", "name": "T", "url": "https://hooks.example.com/t", **fields}
    answer = client.post("/api/v1/webhooks", json=body, headers=fleet.headers)
    assert answer.status_code == 422, answer.json
    assert words in " ".join(answer.json["errors"][key]), answer.json
    assert db.session.scalars(select(Webhook)).all() == []


def test_the_api_takes_and_shows_a_track(fleet, client):
    body = {"event_type": "location", "name": "T", "url": "https://hooks.example.com/t"}
    created = client.post(
        "/api/v1/webhooks", json={**body, "track": {"points": 50}}, headers=fleet.headers
    )
    assert created.status_code == 201, created.json
    assert created.json["track"] == {"points": 50, "seconds": 60, "min_distance_m": 0}
    plain = client.post("/api/v1/webhooks", json=body, headers=fleet.headers)
    assert plain.json["track"] is None


def test_the_dialog_offers_tracks_to_location_webhooks_and_shows_an_example_feature(admin, client):
    page = client.get("/webhooks/new?event_type=location").get_data(as_text=True)
    assert 'name="track"' in page and 'name="track_points"' in page
    assert 'name="track"' not in client.get("/webhooks/new?event_type=speed").get_data(True)
    example = client.get(
        "/webhooks/example",
        query_string={"event_type": "location", "content_type": "form", "track": "y"},
    ).get_data(as_text=True)
    assert "application/json" in example and "&#34;LineString&#34;" in example
    saved = client.post(
        "/webhooks/new",
        data={
            "csrf_token": csrf_token(page.encode()),
            "event_type": "location",
            "url": "https://hooks.example.com/t",
            "name": "T",
            "content_type": "json",
            "track": "y",
            "track_points": "20",
            "track_seconds": "30",
            "track_min_distance_m": "10",
        },
    )
    assert saved.status_code == 200
    webhook = db.session.scalars(select(Webhook)).one()
    assert (webhook.track_points, webhook.track_seconds, webhook.track_min_distance_m) == (
        20,
        30,
        10,
    )
    edit = client.get(f"/webhooks/{webhook.id}/edit").get_data(as_text=True)
    [box] = re.findall(r'<input[^>]*id="track"[^>]*>', edit)
    assert "checked" in box and 'value="20"' in edit and 'value="30"' in edit


def test_a_window_the_sweeper_closes_meanwhile_is_sent_once_and_the_rest_with_the_ingest(
    app, fleet, receiver
):
    """The race of the two closers, made deterministic: just as the ingest takes a
    full window, the sweeper (another connection) closes the same window and
    commits. Each position goes out in exactly one of the two Features."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: the ingest holds it, no race to lose")
    webhook, _ = fleet.track_webhook(receiver.url("/ok"), track={"points": 5, "seconds": 3600})
    vin, lane = VINS[0], f"vehicle:{fleet.vehicle_ids[0]}"
    fleet.post([position(vin, s, s) for s in range(3)])  # a window of 3, committed
    raced: list[int] = []
    started: list[bool] = []

    def sweeper_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if started or not statement.lstrip().upper().startswith("DELETE FROM TRACK_POINT"):
            return
        started.append(True)  # once: the sweeper's own DELETE passes here too

        def close() -> None:
            with app.app_context():
                raced.append(close_window(webhook.id, lane))

        other = threading.Thread(target=close)
        other.start()
        other.join()

    event.listen(db.engine, "before_cursor_execute", sweeper_first)
    try:
        fleet.post([position(vin, s, s) for s in range(3, 5)])  # the 5th closes it
    finally:
        event.remove(db.engine, "before_cursor_execute", sweeper_first)
    assert raced == [1]  # the sweeper took the 3 committed positions first
    windows = features(webhook.id)
    times = [w["properties"]["coordinateProperties"]["times"] for w in windows]
    assert sorted(len(t) for t in times) == [2, 3]
    assert sorted(time for t in times for time in t) == [
        format_rfc3339(T0 + timedelta(seconds=s)) for s in range(5)
    ]
