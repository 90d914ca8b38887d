"""ServiceTitan as a provider: every vehicle position becomes a GPS ping in the
customer's ServiceTitan tenant (plotted on the Dispatch map for the technician the
unit is assigned to), all the messages of a drain batch in one request. Owns the
ServiceTitan form and its setup steps, the credential check, which events make a
message and what a ping says; integrations/servicetitan/client.py makes the calls
and answers.py reads the answers.

Sources:
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

Decisions and assumptions (no documentation settles them):
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
- The credential check posts an empty array: the GPS API has no read call, and
  an empty batch exercises exactly the token, app key, tenant and provider name
  the deliveries will use while recording nothing. 2xx and 400 (ServiceTitan
  read our credentials and only disliked the empty batch) pass; 404 names the
  GPS provider and says how to create it.
- The budget: 60 calls a second is 3,600 a minute. It is counted per
  application and tenant, so every integration of one tenant through Fleethook's
  app shares it; one request per drain batch stays far below it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.errors import ValidationError
from core.times import format_rfc3339, utcnow
from fleet.detector import STATIONARY_MPH
from integrations.base import CURRENT_STATE, Field, ProviderRejected
from integrations.models import Integration
from integrations.providers import register
from integrations.servicetitan.answers import access_problem, each_result, results_of
from integrations.servicetitan.client import REJECTED, Client, Settings
from outbox.models import OutboxMessage
from outbox.registry import Result

TENANT_ID = re.compile(r"[0-9]{1,19}")
# A ping's message for the initial sync, and its statusMessage by whether the
# vehicle was moving (None: no speed reported).
CURRENT_POSITION = "Current position at connection"
STATUS_MESSAGES = {True: "Moving", False: "Stopped", None: "Speed unknown"}


def _epoch_ms(moment: datetime) -> int:
    return round(moment.astimezone(UTC).timestamp() * 1000)


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
    needs_driver_names = False
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
            raise ProviderRejected(access_problem(settings, response))
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
            return each_result(
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
        results = results_of(Client(settings, integration), settings, items, stop_at)
        _remember_units(integration, settings.tenant, items, results)
        return results


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
