"""In the browser: the portal's layout holds from a tablet (768 px) to a wide
screen (1920 px) — no page scrolls sideways (a wide grid scrolls inside its card),
the Webhook Manager's grids fit their cards from 1024 px up whatever they hold,
and a dialog fits the window."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from core.extensions import db
from outbox.failures import shorten
from outbox.models import ERROR_LENGTH, Target
from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.grids import action, integration_row, scroll_to, webhook_row
from tests.e2e.live import Live
from tests.fakes.fleetio import ACCOUNT_TOKEN, API_KEY

pytestmark = pytest.mark.e2e

PAGES = [
    "/",
    "/webhooks/",
    "/fleet/vehicles",
    "/fleet/drivers",
    "/fleet/landmarks",
    "/account/tokens",
    "/account/users",
    "/account/audit",
]
WIDTHS = [768, 1024, 1920]
# A receiver's error page or a provider's long refusal, written to a target; what
# the target keeps of it is its first words (its columns hold ERROR_LENGTH).
LONG_ERROR = (
    "Retrying: the receiver answered with a page of its own: " + "upstream_timeout " * 120
)[:2000]
STORED_ERROR = shorten(LONG_ERROR, ERROR_LENGTH)

ACTIONS = ("Pause", "Demo", "Edit", "Rotate secret", "Delete")

# Every element of the grid's cells that reaches past its cell, or the grid past
# its card: what a user sees cut off or spilling over the next column.
OVERFLOWS = """(grid) => {
  const found = [];
  const card = grid.closest(".card").getBoundingClientRect();
  const table = grid.querySelector("table").getBoundingClientRect();
  if (table.right > card.right + 0.5) found.push("the table ends past its card");
  if (grid.scrollWidth > grid.clientWidth) found.push("the grid scrolls sideways");
  for (const cell of grid.querySelectorAll("td, th")) {
    const box = cell.getBoundingClientRect();
    if (box.width === 0) continue;  // a column hidden at this width
    for (const inner of cell.querySelectorAll("*")) {
      const r = inner.getBoundingClientRect();
      if (r.width === 0 || inner.closest(".visually-hidden")) continue;
      const clipped = getComputedStyle(inner).overflowX !== "visible";
      if (!clipped && inner.scrollWidth > inner.clientWidth + 1 && inner.clientWidth > 0) {
        found.push(`the text of ${inner.tagName.toLowerCase()}.${inner.className} runs out of it`);
      }
      if (r.right > box.right + 0.5 || r.left < box.left - 0.5) {
        const name = `${inner.tagName.toLowerCase()}.${inner.className.baseVal ?? inner.className}`;
        const where = cell.textContent.trim().slice(0, 40);
        found.push(`${name} in "${where}": ${r.left}-${r.right} outside ${box.left}-${box.right}`);
      }
    }
  }
  return found;
}"""


def sideways_overflow(page: Page) -> int:
    """How many pixels the page itself is wider than the window (0 when it fits)."""
    return int(
        page.evaluate(
            "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_scrolls_sideways(
    page: Page, live: Live, checks: BrowserChecks, width: int
) -> None:
    live.api.post(
        "/api/v1/webhooks",
        {
            "event_type": "location",
            "name": f"Layout check at {width} px with a long name",
            "url": live.receiver.url(f"/ok/layout-{width}-" + "x" * 60),
        },
        expect=201,
    )
    page.set_viewport_size({"width": width, "height": 900})
    for path in PAGES:
        page.goto(path)
        expect(page.locator("main")).to_be_visible()
        assert sideways_overflow(page) == 0, f"{path} at {width} px"
        checks.audit(page, f"{width} px wide")
    checks.assert_clean()


@pytest.mark.parametrize("width", [768, 1920])
def test_the_create_dialog_fits_the_window(
    page: Page, live: Live, checks: BrowserChecks, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 700})
    page.goto("/webhooks/")
    checks.audit(page, f"{width} px wide")
    page.get_by_role("link", name="Add a Location webhook").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    checks.audit(page, f"the Create Webhook dialog, {width} px wide")
    box = dialog.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= 700, box
    assert sideways_overflow(page) == 0
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    checks.assert_clean()


@pytest.fixture
def failing_targets(live: Live) -> Iterator[dict[str, Any]]:
    """A Failing webhook and a Failing integration whose reasons and last errors
    are 2,000 characters long, beside a healthy webhook."""
    failing = live.api.post(
        "/api/v1/webhooks",
        {
            "event_type": "posted_speed",
            "threshold_mph": 15,
            "name": "Dispatch board of the northern depot and of its yards, every one of them",
            "url": "https://receiver.example.com/" + "very-long-path/" * 40,
        },
    )
    healthy = live.api.post(
        "/api/v1/webhooks",
        {"event_type": "location", "name": "Yard", "url": live.receiver.url("/ok/fit")},
    )
    integration = live.api.post(
        "/api/v1/integrations",
        {
            "provider": "fleetio",
            "api_key": API_KEY,
            "account_id": ACCOUNT_TOKEN,
            "update_odometer": True,
            "update_dtcs": False,
        },
    )
    # Connecting sends the trucks' current odometers; once the worker has, nothing
    # more comes to change the status planted below.
    for _ in range(100):
        if live.api.get(f"/api/v1/integrations/{integration['id']}")["queue_depth"] == 0:
            break
        time.sleep(0.1)
    with live.server.app.app_context():
        for target_id in (failing["id"], integration["id"]):
            target = db.session.get(Target, target_id)
            assert target is not None
            target.status, target.status_reason, target.last_error = (
                "failing",
                LONG_ERROR,
                LONG_ERROR,
            )
            target.queue_depth, target.total_messages = 1_234_567, 98_765_432
        db.session.commit()
    yield {"failing": failing, "healthy": healthy, "integration": integration}
    for path in (
        f"/api/v1/webhooks/{failing['id']}",
        f"/api/v1/webhooks/{healthy['id']}",
        f"/api/v1/integrations/{integration['id']}",
    ):
        live.api.call("DELETE", path, 204)


@pytest.mark.parametrize("width", [1024, 1280, 1920])
def test_the_grids_fit_their_cards_with_a_failing_row(
    page: Page, live: Live, checks: BrowserChecks, failing_targets: dict[str, Any], width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/webhooks/")
    row = webhook_row(page, failing_targets["failing"]["id"])
    expect(row).to_contain_text("Failing")
    expect(integration_row(page, failing_targets["integration"]["id"])).to_contain_text("Failing")
    for grid in ("#webhooks-grid", "#integrations-grid"):
        found = page.locator(grid).evaluate(OVERFLOWS)
        assert found == [], f"{grid} at {width} px:\n" + "\n".join(found)
    # One line of icons, not a stack of buttons; a long error adds no height.
    tops = {
        round(box["y"]) for box in (action(row, name).bounding_box() for name in ACTIONS) if box
    }
    assert len(tops) == 1, tops
    healthy = webhook_row(page, failing_targets["healthy"]["id"]).bounding_box()
    failing = row.bounding_box()
    assert healthy is not None and failing is not None
    assert failing["height"] <= healthy["height"] * 1.5, (failing, healthy)
    # The whole error is one hover (and one click) away.
    expect(row.get_by_title(STORED_ERROR).first).to_be_attached()
    for name in ACTIONS:
        expect(action(row, name)).to_be_visible()
    assert sideways_overflow(page) == 0
    checks.audit(page, f"a Failing row, {width} px wide")
    if width == 1280:
        scroll_to(page, "Webhooks")
        checks.screenshot(page, "webhook-manager-failing")
    checks.assert_clean()
