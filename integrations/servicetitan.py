"""ServiceTitan: every vehicle position becomes a GPS ping in the customer's
ServiceTitan tenant (Dispatch → technician tracking), all the messages of a drain
batch in one request. Owns the ServiceTitan form, the credential check, the
access-token cache, which events make a message, and the per-ping answers.

From ServiceTitan's documentation (developer.servicetitan.io: "Client ID &
Secret", "OAuth 2.0", and the Dispatch v2 OpenAPI, operation `Gps_Create`):
- a token comes from `POST {auth}/connect/token`, form `grant_type=
  client_credentials`, `client_id`, `client_secret`, answering `access_token` and
  `expires_in` (seconds); every API call sends `Authorization: Bearer <token>` and
  `ST-App-Key: <app key>`. The app key belongs to the *application* (registered in
  ServiceTitan's developer portal); the tenant's admin connects the application
  under Settings → Integrations → API Application Access, which shows the Tenant
  ID and generates that tenant's Client ID and Client Secret;
- `POST {api}/dispatch/v2/tenant/{tenant}/gps-provider/{gps_provider}/gps-pings`
  takes a JSON array of `{"unitId", "unitName", "eventTime", "latitude",
  "longitude", "speed", "street", "city", "region", "postalCode", "externalId",
  "isNew"}` (`unitId`, `unitName`, `eventTime`, the address strings, `externalId`
  and `isNew` are required; latitude, longitude and speed nullable) and answers
  an array of `{"externalId", "status": "Success" | "Fail", "message"}`. A "Fail"
  is a failed ping even under HTTP 200.

Decisions and assumptions (no documentation says otherwise):
- The "API key" of the original portal maps onto ServiceTitan's app key: it is
  optional, and only a customer who connects through an app of their own (a
  custom app in ServiceTitan's developer portal) enters its key; otherwise every
  call sends Fleethook's app key, FLEETHOOK_SERVICETITAN_APP_KEY. The GPS provider
  name in the path is FLEETHOOK_SERVICETITAN_GPS_PROVIDER for all customers.
- `unitId` is the VIN (how every integration matches vehicles, and it survives a
  vehicle being deleted and imported again); `unitName` the vehicle's name;
  `speed` in mph (the schema names no unit); the address strings are empty (no
  reverse geocoding here; the schema wants strings); `externalId` is
  "fleethook-<vehicle id>-<fix time in epoch ms>", unique per position since a
  vehicle reports one position per instant, and the same on every retry.
- `isNew` is true until ServiceTitan has accepted a ping of that unit for this
  tenant (read: "this unit is new, add it to the provider's devices"); the units
  it accepted are kept in the integration's `vehicle_map` as VIN → tenant id. A
  unit someone later deletes in ServiceTitan is not announced again (deleting a
  device is how ServiceTitan turns tracking off for it).
- A "Fail" item is retried on the schedule, except when its message says the
  data is invalid ("invalid", "required", "must be", "out of range", "malformed"):
  that message is dead with ServiceTitan's words. A "Fail" saying the ping is a
  duplicate or already exists means an earlier attempt got through (at least
  once: the answer to it was lost), so it counts as delivered.
- The credential check posts an empty array: the GPS API has no read call, and
  an empty batch exercises exactly the token, app key, tenant and provider name
  the deliveries will use while recording nothing. 2xx and 400 (ServiceTitan
  read our credentials and only disliked the empty batch) pass.
- Tokens are cached in this process's memory, keyed by a hash of the auth URL
  and client credentials, until shortly before `expires_in` ends (15 minutes if
  ServiceTitan leaves it out). Each process fetches its own; a restart costs one
  token request; nothing is written to the database, so a drain can never
  overwrite credentials a person is changing meanwhile. A 401 from the API drops
  the token and retries once with a new one; a second 401 (or a 403) is "Needs
  attention".

Batching and order: a drain's batch goes out as one request, so all its messages
were attempted together, and the results list has one entry per message, in
order. A whole-request failure (HTTP error, timeout) is every message's result.
Under 2xx each message gets its item's status — a retried "Fail" in the middle
does not turn the later messages, which ServiceTitan accepted, into failures:
reporting them delivered (out of order, behind one ping that will be retried) is
better than sending accepted pings again. The claim's head-of-line rule then
holds back everything queued after the failed message until its retry."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from flask import current_app

from database import format_rfc3339, utcnow
from encryption import mask
from errors import ValidationError
from integrations.base import Api, Field, ProviderRejected, secrets_of
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result

NAME = "ServiceTitan"
TOKEN_PATH = "/connect/token"
GPS_PINGS_PATH = "/dispatch/v2/tenant/{tenant}/gps-provider/{provider}/gps-pings"
REJECTED = "ServiceTitan did not accept this client id and secret."
# A token is renewed this many seconds before ServiceTitan says it expires, so
# none expires between being picked and being used.
TOKEN_MARGIN_SECONDS = 60
# ServiceTitan's tokens live 15 minutes; assumed when an answer leaves it out.
DEFAULT_TOKEN_SECONDS = 900
# Words in a "Fail" item's message: the ping went in earlier / the ping is bad.
ALREADY_RECORDED = re.compile(r"duplicate|already (exists|recorded|received|processed)", re.I)
INVALID_DATA = re.compile(r"invalid|required|must be|out of range|malformed|not valid", re.I)
TENANT_ID = re.compile(r"[0-9]{1,19}")

# Access tokens of this process: credential hash → (token, monotonic expiry).
_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _epoch_ms(moment: datetime) -> int:
    return round(moment.astimezone(UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Settings:
    """Everything a call needs, from the integration and the app's settings."""

    tenant: str
    client_id: str
    client_secret: str
    app_key: str
    auth_url: str
    base_url: str
    gps_provider: str

    @classmethod
    def of(cls, integration: Integration) -> Settings:
        secrets = secrets_of(integration)
        options = integration.options or {}
        config = current_app.config
        return cls(
            tenant=str(options.get("tenant_id") or ""),
            client_id=str(options.get("client_id") or ""),
            client_secret=str(secrets.get("client_secret") or ""),
            app_key=str(secrets.get("api_key") or config["FLEETHOOK_SERVICETITAN_APP_KEY"] or ""),
            auth_url=str(config["FLEETHOOK_SERVICETITAN_AUTH_URL"]).rstrip("/"),
            base_url=str(config["FLEETHOOK_SERVICETITAN_BASE_URL"]).rstrip("/"),
            gps_provider=str(config["FLEETHOOK_SERVICETITAN_GPS_PROVIDER"]),
        )

    @property
    def token_key(self) -> str:
        material = "\0".join((self.auth_url, self.client_id, self.client_secret))
        return hashlib.sha256(material.encode()).hexdigest()

    @property
    def pings_path(self) -> str:
        return GPS_PINGS_PATH.format(
            tenant=quote(self.tenant, safe=""), provider=quote(self.gps_provider, safe="")
        )


