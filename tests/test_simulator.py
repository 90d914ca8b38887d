"""The demo simulator: its reports are valid, deterministic for a seed and show the
behaviours the demo promises; run briefly against the app served on loopback it
produces every event type; API errors stop it, server errors are waited out."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from core.extensions import db
from demo.simulator import Api, Settings, SimClock, SimulatorError, Stopped, run
from demo.vehicles import Schedule, build_fleet, demo_vehicles
from demo.world import LANDMARKS
from devstack.settings import demo_token, simulator_wanted
from events.catalogue import EVENT_TYPES
from fleet.geometry import parse_circle, parse_polygon
from fleet.reports import check_report
from fleet.vin import check_digit_warning, vin_problems
from outbox.models import OutboxMessage
from tests.conftest import bearer, make_user
from webhooks.lifecycle import create_webhook

START = datetime(2026, 5, 14, 12, 0, tzinfo=UTC)
SHAPES = {
    landmark["name"]: parse_circle(landmark["circle"])
    if "circle" in landmark
    else parse_polygon(landmark["polygon"])
    for landmark in LANDMARKS
}


def simulate(seed: int, vehicles: int = 3, hours: float = 3) -> list[dict[str, Any]]:
    schedule = Schedule(vehicles=vehicles, rate=vehicles, time_scale=10, lead_seconds=3600)
    return build_fleet(vehicles, START, seed, schedule).reports_until(hours * 3600)


def at(report: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(report["time"].replace("Z", "+00:00"))


# --- the route generator, without a server ---------------------------------------------


def test_a_seeded_run_is_deterministic_and_every_report_passes_the_ingest_checks():
    reports = simulate(seed=7)
    assert reports == simulate(seed=7)
    assert reports != simulate(seed=8)
    now = START + timedelta(hours=3)
    problems = [(r, errors) for r in reports if (errors := check_report(r, now)[1])]
    assert problems == []
    assert set(Counter(r["type"] for r in reports)) == {
        "position",
        "heartbeat",
        "dvir",
        "driver_assignment",
    }
    # Each vehicle's positions move forward in time, never two at one time.
    by_vehicle: dict[str, list[datetime]] = defaultdict(list)
    for report in reports:
        if report["type"] == "position":
            by_vehicle[report["vin"]].append(at(report))
    for times in by_vehicle.values():
        assert all(a < b for a, b in zip(times, times[1:], strict=False))


def test_demo_vehicles_have_valid_vins_and_the_landmarks_valid_shapes():
    vehicles = demo_vehicles(12)
    assert len({v.vin for v in vehicles}) == 12
    for vehicle in vehicles:
        assert vin_problems(vehicle.vin) == [] and check_digit_warning(vehicle.vin) is None
    assert demo_vehicles(3) == vehicles[:3]  # the same VINs in every run
    depot = next(landmark for landmark in LANDMARKS if "polygon" in landmark)
    assert len(depot["polygon"]["coordinates"]) == 2  # an outline and a hole


def test_the_demo_shows_every_behaviour_within_the_first_hour():
    """Vehicle 0 at the default settings: what the detector will turn into events."""
    reports = [r for r in simulate(seed=1, hours=1) if r["vin"] == demo_vehicles(1)[0].vin]
    positions = [r for r in reports if r["type"] == "position"]
    kinds = Counter(r["type"] for r in reports)
    assert kinds["heartbeat"] == 1 and kinds["driver_assignment"] == 1
    dvirs = [r for r in reports if r["type"] == "dvir"]
    assert dvirs and dvirs[0]["defects"], "the first DVIR lists a defect"

    ignition = [p["ignition"] for p in positions]
    changes = [(a, b) for a, b in zip(ignition, ignition[1:], strict=False) if a != b]
    assert (False, True) in changes and (True, False) in changes  # a trip ends
    assert max(p["speed_mph"] for p in positions) >= 70
    assert max(p["speed_mph"] - p["posted_speed_mph"] for p in positions) >= 10
    assert any(p.get("temperatures") for p in positions)

    # Idling: ignition on, standing, for more than ten simulated minutes.
    longest, since = 0.0, None
    for p in positions:
        if p["ignition"] and p["speed_mph"] < 1:
            since = since or at(p)
            longest = max(longest, (at(p) - since).total_seconds())
        else:
            since = None
    assert longest > 600

    odometers = [p["odometer_mi"] for p in positions]
    assert odometers == sorted(odometers) and odometers[-1] - odometers[0] > 10

    entered, left, inside = set(), set(), set()
    for p in positions:
        now = {n for n, s in SHAPES.items() if s.contains(p["latitude"], p["longitude"])}
        if positions.index(p):
            entered |= now - inside
            left |= inside - now
        inside = now
    assert "Demo Depot Loading Dock" in entered and "Demo Depot (Bedford Park)" in left
    assert any(name.startswith("Demo Customer") for name in entered)


def test_fault_codes_come_now_and_then():
    reports = simulate(seed=3, vehicles=5, hours=4)
    faults = [r for r in reports if r.get("fault_codes")]
    positions = [r for r in reports if r["type"] == "position"]
    assert 0 < len(faults) < len(positions) / 100


def test_the_schedule_keeps_the_rate_and_the_clock_never_runs_ahead():
    schedule = Schedule(vehicles=5, rate=5, time_scale=10, lead_seconds=3600)
    assert schedule.fast_interval == 10 and schedule.real_interval == 1
    assert schedule.catch_up == pytest.approx(4000)
    assert schedule.after(3990) == 4000 and schedule.after(4000) == 4001
    now = datetime.now(UTC)
    clock = SimClock(now - timedelta(seconds=2), time_scale=1000, now=now)
    time.sleep(0.05)
    offset = clock.now()
    assert 2 <= offset <= (datetime.now(UTC) - clock.start).total_seconds()


# --- errors from the API ---------------------------------------------------------------


def test_a_client_error_stops_the_simulator_with_the_problem(receiver):
    api = Api(receiver.url("/status/422"), "token", threading.Event(), print)
    with pytest.raises(SimulatorError, match="answered 422: xx"):
        api.request("POST", "/telemetry", {"reports": []})
    api = Api(receiver.url("/redirect"), "token", threading.Event(), print)
    with pytest.raises(SimulatorError, match="answered 301"):
        api.request("POST", "/vehicles", {})
    api.close()


def test_server_errors_are_retried_until_stopped(receiver):
    stop = threading.Event()
    lines: list[str] = []
    api = Api(receiver.url("/status/503"), "token", stop, lines.append)
    threading.Timer(1.5, stop.set).start()
    with pytest.raises(Stopped):
        api.request("POST", "/telemetry", {"reports": []})
    api.close()
    assert len(receiver.requests_to("/status/503")) == 2  # at once, then after 1 s
    assert "answered 503; trying again in 1 s" in lines[0]


# --- against the app served on loopback -------------------------------------------------


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


SETTINGS = {
    "speed": {"threshold_mph": 50},
    "posted_speed": {"threshold_mph": 5},
    "idle": {"idle_minutes": 2},
}


def test_a_brief_run_against_the_app_produces_every_event_type(app, live_url):
    user = make_user()
    token = bearer(user)["Authorization"].removeprefix("Bearer ")
    webhooks = {}
    for key in EVENT_TYPES:
        webhook, _ = create_webhook(
            user.account_id,
            {
                "event_type": key,
                "name": f"All {key}",
                "url": f"https://hooks.example.com/{key}",
                **SETTINGS.get(key, {}),
            },
        )
        webhooks[key] = webhook
    db.session.commit()
    webhooks = {key: webhook.id for key, webhook in webhooks.items()}

    settings = Settings(
        url=live_url, token=token, vehicles=2, rate=200, time_scale=600, duration=60, seed=3
    )
    lines: list[str] = []
    # 40 simulated minutes: vehicle 0 has left the depot and reached the customer.
    summary = run(settings, log=lines.append, sim_limit=40 * 60)

    db.session.rollback()
    counts = dict(
        db.session.execute(
            select(OutboxMessage.target_id, func.count()).group_by(OutboxMessage.target_id)
        ).all()
    )
    missing = [key for key, target in webhooks.items() if not counts.get(target)]
    assert missing == [], (missing, summary, lines)
    assert summary.reports > 500 and summary.duplicates == 0 and summary.events > 0

    # A second run finds its vehicles and landmarks instead of adding them again.
    run(
        Settings(url=live_url, token=token, vehicles=2, rate=50, duration=0.1, seed=3),
        log=lines.append,
    )
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    assert len(client.get("/api/v1/vehicles", headers=headers).json["vehicles"]) == 2
    assert len(client.get("/api/v1/landmarks", headers=headers).json["landmarks"]) == len(LANDMARKS)


def test_the_command_runs_for_its_duration_and_remembers_its_clock(app, live_url, tmp_path):
    token = bearer(make_user())["Authorization"].removeprefix("Bearer ")
    state = tmp_path / "clock.json"
    result = app.test_cli_runner().invoke(
        args=[
            "simulate",
            "--url",
            live_url,
            "--vehicles",
            "1",
            "--rate",
            "20",
            "--time-scale",
            "60",
            "--duration",
            "1.5",
            "--seed",
            "5",
            "--state-file",
            str(state),
        ],
        env={"FLEETHOOK_SIMULATOR_TOKEN": token},
    )
    assert result.exit_code == 0, result.output
    assert "stopped after" in result.output
    newest = json.loads(state.read_text())[live_url]
    newest_time = datetime.fromisoformat(newest.replace("Z", "+00:00"))
    assert datetime.now(UTC) - timedelta(hours=1) < newest_time <= datetime.now(UTC)


def test_the_command_needs_a_token(app):
    result = app.test_cli_runner().invoke(
        args=["simulate", "--duration", "1"], env={"FLEETHOOK_SIMULATOR_TOKEN": ""}
    )
    assert result.exit_code == 2 and "API token" in result.output


def test_a_bad_token_stops_the_command_with_the_problem(app, live_url):
    result = app.test_cli_runner().invoke(
        args=["simulate", "--url", live_url, "--token", "fh_wrong", "--duration", "1"]
    )
    assert result.exit_code == 1 and "answered 401" in result.output


def test_make_run_starts_the_simulator_unless_told_not_to():
    assert simulator_wanted({}) and simulator_wanted({"FLEETHOOK_SIMULATOR": "1"})
    assert not simulator_wanted({}, flag_off=True)
    for off in ("0", "false", "No", " off "):
        assert not simulator_wanted({"FLEETHOOK_SIMULATOR": off})
    printed = "Demo login:  demo@fleethook.example / x\nAPI token:   fh_abc-123_XYZ\n"
    assert demo_token(printed) == "fh_abc-123_XYZ" and demo_token("nothing") is None
