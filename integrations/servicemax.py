"""ServiceMax (on Salesforce): the Salesforce connection (OAuth 2.0 web-server
flow: authorize URL, `state`, code exchange, token refresh and revocation), the
driver → technician mapping the integration keeps, and the client that sets a
technician's location from the positions of the vehicle its driver drives.

Documented by Salesforce (REST API and OAuth guides): the authorize, token and
revoke endpoints under the login URL (login.salesforce.com, test.salesforce.com
for sandboxes) and their form parameters; the token answer's `access_token`,
`refresh_token`, `instance_url`; the OAuth error body `{"error",
"error_description"}` (`invalid_grant` for a bad, used or expired code or
refresh token); a refresh answer that may carry a new refresh token (rotation)
and instance URL; `GET /services/data/vXX.X/`; record update by `PATCH
/sobjects/{object}/{Id}` answering 204; REST errors as a list of `{"errorCode",
"message"}`; 401 for an expired or invalid session; 403 `REQUEST_LIMIT_EXCEEDED`
for the org's API limit.

From ServiceMax's managed package (its field names, no public API guide found):
the Technician object `SVMXC__Service_Group_Members__c` and its fields
`SVMXC__Latitude__c`, `SVMXC__Longitude__c` and `SVMXC__Latlong_Captured_On__c`
(assumed a DateTime, sent as RFC 3339 UTC).

Our decisions, not the provider's: which technician a driver is comes from a
mapping kept in the integration's options (driver name as the vehicle's driver
in events → Technician record Id); a 400 or 404 answer to a PATCH (a wrong
record Id or a field this org lacks) is a permanent failure of that message, as
no retry can mend it; REQUEST_LIMIT_EXCEEDED is retried on the schedule instead
of needing attention; the access token is renewed at most once per drain."""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from flask import current_app

from database import format_rfc3339
from encryption import mask
from errors import ValidationError
from extensions import db
from integrations.base import (
    RELEASE_REASON,
    Api,
    Field,
    ProviderRejected,
    secrets_of,
    store_secrets,
)
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result, send_in_order
from outbox.status import activate, hold_for_release, needs_fixing

log = logging.getLogger(__name__)

API_VERSION = "v60.0"
# ServiceMax's Technician object and the fields its location lives in.
TECHNICIAN_OBJECT = "SVMXC__Service_Group_Members__c"
LATITUDE, LONGITUDE, CAPTURED_ON = (
    "SVMXC__Latitude__c",
    "SVMXC__Longitude__c",
    "SVMXC__Latlong_Captured_On__c",
)
CONNECT_ONLY = (
    "ServiceMax connects through Salesforce sign-in: use Connect with Salesforce in the "
    "portal's Webhook Manager."
)
# Salesforce record Ids: 15 characters (case-sensitive) or 18 (case-safe).
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
MAX_TECHNICIANS = 1000
MAX_DRIVER_NAME = 100  # as fleet.models.Driver.name
SALESFORCE = "Salesforce"


def _login_url() -> str:
    return str(current_app.config["FLEETHOOK_SALESFORCE_LOGIN_URL"]).rstrip("/")


def _client() -> tuple[str, str]:
    config = current_app.config
    return config["FLEETHOOK_SALESFORCE_CLIENT_ID"], config["FLEETHOOK_SALESFORCE_CLIENT_SECRET"]


# --- The OAuth web-server flow ---------------------------------------------------


def new_state() -> str:
    """A random `state` for one sign-in, kept in the user's session by the view."""
    return secrets.token_urlsafe(32)


def state_matches(expected: str | None, given: str | None) -> bool:
    """Whether the callback's `state` is the one this session started with."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def authorize_url(state: str, redirect_uri: str) -> str:
    """Salesforce's sign-in page, which sends the user back to `redirect_uri` with
    a code and our `state`."""
    client_id, _ = _client()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{_login_url()}/services/oauth2/authorize?{query}"


def _token_api() -> Api:
    return Api(_login_url(), {"Accept": "application/json"}, SALESFORCE)


def _oauth_refusal(response: requests.Response) -> tuple[str, str]:
    """Salesforce's OAuth error code and description from a refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        return str(body.get("error", "")), str(body.get("error_description", ""))
    return "", response.text.strip()[:200]


