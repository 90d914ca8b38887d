"""In the browser: the Webhook Manager's webhooks — add one with the green +, watch
the example change with the content type, Demo through the real worker to the real
receiver, pause and resume, rotate the secret, delete; and the webhook's pages."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook as StandardWebhook

from core.extensions import db
from core.times import utcnow
from fleet.vin import check_digit
from outbox.models import OutboxMessage
from outbox.sweeper import close_old_messages
from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.grids import action, cell, dialog_ready, rest_pointer, scroll_to, webhook_row
from tests.e2e.live import Live

pytestmark = pytest.mark.e2e

# How long a test waits for a delivery: it checks what arrives, not how fast (speed
# is the benchmarks' to measure).
DELIVERY_WAIT_SECONDS = 30
# A signing secret as shown: whsec_ and the base64 of 24 to 64 random bytes.
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{32,}={0,2}$")


def add_webhook(live: Live, name: str, event_type: str = "speed", **fields: Any) -> Any:
    """A webhook to a path of its own on the receiver, made through the API."""
    path = f"/ok/{event_type}-{uuid.uuid4().hex[:8]}"
    body = {"event_type": event_type, "name": name, "url": live.receiver.url(path), **fields}
    created = live.api.post("/api/v1/webhooks", body)
    created["path"] = path
    return created


def vin_with_check_digit(vin: str) -> str:
    return vin[:8] + check_digit(vin) + vin[9:]


def open_manager(page: Page, checks: BrowserChecks) -> None:
    page.goto("/webhooks/")
    expect(page.get_by_role("heading", level=1, name="Webhook Manager")).to_be_visible()
    checks.audit(page)


def test_add_a_location_webhook_with_the_green_plus(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    add_webhook(live, "Speeding alerts", "speed", threshold_mph=70)
    add_webhook(live, "Trip reports to dispatch", "trip_complete", content_type="form")
    open_manager(page, checks)

    page.get_by_role("link", name="Add a Location webhook").click()
    dialog = dialog_ready(page, "Create Location Webhook")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("URL", exact=True)).to_be_focused()  # ready to type
    headers, body = dialog.locator("#example-headers"), dialog.locator("#example-body")
    expect(headers).to_contain_text("content-type: application/json")
    expect(body).to_have_text(re.compile(r'^\{"type": ?"location"'))
    url = live.receiver.url("/ok/yard-locations")
    dialog.get_by_label("URL", exact=True).fill(url)
    dialog.get_by_label("Name", exact=True).fill("Yard location feed")
    checks.audit(page, "Create Location Webhook dialog")
    checks.screenshot(page, "create-webhook")

    dialog.get_by_label("form — application/x-www-form-urlencoded").check()
    expect(headers).to_contain_text("content-type: application/x-www-form-urlencoded")
    expect(body).to_have_text(re.compile(r"^type=location&timestamp="))
    expect(headers).not_to_contain_text("application/json")
    checks.audit(page, "Create Location Webhook dialog, form-encoded")

    dialog.get_by_role("button", name="Add Webhook").click()
    added = page.get_by_role("dialog", name=re.compile(r"^Webhook \d+ added$"))
    expect(added).to_be_visible()
    title = added.get_by_role("heading", name=re.compile(r"^Webhook \d+ added$")).inner_text()
    webhook_id = int(re.findall(r"\d+", title)[0])
    expect(added).to_contain_text(f"Yard location feed has ID {webhook_id}")
    expect(added.get_by_text(SECRET)).to_be_visible()
    checks.audit(page, "new webhook's secret dialog")
    added.get_by_role("button", name="Done").click()
    expect(added).to_have_count(0)

    row = webhook_row(page, webhook_id)
    expect(cell(row, "ID")).to_have_text(str(webhook_id))
    expect(cell(row, "Name")).to_contain_text("Yard location feed")
    expect(cell(row, "Name")).to_contain_text(url)
    expect(cell(row, "Type")).to_have_text("Location")
    expect(cell(row, "Status")).to_contain_text("Active")
    assert live.api.get(f"/api/v1/webhooks/{webhook_id}")["content_type"] == "form"
    scroll_to(page, "Webhooks")
    checks.screenshot(page, "webhook-manager")
    checks.assert_clean()


def test_the_speed_dialog_says_when_events_come_and_keeps_its_buttons_in_view(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    open_manager(page, checks)
    page.get_by_role("link", name="Add a Speed webhook").click()
    dialog = dialog_ready(page, "Create Speed Webhook")
    expect(dialog).to_contain_text("Every position report at or over this speed makes an event")
    threshold = dialog.get_by_label("Speed threshold (mph)")
    expect(threshold).to_have_attribute("type", "number")
    # The main button is on screen without scrolling, at the right edge of the dialog
    # (the hidden "Saving…" no longer pushes it aside).
    add = dialog.get_by_role("button", name="Add Webhook")
    expect(add).to_be_in_viewport()
    button, box = add.bounding_box(), dialog.bounding_box()
    assert button is not None and box is not None
    assert box["x"] + box["width"] - (button["x"] + button["width"]) < 40, (button, box)
    dialog.get_by_label("URL", exact=True).fill(live.receiver.url("/ok/speeding"))
    dialog.get_by_label("Name", exact=True).fill("Speeding episodes")
    threshold.fill("65")
    dialog.get_by_label(re.compile("once per speeding episode")).check()
    checks.audit(page, "Create Speed Webhook dialog")
    add.click()
    added = page.get_by_role("dialog", name=re.compile(r"^Webhook \d+ added$"))
    expect(added).to_be_visible()
    webhook_id = int(re.findall(r"\d+", added.get_by_role("heading").inner_text())[0])
    added.get_by_role("button", name="Done").click()
    saved = live.api.get(f"/api/v1/webhooks/{webhook_id}")
    assert (saved["threshold_mph"], saved["speeding_events"]) == (65, "episode_start")
    checks.assert_clean()


def test_local_network_mode_says_so_and_still_refuses_cloud_metadata(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    # The browser tests run as `make run` does: local-network mode on.
    open_manager(page, checks)
    banner = page.get_by_role("status").filter(has_text="Local-network mode")
    expect(banner).to_be_visible()
    before = len(live.api.get("/api/v1/webhooks?limit=100")["webhooks"])
    page.get_by_role("link", name="Add a Location webhook").click()
    dialog = dialog_ready(page, "Create Location Webhook")
    dialog.get_by_label("URL", exact=True).fill("http://169.254.169.254/latest/meta-data/")
    dialog.get_by_label("Name", exact=True).fill("Metadata grab")
    dialog.get_by_role("button", name="Add Webhook").click()
    expect(dialog.get_by_text("169.254.169.254 is a link-local address")).to_be_visible()
    checks.expect_finding("console error", "status of 422")
    checks.audit(page, "Create Location Webhook dialog, a metadata URL refused")
    assert len(live.api.get("/api/v1/webhooks?limit=100")["webhooks"]) == before
    page.keyboard.press("Escape")
    checks.assert_clean()


def test_demo_arrives_in_the_live_feed_delivered_by_the_worker(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    webhook = add_webhook(live, "Dispatch board", "speed", threshold_mph=65)
    open_manager(page, checks)
    row = webhook_row(page, webhook["id"])

    row.get_by_role("button", name="Demo").click()
    feed = page.get_by_role("dialog", name=re.compile("Live feed"))
    expect(feed).to_be_visible()
    rest_pointer(page)
    pinned = feed.get_by_role("table", name=re.compile("Your test event"))
    delivered = pinned.get_by_role("row").filter(has_text="Delivered")
    expect(delivered).to_be_visible(timeout=DELIVERY_WAIT_SECONDS * 1000)
    expect(feed).to_contain_text("No other messages yet")  # shown once, not twice
    expect(cell(delivered, "HTTP")).to_have_text("200")
    message_id = cell(delivered, "webhook-id").inner_text().strip()

    received = live.receiver.requests_to(webhook["path"])
    assert [r.headers["webhook-id"] for r in received] == [message_id], live.worker.log_tail()
    payload = StandardWebhook(webhook["secret"]).verify(received[0].body, dict(received[0].headers))
    assert payload["type"] == "speed"
    checks.audit(page, "live feed")
    checks.screenshot(page, "demo-feed")
    page.keyboard.press("Escape")
    expect(feed).to_have_count(0)
    expect(row.get_by_role("button", name="Demo")).to_be_focused()  # back where it was

    # The webhook's own page lists the message; the message's page shows what was sent.
    row.get_by_role("link", name=str(webhook["id"]), exact=True).click()
    expect(page).to_have_url(f"{live.url}/webhooks/{webhook['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Dispatch board")
    listed = page.get_by_role("row").filter(has_text=message_id)
    expect(cell(listed, "Status")).to_have_text("Delivered")
    checks.audit(page)
    checks.screenshot(page, "webhook-detail")

    listed.get_by_role("link", name=message_id).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(message_id)
    expect(page.get_by_role("main")).to_contain_text(json.dumps(payload["data"]["vehicle"]["vin"]))
    checks.audit(page)
    checks.assert_clean()


def test_demo_on_a_busy_webhook_keeps_its_test_message_in_view(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    # A slow receiver (2 s an answer) and more live positions than the feed has rows:
    # without the pin the test message leaves the feed before its answer comes.
    webhook = add_webhook(live, "Busy yard feed", "location")
    slow = live.receiver.url(f"/slow/2000{webhook['path']}")
    live.api.call("PATCH", f"/api/v1/webhooks/{webhook['id']}", 200, json={"url": slow})
    vins = [vin_with_check_digit(f"1BUSYT{n:02d}X{n:08d}") for n in range(2)]
    for n, vin in enumerate(vins):
        live.api.post("/api/v1/vehicles", {"name": f"Busy truck {n}", "vin": vin})
    page.set_viewport_size({"width": 1280, "height": 800})
    open_manager(page, checks)
    row = webhook_row(page, webhook["id"])

    row.get_by_role("button", name="Demo").click()
    feed = page.get_by_role("dialog", name=re.compile("Live feed"))
    expect(feed).to_be_visible()
    rest_pointer(page)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    reports = [
        {
            "vin": vin,
            "type": "position",
            "latitude": 41.88,
            "longitude": -87.63 + n / 1000,
            "time": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
        }
        for n in range(12)
        for vin in vins
    ]
    live.api.post("/api/v1/telemetry", {"reports": reports}, expect=202)

    pinned = feed.get_by_role("table", name=re.compile("Your test event"))
    expect(pinned.get_by_role("row").filter(has_text="Delivered")).to_be_visible(timeout=15_000)
    latest = feed.get_by_role("table", name=re.compile("Latest messages"))
    expect(latest.get_by_role("row").filter(has_text="location")).to_have_count(15)
    # The dialog keeps to the window, its title in view.
    box = feed.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800, box
    expect(feed.get_by_role("heading", name=re.compile("Live feed"))).to_be_in_viewport()
    expect(feed.get_by_text("Close", exact=True)).to_be_in_viewport()
    checks.audit(page, "live feed of a busy webhook")
    page.keyboard.press("Escape")
    checks.assert_clean()


def test_pause_and_resume_change_the_status_in_the_grid(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    webhook = add_webhook(live, "Idle alerts", "idle", idle_minutes=10)
    open_manager(page, checks)
    row = webhook_row(page, webhook["id"])
    status = cell(row, "Status")
    expect(status).to_contain_text("Active")

    row.get_by_role("button", name="Pause").click()
    expect(status).to_contain_text("Paused")
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    assert live.api.get(f"/api/v1/webhooks/{webhook['id']}")["status"] == "paused"
    checks.audit(page, "a webhook paused")

    row.get_by_role("button", name="Resume").click()
    expect(status).to_contain_text("Active")
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    assert live.api.get(f"/api/v1/webhooks/{webhook['id']}")["status"] == "active"
    checks.assert_clean()


def test_rotating_the_secret_shows_the_new_one_once(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    webhook = add_webhook(live, "Ignition events", "ignition_on")
    open_manager(page, checks)
    row = webhook_row(page, webhook["id"])

    row.get_by_role("button", name="Rotate secret").click()
    dialog = page.get_by_role("dialog", name=f"New secret for webhook {webhook['id']}")
    shown = dialog.get_by_text(SECRET)
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert secret != webhook["secret"]
    expect(dialog).to_contain_text("shown only once")
    checks.audit(page, "rotated secret dialog")
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_text(secret)).to_have_count(0)

    # The shown secret is the real one: the next delivery is signed with it (and,
    # for the overlap, with the previous one).
    live.api.post(f"/api/v1/webhooks/{webhook['id']}/demo", {}, expect=202)
    # What is checked here is the signature, not the speed: a busy machine gets time.
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    while not live.receiver.requests_to(webhook["path"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    received = live.receiver.requests_to(webhook["path"])
    assert received, live.worker.log_tail()
    StandardWebhook(secret).verify(received[0].body, dict(received[0].headers))
    StandardWebhook(webhook["secret"]).verify(received[0].body, dict(received[0].headers))

    page.goto(f"/webhooks/{webhook['id']}")
    expect(page.get_by_role("heading", name="Signing secret")).to_be_visible()
    expect(page.get_by_role("main")).not_to_contain_text("whsec_")
    checks.audit(page)
    checks.assert_clean()


def test_deleting_a_webhook_removes_its_row(page: Page, live: Live, checks: BrowserChecks) -> None:
    webhook = add_webhook(live, "Old DVIR endpoint", "dvir")
    open_manager(page, checks)
    row = webhook_row(page, webhook["id"])
    expect(row).to_be_visible()

    action(row, "Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete webhook {webhook['id']}?")
    expect(dialog).to_contain_text("Old DVIR endpoint")
    checks.audit(page, "delete dialog")
    dialog.get_by_role("button", name="Delete webhook").click()

    expect(dialog).to_have_count(0)
    expect(row).to_have_count(0)
    live.api.get(f"/api/v1/webhooks/{webhook['id']}", expect=404)
    checks.assert_clean()


def test_a_pull_only_webhook_made_in_its_dialog_pushes_nothing_and_feeds_its_demo(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    open_manager(page, checks)
    page.get_by_role("link", name="Add a Location webhook").click()
    dialog = dialog_ready(page, "Create Location Webhook")
    path = f"/ok/pulled-{uuid.uuid4().hex[:8]}"
    dialog.get_by_label("URL", exact=True).fill(live.receiver.url(path))
    dialog.get_by_label("Name", exact=True).fill("Behind the firewall")
    dialog.get_by_label("Pull only: push nothing, keep every message for the feed").check()
    checks.audit(page, "Create Location Webhook dialog, pull only")
    dialog.get_by_role("button", name="Add Webhook").click()
    added = page.get_by_role("dialog", name=re.compile(r"^Webhook \d+ added$"))
    title = added.get_by_role("heading", name=re.compile(r"^Webhook \d+ added$")).inner_text()
    webhook_id = int(re.findall(r"\d+", title)[0])
    added.get_by_role("button", name="Done").click()

    row = webhook_row(page, webhook_id)
    expect(cell(row, "Name")).to_contain_text("pull only")
    assert live.api.get(f"/api/v1/webhooks/{webhook_id}")["pull_only"] is True
    demo = live.api.post(f"/api/v1/webhooks/{webhook_id}/demo", {}, expect=202)
    assert demo["status"] == "kept"
    fed = live.api.get(f"/api/v1/webhooks/{webhook_id}/feed")["messages"]
    assert [(m["id"], m["test"]) for m in fed] == [(demo["id"], True)]
    time.sleep(3)  # what a worker would have pushed by now: nothing
    assert live.receiver.requests_to(path) == []
    checks.assert_clean()


def test_area_redaction_and_tracks_are_set_in_the_dialog_and_the_example_follows(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    open_manager(page, checks)
    page.get_by_role("link", name="Add a Location webhook").click()
    dialog = dialog_ready(page, "Create Location Webhook")
    body = dialog.locator("#example-body")
    expect(body).to_contain_text('"name":"Dana Whitfield"')
    path = f"/ok/tracks-{uuid.uuid4().hex[:8]}"
    dialog.get_by_label("URL", exact=True).fill(live.receiver.url(path))
    dialog.get_by_label("Name", exact=True).fill("Yard tracks, no names")
    dialog.get_by_label("Area", exact=True).select_option(label="Within a distance of a point")
    dialog.get_by_label("Circle: latitude, longitude, radius (metres)").fill("41.525, -88.08, 900")

    # The example follows each redaction as it is typed.
    dialog.get_by_label("Leave out drivers' names").check()
    expect(body).not_to_contain_text("Dana Whitfield")
    expect(body).to_contain_text('"driver":{"id":17}')
    dialog.get_by_label("Round coordinates to (decimals, optional)").fill("2")
    expect(body).to_contain_text('"latitude":41.52,')
    dialog.get_by_label("Leave out fields (optional)").fill("data.odometer_mi, data.heading")
    expect(body).not_to_contain_text("odometer_mi")
    expect(body).not_to_contain_text("heading")
    checks.audit(page, "Create Location Webhook dialog, area and redaction")

    dialog.get_by_label("Send positions as tracks").check()
    expect(body).to_have_text(re.compile(r'^\{"type":"Feature","geometry":\{"type":"LineString"'))
    expect(body).to_contain_text('"speed_mph":[58.0,58.0,58.0]')
    expect(body).not_to_contain_text('"heading":[')  # left out by the redaction
    dialog.get_by_label("Positions per window (2–1000)").fill("20")
    checks.audit(page, "Create Location Webhook dialog, tracks")
    checks.screenshot(page, "create-webhook-tracks")
    dialog.get_by_role("button", name="Add Webhook").click()
    added = page.get_by_role("dialog", name=re.compile(r"^Webhook \d+ added$"))
    title = added.get_by_role("heading", name=re.compile(r"^Webhook \d+ added$")).inner_text()
    webhook_id = int(re.findall(r"\d+", title)[0])
    added.get_by_role("button", name="Done").click()

    saved = live.api.get(f"/api/v1/webhooks/{webhook_id}")
    assert saved["area"] == {"circle": {"latitude": 41.525, "longitude": -88.08, "radius_m": 900}}
    assert (saved["drop_driver_name"], saved["coordinate_decimals"]) == (True, 2)
    assert saved["drop_fields"] == ["data.odometer_mi", "data.heading"]
    assert saved["track"] == {"points": 20, "seconds": 60, "min_distance_m": 0}

    # Demo goes through the real worker: an example window, redacted, signed.
    live.api.post(f"/api/v1/webhooks/{webhook_id}/demo", {}, expect=202)
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    while not live.receiver.requests_to(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    [request] = live.receiver.requests_to(path)
    feature = json.loads(request.body)
    assert feature["type"] == "Feature" and feature["properties"]["test"] is True
    assert feature["properties"]["driver"] == {"id": 17}
    assert "heading" not in feature["properties"]["coordinateProperties"]

    page.goto(f"/webhooks/{webhook_id}")
    settings = page.locator("dl.settings")
    expect(settings).to_contain_text("within 900 m of 41.525, -88.08")
    expect(settings).to_contain_text("one GeoJSON Feature per vehicle per window of 20 positions")
    expect(settings).to_contain_text("coordinates rounded to 2 decimals")
    checks.audit(page, "webhook page with area, tracks and redaction")
    checks.assert_clean()


def test_time_to_live_late_skip_and_a_recovery_of_one_vehicle_from_the_portal(
    page: Page, live: Live, checks: BrowserChecks
) -> None:
    webhook = add_webhook(live, "Recovered per truck", "location")
    webhook_id = webhook["id"]
    open_manager(page, checks)
    action(webhook_row(page, webhook_id), "Edit").click()
    dialog = dialog_ready(page, f"Edit webhook {webhook_id}")
    dialog.get_by_label("Time to live (minutes, optional)").fill("30")
    dialog.get_by_label("Skip late positions").check()
    checks.audit(page, "Edit webhook dialog with a time to live")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    saved = live.api.get(f"/api/v1/webhooks/{webhook_id}")
    assert (saved["ttl_minutes"], saved["skip_late"]) == (30, True)

    # Two trucks' positions while the webhook is paused; the retention ends them
    # unsent (expired), then the webhook resumes with nothing waiting.
    names = {"Recovery truck A": "1RCVRYA1X00000001", "Recovery truck B": "1RCVRYB2X00000002"}
    vins = {name: vin_with_check_digit(vin) for name, vin in names.items()}
    for name, vin in vins.items():
        live.api.post("/api/v1/vehicles", {"name": name, "vin": vin})
    live.api.post(f"/api/v1/webhooks/{webhook_id}/pause", {}, expect=200)
    # Fresh positions: late ones (2 minutes after their fix) this webhook now skips.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    reports = [
        {
            "vin": vin,
            "type": "position",
            "latitude": 41.88,
            "longitude": -87.63 + n / 1000,
            "time": (start + timedelta(seconds=10 * n)).isoformat().replace("+00:00", "Z"),
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
        }
        for n in range(3)
        for vin in vins.values()
    ]
    live.api.post("/api/v1/telemetry", {"reports": reports}, expect=202)
    with live.server.app.app_context():
        retention = live.server.app.config["FLEETHOOK_RETENTION"]
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.target_id == webhook_id)
            .values(retain_from=utcnow() - retention - timedelta(minutes=1))
        )
        db.session.commit()
        assert close_old_messages(utcnow()) >= 6  # the retention's own sweep
    live.api.post(f"/api/v1/webhooks/{webhook_id}/resume", {}, expect=200)

    page.goto(f"/webhooks/{webhook_id}")
    since = (start - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Recover dead and expired messages since (UTC)").fill(since)
    page.get_by_label("Of", exact=True).select_option(label="Recovery truck A")
    checks.audit(page, "webhook page, recovering one vehicle")
    page.get_by_role("button", name="Recover").click()
    expect(page.get_by_text("3 dead or expired messages queued again.")).to_be_visible()
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    while len(live.receiver.requests_to(webhook["path"])) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # anything more would have come by now
    delivered = [json.loads(r.body)["data"] for r in live.receiver.requests_to(webhook["path"])]
    assert [d["vehicle"]["name"] for d in delivered] == ["Recovery truck A"] * 3
    checks.assert_clean()
