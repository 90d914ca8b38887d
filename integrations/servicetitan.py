"""ServiceTitan: every vehicle position becomes a GPS ping in the customer's
ServiceTitan tenant (plotted on the Dispatch map for the technician the unit is
assigned to), all the messages of a drain batch in one request. Owns the
ServiceTitan form and its setup steps, the credential check, the access-token
cache, which events make a message, and how ServiceTitan's answers become
results.

Sources:
- ServiceTitan's Dispatch v2 OpenAPI (`tenant-dispatch-v2.yml`, as shipped in the
  generated SDK compwright/servicetitan, spec/ and docs/dispatch/Model/
  DispatchV2GpsPingCreateRequest.md; the same schema is in the TypeScript types
  generated from it), operation `Gps_Create`: `POST /dispatch/v2/tenant/{tenant}/
  gps-provider/{gps_provider}/gps-pings` (tenant an integer, gps_provider a
  string) takes an array of `Dispatch.V2.GpsPingCreateRequest`: "required:
  unitId, unitName, eventTime, street, city, region, postalCode, message,
  externalId, isNew, statusMessage", all strings but `isNew` (boolean) and
  `eventTime` (string, format date-time); `latitude`, `longitude` and `speed`
  are "type: number, format: double, nullable: true" (speed: "the speed of the
  vehicle at the time of recording", no unit named); `additionalProperties:
  false`. 200 answers an array of `{"externalId", "status": "Fail" | "Success",
  "message"}`; 400 ("The request cannot be processed, check validation errors
  or request format") an `ApiErrorResponse`: `{"type", "title", "status",
  "traceId", "errors": {name: [messages]}, "data"}` (RFC 7807). Security: the
  `ST-App-Key` header and a bearer token.
- developer.servicetitan.io, "Client ID & Secret" and "OAuth 2.0": a token comes
  from `POST {auth}/connect/token`, form `grant_type=client_credentials`,
  `client_id`, `client_secret`, answering `access_token` and `expires_in`
  (seconds); "we recommend you cache the access token". The tenant's admin
  connects an app under Settings → Integrations → API Application Access
  ("Connect New App", choose the app, Allow); "If you allow access, your Client
  ID & Secret Key are generated".
- developer.servicetitan.io, "API Resources: Dispatch", GPS: "Step1) ... Go To:
  Settings→Integrations→GPS. Click Add: Select the GPS provider from the
  available dropdown list ... and Save. Step2) ... Select the Activate button and
  choose the GPS provider and activate. Step3) When you are connecting the App
  ... You will get a drop down of the GPS Providers that you have configured.
  Select the appropriate GPS Provider. By doing this you are allowing access to
  that particular provider via API." The pings are "plotted on the Dispatch Map".
- help.servicetitan.com, "Enable or disable Arrive by GPS for technicians":
  Settings → Integrations > GPS, "Click Edit next to the GPS provider used by the
  technician", "Click the Devices tab" (a technician's device is listed there).
- developer.servicetitan.io, "FAQs: APIs, App Keys & Client Keys": "Our current
  default is 60 calls per second per application per tenant for all APIs except
  reporting APIs" (the request budget below).

Decisions and assumptions (no documentation settles them):
- The "API key" of the original portal maps onto ServiceTitan's app key: it is
  optional, and only a customer who connects through an app of their own (a
  custom app in ServiceTitan's developer portal) enters its key; otherwise every
  call sends Fleethook's app key, FLEETHOOK_SERVICETITAN_APP_KEY.
- The GPS provider in the path is the integration's "GPS Provider" field; left
  blank, FLEETHOOK_SERVICETITAN_GPS_PROVIDER (the name ServiceTitan lists
  Fleethook under). Assumed: the path takes the provider's name as the GPS
  provider list shows it.
- `unitId` is the VIN (how every integration matches vehicles, and it survives a
  vehicle being deleted and imported again); `unitName` the vehicle's name;
  `speed` in mph (the schema names no unit; ServiceTitan is a US product and
  the message text says "mph", so a person reading it is never misled);
  `eventTime` the fix time in RFC 3339 UTC ("...Z"); the address strings are
  empty strings (no reverse geocoding here; the schema wants present, non-null
  strings, and says nothing of empty ones — see the 400 rule below for what
  happens if ServiceTitan refuses them); `externalId` is "fleethook-<vehicle
  id>-<fix time in epoch ms>", unique per position since a vehicle reports one
  position per instant, and the same on every retry.
- `message` (format html, "the response message received from the GPS provider
  about the unit") is a plain sentence: "Moving at 42 mph, heading 270°",
  "Stopped" (below STATIONARY_MPH, the fleet's own idle threshold), and for the
  initial sync "Current position at connection". `statusMessage` ("Gets the
  status message") is one word of state: "Moving" or "Stopped" ("Speed unknown"
  when no speed was reported). Position events carry no ignition, so the state
  is read from the speed alone.
- `isNew` is true until ServiceTitan has accepted a ping of that unit for this
  tenant (read: "this unit is new, add it to the provider's devices"); the units
  it accepted are kept in the integration's `vehicle_map` as VIN → tenant id. A
  unit someone later deletes in ServiceTitan is not announced again (deleting a
  device is how ServiceTitan turns tracking off for it). Assumed: a new unit then
  appears on the provider's Devices tab, where the admin assigns it.
- A late position (its fix older than the vehicle's previous one) makes no ping:
  the Dispatch map shows where a technician is now, and a late ping, being its
  lane's newest message, would supersede a newer one waiting in a backlog.
- The initial sync (CURRENT_STATE) sends one ping with the vehicle's last
  position, or nothing when it has none; its externalId is that position's, so a
  position ServiceTitan already has is not recorded twice.
- A "Fail" item is retried on the schedule, except when its message says the
  data is invalid ("invalid", "required", "must be", "out of range", "malformed"):
  that message is dead with ServiceTitan's words. A "Fail" saying the ping is a
  duplicate or already exists means an earlier attempt got through (at least
  once: the answer to it was lost), so it counts as delivered.
- Whole-request answers: 401 drops the token and tries once more with a new one;
  a second 401 needs attention (the credentials). 403 (the app is not connected
  to the tenant, or not allowed) and 404 (no such tenant or GPS provider) need
  attention, with ServiceTitan's words and what to do in ServiceTitan: nothing
  is lost, the queue waits for a person. 429, 5xx and timeouts are retried
  (Retry-After honoured).
- 400, read from its `errors`: an error naming one ping of the batch (a key like
  "[3].latitude" or "$[3].latitude") and a field that holds that position's own
  data (unitId, unitName, eventTime, latitude, longitude, speed, externalId)
  makes that ping dead with ServiceTitan's words; the batch's other pings were
  not recorded (ASP.NET-style validation refuses the request as a whole —
  assumed), so they are sent again at once without it (once per send; later,
  if there is no time left). Any other 400 — no errors, an error on the request
  itself, or on a field we fill the same way for every ping (the address
  strings, message, statusMessage, isNew) — is a refusal of our request's
  format, which no retry and no single ping can mend, and which would otherwise
  kill every position: the integration needs attention with ServiceTitan's
  words, and its positions wait (latest-wins keeps each vehicle's newest).
- The credential check posts an empty array: the GPS API has no read call, and
  an empty batch exercises exactly the token, app key, tenant and provider name
  the deliveries will use while recording nothing. 2xx and 400 (ServiceTitan
  read our credentials and only disliked the empty batch) pass; 404 names the
  GPS provider and says how to create it.
- Tokens are cached in this process's memory, keyed by a hash of the auth URL
  and client credentials, until shortly before `expires_in` ends (15 minutes if
  ServiceTitan leaves it out). Each process fetches its own; a restart costs one
  token request; nothing is written to the database, so a drain can never
  overwrite credentials a person is changing meanwhile. Token requests count
  against the integration's request budget like the pings.
- The budget: 60 calls a second is 3,600 a minute. It is counted per
  application and tenant, so every integration of one tenant through Fleethook's
  app shares it; one request per drain batch stays far below it.

Batching and order: a drain's batch goes out as one request, so all its messages
were attempted together, and the results list has one entry per message, in
order. A whole-request failure (HTTP error, timeout) is every message's result.
Under 2xx each message gets its item's status — a retried "Fail" in the middle
does not turn the later messages, which ServiceTitan accepted, into failures:
reporting them delivered (behind one ping that will be retried) is better than
sending accepted pings again. The claim's lane rule then holds back only that
vehicle's later pings until its retry; when a backlog forms, only each
vehicle's newest position is sent (latest_value_types)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from flask import current_app

from core.errors import ValidationError
from core.times import format_rfc3339, utcnow
from fleet.detector import STATIONARY_MPH
from integrations.base import CURRENT_STATE, Api, Field, ProviderRejected, secrets_of
from integrations.models import Integration
from integrations.providers import register
from outbox.failures import shorten
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
# A 400's error key that names one ping of the batch: "[3].latitude",
# "$[3].latitude" (System.Text.Json), "pings[3].Latitude" (a parameter's name).
ITEM_ERROR = re.compile(r"[^\[\]]*\[(\d+)\](?:\.(\w+))?")
# The fields that hold a position's own data: an error on one of them is that
# ping's fault. Every other field we fill the same way for every ping.
POSITION_FIELDS = frozenset(
    {"unitid", "unitname", "eventtime", "latitude", "longitude", "speed", "externalid"}
)
# A ping's message for the initial sync, and its statusMessage by whether the
# vehicle was moving (None: no speed reported).
CURRENT_POSITION = "Current position at connection"
STATUS_MESSAGES = {True: "Moving", False: "Stopped", None: "Speed unknown"}

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
            gps_provider=str(
                options.get("gps_provider") or config["FLEETHOOK_SERVICETITAN_GPS_PROVIDER"]
            ),
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
    """Calls to ServiceTitan for one integration: its token, then the GPS API,
    both paced by the integration's request budget."""

    def __init__(self, settings: Settings, integration: Integration):
        self.settings = settings
        self.auth = Api(
            settings.auth_url, {"Accept": "application/json"}, NAME, integration=integration
        )
        self.api = Api(
            settings.base_url,
            {"ST-App-Key": settings.app_key, "Accept": "application/json"},
            NAME,
            integration=integration,
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
        response, result = self.auth.call(
            "POST",
            TOKEN_PATH,
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
        return self.api.call(
            "POST",
            self.settings.pings_path,
            headers={"Authorization": f"Bearer {token}"},
            json=items,
        )

    def post_pings_once_more_on_401(
        self, items: list[dict[str, Any]], stop_at: float
    ) -> tuple[requests.Response | None, Result]:
        """post_pings; a 401 drops the token and sends again with a new one if there
        is time left in the drain (a token may be revoked before it expires)."""
        response, result = self.post_pings(items)
        if response is None or response.status_code != 401:
            return response, result
        self.forget_token()
        if time.monotonic() <= stop_at:
            return self.post_pings(items)
        # No time left for a second request in this drain: the next one fetches a
        # new token before it decides the credentials are bad.
        return response, replace(
            result,
            needs_attention=None,
            error="ServiceTitan refused the access token; a new one is fetched for the "
            "next attempt.",
        )


class ServiceTitan:
    key = "servicetitan"
    name = "ServiceTitan"  # the company spells it as one word, and so does every message
    software_type = "Business Management"
    requirements = (
        "Your ServiceTitan Tenant ID, the GPS provider set up for Fleethook, and the "
        "Client ID and Secret generated when you connect Fleethook under Settings → "
        "Integrations → API Application Access."
    )
    receives_locations = True
    fields: tuple[Field, ...] = (
        Field(
            "tenant_id",
            "Tenant ID",
            help="Digits, shown in ServiceTitan under Settings → Integrations → "
            "API Application Access.",
        ),
        Field(
            "client_id",
            "Client ID",
            help="Generated by ServiceTitan when you connect Fleethook under "
            "API Application Access.",
        ),
        Field(
            "client_secret",
            "Client Secret",
            "secret",
            "Shown once by ServiceTitan beside the Client ID.",
        ),
        Field(
            "gps_provider",
            "GPS Provider",
            help="The GPS provider's name as ServiceTitan lists it under Settings → "
            "Integrations → GPS, and as you selected it when connecting the app. "
            "Leave blank for the name Fleethook is set up with.",
            required=False,
        ),
        Field(
            "api_key",
            "API Key (App Key)",
            "secret",
            "Only if you connect through an app of your own in ServiceTitan's developer "
            "portal: its Application Key (ST-App-Key). Leave blank to use Fleethook's app.",
            required=False,
        ),
    )
    secret_fields = frozenset({"client_secret", "api_key"})
    requests_per_minute = 60 * 60  # 60 calls a second per application per tenant
    budget_source = (
        'ServiceTitan developer portal, "FAQs: APIs, App Keys & Client Keys" '
        "(https://developer.servicetitan.io/docs/faqs-apis-app-keys-client-keys/): "
        '"60 calls per second per application per tenant for all APIs except '
        'reporting APIs".'
    )
    latest_value_types = frozenset({"location"})
    setup_steps: tuple[str, ...] = (
        "In ServiceTitan, go to Settings → Integrations → GPS and click Add: select "
        "Fleethook's GPS provider in the list and save it. Then click Activate and "
        "activate that provider. Enter its name below as the GPS Provider, or leave that "
        "blank for the name Fleethook is set up with.",
        "Go to Settings → Integrations → API Application Access, click Connect New App, "
        "choose Fleethook (or your own app) and click Allow; in the list of GPS "
        "providers, select the one from step 1, which lets the app send its locations. "
        "ServiceTitan then shows the Client ID and Client Secret; the Tenant ID is on "
        "the same page.",
        "Enter the Tenant ID, Client ID and Client Secret below. The API Key is only for "
        "an app of your own from ServiceTitan's developer portal.",
        "Sign the release form: nothing is sent until a person with the authority to "
        "do so agrees that each vehicle's positions (place, speed, heading and time, "
        "with the vehicle's name and VIN) leave Fleethook for this ServiceTitan tenant, "
        "and the form records who signed, their title, when and from where.",
        "After the first positions arrive, each vehicle is a device of the GPS provider "
        "in ServiceTitan, named by its VIN. Under Settings → Integrations → GPS, click "
        "Edit next to the provider and, on the Devices tab, assign each device to the "
        "technician who drives that vehicle: a technician's location shows on the "
        "Dispatch map only through a device assigned to them.",
    )

    # -- the form ----------------------------------------------------------------

    def check_credentials(self, integration: Integration) -> None:
        """A token for the client credentials, then an empty batch of pings for the
        tenant and GPS provider (the GPS API has no read call; see the module)."""
        settings = Settings.of(integration)
        if not TENANT_ID.fullmatch(settings.tenant):
            raise ValidationError(
                {
                    "tenant_id": [
                        "Digits only: the Tenant ID ServiceTitan shows under "
                        "API Application Access."
                    ]
                }
            )
        if not settings.app_key:
            raise ProviderRejected(
                "No ServiceTitan app key is set: enter your app's key as the API Key, or "
                "ask your Fleethook operator to set FLEETHOOK_SERVICETITAN_APP_KEY."
            )
        client = Client(settings, integration)
        # No drain's deadline here: the second try after a 401 is always made.
        response, result = client.post_pings_once_more_on_401([], time.monotonic() + 60)
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
        if status in (403, 404):
            raise ProviderRejected(_access_problem(settings, response))
        raise ProviderRejected(f"ServiceTitan answered HTTP {status}; try again later.")

    # -- events → messages -------------------------------------------------------

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """A location event with a position becomes one GPS ping, and so does the
        initial sync of a vehicle with a last position (without `isNew`, which
        depends on what ServiceTitan has accepted by the time it is sent)."""
        kind = event.event_type.key
        if kind not in ("location", CURRENT_STATE):
            return None
        vehicle = event.vehicle
        if vehicle.latitude is None or vehicle.longitude is None:
            return None
        fixed_at = vehicle.fix_time or event.occurred_at
        previous = (event.report or {}).get("previous_fix_time")
        if kind == "location" and previous is not None and fixed_at < previous:
            return None  # late: see the module
        moving = None if vehicle.speed_mph is None else vehicle.speed_mph >= STATIONARY_MPH
        if kind == CURRENT_STATE:
            message = CURRENT_POSITION
        else:
            message = _description(moving, vehicle.speed_mph, vehicle.heading)
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
                "message": message,
                "statusMessage": STATUS_MESSAGES[moving],
                "externalId": f"fleethook-{vehicle.vehicle_id}-{_epoch_ms(fixed_at)}",
            },
        }

    # -- messages → ServiceTitan -------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """All the messages in one request (a second one without the pings a 400
        named, see the module); one result per message, in order."""
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
        results = _results_of(Client(settings, integration), settings, items, stop_at)
        _remember_units(integration, settings.tenant, items, results)
        return results


def _results_of(
    client: Client,
    settings: Settings,
    items: list[dict[str, Any]],
    stop_at: float,
    resend: bool = True,
) -> list[Result]:
    """Post the pings and read ServiceTitan's answer into one result per ping. A
    400 naming some pings for their own data: those are dead, and the others go
    again at once (`resend`, once) or on the schedule (see the module)."""
    response, result = client.post_pings_once_more_on_401(items, stop_at)
    if response is None or (response.status_code != 400 and not result.delivered):
        return [_whole_request(settings, response, result) for _ in items]
    if response.status_code != 400:
        return _per_item(items, response, result)
    refusal = _Refusal.of(response, len(items))
    if refusal.format_words is not None:
        return [replace(result, needs_attention=_format_problem(refusal)) for _ in items]
    by_position = {
        position: replace(
            result, permanent=True, error=shorten(f"ServiceTitan refused this ping: {words}", 500)
        )
        for position, words in refusal.dead.items()
    }
    rest = [position for position in range(len(items)) if position not in refusal.dead]
    if rest and resend and time.monotonic() <= stop_at:
        again = _results_of(client, settings, [items[p] for p in rest], stop_at, resend=False)
        # Sent once already: a request the budget had no room for is still an attempt.
        by_position.update(
            (p, _not_recorded(r) if r.not_sent else r) for p, r in zip(rest, again, strict=True)
        )
    else:
        by_position.update((p, _not_recorded(result)) for p in rest)
    return [by_position[position] for position in range(len(items))]


def _description(moving: bool | None, speed_mph: float | None, heading: int | None) -> str:
    """The ping's message: what the vehicle was doing, in a short sentence."""
    if moving is None:
        return "Position reported"
    if not moving:
        return "Stopped"
    text = f"Moving at {round(speed_mph or 0)} mph"
    return text if heading is None else f"{text}, heading {heading % 360}°"