def _refusal_words(response: requests.Response, renewing: bool) -> str:
    """Why Salesforce refused a token request, in plain words."""
    code, description = _oauth_refusal(response)
    said = f" (Salesforce said: {code}{': ' if code and description else ''}{description})"
    if code in ("invalid_client_id", "invalid_client"):
        return (
            "Salesforce does not accept Fleethook's connected app (client id or secret); "
            "the operator must check FLEETHOOK_SALESFORCE_CLIENT_ID and "
            f"FLEETHOOK_SALESFORCE_CLIENT_SECRET.{said}"
        )
    if code == "redirect_uri_mismatch":
        return (
            "This portal's address is not a Callback URL of Fleethook's connected app in "
            f"Salesforce.{said}"
        )
    if renewing:
        return f"Salesforce refused to renew the access; connect with Salesforce again.{said}"
    if code == "invalid_grant":
        return (
            "Salesforce refused the sign-in code: it expired or was used already. "
            f"Connect with Salesforce again.{said}"
        )
    return f"Salesforce refused the sign-in (HTTP {response.status_code}).{said}"


def _exchange_code(code: str, redirect_uri: str) -> dict[str, str]:
    """The tokens and instance URL for an authorization code, or ProviderRejected."""
    client_id, client_secret = _client()
    response, result = _token_api().call(
        "POST",
        "/services/oauth2/token",
        shown_headers={"method": "POST", "grant_type": "authorization_code"},
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
        },
    )
    if response is None:
        raise ProviderRejected(f"Salesforce could not be reached ({result.error}); try again.")
    if response.status_code != 200:
        raise ProviderRejected(_refusal_words(response, renewing=False))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, Mapping) or not answer.get("access_token"):
        raise ProviderRejected("Salesforce answered the sign-in without an access token.")
    if not answer.get("refresh_token"):
        raise ProviderRejected(
            "Salesforce gave no refresh token: the connected app needs the scope "
            '"Perform requests at any time (refresh_token, offline_access)".'
        )
    instance_url = str(answer.get("instance_url") or "")
    if urlsplit(instance_url).scheme not in ("https", "http") or not urlsplit(instance_url).netloc:
        raise ProviderRejected("Salesforce answered the sign-in without a usable instance URL.")
    return {
        "access_token": str(answer["access_token"]),
        "refresh_token": str(answer["refresh_token"]),
        "instance_url": instance_url.rstrip("/"),
    }


def _store_tokens(integration: Integration, tokens: Mapping[str, str]) -> None:
    store_secrets(
        integration,
        {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]},
    )
    integration.options = {**(integration.options or {}), "instance_url": tokens["instance_url"]}


def connect(account_id: int, code: str, redirect_uri: str) -> Integration:
    """A new ServiceMax integration from the code Salesforce sent to the callback:
    the tokens stored encrypted, checked with one call, paused until the release
    form is signed. Added to the session; the caller commits."""
    tokens = _exchange_code(code, redirect_uri)
    integration = Integration(
        account_id=account_id,
        provider=SERVICEMAX.key,
        vehicle_attribute=None,
        options={"technicians": {}},
        vehicle_map={},
        unmatched_vins=[],
    )
    hold_for_release(integration, RELEASE_REASON)
    _store_tokens(integration, tokens)
    _check_or_revoke(integration)
    db.session.add(integration)
    return integration


def reconnect(integration: Integration, code: str, redirect_uri: str) -> None:
    """New tokens for an existing integration (after Salesforce stopped accepting
    the old ones); one that needed attention resumes with its queue. The caller
    commits."""
    tokens = _exchange_code(code, redirect_uri)
    old_credentials, old_options = integration.credentials, integration.options
    _store_tokens(integration, tokens)
    try:
        _check_or_revoke(integration)
    except ProviderRejected:
        integration.credentials, integration.options = old_credentials, old_options
        raise
    old_refresh_token = json.loads(old_credentials or "{}").get("refresh_token")
    if old_refresh_token and old_refresh_token != tokens["refresh_token"]:
        _revoke_token(integration.id, old_refresh_token)
    if needs_fixing(integration):
        activate(integration)


def revoke(integration: Integration) -> None:
    """Revoke the refresh token (and with it the access tokens) at Salesforce.
    Failures are logged, never raised: deleting must not depend on Salesforce."""
    stored = secrets_of(integration)
    token = stored.get("refresh_token") or stored.get("access_token")
    if token:
        _revoke_token(integration.id, str(token))


def _revoke_token(integration_id: int | None, token: str) -> None:
    _, result = _token_api().call(
        "POST",
        "/services/oauth2/revoke",
        shown_headers={"method": "POST"},
        data={"token": token},
    )
    if not result.delivered:
        log.warning(
            "Salesforce did not revoke the token of integration %s: %s",
            integration_id,
            result.error,
        )


