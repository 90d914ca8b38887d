"""The webhooks REST API: CRUD, actions, auth, tenancy, pagination, bad input,
and the OpenAPI document that must describe every route."""

from __future__ import annotations

import re
import time

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from accounts.models import Role
from core.extensions import db
from events.catalogue import EVENT_TYPES, example_event
from outbox.models import new_message_id
from tests.conftest import bearer, make_user
from webhooks.lifecycle import signing_secrets
from webhooks.models import Webhook
from webhooks.wire import ContentType, encode_body, request_headers

NEW = {"event_type": "speed", "name": "Dispatch", "url": "https://hooks.example.com/in"}


@pytest.fixture
def admin_headers(app):
    return bearer(make_user())


def create(client, headers, **fields):
    return client.post("/api/v1/webhooks", json={**NEW, **fields}, headers=headers)


def test_event_types_lists_the_catalogue_with_examples(client, admin_headers):
    body = client.get("/api/v1/event-types", headers=admin_headers).json
    keys = [e["key"] for e in body["event_types"]]
    assert keys == list(EVENT_TYPES)
    speed = body["event_types"][1]
    assert speed["setting"] == {
        "field": "threshold_mph",
        "label": "Speed threshold",
        "unit": "mph",
        "minimum": 5,
        "maximum": 200,
        "default": 70,
    }
    assert speed["example"] == example_event(EVENT_TYPES["speed"])


def test_create_returns_201_with_the_secret_once(client, admin_headers):
    response = create(
        client,
        admin_headers,
        threshold_mph=75,
        content_type="form",
        contact_email="Ops@Acme.example.com",
        custom_header={"name": "Authorization", "value": "Bearer abc-123456"},
    )
    assert response.status_code == 201
    body = response.json
    assert body["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/api/v1/webhooks/{body['id']}"
    assert body["status"] == "active" and body["queue_depth"] == 0 and body["total_messages"] == 0
    assert body["threshold_mph"] == 75 and body["idle_minutes"] is None
    assert body["contact_email"] == "ops@acme.example.com"
    assert body["custom_header"]["name"] == "Authorization"
    assert "abc-123456" not in body["custom_header"]["value"]
    again = client.get(f"/api/v1/webhooks/{body['id']}", headers=admin_headers).json
    assert "secret" not in again
    assert again == {k: v for k, v in body.items() if k != "secret"}


def test_the_created_secret_signs_what_the_sender_sends(client, admin_headers):
    created = create(client, admin_headers).json
    webhook = db.session.get(Webhook, created["id"])
    body = encode_body(example_event(EVENT_TYPES["speed"], 70), ContentType.JSON)
    headers = request_headers(
        ContentType.JSON, new_message_id(), int(time.time()), body, signing_secrets(webhook)
    )
    assert StandardWebhook(created["secret"]).verify(body, headers)["type"] == "speed"


def test_rotate_secret_signs_with_both_secrets_for_a_day(client, admin_headers):
    created = create(client, admin_headers).json
    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=admin_headers)
    assert rotated.status_code == 200
    assert rotated.json["secret"] != created["secret"]
    assert rotated.json["previous_secret_expires_at"] is not None
    webhook = db.session.get(Webhook, created["id"])
    body = b'{"type":"location"}'
    headers = request_headers(
        ContentType.JSON, "msg_x", int(time.time()), body, signing_secrets(webhook)
    )
    assert len(re.findall(r"v1,", headers["webhook-signature"])) == 2
    for secret in (created["secret"], rotated.json["secret"]):
        StandardWebhook(secret).verify(body, headers)


def test_defaults_fill_the_setting_and_content_type(client, admin_headers):
    idle = create(client, admin_headers, event_type="idle").json
    assert idle["idle_minutes"] == 5 and idle["threshold_mph"] is None
    assert idle["content_type"] == "json"


def test_list_pages_with_a_cursor(client, admin_headers):
    ids = [create(client, admin_headers, name=f"Hook {n}").json["id"] for n in range(5)]
    first = client.get("/api/v1/webhooks?limit=2", headers=admin_headers).json
    assert [w["id"] for w in first["webhooks"]] == ids[:2]
    second = client.get(
        f"/api/v1/webhooks?limit=2&cursor={first['next_cursor']}", headers=admin_headers
    ).json
    assert [w["id"] for w in second["webhooks"]] == ids[2:4]
    last = client.get(
        f"/api/v1/webhooks?limit=2&cursor={second['next_cursor']}", headers=admin_headers
    ).json
    assert [w["id"] for w in last["webhooks"]] == ids[4:] and last["next_cursor"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "cursor=abc"])
def test_bad_page_arguments_are_422(client, admin_headers, query):
    response = client.get(f"/api/v1/webhooks?{query}", headers=admin_headers)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


