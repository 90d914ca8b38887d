"""A webhook's delivery settings (ordering, max_in_flight, rate_limit, latest_wins)
through the API and the portal, which share one set of rules; the engine's state
(in flight, window, throttled) in the JSON, the grid and the webhook's page; custom
header values HTTP cannot carry refused at save; an edit that clears "needs
attention"; and the superseded message status."""

from __future__ import annotations

import html
import re

import pytest

from accounts.audit import AuditEvent
from core.extensions import db, queue
from core.times import utcnow
from outbox.models import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_RANGE,
    MessageStatus,
    Ordering,
    OutboxMessage,
    TargetStatus,
)
from outbox.queues import DELIVERIES, drain_job_id
from tests.conftest import HTMX, bearer, make_user
from tests.test_webhooks_portal import MANAGER, WEBHOOK_GRID, field_errors, new_webhook, valid_form
from webhooks.forms import ORDERING_CHOICES
from webhooks.lifecycle import send_demo
from webhooks.models import Webhook
from webhooks.schemas import LATEST_WINS_EVENT_TYPES, MAX_RATE_LIMIT

NEW = {"event_type": "location", "name": "Positions", "url": "https://hooks.example.com/in"}
LOW, HIGH = MAX_IN_FLIGHT_RANGE
SETTINGS = ("ordering", "max_in_flight", "send_window", "rate_limit", "latest_wins")


@pytest.fixture
def admin_headers(app):
    return bearer(make_user())


def create(client, headers, **fields):
    return client.post("/api/v1/webhooks", json={**NEW, **fields}, headers=headers)


def stored(webhook_id: int) -> tuple:
    webhook = db.session.get(Webhook, webhook_id)
    return tuple(getattr(webhook, name) for name in SETTINGS)


# --- API ----------------------------------------------------------------------------


def test_a_new_webhook_orders_by_vehicle_with_the_default_window(client, admin_headers):
    body = create(client, admin_headers).json
    assert (body["ordering"], body["max_in_flight"], body["rate_limit"], body["latest_wins"]) == (
        Ordering.VEHICLE.value,
        DEFAULT_MAX_IN_FLIGHT,
        None,
        False,
    )
    assert (body["in_flight"], body["window"], body["throttled_until"]) == (
        0,
        DEFAULT_MAX_IN_FLIGHT,
        None,
    )


def test_create_with_every_setting(client, admin_headers):
    response = create(
        client, admin_headers, ordering="webhook", max_in_flight=4, rate_limit=2.5, latest_wins=True
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["ordering"], body["max_in_flight"], body["rate_limit"], body["latest_wins"]) == (
        "webhook",
        4,
        2.5,
        True,
    )
    # A new webhook starts with all of its window.
    assert body["window"] == 4
    assert stored(body["id"]) == ("webhook", 4, 4, 2.5, True)
    assert client.get(f"/api/v1/webhooks/{body['id']}", headers=admin_headers).json == {
        k: v for k, v in body.items() if k != "secret"
    }


