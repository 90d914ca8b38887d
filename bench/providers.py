"""The integrations under a fleet's load: trucks reporting every 30 seconds for a
simulated hour (odometer rising, a fault code that comes and clears, trip end),
posted as fast as the ingest takes them, while production's workers drain to
fakes of the providers' published APIs — each throttling at its provider's
documented limit (tests/fakes/).

    .venv/bin/python bench/providers.py              # 50 trucks, one simulated hour
    .venv/bin/python bench/providers.py --quick      # 10 trucks, 20 simulated minutes

For each provider it measures the requests made, the most in any window of the
provider's limit (against the limit), the 429s the fake answered, and the
messages delivered, superseded, dead or left; and it checks that each provider
ends with every vehicle's latest value. Writes bench/results/providers[-quick].json
and fails (exit 1) if a message is dead or left, a provider's last value is not
the vehicle's, or any window holds more requests than the provider's limit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Stack, stack, vin_of, wait_until  # noqa: E402
from tests.fakes import fleetio, servicetitan  # noqa: E402
from tests.fakes.base import FakeProvider  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TICK_SECONDS = 30
MILES_PER_TICK = 0.25  # 30 mph
FAULT = {"code": "P0420", "description": "Catalyst system efficiency below threshold"}


@dataclass
class Row:
    provider: str
    requests: int
    limit: int
    window_s: float
    busiest_window: int  # the most requests in any window of the provider's limit
    throttled_429: int
    delivered: int
    superseded: int
    dead: int
    left: int
    latest_values_ok: bool


@dataclass
class Provider:
    """One provider in the run: its fake, the settings that point Fleethook at it,
    the values of its form, and how to read each vehicle's last value from it."""

    key: str
    fake: FakeProvider
    settings: dict[str, str]
    values: dict[str, Any]
    # VIN → the last value it holds (a number, or a time); what it should hold,
    # from each vehicle's last odometer and fix time.
    last_values: Callable[[], dict[str, Any]]
    expected: Callable[[dict[str, float], dict[str, str]], dict[str, Any]]
    release: bool = False


def _fleetio(vins: list[str]) -> Provider:
    fake = fleetio.FleetioFake()
    ids = {fake.add_vehicle(vin, f"Truck {n}"): vin for n, vin in enumerate(vins)}

    def last_values() -> dict[str, Any]:
        return {ids[i]: fake.values(i)[-1] for i in ids if fake.values(i)}

    return Provider(
        "fleetio", fake, {"FLEETHOOK_FLEETIO_BASE_URL": fake.base_url},
        {"api_key": fleetio.API_KEY, "account_id": fleetio.ACCOUNT_TOKEN,
         "update_odometer": True, "update_dtcs": True},
        last_values, lambda odometers, _: odometers,
    )  # fmt: skip


def _servicetitan(vins: list[str]) -> Provider:
    fake = servicetitan.FakeServiceTitan()
    return Provider(
        "servicetitan", fake,
        {"FLEETHOOK_SERVICETITAN_AUTH_URL": fake.url, "FLEETHOOK_SERVICETITAN_BASE_URL": fake.url,
         "FLEETHOOK_SERVICETITAN_APP_KEY": servicetitan.APP_KEY,
         "FLEETHOOK_SERVICETITAN_GPS_PROVIDER": servicetitan.GPS_PROVIDER},
        {"tenant_id": servicetitan.TENANT, "client_id": servicetitan.CLIENT_ID,
         "client_secret": servicetitan.CLIENT_SECRET},
        lambda: _newest_pings(fake), lambda _odometers, fixes: fixes, release=True,
    )  # fmt: skip


def _newest_pings(fake: servicetitan.FakeServiceTitan) -> dict[str, str]:
    newest: dict[str, str] = {}
    for ping in fake.pings:
        newest[ping["unitId"]] = max(newest.get(ping["unitId"], ""), ping["eventTime"])
    return newest


PROVIDERS: dict[str, Callable[[list[str]], Provider]] = {
    "fleetio": _fleetio,
    "servicetitan": _servicetitan,
}


def _reports(bench: Stack, vins: list[str], tick: int, last_tick: int) -> list[dict[str, Any]]:
    """Every truck's report of one tick: 30 mph on the road, the first truck's
    fault code on for the second quarter of the run, ignition off at the end."""
    at = bench.epoch + timedelta(seconds=tick * TICK_SECONDS)
    faulty = last_tick // 4 <= tick < last_tick // 2
    reports = []
    for n, vin in enumerate(vins):
        report = {"vin": vin, "type": "position", "time": at.isoformat().replace("+00:00", "Z"),
                  "latitude": 41.88 + n * 0.001, "longitude": -87.63 + tick * 0.0005,
                  "speed_mph": 0.0 if tick == last_tick else 30.0, "heading": 90,
                  "ignition": tick != last_tick,
                  "odometer_mi": round(1000 + n * 10 + tick * MILES_PER_TICK, 2)}  # fmt: skip
        if n == 0:
            report["fault_codes"] = [FAULT] if faulty else []
        reports.append(report)
    return reports


