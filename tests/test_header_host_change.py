"""A webhook's custom header is a credential for the host it was entered for. A
change of URL to another origin (scheme, host or port) removes it unless the same
change gives it again — else whoever may edit the URL could point the webhook at
their own host and receive the credential. A new path on the same origin keeps it.
Through the API and the portal, and on the wire to real receivers."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from accounts.audit import HIDDEN, AuditEvent
from core.extensions import db
from outbox.drain import drain_target
from tests.conftest import HTMX, bearer, make_user
from tests.receiver import ReceiverServer, start_receiver
from tests.test_delivery import emit
from webhooks.lifecycle import HEADER_CLEARED
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)
MANAGER = "/webhooks/"
HEADER = {"name": "X-Fleet-Key", "value": "k-old-123456"}


@pytest.fixture
def admin_headers(app) -> dict[str, str]:
    return bearer(make_user())


@pytest.fixture
def elsewhere():
    """Another receiver: the host someone re-points the webhook at."""
    server = start_receiver()
    yield server
    server.shutdown()
    server.server_close()


def create(client, headers, url: str, **fields):
    body = {"event_type": "location", "name": "Dispatch", "url": url, "custom_header": HEADER}
    response = client.post("/api/v1/webhooks", json={**body, **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def stored(webhook_id: int) -> tuple[str | None, str | None, str]:
    db.session.expire_all()
    webhook = db.session.get(Webhook, webhook_id)
    return webhook.custom_header_name, webhook.custom_header_value, webhook.url


def sent_header(server: ReceiverServer, path: str) -> str | None:
    (request,) = server.requests_to(path)
    return request.headers.get("X-Fleet-Key")


@pytest.mark.parametrize(
    "new_url",
    [
        "https://receiver.example.net/in",  # another host
        "http://hooks.example.com/in",  # another scheme
        "https://hooks.example.com:8443/in",  # another port
    ],
)
def test_the_api_removes_the_header_when_the_url_leaves_its_origin(client, admin_headers, new_url):
    created = create(client, admin_headers, "https://hooks.example.com/in")
    path = f"/api/v1/webhooks/{created['id']}"
    response = client.patch(path, json={"url": new_url}, headers=admin_headers)
    assert response.status_code == 200, response.json
    assert response.json["custom_header"] is None
    assert response.json["warnings"] == [HEADER_CLEARED]
    assert stored(created["id"]) == (None, None, new_url)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.updated"))
    assert event.one().details["custom_header"] is None


@pytest.mark.parametrize(
    "new_url",
    [
        "https://hooks.example.com/v2/in?fleet=north",  # another path and query
        "https://HOOKS.example.com:443/in",  # the same origin, spelt otherwise
    ],
)
def test_the_api_keeps_the_header_on_the_same_origin(client, admin_headers, new_url):
    created = create(client, admin_headers, "https://hooks.example.com/in")
    path = f"/api/v1/webhooks/{created['id']}"
    response = client.patch(path, json={"url": new_url, "name": "Moved"}, headers=admin_headers)
    assert response.status_code == 200, response.json
    assert response.json["custom_header"]["name"] == "X-Fleet-Key"
    assert response.json["warnings"] == []
    assert stored(created["id"]) == ("X-Fleet-Key", "k-old-123456", new_url)


def test_the_api_takes_a_new_value_given_with_the_new_host(client, admin_headers):
    created = create(client, admin_headers, "https://hooks.example.com/in")
    path = f"/api/v1/webhooks/{created['id']}"
    new = {"name": "Authorization", "value": "Bearer new-host-42"}
    response = client.patch(
        path,
        json={"url": "https://receiver.example.net/in", "custom_header": new},
        headers=admin_headers,
    )
    assert response.status_code == 200 and response.json["warnings"] == []
    assert stored(created["id"])[:2] == ("Authorization", "Bearer new-host-42")
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.updated"))
    assert event.one().details["custom_header"] == {"name": "Authorization", "value": HIDDEN}


def test_a_bad_change_of_host_removes_nothing(client, admin_headers):
    created = create(client, admin_headers, "https://hooks.example.com/in")
    path = f"/api/v1/webhooks/{created['id']}"
    response = client.patch(
        path, json={"url": "https://receiver.example.net/in", "name": ""}, headers=admin_headers
    )
    assert response.status_code == 422 and "name" in response.json["errors"]
    assert stored(created["id"]) == ("X-Fleet-Key", "k-old-123456", "https://hooks.example.com/in")


def test_deliveries_to_the_new_host_carry_no_old_credential(
    client, admin_headers, receiver, elsewhere
):
    created = create(client, admin_headers, receiver.url("/ok"))
    account_id = db.session.get(Webhook, created["id"]).account_id
    path = f"/api/v1/webhooks/{created['id']}"

    # Same host and port, another path: the header goes along.
    client.patch(path, json={"url": receiver.url("/no-content")}, headers=admin_headers)
    emit(account_id, 1)
    drain_target(created["id"])
    assert sent_header(receiver, "/no-content") == "k-old-123456"

    # Another origin (the receiver a person re-pointed it at): no credential.
    client.patch(path, json={"url": elsewhere.url("/ok")}, headers=admin_headers)
    emit(account_id, 1, start=2)
    drain_target(created["id"])
    assert sent_header(elsewhere, "/ok") is None

    # Given again with the move back: the new value is sent.
    client.patch(
        path,
        json={"url": receiver.url("/ok"), "custom_header": {**HEADER, "value": "k-new-654321"}},
        headers=admin_headers,
    )
    emit(account_id, 1, start=3)
    drain_target(created["id"])
    assert sent_header(receiver, "/ok") == "k-new-654321"


def edit_form(webhook: Webhook, url: str, value: str = "") -> dict[str, str]:
    """The Edit Webhook dialog as a browser posts it: the header's name shown,
    its value blank unless typed."""
    return {
        "url": url,
        "name": webhook.name,
        "content_type": "json",
        "custom_header_name": "X-Fleet-Key",
        "custom_header_value": value,
    }


def test_the_portal_removes_the_header_on_another_host_and_says_so(
    admin, client, auth, receiver, elsewhere
):
    created = create(client, bearer(admin), receiver.url("/ok"))
    webhook = db.session.get(Webhook, created["id"])
    dialog = client.get(f"/webhooks/{webhook.id}/edit", headers=HTMX).data.decode()
    assert "re-enter it" in html.unescape(dialog)

    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, elsewhere.url("/ok")),
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"] == MANAGER
    assert HEADER_CLEARED in html.unescape(client.get(MANAGER).data.decode())
    assert stored(webhook.id)[:2] == (None, None)
    emit(admin.account_id, 1)
    drain_target(webhook.id)
    assert sent_header(elsewhere, "/ok") is None


def test_the_portal_keeps_the_header_on_the_same_host_and_takes_a_new_value(
    admin, client, auth, receiver, elsewhere
):
    created = create(client, bearer(admin), receiver.url("/ok"))
    webhook = db.session.get(Webhook, created["id"])
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, receiver.url("/no-content")),
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 204 and "HX-Redirect" not in response.headers
    assert stored(webhook.id)[:2] == ("X-Fleet-Key", "k-old-123456")

    auth.post(
        f"/webhooks/{webhook.id}/edit",
        edit_form(webhook, elsewhere.url("/ok"), "k-typed-777"),
        page=MANAGER,
        htmx=True,
    )
    assert stored(webhook.id)[:2] == ("X-Fleet-Key", "k-typed-777")
    emit(admin.account_id, 1)
    drain_target(webhook.id)
    assert sent_header(elsewhere, "/ok") == "k-typed-777"
