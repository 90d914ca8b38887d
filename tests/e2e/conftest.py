"""Fixtures of the browser tests: the system running for real (the app behind an
HTTP server on loopback, an `rq worker` process, a receiver on loopback, the fake
Fleetio API), one headless Chromium for the package, a signed-in browser context
the tests share, and the checks every page goes through (browser_checks.py).

The database and Redis are the run's own (tests/conftest.py: SQLite in a temp dir
or DATABASE_URL, a private Redis or REDIS_URL). Everything here is package-scoped
and cleaned up when the package ends, before the rest of the suite runs: the worker
stops (it would take the next tests' jobs) and the database is emptied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from app import create_app
from core.config import retry_queues, worker_queues
from core.extensions import db, redis_client
from devstack.assets import fetch_npm_file
from tests.conftest import NAMESPACE, PASSWORD, bearer, csrf_token, delete_namespace, make_user
from tests.conftest import reset_database as empty_database
from tests.e2e.browser_checks import BrowserChecks
from tests.e2e.live import ROOT, Api, Live, LiveServer, RqWorker
from tests.fakes.fleetio import FleetioFake
from tests.fakes.salesforce import CLIENT_ID as SALESFORCE_CLIENT_ID
from tests.fakes.salesforce import CLIENT_SECRET as SALESFORCE_CLIENT_SECRET
from tests.fakes.salesforce import FakeSalesforce
from tests.receiver import start_receiver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"
# The closed network of CI: no background connections, nothing to update.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# axe-core from the npm registry, pinned and hash-checked like htmx (devstack/assets.py),
# kept in an ignored cache directory, never in the repository.
AXE_VERSION = "4.14.1"
AXE_INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="  # noqa: E501
AXE_FILE = ROOT / ".cache" / "axe-core" / "axe.min.js"

# Every screenshot is taken at this size, so the README's pictures line up.
VIEWPORT = ViewportSize(width=1280, height=800)
# FLEETHOOK_SCREENSHOTS=docs/screenshots (`make screenshots`) writes the README's
# pictures; otherwise they go to a temporary directory, so `make test` leaves the
# tracked PNGs alone.
SCREENSHOTS_VARIABLE = "FLEETHOOK_SCREENSHOTS"

ACCOUNT_NAME = "Acme Haulage"
EMAIL = "dispatch@acme.example.com"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(scope="package")
def chromium_executable() -> str:
    """Debian's Chromium. Missing, the browser tests are skipped on a laptop, and
    fail in CI (which installs it: .ci/run)."""
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium ({CHROMIUM_INSTALL})"
        )
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture(scope="package")
def axe_source() -> str:
    try:
        fetch_npm_file("axe-core", AXE_VERSION, AXE_INTEGRITY, "axe.min.js", AXE_FILE)
    except (OSError, SystemExit) as error:
        pytest.fail(f"could not fetch axe-core {AXE_VERSION}: {error}")
    return AXE_FILE.read_text()


@pytest.fixture(scope="package")
def live(
    chromium_executable: str, environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """The app on a real HTTP server, a real worker, a receiver and fake Fleetio,
    all on loopback, and an account (an admin and an API token) to use them."""
    receiver = start_receiver()
    fleetio = FleetioFake()
    fleetio.start()
    # Salesforce's production and sandbox login hosts, each requiring PKCE.
    salesforce = {host: FakeSalesforce(require_pkce=True) for host in ("production", "sandbox")}
    for fake in salesforce.values():
        fake.start()
    # Local receivers and fakes: the address rule (no loopback) is lifted, as in `make run`.
    settings = {
        "FLEETHOOK_ALLOW_LOCAL_NETWORK": "1",
        "FLEETHOOK_FLEETIO_BASE_URL": fleetio.base_url,
        "FLEETHOOK_SALESFORCE_LOGIN_URL": salesforce["production"].url,
        "FLEETHOOK_SALESFORCE_SANDBOX_LOGIN_URL": salesforce["sandbox"].url,
        "FLEETHOOK_SALESFORCE_CLIENT_ID": SALESFORCE_CLIENT_ID,
        "FLEETHOOK_SALESFORCE_CLIENT_SECRET": SALESFORCE_CLIENT_SECRET,
    }
    worker = RqWorker(
        environment["REDIS_URL"],
        [*worker_queues(NAMESPACE), *retry_queues(NAMESPACE)],
        f"{NAMESPACE}-e2e-worker-{os.getpid()}",
        {**os.environ, **settings},
        tmp_path_factory.mktemp("worker") / "worker.log",
    )
    app = create_app({**settings, "FLEETHOOK_ALLOW_LOCAL_NETWORK": True})
    server = LiveServer(app)
    # Salesforce's callback comes back to the portal's public address.
    app.config["FLEETHOOK_PUBLIC_URL"] = server.url
    api: Api | None = None
    try:
        worker.start()  # it builds its app while this process serves and the browser starts
        server.start()
        with app.app_context():
            user = make_user(ACCOUNT_NAME, EMAIL)
            api = Api(server.url, bearer(user, "browser tests"))
        worker.wait_until_listening()
        yield Live(
            server.url,
            api,
            server,
            worker,
            receiver,
            fleetio,
            salesforce,
            ACCOUNT_NAME,
            EMAIL,
            PASSWORD,
        )
    finally:
        if api is not None:
            api.close()
        worker.stop()
        server.stop()
        fleetio.stop()
        for fake in salesforce.values():
            fake.stop()
        receiver.shutdown()
        receiver.server_close()
        with app.app_context():
            empty_database()
            delete_namespace(redis_client(), NAMESPACE)
            db.engine.dispose()
            redis_client().close()


@pytest.fixture(scope="package")
def browser(chromium_executable: str) -> Iterator[Browser]:
    """One headless Chromium for the whole package (never a downloaded one)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_VARIABLE, "").strip()
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    directory = Path(chosen) if Path(chosen).is_absolute() else ROOT / chosen
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="package")
def checks(axe_source: str, live: Live, screenshot_dir: Path) -> BrowserChecks:
    return BrowserChecks(axe_source, live.server, screenshot_dir)