def test_patch_changes_each_setting_and_the_window_never_exceeds_the_maximum(client, admin_headers):
    created = create(client, admin_headers, rate_limit=10).json
    path = f"/api/v1/webhooks/{created['id']}"
    changed = client.patch(
        path,
        json={"ordering": "none", "max_in_flight": 6, "rate_limit": None, "latest_wins": True},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.json
    assert stored(created["id"]) == ("none", 6, 6, None, True)
    assert changed.json["window"] == 6 and changed.json["rate_limit"] is None
    # A raised maximum is grown into by successes (the engine's), not at once.
    raised = client.patch(path, json={"max_in_flight": HIGH}, headers=admin_headers).json
    assert (raised["max_in_flight"], raised["window"]) == (HIGH, 6)
    assert (
        client.patch(path, json={"rate_limit": 1}, headers=admin_headers).json["rate_limit"] == 1.0
    )


BAD_SETTINGS = [
    ({"ordering": "sideways"}, "ordering", '"vehicle", "webhook", "none"'),
    ({"ordering": None}, "ordering", '"vehicle", "webhook", "none"'),
    ({"ordering": 1}, "ordering", '"vehicle", "webhook", "none"'),
    ({"max_in_flight": "x"}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": "8"}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": LOW - 1}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": HIGH + 1}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": True}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": 4.5}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"max_in_flight": None}, "max_in_flight", f"from {LOW} to {HIGH}"),
    ({"rate_limit": 0}, "rate_limit", f"above 0 and at most {MAX_RATE_LIMIT}"),
    ({"rate_limit": -2}, "rate_limit", f"above 0 and at most {MAX_RATE_LIMIT}"),
    ({"rate_limit": MAX_RATE_LIMIT + 0.5}, "rate_limit", f"at most {MAX_RATE_LIMIT}"),
    ({"rate_limit": "5"}, "rate_limit", "or empty (null) for no limit"),
    ({"rate_limit": True}, "rate_limit", "a number"),
    ({"latest_wins": "yes"}, "latest_wins", "true or false."),
    ({"latest_wins": 1}, "latest_wins", "true or false."),
    ({"latest_wins": None}, "latest_wins", "true or false."),
    ({"in_flight": 3}, "in_flight", "read-only"),
    ({"window": 3}, "window", "read-only"),
    ({"throttled_until": None}, "throttled_until", "read-only"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_SETTINGS)
def test_a_bad_setting_is_422_on_create_and_saves_nothing(
    client, admin_headers, body, field, message
):
    response = create(client, admin_headers, **body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.json["errors"]) == {field}
    assert message in " ".join(response.json["errors"][field])
    assert db.session.query(Webhook).count() == 0


@pytest.mark.parametrize(("body", "field", "message"), BAD_SETTINGS)
def test_a_bad_setting_is_422_on_patch_and_changes_nothing(
    client, admin_headers, body, field, message
):
    created = create(client, admin_headers, ordering="webhook", max_in_flight=8, rate_limit=3)
    webhook_id = created.json["id"]
    before = stored(webhook_id)
    response = client.patch(
        f"/api/v1/webhooks/{webhook_id}", json={"name": "Changed", **body}, headers=admin_headers
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) == {field}
    assert stored(webhook_id) == before
    assert db.session.get(Webhook, webhook_id).name == "Positions"


def test_nan_and_infinity_are_no_rate_limit(client, admin_headers):
    for text in ("NaN", "Infinity"):
        response = client.post(
            "/api/v1/webhooks",
            data='{"event_type": "location", "name": "P", "url": "https://hooks.example.com/in",'
            f' "rate_limit": {text}}}',
            headers={**admin_headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, text
        assert set(response.json["errors"]) == {"rate_limit"}
    assert db.session.query(Webhook).count() == 0


@pytest.mark.parametrize("event_type", LATEST_WINS_EVENT_TYPES)
def test_latest_wins_is_for_positions(client, admin_headers, event_type):
    response = create(client, admin_headers, event_type=event_type, latest_wins=True)
    assert response.status_code == 201 and response.json["latest_wins"] is True


def test_latest_wins_is_refused_on_dvir_naming_the_types_that_take_it(client, admin_headers):
    response = create(client, admin_headers, event_type="dvir", latest_wins=True)
    assert response.status_code == 422
    (message,) = response.json["errors"]["latest_wins"]
    assert all(key in message for key in LATEST_WINS_EVENT_TYPES)
    assert db.session.query(Webhook).count() == 0
    # False is every webhook's default, and fine to send.
    dvir = create(client, admin_headers, event_type="dvir", latest_wins=False)
    assert dvir.status_code == 201
    patched = client.patch(
        f"/api/v1/webhooks/{dvir.json['id']}", json={"latest_wins": True}, headers=admin_headers
    )
    assert patched.status_code == 422 and set(patched.json["errors"]) == {"latest_wins"}
    assert db.session.get(Webhook, dvir.json["id"]).latest_wins is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bearer tok€n", "Use plain ASCII text; € cannot be sent in an HTTP header."),
        ("Bearer ✓", "Use plain ASCII text; ✓ cannot be sent in an HTTP header."),
        ("Bearer a\tb", "No line breaks or control characters."),
        ("Bearer a\x85b", "No line breaks or control characters."),
        ("Bearer a\x7fb", "No line breaks or control characters."),
    ],
)
def test_a_header_value_http_cannot_carry_is_refused_at_save(client, admin_headers, value, message):
    header = {"name": "Authorization", "value": value}
    response = create(client, admin_headers, custom_header=header)
    assert response.status_code == 422
    assert response.json["errors"] == {"custom_header.value": [message]}
    assert db.session.query(Webhook).count() == 0
    created = create(client, admin_headers).json
    patched = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"custom_header": header}, headers=admin_headers
    )
    assert patched.status_code == 422
    assert db.session.get(Webhook, created["id"]).custom_header_name is None


