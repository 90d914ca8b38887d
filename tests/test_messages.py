"""Seeing and redoing deliveries: the messages list and detail, Demo and the live
feed, redeliver and recover — in the portal and the API — and /metrics."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from core.extensions import db
from core.times import utcnow
from outbox.drain import drain_target
from outbox.models import OutboxMessage
from tests.conftest import HTMX, bearer, make_user
from tests.test_delivery import emit, webhook_to

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_READ_TIMEOUT=1)


@pytest.fixture
def admin(app):
    return make_user()


def test_api_lists_filters_and_shows_messages(client, admin, receiver):
    headers = bearer(admin)
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    emit(admin.account_id, 3)
    drain_target(webhook.id)
    webhook.url = receiver.url("/status/500")
    db.session.commit()
    emit(admin.account_id, 1, start=4)
    drain_target(webhook.id)
    listed = client.get(f"/api/v1/webhooks/{webhook.id}/messages", headers=headers).json
    assert [m["sequence"] for m in listed["messages"]] == [4, 3, 2, 1]
    assert listed["messages"][0]["status"] == "pending"
    assert listed["messages"][0]["last_status_code"] == 500
    only = client.get(f"/api/v1/webhooks/{webhook.id}/messages?status=delivered", headers=headers)
    assert {m["status"] for m in only.json["messages"]} == {"delivered"}
    page = client.get(f"/api/v1/webhooks/{webhook.id}/messages?limit=2", headers=headers).json
    rest = client.get(
        f"/api/v1/webhooks/{webhook.id}/messages?limit=2&cursor={page['next_cursor']}",
        headers=headers,
    ).json
    assert [m["sequence"] for m in page["messages"] + rest["messages"]] == [4, 3, 2, 1]
    detail = client.get(
        f"/api/v1/webhooks/{webhook.id}/messages/{listed['messages'][0]['id']}", headers=headers
    ).json
    assert detail["payload"]["type"] == "location"
    (attempt,) = detail["attempt_log"]
    assert attempt["status_code"] == 500 and attempt["response_body"] == "xx"
    assert attempt["request_headers"]["webhook-id"] == detail["id"]
    bad = client.get(f"/api/v1/webhooks/{webhook.id}/messages?status=lost", headers=headers)
    assert bad.status_code == 422


def test_api_redeliver_recover_and_demo(client, admin, receiver):
    headers = bearer(admin)
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    emit(admin.account_id, 2)
    drain_target(webhook.id)
    first = client.get(f"/api/v1/webhooks/{webhook.id}/messages", headers=headers).json
    message_id = first["messages"][-1]["id"]
    again = client.post(
        f"/api/v1/webhooks/{webhook.id}/messages/{message_id}/redeliver", headers=headers
    )
    assert again.status_code == 202 and again.json["status"] == "pending"
    busy = client.post(
        f"/api/v1/webhooks/{webhook.id}/messages/{message_id}/redeliver", headers=headers
    )
    assert busy.status_code == 409
    drain_target(webhook.id)
    assert [r.headers["webhook-id"] for r in receiver.requests_to("/ok")].count(message_id) == 2
    db.session.execute(update(OutboxMessage).values(status="dead"))
    db.session.commit()
    recovered = client.post(
        f"/api/v1/webhooks/{webhook.id}/recover",
        json={"since": "2000-01-01T00:00:00Z"},
        headers=headers,
    )
    assert recovered.status_code == 202 and recovered.json == {"recovered": 2}
    bad = client.post(
        f"/api/v1/webhooks/{webhook.id}/recover", json={"since": "yesterday"}, headers=headers
    )
    assert bad.status_code == 422 and "since" in bad.json["errors"]
    demo = client.post(f"/api/v1/webhooks/{webhook.id}/demo", headers=headers)
    assert demo.status_code == 202 and demo.json["test"] is True
    drain_target(webhook.id)
    assert b'"test":true' in receiver.requests_to("/ok")[-1].body


def test_messages_of_another_account_are_404(client, admin, receiver):
    other = make_user(email="admin@blue.example.com")
    theirs, _ = webhook_to(other.account_id, receiver.url("/ok"))
    emit(other.account_id, 1)
    message_id = db.session.query(OutboxMessage).one().message_id
    headers = bearer(admin)
    mine, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    for path in [
        f"/api/v1/webhooks/{theirs.id}/messages",
        f"/api/v1/webhooks/{theirs.id}/messages/{message_id}",
        f"/api/v1/webhooks/{mine.id}/messages/{message_id}",
    ]:
        assert client.get(path, headers=headers).status_code == 404, path
    for path in [
        f"/api/v1/webhooks/{theirs.id}/demo",
        f"/api/v1/webhooks/{mine.id}/messages/{message_id}/redeliver",
    ]:
        assert client.post(path, headers=headers).status_code == 404, path


def test_portal_demo_opens_the_live_feed_and_it_shows_the_answer(client, auth, admin, receiver):
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    auth.login("admin@acme.example.com")
    dialog = auth.post(f"/webhooks/{webhook.id}/demo", page="/webhooks/", htmx=True)
    html = dialog.data.decode()
    assert dialog.status_code == 200 and "Live feed" in html
    test_id = re.search(r'hx-get="/webhooks/\d+/feed\?test=(msg_[0-9a-f]+)"', html).group(1)
    assert 'hx-trigger="every 1s"' in html
    assert "Your test event" in html and "Pending" in html
    drain_target(webhook.id)
    feed = client.get(f"/webhooks/{webhook.id}/feed?test={test_id}", headers=HTMX).data.decode()
    assert "Delivered" in feed and ">200<" in feed and " ms<" in feed and ">test<" in feed


def test_the_demo_message_stays_pinned_above_live_traffic(client, auth, admin, receiver):
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    auth.login("admin@acme.example.com")
    html = auth.post(f"/webhooks/{webhook.id}/demo", page="/webhooks/", htmx=True).data.decode()
    test_id = re.search(r"feed\?test=(msg_[0-9a-f]+)", html).group(1)
    emit(admin.account_id, 20)  # live traffic: more than the feed's 15 rows
    pinned = client.get(f"/webhooks/{webhook.id}/feed?test={test_id}", headers=HTMX)
    assert test_id in pinned.data.decode() and "Your test event" in pinned.data.decode()
    assert pinned.data.decode().count(f"<code>{test_id}</code>") == 1  # pinned, not listed twice
    unpinned = client.get(f"/webhooks/{webhook.id}/feed", headers=HTMX).data.decode()
    assert test_id not in unpinned and "Your test event" not in unpinned
    # Another webhook's message is never pinned here.
    other, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    elsewhere = client.get(f"/webhooks/{other.id}/feed?test={test_id}", headers=HTMX)
    assert elsewhere.status_code == 200 and test_id not in elsewhere.data.decode()


def test_portal_messages_panel_detail_and_redeliver(client, auth, admin, receiver):
    webhook, _ = webhook_to(
        admin.account_id,
        receiver.url("/ok"),
        custom_header={"name": "X-Key", "value": "k-55554444"},
    )
    emit(admin.account_id, 2)
    drain_target(webhook.id)
    auth.login("admin@acme.example.com")
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert "All (2)" in page and "Delivered (2)" in page
    message_id = re.search(r"<code>(msg_[0-9a-f]+)</code>", page).group(1)
    detail = client.get(f"/webhooks/{webhook.id}/messages/{message_id}").data.decode()
    assert "Request headers" in detail and "webhook-signature: v1," in detail
    assert "k-55554444" not in detail and "4444" in detail
    assert "Response body" in detail
    response = auth.post(
        f"/webhooks/{webhook.id}/messages/{message_id}/redeliver", page=f"/webhooks/{webhook.id}"
    )
    assert response.status_code == 302
    assert "queued again" in client.get(f"/webhooks/{webhook.id}").data.decode()
    filtered = client.get(f"/webhooks/{webhook.id}?status=pending").data.decode()
    assert filtered.count("<code>msg_") == 1


def test_portal_recover_since(client, auth, admin, receiver):
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    emit(admin.account_id, 2)
    db.session.execute(update(OutboxMessage).values(status="expired", finished_at=utcnow()))
    db.session.commit()
    auth.login("admin@acme.example.com")
    response = auth.post(
        f"/webhooks/{webhook.id}/recover",
        {"since": "2000-01-01T00:00"},
        page=f"/webhooks/{webhook.id}",
    )
    assert response.status_code == 302
    assert (
        "2 dead or expired messages queued again."
        in client.get(f"/webhooks/{webhook.id}").data.decode()
    )
    assert {m.status for m in db.session.query(OutboxMessage)} == {"pending"}


def test_metrics_count_deliveries_and_pending_messages(client, admin, receiver):
    webhook, _ = webhook_to(admin.account_id, receiver.url("/ok"))
    failing, _ = webhook_to(admin.account_id, receiver.url("/status/500"))
    emit(admin.account_id, 3)
    drain_target(webhook.id)
    drain_target(failing.id)
    text = client.get("/metrics").data.decode()
    assert 'fleethook_deliveries_total{kind="webhook",outcome="delivered"} 3' in text
    assert 'fleethook_deliveries_total{kind="webhook",outcome="failed"} 1' in text
    assert "fleethook_delivery_duration_seconds_count 4" in text
    assert 'fleethook_pending_messages{kind="webhook"} 3' in text
    assert "fleethook_drains_total 2" in text
