"""`python -m tests.fakes.serve`: every fake provider on loopback with the demo
fleet's vehicles in it, for `FLEETHOOK_FAKE_PROVIDERS=1 make run`. Prints the
settings that point Fleethook at the fakes (NAME=value lines), then the
credentials to type into the portal's forms, then "ready"; runs until SIGTERM."""

from __future__ import annotations

import signal
import threading

from demo.simulator import DEFAULT_VEHICLES
from demo.vehicles import demo_vin
from tests.fakes import agilefleet, asana, fleetio, salesforce, servicetitan


def main() -> None:
    vins = [demo_vin(index) for index in range(DEFAULT_VEHICLES)]
    fleetio_fake = fleetio.FleetioFake().start()
    titan = servicetitan.FakeServiceTitan().start()
    # Its authorize step signs in and allows at once; PKCE required, as an org can.
    force = salesforce.FakeSalesforce(require_pkce=True).start()
    asana_fake = asana.FakeAsana().start()
    agile = agilefleet.FakeAgileFleet().start()
    for index, vin in enumerate(vins):
        fleetio_fake.add_vehicle(vin, f"Demo Truck {index + 1:02d}")
        force.add_technician(f"Technician {index + 1}")
    settings = {
        "FLEETHOOK_FLEETIO_BASE_URL": fleetio_fake.base_url,
        "FLEETHOOK_SERVICETITAN_BASE_URL": titan.url,
        "FLEETHOOK_SERVICETITAN_AUTH_URL": titan.url,
        "FLEETHOOK_SERVICETITAN_APP_KEY": servicetitan.APP_KEY,
        "FLEETHOOK_SERVICETITAN_GPS_PROVIDER": servicetitan.GPS_PROVIDER,
        "FLEETHOOK_SALESFORCE_LOGIN_URL": force.url,
        "FLEETHOOK_SALESFORCE_CLIENT_ID": salesforce.CLIENT_ID,
        "FLEETHOOK_SALESFORCE_CLIENT_SECRET": salesforce.CLIENT_SECRET,
    }
    logins = [
        f"Fleetio: API key {fleetio.API_KEY}, Account Token {fleetio.ACCOUNT_TOKEN}",
        f"ServiceTitan: tenant {servicetitan.TENANT}, client id {servicetitan.CLIENT_ID}, "
        f"client secret {servicetitan.CLIENT_SECRET}",
        "ServiceMax: Connect with Salesforce (Production) signs in at once",
    ]
    project = asana_fake.add_project("Demo fleet")
    for index, vin in enumerate(vins):
        asana_fake.add_task(project, f"Demo Truck {index + 1:02d}", vin)
        agile.add_vehicle(vin, f"Demo Truck {index + 1:02d}")
    settings["FLEETHOOK_ASANA_BASE_URL"] = asana_fake.url
    settings["FLEETHOOK_AGILEFLEET_BASE_URL"] = agile.url
    logins.append(f"Asana: token {asana.TOKEN}, project {project}, attribute Odometer")
    logins.append(f"Agile Fleet: API key {agilefleet.API_KEY}")
    for name, value in settings.items():
        print(f"{name}={value}")
    for line in logins:
        print(f"# {line}")
    print("ready", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()


if __name__ == "__main__":
    main()