def test_latin_1_header_values_are_what_http_carries(client, admin_headers):
    header = {"name": "X-Depot", "value": "Zürich café"}
    assert create(client, admin_headers, custom_header=header).status_code == 201


def needing_attention(webhook_id: int, reason: str = "Needs attention: a custom header") -> None:
    """As the engine leaves a webhook whose setting could not be sent."""
    webhook = db.session.get(Webhook, webhook_id)
    webhook.status, webhook.status_reason = TargetStatus.NEEDS_ATTENTION.value, reason
    webhook.last_failure_at = utcnow()
    db.session.commit()


def test_an_edit_puts_a_webhook_that_needs_attention_back_to_work(client, admin_headers):
    created = create(client, admin_headers).json
    needing_attention(created["id"])
    assert drain_job_id(created["id"]) not in queue(DELIVERIES).job_ids
    response = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={"custom_header": {"name": "Authorization", "value": "Bearer token"}},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert (response.json["status"], response.json["status_reason"]) == ("active", None)
    assert db.session.get(Webhook, created["id"]).last_failure_at is None
    # Its backlog goes out: the drain is nudged, on the healthy queue.
    assert drain_job_id(created["id"]) in queue(DELIVERIES).job_ids
    event = db.session.query(AuditEvent).filter_by(action="webhook.updated").one()
    assert event.details["status"] == "active"


@pytest.mark.parametrize("status", [TargetStatus.PAUSED, TargetStatus.DISABLED])
def test_an_edit_leaves_paused_and_disabled_webhooks_as_they_are(client, admin_headers, status):
    created = create(client, admin_headers).json
    webhook = db.session.get(Webhook, created["id"])
    webhook.status, webhook.status_reason = status.value, "Stopped"
    db.session.commit()
    response = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"name": "Renamed"}, headers=admin_headers
    )
    assert (response.json["status"], response.json["status_reason"]) == (status.value, "Stopped")


def test_a_bad_edit_leaves_needs_attention_as_it_is(client, admin_headers):
    created = create(client, admin_headers).json
    needing_attention(created["id"])
    response = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"max_in_flight": 0}, headers=admin_headers
    )
    assert response.status_code == 422
    assert db.session.get(Webhook, created["id"]).status == "needs_attention"


def test_a_stored_header_http_cannot_carry_must_be_replaced_to_save(client, admin_headers):
    created = create(client, admin_headers).json
    webhook = db.session.get(Webhook, created["id"])
    # Saved before such values were refused; the engine stopped on it.
    webhook.custom_header_name, webhook.custom_header_value = "Authorization", "Bearer tok€n"
    db.session.commit()
    needing_attention(created["id"])
    path = f"/api/v1/webhooks/{created['id']}"
    renamed = client.patch(path, json={"name": "Renamed"}, headers=admin_headers)
    assert renamed.status_code == 422
    assert "€ cannot be sent" in renamed.json["errors"]["custom_header.value"][0]
    assert db.session.get(Webhook, created["id"]).status == "needs_attention"
    removed = client.patch(path, json={"custom_header": None}, headers=admin_headers)
    assert removed.status_code == 200 and removed.json["status"] == "active"


def test_the_engines_state_is_in_the_json(client, admin_headers):
    created = create(client, admin_headers, max_in_flight=12).json
    webhook = db.session.get(Webhook, created["id"])
    webhook.in_flight, webhook.send_window = 3, 6
    webhook.throttled_until = utcnow().replace(microsecond=0)
    db.session.commit()
    body = client.get(f"/api/v1/webhooks/{created['id']}", headers=admin_headers).json
    assert (body["in_flight"], body["window"], body["max_in_flight"]) == (3, 6, 12)
    assert body["throttled_until"] == webhook.throttled_until.isoformat()


def superseded_message(webhook: Webhook) -> OutboxMessage:
    message = send_demo(webhook)
    message.status = MessageStatus.SUPERSEDED.value
    db.session.commit()
    return message


