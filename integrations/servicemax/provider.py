"""ServiceMax (on Salesforce) as a provider: each mapped technician's location
follows their vehicle's position. Owns the provider's form and setup steps, which
events make a message, how a drain's positions become sObject Collections calls,
and connecting (from the Salesforce sign-in's code), signing in again and
revoking.

Our decisions, not the provider's:
- One Collections call carries up to 200 technicians; when a batch holds several
  positions of one technician only the newest (by fix time) is sent and the older
  ones count as delivered, superseded by it (their attempt says so): positions
  are latest-value messages.
- The request budget: 10 requests a minute (14,400 a day), under a Developer
  Edition org's 15,000 and about 14% of the smallest production allocation, so the
  org's other integrations keep the rest; at up to 200 technicians a call that is
  2,000 technician updates a minute.
- A position older than the vehicle's previous fix (a late report) is not sent:
  it would move the technician back in time.

From Salesforce Help, "Prepare for Connected App Usage Restrictions Change"
(knowledge article 005132365, and the Salesforce Admins blog, "Get Ready: Changes
to Connected App Usage Restrictions Coming This September", 2025): since early
September 2025 users without "Approve Uninstalled Connected Apps" (or "Use Any API
Client") cannot authorise a connected app that is not installed in the org; an
admin installs it from Setup → Connected Apps OAuth Usage (the setup steps say
so)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import current_app, url_for

from accounts.quotas import check_room
from core.errors import ValidationError
from core.extensions import db
from core.times import format_rfc3339, parse_rfc3339, utcnow
from integrations.base import (
    CURRENT_STATE,
    RELEASE_REASON,
    Field,
    ProviderRejected,
    secrets_of,
)
from integrations.lifecycle import send_current_state
from integrations.models import Integration
from integrations.providers import register
from integrations.servicemax.salesforce import (
    API_VERSION,
    FIELDS_WRITTEN,
    RECORDS_PER_CALL,
    TECHNICIAN_OBJECT,
    SalesforceClient,
)
from integrations.servicemax.signin import (
    LOGIN_HOSTS,
    MY_DOMAIN_EXAMPLE,
    SignIn,
    exchange_code,
    login_host_from,
    login_host_of,
    revoke_token,
    signed_in_at,
    store_tokens,
)
from integrations.servicemax.technicians import note_unmapped, technician_of, unmapped_drivers
from outbox.models import OutboxMessage
from outbox.registry import Result
from outbox.status import activate, hold_for_release, needs_fixing

log = logging.getLogger(__name__)

CONNECT_ONLY = (
    "ServiceMax connects through Salesforce sign-in: use Connect with Salesforce in the "
    "portal's Webhook Manager."
)


def _fix_time(payload: Mapping[str, Any]) -> datetime:
    return parse_rfc3339(payload.get("captured_on")) or datetime.min.replace(tzinfo=UTC)


def _superseded(newest: Result, newest_message: OutboxMessage) -> Result:
    """What an older position of a technician comes to when a newer one of the
    same batch went instead: the newer one's outcome, said so."""
    if not newest.delivered:
        return dataclasses.replace(newest)
    note = {
        "superseded_by": newest_message.message_id,
        "reason": "A newer position of this technician went in the same call.",
    }
    return dataclasses.replace(newest, response_body=json.dumps(note))


