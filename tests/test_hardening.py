"""Findings of the security review, each held by what a user (or an attacker) sees:
landmark polygons with altitudes, /metrics for its readers only, URL errors that
name no resolved address, no demo admin in production, HSTS over HTTPS and no
caching of answers that carry a secret."""

from __future__ import annotations

import ipaddress
import json
import math

import pytest
from sqlalchemy import func, select

from accounts.models import Account, User
from core.config import ConfigError, load_config
from core.extensions import db
from fleet.landmark_index import shape_of
from fleet.models import Landmark
from tests.conftest import HTMX, bearer, make_user
from tests.test_fleet_portal import LANDMARKS, field_errors, row_cells
from tests.test_webhooks_portal import MANAGER, valid_form
from webhooks.models import Webhook

# A square around Chicago's Loop, each position with an altitude in metres.
SQUARE_Z = [
    [-87.64, 41.87, 0],
    [-87.62, 41.87, 12.5],
    [-87.62, 41.89, 0],
    [-87.64, 41.89, -3],
    [-87.64, 41.87, 0],
]
SQUARE = [position[:2] for position in SQUARE_Z]


def polygon(ring: list[list[object]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": [ring]}


def landmark_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Landmark)) or 0


# -- 2. landmark positions with an altitude, or worse -------------------------------------


def test_a_polygon_with_altitudes_is_kept_flat_and_the_landmarks_page_still_loads(admin, client):
    headers = bearer(admin)
    made = client.post(
        "/api/v1/landmarks", json={"name": "Loop", "polygon": polygon(SQUARE_Z)}, headers=headers
    )
    assert made.status_code == 201, made.json
    assert made.json["polygon"] == polygon(SQUARE)
    assert client.get(f"/api/v1/landmarks/{made.json['id']}", headers=headers).json[
        "polygon"
    ] == polygon(SQUARE)
    page = client.get(LANDMARKS)
    assert page.status_code == 200
    assert row_cells(page.data, f"landmark-{made.json['id']}")[1:3] == ["Loop", "Polygon"]
    assert client.get(LANDMARKS).status_code == 200  # and on every later load


def test_only_the_parsed_shape_is_stored_never_the_json_as_sent(admin, client):
    sent = {**polygon(SQUARE), "bbox": [0, 0, 1, 1], "properties": {"note": "<b>x</b>"}}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Loop", "polygon": sent}, headers=bearer(admin)
    )
    assert made.status_code == 201
    assert db.session.get(Landmark, made.json["id"]).shape == {"polygon": polygon(SQUARE)}


@pytest.mark.parametrize(
    ("position", "words"),
    [
        ([-87.62, 41.87, "0"], "altitude must be a number"),
        ([-87.62, 41.87, "high"], "altitude must be a number"),
        ([-87.62, 41.87, None], "altitude must be a number"),
        ([-87.62, 41.87, math.nan], "altitude must be a number"),
        ([-87.62], "A position is [longitude, latitude]"),
        ([-87.62, 41.87, 0, 0], "A position is [longitude, latitude]"),
        ([-87.62, "41.87"], "latitude must be a number"),
        (["-87.62", 41.87], "longitude must be a number"),
        ([-87.62, math.nan], "latitude must be a number"),
        ([math.inf, 41.87], "longitude must be a number"),
        ([-87.62, 91], "latitude must be between -90 and 90"),
        ({"lon": -87.62, "lat": 41.87}, "A position is [longitude, latitude]"),
    ],
)
def test_a_bad_position_is_a_422_on_the_polygon_field_and_saves_nothing(
    admin, client, position, words
):
    ring = [SQUARE[0], position, SQUARE[2], SQUARE[3], SQUARE[0]]
    response = client.post(
        "/api/v1/landmarks",
        # allow_nan: JSON has no NaN, but Python's parser (and so Flask's) reads it.
        data=json.dumps({"name": "Loop", "polygon": polygon(ring)}, allow_nan=True),
        content_type="application/json",
        headers=bearer(admin),
    )
    assert response.status_code == 422, response.data
    assert set(response.json["errors"]) == {"polygon"}
    assert words in response.json["errors"]["polygon"][0]
    assert landmark_count() == 0
    assert client.get(LANDMARKS).status_code == 200


def test_a_landmark_changed_to_a_polygon_with_altitudes_is_kept_flat(admin, client):
    headers = bearer(admin)
    circle = {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Loop", "circle": circle}, headers=headers
    ).json
    changed = client.patch(
        f"/api/v1/landmarks/{made['id']}", json={"polygon": polygon(SQUARE_Z)}, headers=headers
    )
    assert changed.status_code == 200 and changed.json["polygon"] == polygon(SQUARE)
    assert "circle" not in changed.json
    assert client.get(LANDMARKS).status_code == 200


