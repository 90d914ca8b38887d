"""The portal shell: pages, the Account menu, the security headers and the health check."""

from __future__ import annotations

import re

import pytest

from core.extensions import db
from tests.conftest import AuthActions, make_user

CSP = "Content-Security-Policy"


@pytest.fixture
def logged_in(app, auth):
    make_user(account_name="Acme Haulage")
    auth.login("admin@acme.example.com")


PAGES = ["/", "/account/tokens", "/account/users", "/webhooks/", "/login", "/no-such-page"]


@pytest.mark.usefixtures("logged_in")
@pytest.mark.parametrize("path", PAGES)
def test_every_html_page_has_a_strict_csp_and_no_inline_code(client, path):
    response = client.get(path)
    assert response.mimetype == "text/html"
    policy = response.headers[CSP]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.data.decode()
    assert " style=" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


@pytest.mark.usefixtures("logged_in")
def test_the_account_menu_opens_the_webhook_manager_in_a_new_tab(client):
    page = client.get("/").data.decode()
    link = re.search(r'<a href="/webhooks/"[^>]*>Manage Webhooks</a>', page).group(0)
    assert 'target="_blank"' in link and 'rel="noopener"' in link
    manager = client.get("/webhooks/").data.decode()
    for heading in ["Available Webhooks", "Webhooks", "3rd Party Integrations"]:
        assert f">{heading}</h2>" in manager
    assert "No webhooks yet." in manager


@pytest.mark.usefixtures("logged_in")
def test_htmx_is_served_from_our_own_static_route(client):
    page = client.get("/").data.decode()
    assert '<script src="/static/vendor/htmx.min.js" defer></script>' in page
    assert "https://" not in re.sub(r'href="https://[^"]*"', "", page)  # no CDN anywhere
    with client.get("/static/vendor/htmx.min.js") as script:
        assert script.status_code == 200
        assert b'version:"2.0.11"' in script.data.replace(b" ", b"")
    assert '"includeIndicatorStyles": false' in page and '"allowEval": false' in page


NOT_NUMBERS = ["\u00b2", "\u0663", "-1", "1.5", "9" * 20, "9" * 5000, "1\x00"]


@pytest.mark.usefixtures("logged_in")
@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/example?event_type=speed&threshold_mph={}",
        "/webhooks/example?event_type=speed&webhook_id={}",
        "/account/audit?cursor={}",
    ],
)
def test_a_query_number_that_is_no_number_is_ignored_not_a_500(client, path, value):
    # "²" and "٣" pass str.isdigit(); 20 nines overflow a PostgreSQL INTEGER; 5,000
    # digits pass neither int() (its digit limit) nor any column.
    response = client.get(path.format(value))
    assert response.status_code == 200, response.data[:300]


@pytest.mark.usefixtures("logged_in")
@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_signing_in_to_salesforce_again_for_no_such_integration_starts_afresh(client, value):
    response = client.get(f"/integrations/servicemax/connect?integration={value}")
    assert response.status_code == 302


def test_unknown_page_is_a_404_page(app, client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"There is nothing here." in response.data


def test_healthz_is_200_when_database_and_redis_answer(app, client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_is_200_degraded_when_only_redis_does_not_answer(make_app):
    # The process still takes telemetry without Redis: a load balancer must keep it.
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "degraded"
    assert response.json["redis"].startswith("unavailable")
    assert response.json["database"] == "ok"


def test_healthz_is_503_when_the_database_does_not_answer(make_app, tmp_path):
    missing = tmp_path / "no-such-dir" / "fleethook.db"
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{missing}")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"].startswith("unavailable")


def test_pages_answer_503_not_a_traceback_when_the_database_is_down(make_app, tmp_path):
    missing = tmp_path / "no-such-dir" / "fleethook.db"
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{missing}")
    client = app.test_client()
    response = AuthActions(client).login("admin@acme.example.com")
    assert response.status_code == 503
    assert b"cannot reach its database" in response.data


def test_a_signed_in_page_answers_503_when_the_database_goes_away(make_app, tmp_path):
    # Found by the chaos run: the 503 page loaded the signed-in user for its menu —
    # from the database that had just failed — and the second error became a bare 500.
    (tmp_path / "data").mkdir()
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'data' / 'fleethook.db'}")
    with app.app_context():
        db.create_all()
        make_user()
    client = app.test_client()
    AuthActions(client).login("admin@acme.example.com")
    assert client.get("/webhooks/").status_code == 200
    with app.app_context():
        db.engine.dispose()
    (tmp_path / "data").rename(tmp_path / "gone")
    response = client.get("/webhooks/")
    assert response.status_code == 503
    assert b"cannot reach its database" in response.data
    (tmp_path / "gone").rename(tmp_path / "data")
    assert client.get("/webhooks/").status_code == 200  # still signed in


def test_an_unexpected_error_is_a_500_page_or_problem_and_is_logged(make_app, caplog):
    app = make_app(TESTING=False)

    def broken() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/broken", view_func=broken)
    app.add_url_rule("/api/v1/broken", endpoint="api_broken", view_func=broken)
    client = app.test_client()
    page = client.get("/broken")
    assert page.status_code == 500
    assert b"Something went wrong on our side." in page.data
    assert b"boom" not in page.data and b"Traceback" not in page.data
    api = client.get("/api/v1/broken")
    assert api.status_code == 500
    assert api.mimetype == "application/problem+json"
    assert "unhandled error on GET /broken" in caplog.text
