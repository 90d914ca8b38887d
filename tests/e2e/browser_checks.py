"""What the browser tests check on every page, whatever the test is about: no
console errors, no uncaught exceptions, no Content-Security-Policy violations, no
server errors, and no serious or critical accessibility violations (axe-core) —
plus the screenshots of the pages the README shows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page

from tests.e2e.live import LiveServer

# Impacts that fail a test; "moderate" and "minor" ones are printed, not failed.
FAILING_IMPACTS = ("serious", "critical")

# Reports every CSP violation of every document of the context to the test (the
# binding below). An init script is not page script: the browser runs it before
# the page's own scripts, outside the page's CSP, so the CSP under test is intact.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.fleethookCspViolation({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
    sample: event.sample,
    element: event.target && event.target.outerHTML ? event.target.outerHTML.slice(0, 200) : "",
  });
}, true);
"""

AXE_RUN = """async () => {
  const results = await window.axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map((n) => n.target.flat().join(" ")),
  }));
}"""


@dataclass
class Finding:
    kind: str  # "console error", "page error", "CSP violation", "server error", "axe", ...
    where: str  # the page's URL (and what was on it)
    detail: str

    def __str__(self) -> str:
        return f"- {self.kind} on {self.where}: {self.detail}"


@dataclass
class BrowserChecks:
    """Watches every page of the contexts it is given, and runs axe when asked.

    axe-core is loaded with `page.evaluate` of its source, not `add_script_tag`:
    an inline <script> is exactly what the portal's CSP (script-src 'self') refuses,
    so add_script_tag would fail and report a violation of our own making.
    `evaluate` goes through the DevTools protocol, which the page's CSP does not
    govern, in the same page and context as the test: nothing is relaxed (no
    bypass_csp) for the pages under test, so their own violations are still seen."""

    axe_source: str = field(repr=False)
    server: LiveServer
    screenshots: Path
    findings: list[Finding] = field(default_factory=list)
    _navigated: dict[str, None] = field(default_factory=dict)  # URLs in visiting order
    _audited: set[str] = field(default_factory=set)
    _server_errors_seen: int = 0

    # -- watching ------------------------------------------------------------------

    def watch(self, context: BrowserContext) -> None:
        context.expose_binding("fleethookCspViolation", self._on_csp_violation)
        context.add_init_script(script=CSP_LISTENER)
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._on_page_error(page, error))
        page.on(
            "framenavigated",
            lambda frame: self._on_navigation(frame.url) if frame == page.main_frame else None,
        )

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        kind = "CSP violation" if "Content Security Policy" in message.text else "console error"
        location = message.location
        source = f" ({location.get('url')}:{location.get('lineNumber')})" if location else ""
        self.findings.append(Finding(kind, _page_url(message.page), message.text + source))

    def _on_page_error(self, page: Page, error: Error) -> None:
        self.findings.append(Finding("page error", _page_url(page), error.stack or error.message))

    def _on_csp_violation(self, source: dict[str, Any], violation: dict[str, Any]) -> None:
        self.findings.append(
            Finding("CSP violation", _page_url(source.get("page")), json.dumps(violation))
        )

    def _on_navigation(self, url: str) -> None:
        if url.startswith("http"):
            self._navigated[urldefrag(url).url] = None

    # -- axe -----------------------------------------------------------------------

    def audit(self, page: Page, state: str = "") -> None:
        """Run axe on the page as it is now (`state` names an open dialog, say)."""
        page.wait_for_load_state()
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(self.axe_source)
        where = page.url + (f" ({state})" if state else "")
        for violation in page.evaluate(AXE_RUN):
            finding = Finding(
                f"axe {violation['impact']}",
                where,
                f"{violation['id']}: {violation['help']} — targets: "
                + ", ".join(violation["targets"]),
            )
            if violation["impact"] in FAILING_IMPACTS:
                self.findings.append(finding)
            else:
                print(f"axe, not failing: {finding}")  # shown with `pytest -s`
        self._audited.add(urldefrag(page.url).url)

    # -- screenshots ---------------------------------------------------------------

    def screenshot(self, page: Page, name: str) -> Path:
        """The viewport as a user sees it now, as `<screenshots>/<name>.png`."""
        path = self.screenshots / f"{name}.png"
        page.screenshot(path=path, animations="disabled")
        return path

    # -- the verdict ---------------------------------------------------------------

    def expect_finding(self, kind: str, text: str) -> None:
        """A finding the test provoked on purpose: drop it, and fail if it never came
        (Chromium logs a form refused with 422 as "Failed to load resource")."""
        matching = [f for f in self.findings if f.kind == kind and text in f.detail]
        assert matching, f"expected a {kind} with {text!r}; found {self.findings}"
        self.findings = [f for f in self.findings if f not in matching]

    def take(self) -> list[Finding]:
        """What went wrong since the last call: the findings, server errors, and
        pages loaded but never checked with axe."""
        found = list(self.findings)
        new_errors = self.server.errors[self._server_errors_seen :]
        self._server_errors_seen += len(new_errors)
        found += [Finding("server error", "the live server", error) for error in new_errors]
        found += [
            Finding("unchecked page", url, "loaded, but axe never ran on it (call checks.audit)")
            for url in self._navigated
            if url not in self._audited
        ]
        self.findings.clear()
        self._navigated.clear()
        self._audited.clear()
        return found

    def assert_clean(self) -> None:
        found = self.take()
        assert not found, "the browser found defects:\n" + "\n".join(map(str, found))


def _page_url(page: Page | None) -> str:
    try:
        return page.url if page is not None else "(no page)"
    except Error:
        return "(a closed page)"