class ServiceMax:
    key = "servicemax"
    name = "ServiceMax"
    software_type = "Field Service Management"
    requirements = (
        "A Salesforce login with ServiceMax installed and API access; technicians' "
        "records matched to your drivers."
    )
    receives_locations = True
    # Drivers are matched to technicians by name: names cannot be left out.
    needs_driver_names = True
    # The login host is chosen before signing in (the connect page) and shown on
    # the integration's page; the integration itself is made by the sign-in only.
    fields: tuple[Field, ...] = (
        Field(
            "login_host",
            "Salesforce login",
            "select",
            "Where your org signs in: production, a sandbox, or your own My Domain.",
            required=False,
            choices=LOGIN_HOSTS,
        ),
        Field(
            "my_domain",
            "My Domain address",
            "text",
            f"My Domain only: your org's address, like {MY_DOMAIN_EXAMPLE}.",
            required=False,
        ),
    )
    secret_fields: frozenset[str] = frozenset()
    requests_per_minute: int = 10
    budget_source: str = (
        'Salesforce Developer Limits and Allocations Quick Reference, "API Request '
        "Limits and Allocations\": an org's API requests are counted over a rolling 24 "
        "hours (Enterprise and Professional 100,000 + 1,000 per license, Developer "
        "Edition 15,000), with no per-minute limit. Chosen: 10 a minute = 14,400 a day, "
        "under Developer Edition's allocation and about 14% of the smallest production "
        "one; one sObject Collections call (one request) updates up to 200 technicians."
    )
    latest_value_types: frozenset[str] = frozenset({"location"})
    setup_steps: tuple[str, ...] = (
        "Once per Fleethook, its operator registers a connected app (or External Client "
        "App) in Salesforce: Callback URL = this Fleethook's public address "
        "(FLEETHOOK_PUBLIC_URL) followed by /integrations/servicemax/callback, as shown "
        'below; OAuth scopes "Manage user data via APIs (api)" and "Perform requests '
        'at any time (refresh_token, offline_access)"; "Require Proof Key for Code '
        'Exchange (PKCE)" on. Its Consumer Key and Secret go in '
        "FLEETHOOK_SALESFORCE_CLIENT_ID and FLEETHOOK_SALESFORCE_CLIENT_SECRET.",
        "In your org, a Salesforce admin installs that connected app (Setup → Connected "
        "Apps OAuth Usage → Install; it is listed there once an admin has signed in with "
        "it) and lets the connecting user use it (Manage Connected Apps → Edit Policies, "
        "and their profile or permission set). Since September 2025 Salesforce blocks "
        'uninstalled connected apps for anyone without the "Approve Uninstalled '
        'Connected Apps" permission (Salesforce Help: "Prepare for Connected App Usage '
        'Restrictions Change").',
        f"The Salesforce user who connects needs API Enabled, Edit on ServiceMax's "
        f"Technician object ({TECHNICIAN_OBJECT}) and its records, and Edit access to "
        f"the fields {FIELDS_WRITTEN}; without them the integration stops with Needs "
        "attention and says which is missing.",
        "Choose where your org signs in — Production (login.salesforce.com), Sandbox "
        "(test.salesforce.com) or your My Domain (https://yourname.my.salesforce.com) — "
        "then Connect with Salesforce and allow access.",
        "On the integration's page, map each driver to a technician, one line each: "
        '"Driver name = Technician record Id" (the 15- or 18-character Id in the '
        "technician record's address). Drivers seen without a technician are listed "
        "there; their positions are not sent.",
        "Sign the release form: it records who (name and title), when and from which "
        "address allowed Fleethook to send your vehicles' positions to Salesforce — "
        "each mapped technician's latitude, longitude and fix time, replacing the last "
        "one. Nothing is sent before it is signed.",
    )

    def check_credentials(self, integration: Integration) -> None:
        """GET the API's version resource with the access token (renewed once on a
        401); an integration made without the Salesforce sign-in is refused. A bad
        login host raises ValidationError naming its field; a login host other than
        the one the tokens came from is refused (sign in again there)."""
        stored = secrets_of(integration)
        if not stored.get("access_token") or not (integration.options or {}).get("instance_url"):
            raise ProviderRejected(CONNECT_ONLY)
        login = login_host_of(integration)
        signed_in_at = (integration.provider_state or {}).get("signed_in_at")
        if signed_in_at and login_host_from(signed_in_at) != login:
            raise ProviderRejected(
                f"This integration signed in at {login_host_from(signed_in_at).url}; to use "
                f"{login.url} instead, use Sign in to Salesforce again and choose it there. "
                "Nothing was changed."
            )
        _, result = SalesforceClient(integration).call("GET", f"/services/data/{API_VERSION}/")
        if not result.delivered:
            reason = result.needs_attention or result.error or "no answer"
            raise ProviderRejected(f"Salesforce did not accept the connection: {reason}")

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """Positions (and, when connected, each vehicle's current one) of vehicles
        whose driver is mapped to a technician; a driver without one is listed on
        the integration's page instead. A late position is not sent."""
        if event.event_type.key not in ("location", CURRENT_STATE):
            return None
        vehicle = event.vehicle
        driver = vehicle.driver
        if not driver or vehicle.latitude is None or vehicle.longitude is None:
            return None
        previous = (event.report or {}).get("previous_fix_time")
        if previous is not None and vehicle.fix_time is not None and vehicle.fix_time < previous:
            return None
        technician_id = technician_of(integration, str(driver.get("name") or ""))
        if technician_id is None:
            note_unmapped(integration, driver, event.occurred_at or utcnow())
            return None
        return {
            "type": "location",
            "technician_id": technician_id,
            "driver": driver.get("name"),
            "vin": vehicle.vin,
            "latitude": vehicle.latitude,
            "longitude": vehicle.longitude,
            "captured_on": format_rfc3339(vehicle.fix_time or event.occurred_at),
        }

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """In order, one sObject Collections call per run of messages naming at most
        200 technicians, the newest position of each technician sent; no call
        starts after `stop_at` (the first always does), and none after one that
        failed as a whole (the rest wait)."""
        client = SalesforceClient(integration)
        results: list[Result] = []
        start = 0
        while start < len(messages):
            if results and time.monotonic() > stop_at:
                break
            run = _next_run(messages, start)
            run_results, call_failed = _send_run(client, run)
            results += run_results
            start += len(run)
            if call_failed:
                break  # later runs wait behind it
        return results

    def unmapped_drivers(self, integration: Integration) -> list[dict[str, Any]]:
        """For the integration's page: drivers without a technician
        ([{"id", "name", "since"}])."""
        return unmapped_drivers(integration)

    def callback_url_for_setup(self) -> str:
        """For the connect form (in a request): the Callback URL the connected app
        must list, or what the operator must set first."""
        public = str(current_app.config.get("FLEETHOOK_PUBLIC_URL") or "").rstrip("/")
        if not public:
            return "(set FLEETHOOK_PUBLIC_URL first: the Callback URL starts with it)"
        return public + url_for("servicemax.callback")

    def revoke(self, integration: Integration) -> None:
        revoke(integration)


