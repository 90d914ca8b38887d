"""A demo fleet on the road: N vehicles driving a loop through demo landmarks near
Chicago, posting telemetry to the ingest API (`POST /api/v1/telemetry`) like a
device gateway would. `flask --app app simulate` runs it; `make run` starts it for
the demo account.

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

The world and the vehicles' model: demo/world.py and demo/vehicles.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from demo.vehicles import Fleet, Schedule, build_fleet, demo_vehicles, rfc3339
from demo.world import LANDMARKS
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
