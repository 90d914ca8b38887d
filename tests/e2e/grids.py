"""Finding things in the portal's grids the way a user reads them: a row by the ID
link in it, a cell by its column's header; a dialog once it is ready to type in;
and keeping out of their way."""

from __future__ import annotations

from re import Pattern

from playwright.sync_api import Locator, Page, expect


def dialog_ready(page: Page, name: str | Pattern[str]) -> Locator:
    """The dialog named `name`, once its script has put the focus in it: a field
    filled before then may have its text typed into the field the script focuses
    (under load, the VIN went into the Name box)."""
    dialog = page.get_by_role("dialog", name=name)
    expect(dialog.locator(":focus")).to_have_count(1)
    return dialog


def grid_row(page: Page, region: str, object_id: int) -> Locator:
    """The row of the grid in the section named `region` whose ID link is `object_id`."""
    section = page.get_by_role("region", name=region, exact=True)
    link = page.get_by_role("link", name=str(object_id), exact=True)
    return section.get_by_role("row").filter(has=link)


def webhook_row(page: Page, webhook_id: int) -> Locator:
    return grid_row(page, "Webhooks", webhook_id)


def integration_row(page: Page, integration_id: int) -> Locator:
    return grid_row(page, "3rd Party Integrations", integration_id)


def cell(row: Locator, column: str) -> Locator:
    """The cell of `row` under the header `column` (headers and cells line up)."""
    row.wait_for()
    headers = [
        " ".join(text.split())
        for text in row.locator("xpath=ancestor::table[1]/thead/tr/th").all_inner_texts()
    ]
    assert column in headers, f"no column {column!r} in the grid; its columns: {headers}"
    return row.locator("xpath=./td|./th").nth(headers.index(column))


def action(row: Locator, name: str) -> Locator:
    """A row's action by its name, a link (a dialog's address) or a button alike."""
    return row.get_by_role("link", name=name, exact=True).or_(
        row.get_by_role("button", name=name, exact=True)
    )


def rest_pointer(page: Page) -> None:
    """Move the pointer off the grids before watching them change: a grid holds its
    polling still while the pointer rests on a tooltip or a chart in it (as for a
    user reading one; static/fleethook.js), and a click leaves the pointer anywhere."""
    page.mouse.move(0, 0)


def scroll_to(page: Page, heading: str) -> None:
    """Scroll the section under `heading` to the top of the window (for a screenshot)."""
    page.get_by_role("heading", name=heading, exact=True).evaluate(
        "element => element.scrollIntoView({block: 'start'})"
    )
