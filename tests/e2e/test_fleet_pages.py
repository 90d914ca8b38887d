"""In the browser: the Fleet pages — add a vehicle and a landmark in their dialogs
and see each listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from demo.vehicles import demo_vin
from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.grids import dialog_ready
from tests.e2e.live import Live

pytestmark = pytest.mark.e2e

# The west side of Chicago, where the demo fleet drives.
YARD = [
    [-87.7061, 41.8853],
    [-87.7012, 41.8853],
    [-87.7012, 41.8887],
    [-87.7061, 41.8887],
    [-87.7061, 41.8853],
]


def test_add_a_vehicle_and_see_it_listed(page: Page, live: Live, checks: BrowserChecks) -> None:
    reported = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    for n, (name, group) in enumerate([("Reefer 3", "Reefers"), ("Flatbed 9", "Flatbeds")]):
        live.api.post("/api/v1/vehicles", {"name": name, "vin": demo_vin(40 + n), "group": group})
        position = {
            "vin": demo_vin(40 + n),
            "type": "position",
            "time": reported,
            "latitude": 41.8456,
            "longitude": -87.7539 + n / 100,
            "speed_mph": 0,
            "heading": 0,
            "ignition": False,
            "odometer_mi": 61_250.4 + n * 20_000,
        }
        live.api.post("/api/v1/telemetry", position, expect=202)
    page.goto("/fleet/vehicles")
    expect(page.get_by_role("heading", level=1, name="Vehicles")).to_be_visible()
    checks.audit(page)

    page.get_by_role("link", name="Add vehicle").click()
    dialog = dialog_ready(page, "Add vehicle")
    vin = demo_vin(42)
    dialog.get_by_label("Name", exact=True).fill("Box truck 12")
    dialog.get_by_label("VIN").fill(vin)
    dialog.get_by_label("Plate (optional)").fill("IL 48213")
    dialog.get_by_label("Group").fill("Box trucks")
    checks.audit(page, "Add vehicle dialog")
    dialog.get_by_role("button", name="Add vehicle").click()

    expect(page.get_by_text("Vehicle “Box truck 12” added.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=vin)
    expect(row).to_contain_text("Box truck 12")
    expect(row).to_contain_text("IL 48213")
    expect(row).to_contain_text("Box trucks")
    checks.audit(page)
    checks.screenshot(page, "vehicles")
    checks.assert_clean()


def test_add_a_landmark_and_see_it_listed(page: Page, live: Live, checks: BrowserChecks) -> None:
    live.api.post(
        "/api/v1/landmarks",
        {"name": "West yard", "polygon": {"type": "Polygon", "coordinates": [YARD]}},
    )
    page.goto("/fleet/landmarks")
    expect(page.get_by_role("heading", level=1, name="Landmarks")).to_be_visible()
    checks.audit(page)

    page.get_by_role("link", name="Add landmark").click()
    dialog = dialog_ready(page, "Add landmark")
    dialog.get_by_label("Name", exact=True).fill("Customer dock, Cicero")
    dialog.get_by_label("Circle — a centre and a radius").check()
    dialog.get_by_label("Latitude").fill("41.8456")
    dialog.get_by_label("Longitude").fill("-87.7539")
    dialog.get_by_label("Radius (metres)").fill("250")
    checks.audit(page, "Add landmark dialog")
    dialog.get_by_role("button", name="Add landmark").click()

    expect(page.get_by_text("Landmark “Customer dock, Cicero” added.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Customer dock, Cicero")
    expect(row).to_contain_text("Circle")
    expect(row).to_contain_text("radius 250 m")
    expect(page.get_by_role("row").filter(has_text="West yard")).to_contain_text("Polygon")
    checks.audit(page)
    checks.screenshot(page, "landmarks")
    checks.assert_clean()