def _next_run(messages: Sequence[OutboxMessage], start: int) -> Sequence[OutboxMessage]:
    """The messages from `start` that name at most RECORDS_PER_CALL technicians."""
    technicians: set[str] = set()
    end = start
    while end < len(messages):
        technician = str(messages[end].payload.get("technician_id"))
        if technician not in technicians and len(technicians) == RECORDS_PER_CALL:
            break
        technicians.add(technician)
        end += 1
    return messages[start:end]


def _send_run(client: SalesforceClient, run: Sequence[OutboxMessage]) -> tuple[list[Result], bool]:
    """One call for the newest position of each technician in `run`: a Result per
    message of `run`, in order, and whether the call failed as a whole."""
    newest: dict[str, int] = {}  # technician → index in run of its newest position
    unsendable: dict[int, Result] = {}
    for index, message in enumerate(run):
        payload = message.payload
        if payload.get("type") != "location" or not payload.get("technician_id"):
            unsendable[index] = Result(
                delivered=False,
                permanent=True,
                error=f"Not a ServiceMax message ({payload.get('type')!r}).",
            )
            continue
        technician = str(payload["technician_id"])
        kept = newest.get(technician)
        # Ties go to the later message: it was queued after.
        if kept is None or _fix_time(payload) >= _fix_time(run[kept].payload):
            newest[technician] = index
    sent = sorted(newest.values())
    answered: dict[int, Result] = {}
    call_failed = False
    if sent:
        answers, call_failed = client.update_technicians([run[i].payload for i in sent])
        answered = dict(zip(sent, answers, strict=True))
    results = []
    for index, message in enumerate(run):
        if index in unsendable:
            results.append(unsendable[index])
        elif index in answered:
            results.append(answered[index])
        else:
            kept = newest[str(message.payload["technician_id"])]
            results.append(_superseded(answered[kept], run[kept]))
    return results, call_failed


SERVICEMAX = ServiceMax()
register(SERVICEMAX)


def connect_integration(account_id: int, code: str, sign_in: SignIn) -> Integration:
    """A new ServiceMax integration from the code Salesforce sent to the callback:
    the tokens stored encrypted, checked with one call, paused until the release
    form is signed, each vehicle's current state queued. Added to the session;
    the caller commits. ValidationError, before Salesforce is asked, when the
    account has as many integrations as its quota allows."""
    check_room(account_id, "integrations", Integration)
    tokens = exchange_code(code, sign_in)
    integration = Integration(
        account_id=account_id,
        provider=SERVICEMAX.key,
        vehicle_attribute=None,
        options={"technicians": {}},
        vehicle_map={},
        unmatched_vins=[],
        provider_state={},
    )
    hold_for_release(integration, RELEASE_REASON)
    signed_in_at(integration, sign_in.login)
    store_tokens(integration, tokens)
    _check_or_revoke(integration)  # not paced: no id, so no budget of its own yet
    integration.rate_limit = SERVICEMAX.requests_per_minute / 60
    db.session.add(integration)
    send_current_state(integration)
    return integration


def reconnect_integration(integration: Integration, code: str, sign_in: SignIn) -> None:
    """New tokens for an existing integration (after Salesforce stopped accepting
    the old ones, or to sign in at another login host); one that needed attention
    resumes with its queue. The caller commits."""
    tokens = exchange_code(code, sign_in)
    old_login = login_host_of(integration)
    old = (integration.credentials, integration.options, integration.provider_state)
    signed_in_at(integration, sign_in.login)
    store_tokens(integration, tokens)
    try:
        _check_or_revoke(integration)
    except ProviderRejected:
        integration.credentials, integration.options, integration.provider_state = old
        raise
    old_refresh_token = json.loads(old[0] or "{}").get("refresh_token")
    if old_refresh_token and old_refresh_token != tokens["refresh_token"]:
        revoke_token(integration.id, old_login, old_refresh_token)
    if needs_fixing(integration):
        activate(integration)


def revoke(integration: Integration) -> None:
    """Revoke the refresh token (and with it the access tokens) at the integration's
    login host. Failures are logged, never raised: deleting must not depend on
    Salesforce."""
    stored = secrets_of(integration)
    token = stored.get("refresh_token") or stored.get("access_token")
    if not token:
        return
    try:
        login = login_host_of(integration)
    except ValidationError:
        log.warning("integration %s has no valid login host to revoke at", integration.id)
        return
    revoke_token(integration.id, login, str(token))


def _check_or_revoke(integration: Integration) -> None:
    """The one cheap call; tokens the org's API refuses are revoked, not kept."""
    try:
        SERVICEMAX.check_credentials(integration)
    except ProviderRejected:
        revoke(integration)
        raise
