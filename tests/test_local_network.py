"""Local-network mode (FLEETHOOK_ALLOW_LOCAL_NETWORK, which `make run` turns on for
the demo receiver) opens loopback and the private ranges, and nothing more: a
link-local or cloud metadata address is refused when a URL is saved (form and
API) and when a connection is opened (a name that resolves there when sent), by
both HTTP stacks — aiohttp for webhooks, requests for providers. The portal says
on every page that the protection is relaxed.

The resolver is replaced as in tests/test_ssrf_send.py (`socket.getaddrinfo`
answers from a table); loopback listeners witness every connection."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from integrations.models import Integration
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import DeliveryAttempt, OutboxMessage
from tests.conftest import bearer, make_user
from tests.receiver import ReceiverServer
from tests.test_ssrf_send import FLEETIO, FakeDNS, Listeners, dns, listeners, v6
from tests.test_webhooks_portal import MANAGER, field_errors, valid_form
from webhooks.models import Webhook

__all__ = ["dns", "listeners"]  # the fixtures of tests/test_ssrf_send.py, used here

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_RESOLVER=None,  # url_safety asks socket.getaddrinfo, i.e. the fake
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
)

NAME = "rebind.example.com"
REFUSED = f"{NAME} is not a public address; not connected"

# Where a name may point at send time in local-network mode and still be refused.
STILL_REFUSED = [
    "169.254.169.254",  # AWS, GCP, Azure, Oracle metadata
    "169.254.0.23",  # Tencent metadata (link-local)
    "100.100.100.200",  # Alibaba metadata (inside CGNAT, which is open)
    "168.63.129.16",  # Azure wire server (a global address)
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    v6("::ffff:169.254.169.254"),  # IPv4-mapped metadata
    v6("fd00:ec2::254"),  # AWS metadata over IPv6 (inside fc00::/7, which is open)
    v6("fe80::1"),
    v6("64:ff9b::a9fe:a9fe"),  # NAT64 of metadata
]


def emit(account_id: int) -> None:
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=1234.5, fix_time=utcnow())
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), vehicle)], account_targets(account_id)
    )
    db.session.commit()


@pytest.fixture
def account(app: Any) -> tuple[int, dict[str, str]]:
    user = make_user()
    return user.account_id, bearer(user)


def create(client: Any, headers: dict[str, str], url: str) -> Any:
    return client.post(
        "/api/v1/webhooks",
        json={"event_type": "location", "name": "Local", "url": url},
        headers=headers,
    )


# -- when a URL is saved -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a link-local address (cloud metadata); webhooks never go there.",
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/",
            "fd00:ec2::254 is a cloud metadata address; webhooks never go there.",
        ),
        (
            "http://100.100.100.200/latest/meta-data/",
            "100.100.100.200 is a cloud metadata address; webhooks never go there.",
        ),
        ("http://0xa9fea9fe/", "169.254.169.254 is a link-local address (cloud metadata)"),
        (
            "http://metadata.example.com/computeMetadata/v1/",
            "metadata.example.com resolves to a link-local address (cloud metadata); "
            "webhooks never go there.",
        ),
    ],
)
def test_metadata_is_refused_through_the_api_in_local_network_mode(
    client: Any, account: tuple[int, dict[str, str]], dns: FakeDNS, url: str, problem: str
) -> None:
    dns.records["metadata.example.com"] = ["169.254.169.254"]
    response = create(client, account[1], url)
    assert response.status_code == 422, response.json
    (said,) = response.json["errors"]["url"]
    assert said.startswith(problem), said
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 0


def test_metadata_is_refused_by_the_form_in_local_network_mode(
    app: Any, admin: Any, auth: Any, dns: FakeDNS
) -> None:
    form = valid_form("location", url="http://169.254.169.254/latest/meta-data/")
    response = auth.post("/webhooks/new", form, MANAGER, htmx=True)
    assert response.status_code == 422
    assert field_errors(response.data, "url").strip() == (
        "169.254.169.254 is a link-local address (cloud metadata); webhooks never go there."
    )
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/in",
        "http://localhost:8080/in",
        "http://10.0.0.7/in",
        "http://192.168.1.20:9000/in",
        "http://100.64.0.1/in",  # CGNAT: VPNs such as Tailscale
        "http://[::1]:8080/in",
        "http://[fd12:3456::1]/in",
        "http://receiver.lan/in",  # a name that does not resolve (yet) is accepted
    ],
)
def test_loopback_and_private_addresses_are_accepted_in_local_network_mode(
    client: Any, account: tuple[int, dict[str, str]], dns: FakeDNS, url: str
) -> None:
    dns.records["localhost"] = ["127.0.0.1", "::1"]
    assert create(client, account[1], url).status_code == 201


# -- when a connection is opened -----------------------------------------------------


@pytest.mark.parametrize("address", STILL_REFUSED)
def test_a_webhook_whose_name_turns_to_metadata_gets_no_connection(
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    address: str,
) -> None:
    account_id, headers = account
    dns.records[NAME] = ["127.0.0.1"]  # loopback, allowed here, when saved
    response = create(client, headers, f"http://{NAME}:{listeners.port}/hook")
    assert response.status_code == 201, response.json
    dns.records[NAME] = [address]
    emit(account_id)
    drain_target(response.json["id"])
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.error == REFUSED, attempt.error
    assert address not in (attempt.error_detail or "")  # the tenant is not told where
    assert listeners.connections() == []
    assert db.session.scalars(select(OutboxMessage.status)).one() == "pending"


def test_a_webhook_to_loopback_is_delivered_in_local_network_mode(
    client: Any, account: tuple[int, dict[str, str]], receiver: ReceiverServer
) -> None:
    account_id, headers = account
    response = create(client, headers, receiver.url("/ok"))
    assert response.status_code == 201, response.json
    emit(account_id)
    drain_target(response.json["id"])
    assert db.session.scalars(select(DeliveryAttempt.outcome)).one() == "delivered"
    assert len(receiver.requests_to("/ok")) == 1


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", v6("fd00:ec2::254")])
def test_a_provider_whose_name_is_metadata_gets_no_connection(
    app: Any,
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
    address: str,
) -> None:
    """The credential check on saving is the provider stack's first connection."""
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = f"http://fleetio.example.com:{listeners.port}/api"
    dns.records["fleetio.example.com"] = [address]
    response = client.post("/api/v1/integrations", json=FLEETIO, headers=account[1])
    assert response.status_code == 422, response.json
    (problem,) = response.json["errors"]["credentials"]
    assert problem == (
        "Could not reach Fleetio (fleetio.example.com is not a public address; not "
        "connected); try again."
    )
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 0
    assert listeners.connections() == []


