"""Agile Fleet (FleetCommander; Fuel Management): keeps one meter of each vehicle
— odometer, engine hours or fuel level — in step with an Agile Fleet account.

ASSUMED API. No public documentation of an Agile Fleet API was found
(../shared/PROVIDERS.md), so nothing below rests on the vendor's word, and the
portal says so where the customer connects (the requirements line, the API key's
help and the setup steps). The whole assumed shape is the block of constants
under "The assumed API" and the two functions that read its answers
(`_vehicles_page`, `_reading_body`):

- base `https://api.agilefleet.com` (FLEETHOOK_AGILEFLEET_BASE_URL), the API key
  in an `X-API-Key` header on every call;
- `GET /v1/vehicles?limit=100[&cursor=…]` → `{"vehicles": [{"id", "vin", …}],
  "next_cursor": "…" | null}`: the vehicles, by pages; also the credential check
  (with `limit=1`);
- `POST /v1/vehicles/{id}/readings {"type": "odometer" | "engine_hours" |
  "fuel_level", "value": <number>, "unit": "mi" | "h" | "%", "recorded_at":
  "<RFC 3339>"}` → 2xx: one meter reading;
- 401/403 for a bad key, 422 for a reading refused for good, 429 with
  `Retry-After` (the same reading of answers as every provider, integrations.base);
- a request budget of 60 a minute (ASSUMED: no limit is published; a cautious
  figure an integration may change once Agile Fleet names its limit).

Once the vendor's documentation is in hand, only this module and its fake
(tests/fakes/agilefleet.py) change: the header, the paths, the query and answer
field names, the reading body and perhaps the credential check. The form, the
payloads in the outbox and the events that feed them stay.

Our choices: only the numeric attributes make sense for a fuel-management system,
so the Vehicle Attribute offers odometer, engine hours and fuel level; location
events feed them (the odometer only when it advanced; a late report, older than
the vehicle's previous one, feeds none); a message's type is its reading's type,
of which only a vehicle's newest matters (latest_value_types); the initial sync
(CURRENT_STATE) posts the meter's current value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from flask import current_app

from core.times import format_rfc3339
from integrations.attributes import VEHICLE_ATTRIBUTE, VEHICLE_ATTRIBUTES, event_value
from integrations.base import (
    Api,
    Field,
    ListingFailed,
    ProviderRejected,
    json_of,
    secrets_of,
    send_to_vehicle,
)
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result, send_in_order

NAME = "Agile Fleet"

# -- The assumed API (no public documentation; see the module docstring) -------
API_KEY_HEADER = "X-API-Key"
VEHICLES_PATH = "/v1/vehicles"  # GET ?limit=&cursor= → {"vehicles", "next_cursor"}
READINGS_PATH = "/v1/vehicles/{vehicle_id}/readings"  # POST one reading
PAGE_SIZE = 100
# Our attribute → (the reading's type, its unit).
READING_TYPES = {
    "odometer": ("odometer", "mi"),
    "engine_hours": ("engine_hours", "h"),
    "fuel_level": ("fuel_level", "%"),
}
# No published limit: a cautious guess, which each integration may change.
ASSUMED_REQUESTS_PER_MINUTE = 60
# ------------------------------------------------------------------------------
# What the portal says wherever it asks for Agile Fleet's settings.
ASSUMED = (
    "Agile Fleet publishes no API documentation: Fleethook speaks an assumed API until "
    "Agile Fleet's documentation is in hand."
)

MAX_PAGES = 1000  # 100,000 vehicles: more means a loop, not a fleet
ATTRIBUTES = tuple((key, label) for key, label in VEHICLE_ATTRIBUTES if key in READING_TYPES)


def _vehicles_page(body: Any) -> tuple[dict[str, str], str | None]:
    """VIN → vehicle id of one page of the assumed vehicle list, and the next cursor."""
    if not isinstance(body, Mapping):
        raise ValueError("not a JSON object")
    found = {}
    for vehicle in body.get("vehicles") or []:
        vin = str(vehicle.get("vin") or "").strip().upper()
        if vin and vin not in found:
            found[vin] = str(vehicle["id"])
    return found, body.get("next_cursor") or None


def _reading_body(reading: Mapping[str, Any]) -> dict[str, Any]:
    """The assumed body of one meter reading."""
    return {
        "type": reading["type"],
        "value": reading["value"],
        "unit": reading["unit"],
        "recorded_at": reading["recorded_at"],
    }


def reading_value(attribute: str | None, event: Any) -> float | None:
    """The attribute's value an event brings (integrations/attributes.py), or its
    value now from the initial-sync event; as a reading, a number."""
    value = event_value(attribute, event)
    return float(value) if value is not None else None


class AgileFleetProvider:
    key = "agilefleet"
    name = NAME
    software_type = "Fuel Management"
    requirements = (
        f"An Agile Fleet API key. {ASSUMED} It sends the key in an X-API-Key header, reads "
        "/v1/vehicles and posts meter readings: confirm with Agile Fleet that your account "
        "offers that before relying on it."
    )
    receives_locations = False
    needs_driver_names = False
    requests_per_minute = ASSUMED_REQUESTS_PER_MINUTE
    budget_source = (
        "assumed: Agile Fleet publishes no API documentation and no rate limit; 60 requests "
        "a minute is a cautious guess until Agile Fleet names its limit"
    )
    latest_value_types = frozenset(kind for kind, _unit in READING_TYPES.values())
    setup_steps: tuple[str, ...] = (
        f"{ASSUMED} Ask Agile Fleet (FleetCommander) for API access for your account, "
        "and check with them that it takes an API key in an X-API-Key header, lists "
        "vehicles with their VINs at /v1/vehicles and takes meter readings at "
        "/v1/vehicles/<id>/readings. If theirs differs, Fleethook cannot talk to it yet; "
        "the connection check says so when the vehicle list is not where it is assumed.",
        "Ask Agile Fleet for an API key and paste it below.",
        "Make sure each vehicle in Agile Fleet carries its VIN: vehicles are matched by "
        "VIN, and those Agile Fleet lacks are listed on the integration's page.",
        "Choose the meter this integration keeps (odometer, engine hours or fuel level); "
        "add another integration for another meter.",
        "Fleethook sends at most 60 requests a minute, an assumed limit: ask Agile Fleet "
        "for theirs and change Requests a minute to match.",
    )
    fields: tuple[Field, ...] = (
        Field(
            "api_key",
            "API key",
            "secret",
            help="The API key Agile Fleet gave your account. Fleethook sends it in an "
            "X-API-Key header: an assumed shape until Agile Fleet's API documentation "
            "is in hand.",
        ),
        replace(
            VEHICLE_ATTRIBUTE,
            choices=ATTRIBUTES,
            help="The meter this integration keeps in sync (a fuel-management system takes "
            "odometer, engine hours or fuel level); add another integration for another.",
        ),
    )
    secret_fields = frozenset({"api_key"})

    def _api(self, integration: Integration) -> tuple[Api, str]:
        key = str(secrets_of(integration).get("api_key") or "")
        base_url = current_app.config["FLEETHOOK_AGILEFLEET_BASE_URL"]
        return Api(base_url, {API_KEY_HEADER: key}, NAME, integration), key

    def check_credentials(self, integration: Integration) -> None:
        """One page of one vehicle, which needs a good key."""
        api, key = self._api(integration)
        response, result = api.call("GET", VEHICLES_PATH, params={"limit": 1})
        if response is None:
            raise ProviderRejected(f"Agile Fleet could not be reached ({result.error}); try again.")
        if response.status_code in (401, 403):
            raise ProviderRejected("Agile Fleet did not accept this API key.")
        if response.status_code == 404:
            raise ProviderRejected(
                "Agile Fleet has no vehicle list where Fleethook expects it: its API may "
                "differ from the one Fleethook assumes (no public documentation exists)."
            )
        if not result.delivered:
            raise ProviderRejected(f"Agile Fleet answered HTTP {response.status_code}; try again.")

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        attribute = integration.vehicle_attribute
        value = reading_value(attribute, event)
        if value is None or attribute not in READING_TYPES:
            return None
        kind, unit = READING_TYPES[attribute]
        return {
            "type": kind,
            "vin": event.vehicle.vin,
            "vehicle": event.vehicle.name,
            "reading": {
                "type": kind,
                "value": value,
                "unit": unit,
                # (the initial sync's event is dated at the vehicle's last fix)
                "recorded_at": format_rfc3339(event.occurred_at),
            },
        }

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        api, key = self._api(integration)
        return send_in_order(
            messages,
            stop_at,
            lambda message: self._post_reading(api, key, integration, message.payload),
        )

    def _post_reading(
        self, api: Api, key: str, integration: Integration, payload: Mapping[str, Any]
    ) -> Result:
        """POST the reading to the vehicle; a 404 (the vehicle went away since the
        map was listed) lists the vehicles again and tries once more."""
        body = _reading_body(payload["reading"])

        def post(vehicle_id: str) -> Result:
            _, result = api.call("POST", READINGS_PATH.format(vehicle_id=vehicle_id), json=body)
            return result

        return send_to_vehicle(
            integration, payload["vin"], NAME, lambda: self._vin_map(api, key), post
        )

    def _vin_map(self, api: Api, key: str) -> dict[str, str]:
        """VIN → vehicle id over every page; ListingFailed if a page did not come."""
        vins: dict[str, str] = {}
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        for _ in range(MAX_PAGES):
            response, result = api.call("GET", VEHICLES_PATH, params=params)
            if response is None or not result.delivered:
                raise ListingFailed(result)
            try:
                page, cursor = _vehicles_page(json_of(response))
            except (ValueError, KeyError, AttributeError):
                result.delivered = False
                result.error = "Agile Fleet answered the vehicle list in an unexpected shape"
                raise ListingFailed(result) from None
            vins = {**page, **vins}
            if cursor is None:
                break
            params = {**params, "cursor": cursor}
        return vins


PROVIDER = AgileFleetProvider()
register(PROVIDER)