def test_the_portal_form_takes_altitudes_and_names_the_polygon_field_for_text(admin, auth, client):
    form = {"name": "Loop", "kind": "polygon", "polygon": json.dumps(polygon(SQUARE_Z))}
    assert auth.post("/fleet/landmarks/new", form, page=LANDMARKS, htmx=True).status_code == 204
    (landmark,) = db.session.scalars(select(Landmark))
    assert landmark.shape == {"polygon": polygon(SQUARE)}
    assert client.get(LANDMARKS).status_code == 200

    text_altitude = [SQUARE[0], [-87.62, 41.87, "0"], *SQUARE[2:]]
    form = {"name": "Bad", "kind": "polygon", "polygon": json.dumps(polygon(text_altitude))}
    response = auth.post("/fleet/landmarks/new", form, page=LANDMARKS, htmx=True)
    assert response.status_code == 422
    assert "altitude must be a number" in field_errors(response.data, "polygon")
    assert landmark_count() == 1


def test_a_polygon_stored_with_altitudes_before_the_fix_still_shows(admin, client):
    """Rows saved as sent (with their altitudes) by earlier versions."""
    landmark = Landmark(
        account_id=admin.account_id, name="Old", shape={"polygon": polygon(SQUARE_Z)}
    )
    db.session.add(landmark)
    db.session.commit()
    assert shape_of(landmark.shape).contains(41.88, -87.63)
    page = client.get(LANDMARKS)
    assert page.status_code == 200 and row_cells(page.data, f"landmark-{landmark.id}")[1] == "Old"
    assert client.get(f"/fleet/landmarks/{landmark.id}/edit", headers=HTMX).status_code == 200


# -- 3. /metrics: its token, or an allowed network (loopback by default) ------------------


def metrics(client, address: str, **headers: str):
    return client.get("/metrics", environ_base={"REMOTE_ADDR": address}, headers=headers)


