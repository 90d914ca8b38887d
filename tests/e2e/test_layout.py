"""In the browser: the portal's layout holds from a tablet (768 px) to a wide
screen (1920 px) — no page scrolls sideways (a wide grid scrolls inside its card),
and a dialog fits the window."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.live import Live

pytestmark = pytest.mark.e2e

PAGES = ["/", "/webhooks/", "/fleet/vehicles", "/fleet/drivers", "/fleet/landmarks",
         "/account/tokens", "/account/users", "/account/audit"]  # fmt: skip
WIDTHS = [768, 1024, 1920]


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
        {"event_type": "location", "name": f"Layout check at {width} px with a long name",
         "url": live.receiver.url(f"/ok/layout-{width}-" + "x" * 60)},
        expect=201,
    )  # fmt: skip
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
