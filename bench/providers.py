"""The integrations under a fleet's load: trucks reporting every 30 seconds for a
simulated hour (odometer rising, a fault code that comes and clears, trip end),
posted tick by tick on a fast clock, while production's workers drain to
fakes of the providers' published APIs — each throttling at its provider's
documented limit (tests/fakes/).

    .venv/bin/python bench/providers.py          # 50 trucks, a simulated hour in 2 minutes
    .venv/bin/python bench/providers.py --quick  # 5 trucks, 10 simulated minutes in 2 s

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
from tests.fakes import agilefleet, asana, fleetio, salesforce, servicetitan  # noqa: E402
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
    # For providers that connect otherwise than with a form (ServiceMax's sign-in):
    # makes the integration, in an app context, for the account; returns its id.
    connect: Callable[[int], int] | None = None


def _fleetio(vins: list[str]) -> Provider:
    fake = fleetio.FleetioFake()
    ids = {fake.add_vehicle(vin, f"Truck {n}"): vin for n, vin in enumerate(vins)}

    def last_values() -> dict[str, Any]:
        return {ids[i]: fake.values(i)[-1] for i in ids if fake.values(i)}

    return Provider(
        "fleetio",
        fake,
        {"FLEETHOOK_FLEETIO_BASE_URL": fake.base_url},
        {
            "api_key": fleetio.API_KEY,
            "account_id": fleetio.ACCOUNT_TOKEN,
            "update_odometer": True,
            "update_dtcs": True,
        },
        last_values,
        lambda odometers, _: odometers,
    )


def _servicetitan(vins: list[str]) -> Provider:
    fake = servicetitan.FakeServiceTitan()
    return Provider(
        "servicetitan",
        fake,
        {
            "FLEETHOOK_SERVICETITAN_AUTH_URL": fake.url,
            "FLEETHOOK_SERVICETITAN_BASE_URL": fake.url,
            "FLEETHOOK_SERVICETITAN_APP_KEY": servicetitan.APP_KEY,
            "FLEETHOOK_SERVICETITAN_GPS_PROVIDER": servicetitan.GPS_PROVIDER,
        },
        {
            "tenant_id": servicetitan.TENANT,
            "client_id": servicetitan.CLIENT_ID,
            "client_secret": servicetitan.CLIENT_SECRET,
        },
        lambda: _newest_pings(fake),
        lambda _odometers, fixes: fixes,
        release=True,
    )


def _newest_pings(fake: servicetitan.FakeServiceTitan) -> dict[str, str]:
    newest: dict[str, str] = {}
    for ping in fake.pings:
        newest[ping["unitId"]] = max(newest.get(ping["unitId"], ""), ping["eventTime"])
    return newest


def _asana(vins: list[str]) -> Provider:
    fake = asana.FakeAsana()
    project = fake.add_project("Fleet", {"VIN": "text", "Odometer (mi)": "number"})
    tasks = {fake.add_task(project, f"Truck {n}", vin): vin for n, vin in enumerate(vins)}
    odometer = fake.field_gid(project, "Odometer (mi)")

    def last_values() -> dict[str, Any]:
        values = {vin: fake.value(task, odometer) for task, vin in tasks.items()}
        return {vin: value for vin, value in values.items() if value is not None}

    return Provider(
        "asana",
        fake,
        {"FLEETHOOK_ASANA_BASE_URL": fake.url},
        {"api_key": asana.TOKEN, "vehicle_attribute": "odometer", "project_gid": project},
        last_values,
        lambda odometers, _: odometers,
    )


def _agilefleet(vins: list[str]) -> Provider:
    fake = agilefleet.FakeAgileFleet()
    ids = {fake.add_vehicle(vin, f"Truck {n}"): vin for n, vin in enumerate(vins)}

    def last_values() -> dict[str, Any]:
        latest: dict[str, Any] = {}
        for reading in fake.readings:  # in the order they were stored
            latest[ids[reading["vehicle_id"]]] = reading["value"]
        return latest

    return Provider(
        "agilefleet",
        fake,
        {"FLEETHOOK_AGILEFLEET_BASE_URL": fake.url},
        {"api_key": agilefleet.API_KEY, "vehicle_attribute": "odometer"},
        last_values,
        lambda odometers, _: odometers,
    )


def _servicemax(vins: list[str]) -> Provider:
    """Each truck driven by its own driver, each driver a ServiceMax technician."""
    fake = salesforce.FakeSalesforce()
    technicians = {vin: fake.add_technician(f"Driver {n}") for n, vin in enumerate(vins)}
    by_id = {record_id: vin for vin, record_id in technicians.items()}

    def connect(account_id: int) -> int:
        from urllib.parse import parse_qs, urlsplit

        import requests

        from core.extensions import db
        from integrations.servicemax import provider, signin
        from integrations.servicemax.technicians import set_technicians

        sign_in = signin.start_sign_in(
            signin.LoginHost(signin.PRODUCTION), "https://fleethook.test/callback"
        )
        back = requests.get(signin.authorize_url(sign_in), allow_redirects=False, timeout=5)
        code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
        integration = provider.connect_integration(account_id, code, sign_in)
        db.session.commit()
        set_technicians(
            integration, "\n".join(f"Driver {n} = {technicians[vin]}" for n, vin in enumerate(vins))
        )
        db.session.commit()
        return integration.id

    def last_values() -> dict[str, Any]:
        return {
            by_id[record_id]: fields["SVMXC__Latlong_Captured_On__c"]
            for record_id, fields in fake.technicians.items()
            if "SVMXC__Latlong_Captured_On__c" in fields
        }

    return Provider(
        "servicemax",
        fake,
        {
            "FLEETHOOK_SALESFORCE_LOGIN_URL": fake.url,
            "FLEETHOOK_SALESFORCE_CLIENT_ID": salesforce.CLIENT_ID,
            "FLEETHOOK_SALESFORCE_CLIENT_SECRET": salesforce.CLIENT_SECRET,
        },
        {},
        last_values,
        lambda _odometers, fixes: fixes,
        release=True,
        connect=connect,
    )


PROVIDERS: dict[str, Callable[[list[str]], Provider]] = {
    "servicemax": _servicemax,
    "servicetitan": _servicetitan,
    "fleetio": _fleetio,
    "asana": _asana,
    "agilefleet": _agilefleet,
}


def _reports(bench: Stack, vins: list[str], tick: int, last_tick: int) -> list[dict[str, Any]]:
    """Every truck's report of one tick: 30 mph on the road, the first truck's
    fault code on for the second quarter of the run, ignition off at the end."""
    at = bench.epoch + timedelta(seconds=tick * TICK_SECONDS)
    faulty = last_tick // 4 <= tick < last_tick // 2
    reports = []
    for n, vin in enumerate(vins):
        report = {
            "vin": vin,
            "type": "position",
            "time": at.isoformat().replace("+00:00", "Z"),
            "latitude": 41.88 + n * 0.001,
            "longitude": -87.63 + tick * 0.0005,
            "speed_mph": 0.0 if tick == last_tick else 30.0,
            "heading": 90,
            "ignition": tick != last_tick,
            "odometer_mi": round(1000 + n * 10 + tick * MILES_PER_TICK, 2),
        }
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


def run(
    trucks: int, minutes: int, pace: float, engine: str = "sqlite", timeout: float = 900
) -> list[Row]:
    """The run: `trucks` reporting for `minutes` simulated minutes, a tick of 30
    simulated seconds posted every `pace` real seconds."""
    from sqlalchemy import func, select

    from core.extensions import db
    from integrations.lifecycle import create_integration, sign_release
    from integrations.models import Integration
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
                    if provider.connect is not None:
                        integration = db.session.get(
                            Integration, provider.connect(bench.account_id)
                        )
                    else:
                        integration = create_integration(
                            bench.account_id, {"provider": provider.key, **provider.values}
                        )
                    db.session.commit()
                    if provider.release:
                        sign_release(
                            integration,
                            {"signer_name": "Bench", "signer_title": "Operations", "accept": True},
                            user.id if user else None,
                            "127.0.0.1",
                        )
                        db.session.commit()
                    ids[provider.key] = integration.id
                db.session.remove()
            checked = {p.key: len(p.fake.requests) for p in providers}  # the credential checks
            client = bench.api()
            drivers = [
                {
                    "vin": vin,
                    "type": "driver_assignment",
                    "driver": f"Driver {n}",
                    "time": bench.epoch.isoformat().replace("+00:00", "Z"),
                }
                for n, vin in enumerate(vins)
            ]
            answer = client.post(
                "/api/v1/telemetry", json={"reports": drivers}, headers=bench.headers
            )
            assert answer.status_code == 202, answer.get_json()
            bench.start_production_workers()
            last_tick = minutes * 60 // TICK_SECONDS
            started = time.monotonic()
            for tick in range(last_tick + 1):  # a tick every `pace` seconds
                answer = client.post(
                    "/api/v1/telemetry",
                    headers=bench.headers,
                    json={"reports": _reports(bench, vins, tick, last_tick)},
                )
                assert answer.status_code == 202, answer.get_json()
                time.sleep(max(0.0, started + (tick + 1) * pace - time.monotonic()))
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
                    counts = dict(
                        db.session.execute(
                            select(OutboxMessage.status, func.count())
                            .where(OutboxMessage.target_id == ids[provider.key])
                            .group_by(OutboxMessage.status)
                        ).all()
                    )
                    fake = provider.fake
                    times = [r.at for r in fake.requests[checked[provider.key] :]]
                    holds = provider.last_values()
                    wanted = provider.expected(odometers, fixes)
                    rows.append(
                        Row(
                            provider=provider.key,
                            requests=len(times),
                            limit=fake.limit or 0,
                            window_s=fake.window,
                            busiest_window=_busiest(times, fake.window),
                            throttled_429=fake.throttled_count,
                            delivered=counts.get(MessageStatus.DELIVERED, 0),
                            superseded=counts.get(MessageStatus.SUPERSEDED, 0),
                            dead=counts.get(MessageStatus.DEAD, 0),
                            left=sum(counts.get(s, 0) for s in ("pending", "sending")),
                            latest_values_ok=_same(holds, wanted),
                        )
                    )
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
            from core.times import parse_rfc3339

            if parse_rfc3339(str(held)) != parse_rfc3339(value):
                return False
        elif abs(float(held) - float(value)) > 0.005:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 trucks, 10 simulated minutes")
    parser.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    # The full run plays the hour in two minutes (a tick a second): drains send
    # many intermediate values, so the budgets are what holds the rate down.
    trucks, minutes, pace = (5, 10, 0.1) if args.quick else (50, 60, 1.0)
    rows = run(trucks, minutes, pace, args.engine)
    RESULTS.mkdir(exist_ok=True)
    name = "providers-quick.json" if args.quick else "providers.json"
    (RESULTS / name).write_text(
        json.dumps(
            {
                "trucks": trucks,
                "minutes": minutes,
                "seconds_per_tick": pace,
                "engine": args.engine,
                "rows": [asdict(row) for row in rows],
            },
            indent=2,
        )
        + "\n"
    )
    failed = False
    print(
        f"{'provider':13} {'requests':>8} {'busiest window':>22} {'429s':>5} "
        f"{'delivered':>9} {'superseded':>10} {'dead':>5} {'left':>5}  latest values"
    )
    for row in rows:
        window = f"{row.busiest_window}/{row.limit} per {row.window_s:g} s"
        print(
            f"{row.provider:13} {row.requests:8} {window:>22} {row.throttled_429:5} "
            f"{row.delivered:9} {row.superseded:10} {row.dead:5} {row.left:5}  "
            f"{'right' if row.latest_values_ok else 'WRONG'}"
        )
        failed |= bool(row.dead or row.left or not row.latest_values_ok)
        failed |= row.busiest_window > row.limit
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