def test_by_default_only_this_machine_reads_metrics(client):
    assert metrics(client, "127.0.0.1").status_code == 200
    assert metrics(client, "::1").status_code == 200
    assert "fleethook_drains_total" in metrics(client, "127.0.0.1").text
    for outsider in ("10.1.2.3", "203.0.113.9", "2001:db8::1"):
        response = metrics(client, outsider)
        assert response.status_code == 403
        assert "fleethook" not in response.text
    # A reverse proxy on this machine passing on someone else's request.
    assert metrics(client, "127.0.0.1", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_with_a_token_any_address_reads_metrics_with_it(make_app):
    client = make_app(FLEETHOOK_METRICS_TOKEN="metrics-token-123").test_client()
    refused = metrics(client, "203.0.113.9")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert metrics(client, "203.0.113.9", Authorization="Bearer wrong").status_code == 401
    assert metrics(client, "203.0.113.9", Authorization="metrics-token-123").status_code == 401
    allowed = metrics(client, "203.0.113.9", Authorization="Bearer metrics-token-123")
    assert allowed.status_code == 200 and "fleethook_drains_total" in allowed.text
    assert metrics(client, "127.0.0.1").status_code == 200


def test_an_allowed_network_replaces_loopback(make_app):
    networks = [ipaddress.ip_network("10.20.0.0/16")]
    client = make_app(FLEETHOOK_METRICS_NETWORKS=networks).test_client()
    assert metrics(client, "10.20.5.6").status_code == 200
    assert metrics(client, "10.21.5.6").status_code == 403
    assert metrics(client, "127.0.0.1").status_code == 403


def test_behind_trusted_proxies_the_forwarded_client_address_counts(make_app):
    client = make_app(FLEETHOOK_TRUSTED_PROXIES=1).test_client()
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert metrics(client, "127.0.0.1", **forwarded).status_code == 403
    assert metrics(client, "127.0.0.1", **{"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_metrics_settings_are_read_and_checked(tmp_path):
    base = {"FLEETHOOK_ENV": "development"}
    with pytest.warns(UserWarning):
        config = load_config(
            {
                **base,
                "FLEETHOOK_METRICS_TOKEN": " t0k ",
                "FLEETHOOK_METRICS_NETWORKS": "10.0.0.0/8",
            },
            str(tmp_path),
        )
    assert config["FLEETHOOK_METRICS_TOKEN"] == "t0k"
    assert config["FLEETHOOK_METRICS_NETWORKS"] == [ipaddress.ip_network("10.0.0.0/8")]
    with pytest.warns(UserWarning):
        default = load_config(base, str(tmp_path))["FLEETHOOK_METRICS_NETWORKS"]
    assert [str(n) for n in default] == ["127.0.0.0/8", "::1/128"]
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="FLEETHOOK_METRICS_NETWORKS"):
        load_config({**base, "FLEETHOOK_METRICS_NETWORKS": "the office"}, str(tmp_path))


# -- 4. a refused URL never says what a name resolves to ----------------------------------

INTERNAL = "https://internal.example.com/hook"  # tests/conftest.py DNS: 10.0.0.7


def test_the_api_refuses_an_internal_name_without_telling_its_address(client):
    headers = bearer(make_user())
    body = {"event_type": "location", "name": "Probe", "url": INTERNAL}
    response = client.post("/api/v1/webhooks", json=body, headers=headers)
    assert response.status_code == 422
    assert "resolves to a private, local or reserved address" in response.json["errors"]["url"][0]
    assert b"10.0.0.7" not in response.data
    made = client.post(
        "/api/v1/webhooks", json={**body, "url": "https://hooks.example.com/h"}, headers=headers
    )
    changed = client.patch(
        f"/api/v1/webhooks/{made.json['id']}", json={"url": INTERNAL}, headers=headers
    )
    assert changed.status_code == 422 and b"10.0.0.7" not in changed.data
    assert db.session.get(Webhook, made.json["id"]).url == "https://hooks.example.com/h"


def test_the_portal_refuses_an_internal_name_without_telling_its_address(admin, auth):
    response = auth.post("/webhooks/new", valid_form("location", url=INTERNAL), page=MANAGER)
    assert response.status_code == 422
    assert "resolves to a private" in field_errors(response.data, "url")
    assert b"10.0.0.7" not in response.data
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 0


# -- 5. no demo admin in production -------------------------------------------------------


def test_demo_seed_is_refused_in_production_and_creates_nothing(make_app):
    app = make_app(FLEETHOOK_ENV="production")
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code != 0
    assert "refused in production" in result.output
    assert "fleethook-demo" not in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert db.session.scalar(select(func.count()).select_from(Account)) == 0


def test_demo_seed_still_works_outside_production(app):
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "Demo login:  demo@fleethook.example" in result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


# -- 6. HSTS over HTTPS; answers with a secret are never cached --------------------------

HSTS = "Strict-Transport-Security"


def test_hsts_is_sent_over_https_only(client):
    assert client.get("/login", base_url="https://localhost").headers[HSTS] == "max-age=31536000"
    assert HSTS not in client.get("/login").headers
    # Without trusted proxies a client cannot claim https for itself.
    assert HSTS not in client.get("/login", headers={"X-Forwarded-Proto": "https"}).headers


def test_hsts_follows_the_scheme_a_trusted_proxy_reports(make_app):
    client = make_app(FLEETHOOK_TRUSTED_PROXIES=1).test_client()
    assert HSTS in client.get("/login", headers={"X-Forwarded-Proto": "https"}).headers
    assert HSTS not in client.get("/login", headers={"X-Forwarded-Proto": "http"}).headers


def test_api_answers_that_carry_a_secret_are_never_cached(app, client):
    headers = bearer(make_user())
    body = {"event_type": "location", "name": "Dispatch", "url": "https://hooks.example.com/h"}
    made = client.post("/api/v1/webhooks", json=body, headers=headers)
    assert made.status_code == 201 and made.json["secret"]
    rotated = client.post(f"/api/v1/webhooks/{made.json['id']}/rotate-secret", headers=headers)
    token = client.post("/api/v1/tokens", json={"name": "ci"}, headers=headers)
    assert token.status_code == 201
    for response in (made, rotated, token):
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/webhooks", headers=headers).headers["Cache-Control"] == "no-store"


def test_portal_answers_that_show_a_secret_are_never_cached_but_static_files_may_be(
    admin, auth, client
):
    made = auth.post("/webhooks/new", valid_form("location"), page=MANAGER, htmx=True)
    assert made.status_code == 200 and "whsec_" in made.text
    assert made.headers["Cache-Control"] == "no-store"
    token = auth.post("/account/tokens", {"name": "ci", "scope": "admin"}, page="/account/tokens")
    assert token.headers["Cache-Control"] == "no-store"
    static = client.get("/static/fleethook.css")
    assert "no-store" not in static.headers.get("Cache-Control", "")
    static.close()