@pytest.fixture(autouse=True)
def _no_browser_findings_left(chromium_executable: str, checks: BrowserChecks) -> Iterator[None]:
    """Whatever the browser saw that the test did not assert on fails it here."""
    yield
    found = checks.take()
    if found:
        pytest.fail("the browser found defects:\n" + "\n".join(map(str, found)))


def open_context(browser: Browser, live: Live, checks: BrowserChecks) -> BrowserContext:
    context = browser.new_context(
        base_url=live.url,
        viewport=VIEWPORT,
        device_scale_factor=1,
        locale="en-US",
        timezone_id="UTC",
        color_scheme="light",
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    checks.watch(context)
    return context


@pytest.fixture
def fresh_context(browser: Browser, live: Live, checks: BrowserChecks) -> Iterator[BrowserContext]:
    """A browser context of its own, signed out."""
    context = open_context(browser, live, checks)
    yield context
    context.close()


@pytest.fixture(scope="package")
def signed_in(browser: Browser, live: Live, checks: BrowserChecks) -> Iterator[BrowserContext]:
    """The context the tests share, signed in once through the login form (posted
    by the context's own request client: its cookies are the pages' cookies)."""
    context = open_context(browser, live, checks)
    form = context.request.get("/login")
    response = context.request.post(
        "/login",
        form={
            "email": live.email,
            "password": live.password,
            "csrf_token": csrf_token(form.body()),
        },
    )
    assert response.ok and response.url == live.url + "/", f"login failed: {response.status}"
    yield context
    context.close()


@pytest.fixture
def page(signed_in: BrowserContext) -> Iterator[Page]:
    """A new tab of the signed-in context; closed, with any tab it opened, after the test."""
    opened = signed_in.new_page()
    yield opened
    for tab in signed_in.pages:
        tab.close()
