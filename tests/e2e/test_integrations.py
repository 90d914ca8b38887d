"""In the browser: connecting Fleetio (the fake Fleetio API on loopback) on the
Webhook Manager, its Queue Depth and Total Messages moving in the grid as the
account's trucks report, and deleting it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.grids import action, cell, dialog_ready, integration_row, rest_pointer, scroll_to
from tests.e2e.live import Live
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY

pytestmark = pytest.mark.e2e

VIN = "1FUJGLDR3CLBP8834"
ODOMETER = [48_210.0, 48_212.5, 48_215.0]
GRID = "3rd Party Integrations"


def report_positions(live: Live) -> None:
    """Three position reports of the truck, 15 minutes apart (Fleetio gets a meter
    entry every 15 minutes at most), the odometer advancing."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15 * len(ODOMETER))
    reports = [
        {
            "vin": VIN,
            "type": "position",
            "time": (start + timedelta(minutes=15 * n)).isoformat().replace("+00:00", "Z"),
            "latitude": 41.88,
            "longitude": -87.63 + n / 100,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
            "odometer_mi": odometer,
        }
        for n, odometer in enumerate(ODOMETER)
    ]
    accepted = live.api.post("/api/v1/telemetry", {"reports": reports}, expect=202)
    assert accepted["accepted"] == len(ODOMETER), accepted


def test_fleetio_counters_move_in_the_grid_as_trucks_report(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    live.fleetio.add_vehicle(VIN, "Truck 42")
    live.api.post("/api/v1/vehicles", {"name": "Truck 42", "vin": VIN, "group": "Chicago"})
    page.goto("/webhooks/")
    checks.audit(page)

    page.get_by_role("link", name="Connect Fleetio").click()
    dialog = dialog_ready(page, "Connect Fleetio")
    dialog.get_by_label("API Key").fill(API_KEY)
    dialog.get_by_label("Account Token").fill(ACCOUNT_TOKEN)
    expect(dialog.get_by_label("Update Odometer")).to_be_checked()
    checks.audit(page, "Connect Fleetio dialog")
    dialog.get_by_role("button", name="Connect").click()
    connected = page.get_by_role("dialog", name="Fleetio connected")
    expect(connected).to_contain_text("Fleetio is connected as integration")
    checks.audit(page, "Fleetio connected dialog")
    connected.get_by_role("button", name="Done").click()
    expect(connected).to_have_count(0)

    (integration,) = live.api.get("/api/v1/integrations")["integrations"]
    row = integration_row(page, integration["id"])
    expect(cell(row, "Provider")).to_have_text("Fleetio")
    expect(cell(row, "Status")).to_contain_text("Active")
    # Connecting sent the current state of the account's trucks that have reported
    # (those of the fleet pages' tests, which Fleetio lacks: their messages end).
    expect(cell(row, "Queue Depth")).to_have_text("0", timeout=10_000)
    synced = live.api.get(f"/api/v1/integrations/{integration['id']}")["total_messages"]
    expect(cell(row, "Total Messages")).to_have_text(str(synced))

    # Paused (on its page), it keeps what the trucks report: the Queue Depth shows it.
    row.get_by_role("link", name=str(integration["id"]), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Fleetio")
    checks.audit(page)
    page.get_by_role("button", name="Pause").click()
    # Back on its page, which says so; then the grid.
    expect(page).to_have_url(live.url + f"/integrations/{integration['id']}")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.goto("/webhooks/")
    rest_pointer(page)
    checks.audit(page)
    expect(cell(row, "Status")).to_contain_text("Paused")

    report_positions(live)
    expect(cell(row, "Queue Depth")).to_have_text(str(len(ODOMETER)))
    expect(cell(row, "Total Messages")).to_have_text(str(synced + len(ODOMETER)))
    scroll_to(page, GRID)
    checks.screenshot(page, "integrations")

    # Resumed, the worker sends the backlog to Fleetio: the queue drains, the total stays.
    row.get_by_role("link", name=str(integration["id"]), exact=True).click()
    page.get_by_role("button", name="Resume").click()
    expect(page).to_have_url(live.url + f"/integrations/{integration['id']}")
    page.goto("/webhooks/")
    rest_pointer(page)
    expect(cell(row, "Queue Depth")).to_have_text("0", timeout=10_000)
    expect(cell(row, "Total Messages")).to_have_text(str(synced + len(ODOMETER)))
    expect(cell(row, "Status")).to_contain_text("Active")
    entries = live.fleetio.received("POST", r"/api/v1/meter_entries")
    assert [entry.json["value"] for entry in entries] == ODOMETER, live.worker.log_tail()

    action(row, "Delete").click()
    confirm = page.get_by_role("dialog", name=f"Delete integration {integration['id']}?")
    checks.audit(page, "delete integration dialog")
    confirm.get_by_role("button", name="Delete integration").click()
    expect(confirm).to_have_count(0)
    expect(row).to_have_count(0)
    assert live.api.get("/api/v1/integrations")["integrations"] == []
    checks.assert_clean()


def test_servicemax_signs_in_at_the_login_host_chosen_in_its_dialog(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    production, sandbox = live.salesforce["production"], live.salesforce["sandbox"]
    page.goto("/webhooks/")
    page.get_by_role("link", name="Connect ServiceMax").click()
    dialog = dialog_ready(page, "Connect ServiceMax")
    # What to set up in Salesforce first, with the callback URL the connected app lists.
    expect(dialog.get_by_text("Before you connect")).to_be_visible()
    expect(dialog).to_contain_text("Connected Apps OAuth Usage")
    expect(dialog).to_contain_text(live.url + "/integrations/servicemax/callback")
    checks.audit(page, "Connect ServiceMax dialog")
    dialog.get_by_label("Salesforce login").select_option("sandbox")
    dialog.get_by_role("button", name="Connect with Salesforce").click()

    # The sandbox's login page (which allows at once here) sends the browser back.
    expect(page).to_have_url(re.compile(r"/integrations/\d+/release$"))
    checks.audit(page, "ServiceMax release form")
    assert production.requests == []  # a sandbox integration never asks production
    token = next(r for r in sandbox.requests if r.path == "/services/oauth2/token")
    assert token.form["grant_type"] == "authorization_code" and token.form["code_verifier"]
    (integration,) = [
        i
        for i in live.api.get("/api/v1/integrations")["integrations"]
        if i["provider"] == "servicemax"
    ]
    assert integration["options"]["login_host"] == "sandbox"
    live.api.call("DELETE", f"/api/v1/integrations/{integration['id']}", 204)
    checks.assert_clean()