class Client:
    """Calls to ServiceTitan for one integration: its token, then the GPS API."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.auth = Api(settings.auth_url, {"Accept": "application/json"}, NAME)
        self.api = Api(
            settings.base_url, {"ST-App-Key": settings.app_key, "Accept": "application/json"}, NAME
        )

    def token(self) -> tuple[str | None, Result | None]:
        """The cached token, or a new one; (None, the failure) if none came.
        Refused client credentials are a failure that needs attention."""
        key = self.settings.token_key
        now = time.monotonic()
        with _tokens_lock:
            cached = _tokens.get(key)
        if cached is not None and cached[1] > now:
            return cached[0], None
        shown = {"method": "POST", "url": self.settings.auth_url + TOKEN_PATH}
        response, result = self.auth.call(
            "POST",
            TOKEN_PATH,
            shown_headers=shown,
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
            },
        )
        if response is None:
            return None, result
        if response.status_code in (400, 401, 403):
            # invalid_client (OAuth answers 400 or 401): new credentials are needed.
            return None, replace(result, needs_attention=REJECTED, error=REJECTED)
        if not result.delivered:
            return None, result
        try:
            answer = response.json()
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, replace(
                result,
                delivered=False,
                response_body=None,  # might hold a token
                error="ServiceTitan's token answer had no access_token",
            )
        expires = now + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)
        with _tokens_lock:
            for stale in [k for k, (_, at) in _tokens.items() if at <= now]:
                del _tokens[stale]
            _tokens[key] = (token, expires)
        return token, None

    def forget_token(self) -> None:
        with _tokens_lock:
            _tokens.pop(self.settings.token_key, None)

    def post_pings(self, items: list[dict[str, Any]]) -> tuple[requests.Response | None, Result]:
        """POST the pings with the current token (fetching one if needed)."""
        token, failure = self.token()
        if token is None:
            assert failure is not None
            return None, failure
        shown = {
            "method": "POST",
            "url": self.settings.base_url + self.settings.pings_path,
            "Authorization": "Bearer " + mask(token),
            "ST-App-Key": mask(self.settings.app_key),
            "Content-Type": "application/json",
        }
        return self.api.call(
            "POST",
            self.settings.pings_path,
            shown_headers=shown,
            headers={"Authorization": f"Bearer {token}"},
            json=items,
        )


class ServiceTitan:
    key = "servicetitan"
    name = "ServiceTitan"  # the company spells it as one word, and so does every message
    software_type = "Business Management"
    requirements = (
        "Your ServiceTitan Tenant ID, and the Client ID and Secret generated when you "
        "connect Fleethook under Settings → Integrations → API Application Access."
    )
    receives_locations = True
    fields: tuple[Field, ...] = (
        Field("tenant_id", "Tenant ID",
              help="Digits, shown in ServiceTitan under Settings → Integrations → "
              "API Application Access."),
        Field("client_id", "Client ID",
              help="Generated by ServiceTitan when you connect Fleethook under "
              "API Application Access."),
        Field("client_secret", "Client Secret", "secret",
              "Shown once by ServiceTitan beside the Client ID."),
        Field("api_key", "API Key (App Key)", "secret",
              "Only if you connect through an app of your own in ServiceTitan's developer "
              "portal: its Application Key (ST-App-Key). Leave blank to use Fleethook's app.",
              required=False),
    )  # fmt: skip
    secret_fields = frozenset({"client_secret", "api_key"})

    # -- the form ----------------------------------------------------------------

    def check_credentials(self, integration: Integration) -> None:
        """A token for the client credentials, then an empty batch of pings for the
        tenant and GPS provider (the GPS API has no read call; see the module)."""
        settings = Settings.of(integration)
        if not TENANT_ID.fullmatch(settings.tenant):
            raise ValidationError(
                {"tenant_id": ["Digits only: the Tenant ID ServiceTitan shows under "
                               "API Application Access."]}
            )  # fmt: skip
        if not settings.app_key:
            raise ProviderRejected(
                "No ServiceTitan app key is set: enter your app's key as the API Key, or "
                "ask your Fleethook operator to set FLEETHOOK_SERVICETITAN_APP_KEY."
            )
        client = Client(settings)
        response, result = client.post_pings([])
        if response is not None and response.status_code == 401:
            client.forget_token()  # a cached token may have been revoked: one more try
            response, result = client.post_pings([])
        if result.needs_attention == REJECTED:
            raise ProviderRejected(REJECTED)
        if response is None:
            raise ProviderRejected(
                f"Could not get an answer from ServiceTitan ({result.error}); try again."
            )
        status = response.status_code
        if 200 <= status < 300 or status == 400:
            return
        client.forget_token()
        if status == 401:
            raise ProviderRejected(
                f"ServiceTitan refused the app key or token for tenant {settings.tenant}: "
                "check the Tenant ID and that the app is connected to it."
            )
        if status == 403:
            raise ProviderRejected(
                f"ServiceTitan refused access to tenant {settings.tenant}: connect the app "
                "under Settings → Integrations → API Application Access and allow GPS."
            )
        if status == 404:
            raise ProviderRejected(
                f"ServiceTitan does not know tenant {settings.tenant} or the GPS provider "
                f'"{settings.gps_provider}".'
            )
        raise ProviderRejected(f"ServiceTitan answered HTTP {status}; try again later.")

    # -- events → messages -------------------------------------------------------

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """A location event with a position becomes one GPS ping (without `isNew`,
        which depends on what ServiceTitan has accepted by the time it is sent)."""
        if event.event_type.key != "location":
            return None
        vehicle = event.vehicle
        if vehicle.latitude is None or vehicle.longitude is None:
            return None
        fixed_at = vehicle.fix_time or event.occurred_at
        return {
            "type": "location",
            "ping": {
                "unitId": vehicle.vin,
                "unitName": vehicle.name,
                "eventTime": format_rfc3339(fixed_at),
                "latitude": vehicle.latitude,
                "longitude": vehicle.longitude,
                "speed": vehicle.speed_mph,
                "street": "",
                "city": "",
                "region": "",
                "postalCode": "",
                "externalId": f"fleethook-{vehicle.vehicle_id}-{_epoch_ms(fixed_at)}",
            },
        }

    # -- messages → ServiceTitan -------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """All the messages in one request; one result per message, in order."""
        settings = Settings.of(integration)
        if not settings.app_key:
            return _each(
                messages,
                Result(
                    delivered=False,
                    needs_attention="no ServiceTitan app key is set (FLEETHOOK_SERVICETITAN_"
                    "APP_KEY, or the integration's API Key).",
                ),
            )
        known = integration.vehicle_map or {}
        items = [
            _with_is_new(message.payload["ping"], known, settings.tenant) for message in messages
        ]
        client = Client(settings)
        response, result = client.post_pings(items)
        if response is not None and response.status_code == 401:
            client.forget_token()
            if time.monotonic() <= stop_at:
                response, result = client.post_pings(items)
            else:
                # No time left for a second request in this drain: the next one
                # fetches a new token before it decides the credentials are bad.
                result = replace(
                    result, needs_attention=None, error="ServiceTitan refused the access "
                    "token; a new one is fetched for the next attempt."
                )  # fmt: skip
        if response is None or not result.delivered:
            return _each(messages, result)
        results = _per_item(items, response, result)
        _remember_units(integration, settings.tenant, items, results)
        return results


def _with_is_new(ping: Mapping[str, Any], known: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """The ping as sent: `isNew` until ServiceTitan has accepted one of its unit."""
    return {**ping, "isNew": known.get(ping["unitId"]) != tenant}


def _each(messages: Sequence[OutboxMessage], result: Result) -> list[Result]:
    """The one result of a whole request, for every message it carried."""
    return [replace(result) for _ in messages]


def _per_item(
    items: list[dict[str, Any]], response: requests.Response, result: Result
) -> list[Result]:
    """Each ping's result from ServiceTitan's list of per-item answers: matched by
    position when the list follows the request, else by externalId."""
    try:
        answers = response.json()
    except ValueError:
        answers = None
    if not isinstance(answers, list) or not all(isinstance(a, Mapping) for a in answers):
        failed = replace(
            result,
            delivered=False,
            error=f"ServiceTitan answered HTTP {response.status_code} without a status per ping",
        )
        return [replace(failed) for _ in items]
    aligned = len(answers) == len(items) and all(
        str(answer.get("externalId")) == item["externalId"]
        for answer, item in zip(answers, items, strict=True)
    )
    by_id = {str(answer.get("externalId")): answer for answer in answers}
    results = []
    for position, item in enumerate(items):
        answer = answers[position] if aligned else by_id.get(item["externalId"])
        results.append(_item_result(result, answer))
    return results


def _item_result(result: Result, answer: Mapping[str, Any] | None) -> Result:
    if answer is None:
        return replace(
            result,
            delivered=False,
            response_body=None,
            error="ServiceTitan's answer did not mention this ping",
        )
    status = str(answer.get("status") or "")
    words = str(answer.get("message") or "").strip()
    body = json.dumps(dict(answer))[:4096]
    if status.lower() == "success" or ALREADY_RECORDED.search(words):
        return replace(result, delivered=True, response_body=body, error=None)
    reason = words or "no reason given"
    if INVALID_DATA.search(words):
        error = f"ServiceTitan refused this ping: {reason}"
        return replace(result, delivered=False, permanent=True, response_body=body, error=error)
    error = f"ServiceTitan answered {status or 'no status'} for this ping: {reason}"
    return replace(result, delivered=False, response_body=body, error=error[:500])


def _remember_units(
    integration: Integration, tenant: str, items: list[dict[str, Any]], results: list[Result]
) -> None:
    """Record the units ServiceTitan has accepted a ping of, so later pings of
    theirs are not `isNew` (committed with the drain's results)."""
    known = dict(integration.vehicle_map or {})
    accepted = {
        item["unitId"]
        for item, result in zip(items, results, strict=True)
        if result.delivered and known.get(item["unitId"]) != tenant
    }
    if accepted:
        integration.vehicle_map = {**known, **dict.fromkeys(accepted, tenant)}
        integration.vehicle_map_at = utcnow()


register(ServiceTitan())
