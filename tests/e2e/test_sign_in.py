"""In the browser: signing in, and the Webhook Manager opening in a new tab from
the Account menu."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.live import Live

pytestmark = pytest.mark.e2e


def test_signing_in_shows_the_account_overview(
    fresh_context: BrowserContext, live: Live, checks: BrowserChecks
) -> None:
    page = fresh_context.new_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to Fleethook")).to_be_visible()
    checks.audit(page)
    checks.screenshot(page, "login")

    page.get_by_label("Email").fill(live.email)
    page.get_by_label("Password").fill(live.password)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(live.url + "/")
    expect(page.get_by_role("heading", level=1, name=live.account_name)).to_be_visible()
    expect(page.get_by_role("main").get_by_text(live.email, exact=True)).to_be_visible()
    checks.audit(page)
    checks.screenshot(page, "overview")
    checks.assert_clean()


def test_manage_webhooks_opens_the_manager_in_a_new_tab(
    page: Page, signed_in: BrowserContext, live: Live, checks: BrowserChecks
) -> None:
    page.goto("/")
    checks.audit(page)
    page.locator("summary").filter(has_text="Account").click()
    menu = page.get_by_role("navigation", name="Main")
    link = menu.get_by_role("link", name="Manage Webhooks")
    expect(link).to_be_visible()
    checks.audit(page, "Account menu open")

    with signed_in.expect_page() as opened:
        link.click()
    manager = opened.value
    manager.wait_for_load_state()

    assert manager is not page
    expect(manager).to_have_url(live.url + "/webhooks/")
    expect(manager.get_by_role("heading", level=1, name="Webhook Manager")).to_be_visible()
    expect(manager.get_by_role("heading", name="Available Webhooks")).to_be_visible()
    expect(manager.get_by_role("link", name="Add a Location webhook")).to_be_visible()
    expect(page).to_have_url(live.url + "/")  # the portal stays in its own tab
    checks.audit(manager)
    checks.assert_clean()