def test_patch_changes_only_what_is_given(client, admin_headers):
    created = create(
        client, admin_headers, custom_header={"name": "X-Key", "value": "k-998877"}
    ).json
    changed = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={"name": "Renamed", "threshold_mph": 90},
        headers=admin_headers,
    )
    assert changed.status_code == 200
    assert changed.json["name"] == "Renamed" and changed.json["threshold_mph"] == 90
    assert changed.json["url"] == created["url"]
    assert db.session.get(Webhook, created["id"]).custom_header_value == "k-998877"
    removed = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"custom_header": None}, headers=admin_headers
    )
    assert removed.json["custom_header"] is None


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"event_type": "warp"}, {"event_type"}),
        ({"name": 7}, {"name"}),
        ({"url": "https://192.168.0.10/"}, {"url"}),
        ({"url": "https://[::ffff:127.0.0.1]/"}, {"url"}),
        ({"content_type": "xml"}, {"content_type"}),
        ({"threshold_mph": True}, {"threshold_mph"}),
        ({"threshold_mph": "70"}, {"threshold_mph"}),
        ({"idle_minutes": 5}, {"idle_minutes"}),
        ({"event_type": "location", "threshold_mph": 50}, {"threshold_mph"}),
        ({"contact_email": 12}, {"contact_email"}),
        ({"custom_header": "Authorization: x"}, {"custom_header"}),
        ({"custom_header": {"name": "Host", "value": "evil"}}, {"custom_header.name"}),
        ({"custom_header": {"name": "X-A", "value": "a\r\nX-B: b"}}, {"custom_header.value"}),
        ({"colour": "blue"}, {"colour"}),
        ({"name": "", "url": "gopher://x"}, {"name", "url"}),
    ],
)
def test_create_rejects_bad_fields_by_name_and_saves_nothing(client, admin_headers, body, errors):
    response = client.post("/api/v1/webhooks", json={**NEW, **body}, headers=admin_headers)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.json["errors"]) == errors
    assert db.session.query(Webhook).count() == 0


def test_required_fields_are_named_when_missing(client, admin_headers):
    response = client.post("/api/v1/webhooks", json={}, headers=admin_headers)
    assert set(response.json["errors"]) == {"event_type", "name", "url"}


def test_a_bad_patch_changes_nothing(client, admin_headers):
    created = create(client, admin_headers).json
    response = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={"name": "Fine", "url": "http://10.0.0.1/", "event_type": "idle"},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"url", "event_type"}
    assert db.session.get(Webhook, created["id"]).name == "Dispatch"


def test_pause_resume_and_delete(client, admin_headers):
    created = create(client, admin_headers).json
    path = f"/api/v1/webhooks/{created['id']}"
    assert client.post(f"{path}/pause", headers=admin_headers).json["status"] == "paused"
    assert client.post(f"{path}/resume", headers=admin_headers).json["status"] == "active"
    assert client.delete(path, headers=admin_headers).status_code == 204
    assert client.get(path, headers=admin_headers).status_code == 404


def test_without_a_token_everything_is_401(client):
    for method, path in [
        ("get", "/api/v1/webhooks"),
        ("post", "/api/v1/webhooks"),
        ("get", "/api/v1/event-types"),
        ("delete", "/api/v1/webhooks/1"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert response.mimetype == "application/problem+json"


def test_a_members_token_reads_but_cannot_change(app, client):
    admin = make_user()
    member_headers = bearer(
        make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    )
    created = create(client, bearer(admin)).json
    path = f"/api/v1/webhooks/{created['id']}"
    assert client.get(path, headers=member_headers).status_code == 200
    assert create(client, member_headers).status_code == 403
    assert client.patch(path, json={"name": "x"}, headers=member_headers).status_code == 403
    assert client.delete(path, headers=member_headers).status_code == 403
    for action in ("pause", "resume", "rotate-secret", "expire-previous-secret"):
        assert client.post(f"{path}/{action}", headers=member_headers).status_code == 403
    assert db.session.query(Webhook).count() == 1


def test_another_accounts_webhook_is_404_and_untouched(app, client):
    mine = bearer(make_user(account_name="Fleet", email="admin@acme.example.com"))
    theirs_headers = bearer(make_user(account_name="Fleet", email="admin@blue.example.com"))
    theirs = create(client, theirs_headers, name="Dispatch").json
    create(client, mine, name="Dispatch")
    path = f"/api/v1/webhooks/{theirs['id']}"
    assert client.get(path, headers=mine).status_code == 404
    assert client.patch(path, json={"name": "x"}, headers=mine).status_code == 404
    for action in ("pause", "resume", "rotate-secret", "expire-previous-secret"):
        assert client.post(f"{path}/{action}", headers=mine).status_code == 404
    assert client.delete(path, headers=mine).status_code == 404
    listed = client.get("/api/v1/webhooks", headers=mine).json["webhooks"]
    assert theirs["id"] not in [w["id"] for w in listed] and len(listed) == 1
    assert client.get(path, headers=theirs_headers).json["name"] == "Dispatch"


def test_the_openapi_document_describes_every_api_route(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200  # public: no token needed
    document = response.json
    assert document["openapi"].startswith("3.1")
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method.lower() not in document["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []


def test_openapi_schemas_resolve(client):
    document = client.get("/api/v1/openapi.json").json
    text = str(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name
    assert document["components"]["schemas"]["WebhookCreate"]["properties"]["event_type"][
        "enum"
    ] == [*EVENT_TYPES]


def test_a_webhook_may_be_limited_to_one_vehicle_group(client, admin_headers):
    created = create(client, admin_headers, vehicle_group=" North ")
    assert created.status_code == 201 and created.json["vehicle_group"] == "North"
    url = f"/api/v1/webhooks/{created.json['id']}"
    for bad in (12, "x" * 61):
        response = client.patch(url, json={"vehicle_group": bad}, headers=admin_headers)
        assert response.status_code == 422 and "vehicle_group" in response.json["errors"]
    assert client.get(url, headers=admin_headers).json["vehicle_group"] == "North"
    cleared = client.patch(url, json={"vehicle_group": None}, headers=admin_headers)
    assert cleared.status_code == 200 and cleared.json["vehicle_group"] is None