def test_messages_can_be_listed_by_the_superseded_status(client, admin_headers):
    created = create(client, admin_headers, latest_wins=True).json
    webhook = db.session.get(Webhook, created["id"])
    send_demo(webhook)
    message = superseded_message(webhook)
    path = f"/api/v1/webhooks/{created['id']}/messages"
    listed = client.get(f"{path}?status=superseded", headers=admin_headers).json["messages"]
    assert [(m["id"], m["status"]) for m in listed] == [(message.message_id, "superseded")]
    bad = client.get(f"{path}?status=dropped", headers=admin_headers)
    assert bad.status_code == 422 and "superseded" in bad.json["errors"]["status"][0]


def test_the_openapi_document_describes_the_settings_from_the_constants(client):
    document = client.get("/api/v1/openapi.json").json
    schemas = document["components"]["schemas"]
    for name in ("Webhook", "WebhookCreate", "WebhookChange"):
        fields = schemas[name]["properties"]
        assert fields["ordering"]["enum"] == [o.value for o in Ordering], name
        assert (fields["max_in_flight"]["minimum"], fields["max_in_flight"]["maximum"]) == (
            LOW,
            HIGH,
        )
        if name != "Webhook":  # a request's default; an answer shows the value
            assert fields["max_in_flight"]["default"] == DEFAULT_MAX_IN_FLIGHT
        number, null = fields["rate_limit"]["anyOf"]
        assert (number["type"], null["type"]) == ("number", "null")
        assert (number["exclusiveMinimum"], number["maximum"]) == (0, MAX_RATE_LIMIT)
        assert fields["latest_wins"]["type"] == "boolean"
        assert all(key in fields["latest_wins"]["description"] for key in LATEST_WINS_EVENT_TYPES)
    webhook = schemas["Webhook"]["properties"]
    for name in ("in_flight", "window", "throttled_until"):
        assert webhook[name]["readOnly"] is True, name
        assert name not in schemas["WebhookCreate"]["properties"], name
        assert name not in schemas["WebhookChange"]["properties"], name
    assert "needs_attention" in webhook["status"]["enum"]
    statuses = [s.value for s in MessageStatus]
    assert "superseded" in statuses
    assert schemas["Message"]["properties"]["status"]["enum"] == statuses
    parameters = document["paths"]["/api/v1/webhooks/{webhook_id}/messages"]["get"]["parameters"]
    (status,) = [p for p in parameters if p["name"] == "status"]
    assert status["schema"]["enum"] == statuses


# --- portal -------------------------------------------------------------------------


def text_of(page: bytes) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.decode())).split())


def test_the_dialog_offers_each_setting_with_what_it_costs(admin, client):
    dialog = client.get("/webhooks/new?event_type=location", headers=HTMX).data
    words = text_of(dialog)
    for choice in ORDERING_CHOICES.values():
        assert choice in words
    assert "one request at a time, at most one message per round trip of your receiver" in words
    assert f"Requests at once ({LOW}–{HIGH})" in words
    assert "More means more requests at once to your receiver." in words
    assert "Messages wait rather than exceed it" in words
    assert "Older positions of a vehicle are dropped (superseded) when a backlog forms." in words
    page = dialog.decode()
    assert 'name="ordering" type="radio" value="vehicle"' in page
    assert re.search(r'<input checked id="ordering-0"', page)
    assert f'name="max_in_flight" type="text" value="{DEFAULT_MAX_IN_FLIGHT}"' in page
    assert 'name="latest_wins"' in page
    # Only positions may be dropped: other types never offer it.
    assert 'name="latest_wins"' not in client.get("/webhooks/new?event_type=dvir").data.decode()


