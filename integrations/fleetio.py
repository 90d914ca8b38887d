"""Fleetio: odometer readings become meter entries and diagnostic trouble codes
become faults on the Fleetio vehicle with the same VIN. Owns the Fleetio form,
the credential check, which location events make a message, and the API calls.

From Fleetio's documentation (developer.fleetio.com, API version 2024-03-15):
- every call sends `Authorization: Token <api key>` and `Account-Token: <account
  token>`; `X-Api-Version` pins the date version (an API key is otherwise locked
  to the version current when it was made);
- `GET /v1/vehicles` pages by cursor in versions since 2024-01-01: `per_page`
  2–100, `start_cursor` ← the previous page's `next_cursor`, vehicles in `records`
  with `id`, `vin` and `meter_unit` (mi, km or hr);
- `POST /v1/meter_entries {"vehicle_id", "value", "date"}`: no `meter_type` is the
  primary meter; a value out of sequence by date is refused with 422 and
  `{"errors": {"value": [...]}}`;
- `POST /v1/faults {"vehicle_id", "code", "name", "description", "count",
  "external_id", "last_occurred_at", "status", "source"}`, whose `code` must match
  an existing Fault Rule; `POST /v1/fault_rules {"code", "name", "description"}`;
- 401/403 refuse credentials, 422 refuses a record, 429 carries Retry-After.

Assumed, for want of documentation:
- the body of the 422 for a fault whose code has no rule. It is not parsed: any
  422 on a fault makes us create the rule. Fleetio accepting the rule means it was
  missing, and the fault is posted once more; Fleetio refusing it (we assume a
  duplicate code is refused) means the rule exists and the fault's own 422 stands.
  So a new code costs one extra call, a known code none, and no cache of codes
  has to be kept in step with rules people add or delete in Fleetio.
- a report's `fault_codes` are occurrences (one fault each; the simulator sends
  them now and then), not a standing list repeated on every report;
- our fault fields: `count` 1, `status` "open", `source` "Fleethook",
  `external_id` "<VIN>:<code>:<time>", `name` the description (or the code);
- readings go in miles, converted for a vehicle whose `meter_unit` is km; a
  vehicle whose primary meter counts hours gets no odometer.

One message per location event carries all its operations, the meter entry
first, then the faults. All must succeed for it to be delivered. A refused
operation (422) does not stop the others — they are sent, and the refusal is
the message's result (dead, with Fleetio's reason); a failure worth retrying
(401/403, 429, 5xx, timeout) stops the message there, and a retry sends every
operation again (at least once: a meter entry that already went in may then be
refused as out of sequence; a fault may be recorded twice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from flask import current_app

from database import format_rfc3339
from encryption import mask
from integrations.base import (
    Api,
    Field,
    ProviderRejected,
    secrets_of,
    unmatched,
    vehicle_ref,
)
from integrations.models import Integration
from integrations.providers import register
from outbox.failures import shorten
from outbox.models import OutboxMessage
from outbox.registry import Result, send_in_order

# The date version of Fleetio's API this client speaks (sent on every call).
API_VERSION = "2024-03-15"
# Vehicles per page when listing them (Fleetio's maximum).
VEHICLES_PER_PAGE = 100
# A bound on pages listed at once, against a cursor that never ends.
MAX_VEHICLE_PAGES = 1000
KM_PER_MILE = 1.609344
FAULT_SOURCE = "Fleethook"
NAME = "Fleetio"


class _ListingFailed(Exception):
    """Listing Fleetio's vehicles failed; carries the Result of the failed call."""

    def __init__(self, result: Result):
        super().__init__(result.error)
        self.result = result


