"""Ending a rotation's overlap early: after "expire the previous secret" a leaked
old secret no longer verifies anything the receiver gets — through the API and
the portal, admins only, audited — and without a rotation there is nothing to
expire, said plainly, with nothing changed."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.audit import AuditEvent
from accounts.models import Role
from core.extensions import db
from outbox.drain import drain_target
from tests.conftest import bearer, make_user
from tests.receiver import ReceiverServer
from tests.test_delivery import emit
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)
EXPIRED = "webhook.previous_secret_expired"


def rotated_webhook(client, headers, url: str) -> tuple[int, str, str]:
    """A webhook to `url` whose secret was rotated: its id, old and new secret."""
    body = {"event_type": "location", "name": "Dispatch", "url": url}
    created = client.post("/api/v1/webhooks", json=body, headers=headers).json
    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=headers)
    return created["id"], created["secret"], rotated.json["secret"]


def deliver_one(receiver: ReceiverServer, webhook_id: int, start: int) -> dict[str, str]:
    """Queue and send one event; the headers the receiver got with it."""
    emit(db.session.get(Webhook, webhook_id).account_id, 1, start=start)
    drain_target(webhook_id)
    request = receiver.requests_to("/ok")[-1]
    return {"body": request.body, "headers": dict(request.headers)}


def audit_events(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_after_expiring_the_old_secret_verifies_nothing(app, client, receiver):
    headers = bearer(make_user())
    webhook_id, old, new = rotated_webhook(client, headers, receiver.url("/ok"))
    during = deliver_one(receiver, webhook_id, start=1)
    StandardWebhook(old).verify(during["body"], during["headers"])  # the overlap, as before

    response = client.post(f"/api/v1/webhooks/{webhook_id}/expire-previous-secret", headers=headers)
    assert response.status_code == 200
    assert response.json["previous_secret_expires_at"] is None
    assert "secret" not in response.json

    after = deliver_one(receiver, webhook_id, start=2)
    assert after["headers"]["webhook-signature"].count("v1,") == 1
    StandardWebhook(new).verify(after["body"], after["headers"])
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(old).verify(after["body"], after["headers"])
    stored = db.session.get(Webhook, webhook_id)
    assert stored.previous_signing_secret is None  # not kept at rest either
    (event,) = audit_events(EXPIRED)
    assert event.object_id == webhook_id


def test_without_a_rotation_there_is_nothing_to_expire(app, client):
    headers = bearer(make_user())
    body = {"event_type": "location", "name": "Dispatch", "url": "https://hooks.example.com/in"}
    created = client.post("/api/v1/webhooks", json=body, headers=headers).json
    path = f"/api/v1/webhooks/{created['id']}/expire-previous-secret"
    response = client.post(path, headers=headers)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert "rotate the secret first" in response.json["detail"]
    assert audit_events(EXPIRED) == []
    # Once expired, again is the same answer.
    client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=headers)
    assert client.post(path, headers=headers).status_code == 200
    assert client.post(path, headers=headers).status_code == 409
    assert len(audit_events(EXPIRED)) == 1


def test_members_and_other_accounts_cannot_expire_it(app, client, auth):
    admin = make_user()
    headers = bearer(admin)
    webhook_id, _, _ = rotated_webhook(client, headers, "https://hooks.example.com/in")
    member = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    stranger = bearer(make_user(account_name="Blue", email="admin@blue.example.com"))
    path = f"/api/v1/webhooks/{webhook_id}/expire-previous-secret"
    assert client.post(path, headers=bearer(member)).status_code == 403
    assert client.post(path, headers=stranger).status_code == 404
    auth.login("viewer@acme.example.com")
    assert "expire-previous-secret" not in client.get(f"/webhooks/{webhook_id}").data.decode()
    page = f"/webhooks/{webhook_id}"
    assert auth.post(f"{page}/expire-previous-secret", page=page).status_code == 403
    db.session.expire_all()
    assert db.session.get(Webhook, webhook_id).previous_signing_secret is not None
    assert audit_events(EXPIRED) == []


def test_the_portal_button_beside_rotate_expires_it(admin, client, auth, receiver):
    webhook_id, old, new = rotated_webhook(client, bearer(admin), receiver.url("/ok"))
    page = f"/webhooks/{webhook_id}"
    detail = client.get(page).data.decode()
    assert 'id="expire-previous-secret"' in detail and "Rotate secret" in detail

    response = auth.post(f"{page}/expire-previous-secret", page=page)
    assert response.status_code == 302 and response.headers["Location"] == page
    detail = client.get(page).data.decode()
    assert "The previous secret no longer signs" in detail
    assert 'id="expire-previous-secret"' not in detail  # nothing left to expire
    after = deliver_one(receiver, webhook_id, start=1)
    StandardWebhook(new).verify(after["body"], after["headers"])
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(old).verify(after["body"], after["headers"])
    assert len(audit_events(EXPIRED)) == 1

    # Posted again (a second tab): said, and nothing recorded.
    auth.post(f"{page}/expire-previous-secret", page=page)
    assert "No previous secret is signing" in client.get(page).data.decode()
    assert len(audit_events(EXPIRED)) == 1