def _check_or_revoke(integration: Integration) -> None:
    """The one cheap call; tokens the org's API refuses are revoked, not kept."""
    try:
        SERVICEMAX.check_credentials(integration)
    except ProviderRejected:
        revoke(integration)
        raise


# --- The driver → technician mapping ----------------------------------------------


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def set_technicians(integration: Integration, text: str) -> None:
    """Replace the mapping from lines "Driver Name = a0B…" (blank lines skipped);
    ValidationError lists every bad line under "technicians"."""
    mapping: dict[str, str] = {}
    seen: dict[str, int] = {}
    problems: list[str] = []
    lines = text.splitlines()
    if len(lines) > MAX_TECHNICIANS:
        raise ValidationError({"technicians": [f"At most {MAX_TECHNICIANS} lines."]})
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, equals, record_id = line.partition("=")
        name, record_id = " ".join(name.split()), record_id.strip()
        if not equals or not name or not record_id:
            problems.append(f'Line {number}: write it as "Driver Name = Technician record Id".')
        elif len(name) > MAX_DRIVER_NAME:
            problems.append(f"Line {number}: a driver name has at most {MAX_DRIVER_NAME} "
                            "characters.")  # fmt: skip
        elif not RECORD_ID.fullmatch(record_id):
            problems.append(
                f'Line {number}: "{record_id[:40]}" is not a Salesforce record Id (15 or 18 '
                "letters and digits, like a0B5e00000AbCdEFGH)."
            )
        elif _name_key(name) in seen:
            problems.append(
                f"Line {number}: {name} is already on line {seen[_name_key(name)]}; a driver "
                "is one technician."
            )
        else:
            seen[_name_key(name)] = number
            mapping[name] = record_id
    if problems:
        raise ValidationError({"technicians": problems})
    integration.options = {**(integration.options or {}), "technicians": mapping}


def technicians_text(integration: Integration) -> str:
    """The mapping as the form shows it, one "Driver Name = Id" a line."""
    mapping = (integration.options or {}).get("technicians") or {}
    return "\n".join(f"{name} = {record_id}" for name, record_id in mapping.items())


def technician_of(integration: Integration, driver_name: str) -> str | None:
    mapping = (integration.options or {}).get("technicians") or {}
    wanted = _name_key(driver_name)
    for name, record_id in mapping.items():
        if _name_key(name) == wanted:
            return str(record_id)
    return None


# --- Calls to the org's REST API ----------------------------------------------------