def test_the_form_saves_every_setting(admin, auth):
    form = valid_form(
        "location", ordering="webhook", max_in_flight="4", rate_limit="2.5", latest_wins="y"
    )
    response = auth.post("/webhooks/new", form, page=MANAGER, htmx=True)
    assert response.status_code == 200
    (webhook,) = db.session.query(Webhook).all()
    assert stored(webhook.id) == ("webhook", 4, 4, 2.5, True)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"ordering": "sideways"}, "ordering", '"vehicle", "webhook", "none"'),
        ({"max_in_flight": "x"}, "max_in_flight", f"from {LOW} to {HIGH}"),
        ({"max_in_flight": str(LOW - 1)}, "max_in_flight", f"from {LOW} to {HIGH}"),
        ({"max_in_flight": str(HIGH + 1)}, "max_in_flight", f"from {LOW} to {HIGH}"),
        ({"max_in_flight": "2.5"}, "max_in_flight", f"from {LOW} to {HIGH}"),
        ({"max_in_flight": ""}, "max_in_flight", f"from {LOW} to {HIGH}"),
        ({"rate_limit": "x"}, "rate_limit", f"above 0 and at most {MAX_RATE_LIMIT}"),
        ({"rate_limit": "0"}, "rate_limit", f"above 0 and at most {MAX_RATE_LIMIT}"),
        ({"rate_limit": "nan"}, "rate_limit", f"above 0 and at most {MAX_RATE_LIMIT}"),
        ({"rate_limit": str(MAX_RATE_LIMIT + 1)}, "rate_limit", f"at most {MAX_RATE_LIMIT}"),
        (
            {"custom_header_name": "Authorization", "custom_header_value": "Bearer tok€n"},
            "custom_header_value",
            "Use plain ASCII text; € cannot be sent in an HTTP header.",
        ),
    ],
)
def test_a_bad_setting_is_shown_next_to_its_field_and_nothing_is_saved(
    admin, auth, fields, field, message
):
    response = auth.post("/webhooks/new", valid_form("location", **fields), MANAGER, htmx=True)
    assert response.status_code == 422
    assert message in field_errors(response.data, field)
    assert db.session.query(Webhook).count() == 0


def test_latest_wins_posted_for_dvir_is_shown_with_its_error(admin, auth):
    response = auth.post("/webhooks/new", valid_form("dvir", latest_wins="y"), MANAGER, htmx=True)
    assert response.status_code == 422
    errors = field_errors(response.data, "latest_wins")
    assert all(key in errors for key in LATEST_WINS_EVENT_TYPES)
    assert db.session.query(Webhook).count() == 0
    assert auth.post("/webhooks/new", valid_form("dvir"), MANAGER).status_code == 200
    assert db.session.query(Webhook).one().latest_wins is False


def edit_form(webhook: Webhook, **fields: str) -> dict[str, str]:
    return {
        "url": webhook.url,
        "name": webhook.name,
        "content_type": webhook.content_type,
        "ordering": webhook.ordering,
        "max_in_flight": str(webhook.max_in_flight),
        "rate_limit": "",
        **fields,
    }


def test_the_edit_dialog_shows_the_settings_and_saves_changes(admin, client, auth):
    webhook = new_webhook(
        admin.account_id, event_type="location", ordering="none", max_in_flight=5, rate_limit=2.0
    )
    dialog = client.get(f"/webhooks/{webhook.id}/edit", headers=HTMX).data.decode()
    assert re.search(
        r'<input checked id="ordering-2" name="ordering" type="radio" value="none"', dialog
    )
    assert 'name="max_in_flight" type="text" value="5"' in dialog
    assert 'name="rate_limit" type="text" value="2"' in dialog
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, ordering="webhook", max_in_flight="3", rate_limit="", latest_wins="y"),
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 204
    assert stored(webhook.id) == ("webhook", 3, 3, None, True)
    # An unticked box is not posted: latest wins goes off.
    auth.post(f"/webhooks/{webhook.id}/edit", edit_form(webhook), page=MANAGER)
    assert stored(webhook.id)[-1] is False


def test_a_bad_edit_shows_the_error_and_changes_nothing(admin, auth):
    webhook = new_webhook(admin.account_id, max_in_flight=5)
    before = stored(webhook.id)
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, threshold_mph="70", max_in_flight="65", name="Renamed"),
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 422
    assert f"from {LOW} to {HIGH}" in field_errors(response.data, "max_in_flight")
    assert stored(webhook.id) == before and db.session.get(Webhook, webhook.id).name == "Dispatch"


def test_saving_the_edit_dialog_clears_needs_attention(admin, auth):
    webhook = new_webhook(admin.account_id)
    needing_attention(webhook.id)
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, threshold_mph="70"),
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 204
    db.session.refresh(webhook)
    assert (webhook.status, webhook.status_reason) == ("active", None)
    assert drain_job_id(webhook.id) in queue(DELIVERIES).job_ids