class Fleetio:
    key = "fleetio"
    name = NAME
    software_type = "Fleet Management"
    requirements = "A Fleetio API key and your account's Account Token."
    receives_locations = False
    fields: tuple[Field, ...] = (
        Field("api_key", "API Key", "secret",
              "A Fleetio API key, made at secure.fleetio.com/api_keys."),
        Field("account_id", "Account Token",
              "Your Fleetio Account Token (Account Id), shown at secure.fleetio.com/api_keys."),
        Field("update_odometer", "Update Odometer", "checkbox",
              "Send each advanced odometer reading as a meter entry.", required=False),
        Field("update_dtcs", "Diagnostic Trouble Codes", "checkbox",
              "Send reported fault codes as faults, adding a Fault Rule for a new code.",
              required=False),
    )  # fmt: skip
    secret_fields = frozenset({"api_key"})

    # -- the form ----------------------------------------------------------------

    def check_credentials(self, integration: Integration) -> None:
        """List one page of vehicles (two: Fleetio's smallest page)."""
        api = self._api(integration)
        response, result = _call(api, "GET", "/v1/vehicles", params={"per_page": 2})
        if response is None:
            raise ProviderRejected(f"Could not reach Fleetio ({result.error}); try again.")
        if response.status_code in (401, 403):
            raise ProviderRejected("Fleetio did not accept this API key and Account Token.")
        if not result.delivered:
            raise ProviderRejected(
                f"Fleetio answered HTTP {response.status_code}; try again later."
            )

    # -- events → messages -------------------------------------------------------

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """A location event's advanced odometer (if Update Odometer) and its fault
        codes (if Diagnostic Trouble Codes), or None when neither applies."""
        if event.event_type.key != "location":
            return None
        options = integration.options or {}
        vehicle, report = event.vehicle, event.report
        occurred_at = format_rfc3339(event.occurred_at)
        operations: list[dict[str, Any]] = []
        odometer, previous = vehicle.odometer_mi, report.get("previous_odometer_mi")
        if options.get("update_odometer") and odometer is not None:
            if previous is None or odometer > previous:
                operations.append({"op": "meter_entry", "value": odometer, "date": occurred_at})
        if options.get("update_dtcs"):
            for fault in report.get("fault_codes") or []:
                operations.append({
                    "op": "fault", "code": fault["code"],
                    "description": fault.get("description") or "", "occurred_at": occurred_at,
                })  # fmt: skip
        if not operations:
            return None
        return {
            "type": "location",
            "vin": vehicle.vin,
            "vehicle_name": vehicle.name,
            "operations": operations,
        }

    # -- messages → Fleetio ------------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        api = self._api(integration)
        missing: set[str] = set()  # VINs already listed afresh and not found, this batch
        return send_in_order(
            messages,
            stop_at,
            lambda message: self._send_one(api, integration, message.payload, missing),
        )

    def _send_one(
        self, api: Api, integration: Integration, payload: dict[str, Any], missing: set[str]
    ) -> Result:
        vin = str(payload["vin"]).strip().upper()
        if vin in missing:
            return unmatched(vin, NAME)
        try:
            vehicle = vehicle_ref(integration, vin, lambda: _list_vehicles(api))
        except _ListingFailed as failed:
            return failed.result
        if vehicle is None:
            missing.add(vin)
            return unmatched(vin, NAME)
        refused: Result | None = None
        last: Result | None = None
        spent = 0
        for operation in payload["operations"]:
            if operation["op"] == "meter_entry":
                result = _meter_entry(api, vehicle, operation, payload)
            else:
                result = _fault(api, vehicle, operation, vin)
            spent += result.duration_ms
            last = result
            if result.delivered:
                continue
            if not result.permanent:
                return replace(result, duration_ms=spent)
            refused = refused or result
        final = refused or last
        assert final is not None, "a message has at least one operation"
        return replace(final, duration_ms=spent)

    def _api(self, integration: Integration) -> Api:
        return Api(_base_url(), _headers(integration), NAME)


def _base_url() -> str:
    return str(current_app.config["FLEETHOOK_FLEETIO_BASE_URL"]).rstrip("/")


def _headers(integration: Integration) -> dict[str, str]:
    return {
        "Authorization": f"Token {secrets_of(integration).get('api_key', '')}",
        "Account-Token": str((integration.options or {}).get("account_id") or ""),
        "X-Api-Version": API_VERSION,
        "Accept": "application/json",
    }


