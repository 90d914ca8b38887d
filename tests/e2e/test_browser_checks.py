"""The checks every browser test relies on do catch what they are for: a page with
a console error, an uncaught exception, an inline script and an inline style (both
refused by the CSP) and an image without a text alternative is reported on each
count. A browser or axe-core update that silenced one would fail here."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser_checks import BrowserChecks, Finding

pytestmark = pytest.mark.e2e

PLANT_DEFECTS = """() => {
  console.error("planted console error");
  setTimeout(() => { throw new Error("planted exception"); });
  const box = document.createElement("div");
  box.innerHTML = '<span style="color: red">inline style</span><img src="/static/favicon.svg">';
  document.querySelector("main").append(box);
  const script = document.createElement("script");
  script.textContent = "window.plantedScriptRan = true;";
  document.body.append(script);
}"""


def found(findings: list[Finding], kind: str, text: str) -> bool:
    return any(f.kind.startswith(kind) and text in f.detail for f in findings)


def test_the_checks_report_console_errors_exceptions_csp_and_axe_violations(
    page: Page, checks: BrowserChecks
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    checks.audit(page)
    checks.take()  # the overview's own findings are test_sign_in.py's business

    page.evaluate(PLANT_DEFECTS)
    expect(page.get_by_text("inline style")).to_be_visible()
    checks.audit(page, "with planted defects")
    findings = checks.take()

    assert found(findings, "console error", "planted console error"), findings
    assert found(findings, "page error", "planted exception"), findings
    assert found(findings, "CSP violation", '"directive": "script-src-elem"'), findings
    assert found(findings, "CSP violation", '"directive": "style-src-attr"'), findings
    assert found(findings, "axe critical", "image-alt"), findings
    assert page.evaluate("() => window.plantedScriptRan") is None  # the CSP held