def test_the_grid_shows_requests_in_flight_out_of_the_window(admin, client):
    webhook = new_webhook(admin.account_id, max_in_flight=16)
    webhook.in_flight, webhook.send_window = 3, 8
    db.session.commit()
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    row = re.search(rf'<tr id="webhook-{webhook.id}">(.*?)</tr>', grid, re.S).group(1)
    cell = re.search(r'<td class="num">(.*?)</td>', row, re.S).group(1)
    assert re.search(
        r'<span class="in-flight" title="[^"]*at most 16[^"]*">3 / 8 in flight</span>', cell
    )
    assert " style=" not in grid and "<script" not in grid


def test_the_webhook_page_shows_its_delivery_settings_and_state(admin, client):
    webhook = new_webhook(
        admin.account_id,
        event_type="location",
        ordering="webhook",
        rate_limit=2.5,
        latest_wins=True,
    )
    webhook.in_flight, webhook.send_window = 1, 4
    webhook.throttled_until = utcnow().replace(year=utcnow().year + 1)
    db.session.commit()
    page = text_of(client.get(f"/webhooks/{webhook.id}").data)
    assert f"Ordering {ORDERING_CHOICES[Ordering.WEBHOOK]}" in page
    assert f"Requests at once 1 / 4 in flight · at most {DEFAULT_MAX_IN_FLIGHT}" in page
    assert "Rate limit 2.5 messages per second" in page
    assert "Latest position wins on: older positions" in page
    assert "The receiver asked for a pause (Retry-After)" in page
    dvir = new_webhook(admin.account_id, event_type="dvir")
    page = text_of(client.get(f"/webhooks/{dvir.id}").data)
    assert "Rate limit none" in page and "Latest position wins" not in page


def test_superseded_messages_have_their_filter_and_badge(admin, client):
    webhook = new_webhook(admin.account_id, event_type="location", latest_wins=True)
    superseded_message(webhook)
    page = client.get(f"/webhooks/{webhook.id}?status=superseded").data.decode()
    assert "Superseded (1)" in page
    assert '<span class="badge off">Superseded</span>' in page


def test_speeding_events_are_chosen_per_speed_webhook_and_checked(client, admin_headers):
    made = create(client, admin_headers, event_type="speed", speeding_events="episode_start")
    assert made.status_code == 201 and made.json["speeding_events"] == "episode_start"
    path = f"/api/v1/webhooks/{made.json['id']}"
    assert create(client, admin_headers, event_type="posted_speed").json["speeding_events"] == (
        "every_report"
    )
    for bad in ("sometimes", None, True, 1):
        refused = client.patch(path, json={"speeding_events": bad}, headers=admin_headers)
        assert refused.status_code == 422 and set(refused.json["errors"]) == {"speeding_events"}
    assert db.session.get(Webhook, made.json["id"]).speeding_events == "episode_start"
    # Only speed and posted_speed have episodes; every_report is every webhook's default.
    location = create(client, admin_headers, event_type="location", speeding_events="episode_start")
    assert location.status_code == 422
    assert "speed and posted_speed" in location.json["errors"]["speeding_events"][0]
    assert create(client, admin_headers, event_type="location").status_code == 201


def test_the_speed_dialog_offers_episodes_and_saves_the_choice(admin, client, auth):
    dialog = client.get("/webhooks/new?event_type=speed", headers=HTMX).data.decode()
    assert "once per speeding episode" in dialog
    assert re.search(r'<input checked [^>]*value="every_report"', dialog)
    assert (
        "once per speeding episode"
        not in client.get("/webhooks/new?event_type=dvir", headers=HTMX).data.decode()
    )
    saved = auth.post(
        "/webhooks/new", valid_form("speed", speeding_events="episode_start"), MANAGER
    )
    assert saved.status_code == 200
    webhook = db.session.query(Webhook).one()
    assert webhook.speeding_events == "episode_start"
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert "once per speeding episode" in page
    bad = auth.post(
        f"/webhooks/{webhook.id}/edit",
        {**valid_form("speed"), "speeding_events": "x"},
        MANAGER,
        htmx=True,
    )
    assert bad.status_code == 422 and db.session.get(Webhook, webhook.id).speeding_events == (
        "episode_start"
    )