def _busiest(times: list[float], window: float) -> int:
    """The most of `times` in any `window` seconds."""
    times, most, start = sorted(times), 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run(trucks: int, minutes: int, engine: str = "sqlite", timeout: float = 900) -> list[Row]:
    from sqlalchemy import func, select

    from extensions import db
    from integrations.lifecycle import create_integration, sign_release
    from outbox.models import MessageStatus, OutboxMessage

    vins = [vin_of(n) for n in range(trucks)]
    providers = [make(vins) for make in PROVIDERS.values()]
    for provider in providers:
        provider.fake.start()
    settings = {name: value for p in providers for name, value in p.settings.items()}
    try:
        with stack(engine, settings=settings) as bench:
            assert bench.add_vehicles(trucks) == vins
            ids = {}
            with bench.app.app_context():
                from accounts.models import User

                user = db.session.scalar(select(User).where(User.account_id == bench.account_id))
                for provider in providers:
                    integration = create_integration(
                        bench.account_id, {"provider": provider.key, **provider.values}
                    )
                    db.session.commit()
                    if provider.release:
                        sign_release(integration, {"signer_name": "Bench", "signer_title":
                                                   "Operations", "accept": True},
                                     user.id if user else None, "127.0.0.1")  # fmt: skip
                        db.session.commit()
                    ids[provider.key] = integration.id
                db.session.remove()
            checked = {p.key: len(p.fake.requests) for p in providers}  # the credential checks
            bench.start_production_workers()
            client = bench.api()
            last_tick = minutes * 60 // TICK_SECONDS
            started = time.monotonic()
            for first in range(0, last_tick + 1, 10):  # five simulated minutes a request
                reports = [r for tick in range(first, min(first + 10, last_tick + 1))
                           for r in _reports(bench, vins, tick, last_tick)]  # fmt: skip
                answer = client.post("/api/v1/telemetry", json={"reports": reports},
                                     headers=bench.headers)  # fmt: skip
                assert answer.status_code == 202, answer.get_json()
            ingest_s = time.monotonic() - started
            if not wait_until(lambda: bench.queued() == 0, timeout, poll=1.0):
                print(f"bench: {bench.queued()} messages still open after {timeout:.0f} s")
            drained_s = time.monotonic() - started
            bench.stop_workers()
            final = _reports(bench, vins, last_tick, last_tick)
            odometers = {r["vin"]: r["odometer_mi"] for r in final}
            fixes = {r["vin"]: r["time"].replace("Z", "+00:00") for r in final}
            rows = []
            with bench.app.app_context():
                for provider in providers:
                    counts = dict(db.session.execute(
                        select(OutboxMessage.status, func.count())
                        .where(OutboxMessage.target_id == ids[provider.key])
                        .group_by(OutboxMessage.status)
                    ).all())  # fmt: skip
                    fake = provider.fake
                    times = [r.at for r in fake.requests[checked[provider.key] :]]
                    holds = provider.last_values()
                    wanted = provider.expected(odometers, fixes)
                    rows.append(Row(
                        provider=provider.key, requests=len(times), limit=fake.limit or 0,
                        window_s=fake.window, busiest_window=_busiest(times, fake.window),
                        throttled_429=fake.throttled_count,
                        delivered=counts.get(MessageStatus.DELIVERED, 0),
                        superseded=counts.get(MessageStatus.SUPERSEDED, 0),
                        dead=counts.get(MessageStatus.DEAD, 0),
                        left=sum(counts.get(s, 0) for s in ("pending", "sending")),
                        latest_values_ok=_same(holds, wanted),
                    ))  # fmt: skip
                db.session.remove()
            print(f"ingest {ingest_s:.1f} s, every queue empty after {drained_s:.1f} s")
            return rows
    finally:
        for provider in providers:
            provider.fake.stop()


def _same(holds: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the provider holds each vehicle's latest value (times compared as
    instants, numbers to the hundredth)."""
    if set(holds) != set(wanted):
        return False
    for vin, value in wanted.items():
        held = holds[vin]
        if isinstance(value, str):
            from database import parse_rfc3339

            if parse_rfc3339(str(held)) != parse_rfc3339(value):
                return False
        elif abs(float(held) - float(value)) > 0.005:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 trucks, 20 simulated minutes")
    parser.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    trucks, minutes = (10, 20) if args.quick else (50, 60)
    rows = run(trucks, minutes, args.engine)
    RESULTS.mkdir(exist_ok=True)
    name = "providers-quick.json" if args.quick else "providers.json"
    (RESULTS / name).write_text(json.dumps(
        {"trucks": trucks, "minutes": minutes, "engine": args.engine,
         "rows": [asdict(row) for row in rows]}, indent=2) + "\n")  # fmt: skip
    failed = False
    print(f"{'provider':13} {'requests':>8} {'busiest/limit':>14} {'429s':>5} "
          f"{'delivered':>9} {'superseded':>10} {'dead':>5} {'left':>5} latest")  # fmt: skip
    for row in rows:
        print(f"{row.provider:13} {row.requests:8} {row.busiest_window:>6}/{row.limit:<4}"
              f"{'/' + str(row.window_s) + 's':>4} {row.throttled_429:5} {row.delivered:9} "
              f"{row.superseded:10} {row.dead:5} {row.left:5} {row.latest_values_ok}")  # fmt: skip
        failed |= bool(row.dead or row.left or not row.latest_values_ok)
        failed |= row.busiest_window > row.limit
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