def _with_is_new(ping: Mapping[str, Any], known: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """The ping as sent: `isNew` until ServiceTitan has accepted one of its unit."""
    return {**ping, "isNew": known.get(ping["unitId"]) != tenant}


def _each(messages: Sequence[OutboxMessage], result: Result) -> list[Result]:
    """The one result of a whole request, for every message it carried."""
    return [replace(result) for _ in messages]


def _words(response: requests.Response) -> str:
    """ServiceTitan's own words from an error answer (an ApiErrorResponse: title,
    detail, and each error's messages), shortened for a status line."""
    try:
        body = response.json()
    except ValueError:
        return shorten(response.text.strip(), 200)
    if not isinstance(body, Mapping):
        return shorten(json.dumps(body), 200)
    parts = [str(body[key]) for key in ("title", "detail") if body.get(key)]
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        for name, messages in errors.items():
            said = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(f"{name}: {said}" if name else said)
    return shorten(" — ".join(parts), 200)


def _access_problem(settings: Settings, response: requests.Response) -> str:
    """What a 403 or 404 means, in ServiceTitan's words, and what to do about it."""
    said = _words(response) or "no reason given"
    if response.status_code == 404:
        return (
            f'ServiceTitan found no GPS provider "{settings.gps_provider}" for tenant '
            f"{settings.tenant} (HTTP 404: {said}). Create it in ServiceTitan under "
            "Settings → Integrations → GPS (Add, then Activate), select it for the app "
            "under API Application Access, and enter its name as the GPS Provider here."
        )
    return (
        f"ServiceTitan refused access to tenant {settings.tenant} (HTTP 403: {said}). "
        "Connect the app under Settings → Integrations → API Application Access, allow "
        f'its access and select the GPS provider "{settings.gps_provider}".'
    )


def _whole_request(
    settings: Settings, response: requests.Response | None, result: Result
) -> Result:
    """The result of a request that failed as a whole: 403 and 404 need a person
    (see _access_problem); the rest as result_of read them."""
    if response is not None and response.status_code in (403, 404):
        words = _access_problem(settings, response)
        return replace(result, needs_attention=words, error=shorten(words, 500))
    return replace(result)


@dataclass
class _Refusal:
    """A 400's reading: the pings it refuses for their own data (batch position →
    ServiceTitan's words), or, when it refuses our request's format, its words."""

    dead: dict[int, str] = field(default_factory=dict)
    format_words: str | None = None

    @classmethod
    def of(cls, response: requests.Response, batch_size: int) -> _Refusal:
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if not isinstance(errors, Mapping) or not errors:
            return cls(format_words=_words(response) or "no reason given")
        refusal = cls()
        for name, messages in errors.items():
            match = ITEM_ERROR.fullmatch(str(name))
            said = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            position = int(match.group(1)) if match else -1
            of_position = match is not None and (match.group(2) or "").lower() in POSITION_FIELDS
            if not of_position or position >= batch_size:
                return cls(format_words=_words(response))
            before = refusal.dead.get(position)
            refusal.dead[position] = f"{before}; {name}: {said}" if before else f"{name}: {said}"
        return refusal


def _format_problem(refusal: _Refusal) -> str:
    return shorten(
        f"ServiceTitan refused the GPS pings' format (HTTP 400: {refusal.format_words}). "
        "Positions wait here (each vehicle's newest); if the Tenant ID and GPS Provider "
        "are right, tell Fleethook support: ServiceTitan may have changed its ping format.",
        500,
    )


def _not_recorded(result: Result) -> Result:
    """A ping refused only with its batch: retried on the schedule."""
    return replace(
        result,
        delivered=False,
        not_sent=False,
        permanent=False,
        needs_attention=None,
        retry_after=None,
        error="ServiceTitan refused the batch for another ping; this one is sent again.",
    )


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