def test_a_provider_on_loopback_is_connected_to_in_local_network_mode(
    app: Any,
    client: Any,
    account: tuple[int, dict[str, str]],
    dns: FakeDNS,
    listeners: Listeners,
) -> None:
    """The other side: the listener hangs up, but it was reached."""
    app.config["FLEETHOOK_FLEETIO_BASE_URL"] = f"http://fleetio.example.com:{listeners.port}/api"
    dns.records["fleetio.example.com"] = ["127.0.0.1"]
    response = client.post("/api/v1/integrations", json=FLEETIO, headers=account[1])
    assert response.status_code == 422, response.json
    assert listeners.connections() == ["127.0.0.1"]
    (problem,) = response.json["errors"]["credentials"]
    assert "not a public address" not in problem, problem


# -- the portal says so --------------------------------------------------------------

BANNER = 'id="local-network-mode"'


def test_the_portal_says_on_every_page_that_local_networks_are_allowed(
    client: Any, auth: Any, admin: Any
) -> None:
    for path in ("/", MANAGER, "/fleet/vehicles", "/does-not-exist"):
        page = client.get(path, follow_redirects=True).data.decode()
        assert BANNER in page and "FLEETHOOK_ALLOW_LOCAL_NETWORK" in page, path
    auth.logout()
    assert BANNER in client.get("/login").data.decode()


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=False)
def test_no_banner_when_the_protection_is_on(client: Any, admin: Any) -> None:
    for path in ("/", MANAGER, "/login"):
        page = client.get(path, follow_redirects=True).data.decode()
        assert BANNER not in page and "Local-network mode" not in page, path