def _shown(api: Api, method: str, path: str) -> dict[str, str]:
    """What an attempt record shows of a call: the credentials masked."""
    token = api.headers["Authorization"].removeprefix("Token ")
    return {
        "method": method,
        "path": path,
        "Authorization": "Token " + mask(token),
        "Account-Token": mask(api.headers["Account-Token"]),
        "X-Api-Version": api.headers["X-Api-Version"],
    }


def _call(api: Api, method: str, path: str, **kwargs: Any) -> tuple[Any, Result]:
    return api.call(method, path, shown_headers=_shown(api, method, path), **kwargs)


def _list_vehicles(api: Api) -> dict[str, Any]:
    """VIN → {"id", "meter_unit"} of every (unarchived) Fleetio vehicle, page by page."""
    found: dict[str, Any] = {}
    cursor: str | None = None
    for _ in range(MAX_VEHICLE_PAGES):
        params: dict[str, Any] = {"per_page": VEHICLES_PER_PAGE}
        if cursor:
            params["start_cursor"] = cursor
        response, result = _call(api, "GET", "/v1/vehicles", params=params)
        if not result.delivered:
            raise _ListingFailed(result)
        try:
            page = response.json()
            records = page["records"]
        except (ValueError, KeyError, TypeError):
            raise _ListingFailed(
                replace(result, delivered=False, error="Fleetio's vehicle list was not understood")
            ) from None
        for record in records:
            vin = str(record.get("vin") or "").strip().upper()
            if vin and record.get("id") is not None:
                found[vin] = {"id": record["id"], "meter_unit": record.get("meter_unit")}
        next_cursor = page.get("next_cursor")
        if not next_cursor or next_cursor == cursor:
            break
        cursor = next_cursor
    return found


def _vehicle_id(vehicle: Any) -> Any:
    # A map written by an earlier version may hold bare ids.
    return vehicle["id"] if isinstance(vehicle, dict) else vehicle


def _labelled(result: Result, label: str) -> Result:
    if result.delivered or not result.error:
        return result
    return replace(result, error=shorten(f"{label}: {result.error}", 500))


def _meter_entry(
    api: Api, vehicle: Any, operation: dict[str, Any], payload: dict[str, Any]
) -> Result:
    unit = vehicle.get("meter_unit") if isinstance(vehicle, dict) else None
    miles = float(operation["value"])
    if unit == "hr":
        return Result(
            delivered=False,
            permanent=True,
            error=f"Meter entry: {payload.get('vehicle_name') or payload['vin']}'s primary "
            "meter in Fleetio counts hours, so its odometer is not sent.",
        )
    value = round(miles * KM_PER_MILE if unit == "km" else miles, 1)
    body = {"vehicle_id": _vehicle_id(vehicle), "value": value, "date": operation["date"]}
    _, result = _call(api, "POST", "/v1/meter_entries", json=body)
    return _labelled(result, "Meter entry")


def _fault(api: Api, vehicle: Any, operation: dict[str, Any], vin: str) -> Result:
    code, description = operation["code"], operation.get("description") or ""
    body = {
        "vehicle_id": _vehicle_id(vehicle),
        "code": code,
        "name": (description or code)[:255],
        "description": description,
        "count": 1,
        "external_id": f"{vin}:{code}:{operation['occurred_at']}"[:255],
        "last_occurred_at": operation["occurred_at"],
        "status": "open",
        "source": FAULT_SOURCE,
    }

    def post() -> Result:
        return _call(api, "POST", "/v1/faults", json=body)[1]

    result = post()
    if result.status_code == 422:
        rule = {"code": code, "name": (description or code)[:255], "description": description}
        _, created = _call(api, "POST", "/v1/fault_rules", json=rule)
        if created.delivered:
            spent = result.duration_ms + created.duration_ms
            result = post()
            result = replace(result, duration_ms=result.duration_ms + spent)
        elif created.status_code != 422:
            result = replace(created, error=shorten(f"Fault rule {code}: {created.error}", 500))
            return result
        # else: Fleetio has the rule already, so the fault's own refusal stands.
    return _labelled(result, f"Fault {code}")


register(Fleetio())