def _salesforce_reason(body: str) -> str:
    """The words of a Salesforce REST error body ([{"errorCode", "message"}])."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200] or "no reason given"
    errors = data if isinstance(data, list) else [data]
    words = [
        ": ".join(str(e[k]) for k in ("errorCode", "message") if e.get(k))
        for e in errors
        if isinstance(e, Mapping)
    ]
    return "; ".join(w for w in words if w)[:300] or json.dumps(data)[:300]


def _error_codes(response: requests.Response) -> set[str]:
    try:
        data = response.json()
    except ValueError:
        return set()
    errors = data if isinstance(data, list) else [data]
    return {str(e.get("errorCode")) for e in errors if isinstance(e, Mapping)}


class SalesforceClient:
    """Calls to one org's REST API for one integration. A 401 renews the access
    token once (stored encrypted on the integration, saved with the caller's
    commit) and repeats the call; a second 401, or a refused renewal, needs a
    person to connect again."""

    def __init__(self, integration: Integration):
        self.integration = integration
        stored = secrets_of(integration)
        self.access_token = str(stored.get("access_token") or "")
        self.refresh_token = str(stored.get("refresh_token") or "")
        self.api = Api(
            (integration.options or {}).get("instance_url", ""),
            {"Accept": "application/json"},
            SALESFORCE,
        )
        self.renewed = False

    def call(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[requests.Response | None, Result]:
        response, result = self._call_once(method, path, **kwargs)
        if response is None or response.status_code != 401 or self.renewed:
            return response, self._read(response, result)
        refused = self._renew()
        if refused is not None:
            return None, refused
        response, result = self._call_once(method, path, **kwargs)
        return response, self._read(response, result)

    def _call_once(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[requests.Response | None, Result]:
        shown = {"method": method, "Authorization": f"Bearer {mask(self.access_token)}"}
        headers = {"Authorization": f"Bearer {self.access_token}"}
        return self.api.call(method, path, shown_headers=shown, headers=headers, **kwargs)

    def _read(self, response: requests.Response | None, result: Result) -> Result:
        """Salesforce's own reading of an answer on top of the shared mapping."""
        if response is None or result.delivered:
            return result
        status = response.status_code
        reason = _salesforce_reason(result.response_body or "")
        result.error = f"Salesforce answered HTTP {status}: {reason}"[:500]
        if status == 401:
            result.needs_attention = (
                "Salesforce refused the access token even after renewing it (HTTP 401); "
                "connect with Salesforce again."
            )
        elif status == 403 and "REQUEST_LIMIT_EXCEEDED" in _error_codes(response):
            # The org's daily API limit: it lifts by itself, so retry on the schedule.
            result.needs_attention = None
        elif status == 403:
            result.needs_attention = (
                f"Salesforce refused the request (HTTP 403: {reason}); check the connected "
                "user's access to ServiceMax technicians."
            )[:500]
        elif status in (400, 404):
            result.permanent = True
        return result

    def _renew(self) -> Result | None:
        """Renew the access token; None when renewed, else the failure's Result (a
        refusal needs attention, an outage is retried)."""
        self.renewed = True
        client_id, client_secret = _client()
        response, result = _token_api().call(
            "POST",
            "/services/oauth2/token",
            shown_headers={"method": "POST", "grant_type": "refresh_token"},
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        if response is None:
            result.error = f"Salesforce token renewal failed: {result.error}"[:500]
            return result
        if response.status_code in (400, 401, 403):
            words = _refusal_words(response, renewing=True)
            result.permanent = False
            result.error = words[:500]
            result.needs_attention = words[:500]
            return result
        if not result.delivered:
            result.error = f"Salesforce token renewal failed: {result.error}"[:500]
            return result
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, Mapping) or not answer.get("access_token"):
            result.delivered = False
            result.error = "Salesforce answered the token renewal without an access token."
            result.response_body = None  # never keep a token answer in an attempt record
            return result
        self.access_token = str(answer["access_token"])
        # With refresh token rotation on, Salesforce issues a new refresh token too.
        self.refresh_token = str(answer.get("refresh_token") or self.refresh_token)
        instance_url = str(answer.get("instance_url") or "").rstrip("/")
        _store_tokens(
            self.integration,
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "instance_url": instance_url or self.api.base_url,
            },
        )
        self.api.base_url = instance_url or self.api.base_url
        return None

    def update_technician(self, payload: Mapping[str, Any]) -> Result:
        path = (
            f"/services/data/{API_VERSION}/sobjects/{TECHNICIAN_OBJECT}/{payload['technician_id']}"
        )
        _, result = self.call(
            "PATCH",
            path,
            json={
                LATITUDE: payload["latitude"],
                LONGITUDE: payload["longitude"],
                CAPTURED_ON: payload["captured_on"],
            },
        )
        return result


# --- The provider ---------------------------------------------------------------


class ServiceMax:
    key = "servicemax"
    name = "ServiceMax"
    software_type = "Field Service Management"
    requirements = (
        "A Salesforce login with ServiceMax installed and API access; technicians' "
        "records matched to your drivers."
    )
    receives_locations = True
    # Created by the Connect with Salesforce button only (connect()), never by a form.
    fields: tuple[Field, ...] = ()
    secret_fields: frozenset[str] = frozenset()

    def check_credentials(self, integration: Integration) -> None:
        """GET the API's version resource with the access token (renewed once on a
        401); an integration made without the Salesforce sign-in is refused."""
        stored = secrets_of(integration)
        if not stored.get("access_token") or not (integration.options or {}).get("instance_url"):
            raise ProviderRejected(CONNECT_ONLY)
        _, result = SalesforceClient(integration).call("GET", f"/services/data/{API_VERSION}/")
        if not result.delivered:
            reason = result.needs_attention or result.error or "no answer"
            raise ProviderRejected(f"Salesforce did not accept the connection: {reason}")

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """Location events of vehicles whose driver is mapped to a technician."""
        if event.event_type.key != "location":
            return None
        vehicle = event.vehicle
        driver = vehicle.driver
        if not driver or vehicle.latitude is None or vehicle.longitude is None:
            return None
        technician_id = technician_of(integration, str(driver.get("name") or ""))
        if technician_id is None:
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
        """One PATCH per message, in order, over one client (one renewal at most)."""
        client = SalesforceClient(integration)
        return send_in_order(
            messages, stop_at, lambda message: client.update_technician(message.payload)
        )

    def revoke(self, integration: Integration) -> None:
        revoke(integration)


SERVICEMAX = ServiceMax()
register(SERVICEMAX)
