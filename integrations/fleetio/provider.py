"""Fleetio as a provider: odometer readings become meter entries and diagnostic
trouble codes become faults on the Fleetio vehicle with the same VIN. Owns the
Fleetio form, the credential check, and which events make which operations (and so
how often a vehicle's odometer is sent); integrations/fleetio/sending.py makes the
calls.

How this integration uses them:
- Odometer pacing: a location report makes a meter entry when its odometer
  advanced and its fix crosses an N-minute boundary since the vehicle's previous
  fix (floor(fix / N) != floor(previous / N); a vehicle's first fix counts), N the
  integration's "Odometer every" (default 15 minutes); Ignition Off (trip end)
  always sends the current odometer. A late report (its fix older than the
  previous one) sends nothing. The reading sent is the odometer itself, so a
  skipped report loses no distance: the next entry carries it.
- Meter entries: more than BULK_THRESHOLD in one drain go as bulk jobs (100
  records a job), fewer one POST each. A reading equal to one this integration
  already delivered for the vehicle is not sent again (Fleetio would store the
  duplicate). A reading whose earlier POST got no answer (timeout, 5xx) may be
  stored already: before sending it again, the vehicle's entries from its date on
  are read, and an equal value there counts as delivered.
- Bulk outcome: after the job is accepted its status is read (`GET
  /v1/bulk_api_jobs/{id}`) until it is finished or the drain's time to send
  ends; records the finished job reports as refused end dead with Fleetio's
  words, the others are delivered. A job still running when the drain must stop
  counts as delivered on its acceptance: its later refusals are not read.
- Faults: one open fault per vehicle and code, its id kept in
  `provider_state["open_faults"]["<VIN>|<code>"]`. A code newly reported opens a
  fault (creating its Fault Rule first when Fleetio has none); a code still
  reported updates that fault's `count` and `last_occurred_at` at most once per
  odometer interval (the same boundary rule); a code that was reported and is
  absent from a report's `fault_codes` is resolved; reported again later, it opens
  a new fault. A report without `fault_codes` says nothing about faults. Faults go
  one by one, not in bulk jobs: only the single create answers with the fault's
  id, which its update and resolution need.
- Vehicles: a VIN is looked up with `filter[vin][eq]` the first time it is met and
  again after VIN_TRUSTED_FOR; a VIN Fleetio lacks is listed on the integration's
  page (`unmatched_vins`) and its messages fail at once for
  MISS_REMEMBERED_FOR before it is looked up again. When more than
  LOOKUPS_BEFORE_LISTING unknown VINs meet in one drain (the initial sync after
  connecting), the vehicles are listed page by page instead: one request per 100
  vehicles rather than one per VIN.
- Initial sync (CURRENT_STATE): the vehicle's current odometer as a meter entry
  and one open fault for each code open now (open faults of other codes resolved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.times import format_rfc3339
from integrations.base import CURRENT_STATE, Field, ProviderRejected
from integrations.fleetio.sending import NAME, Sending, api_for
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result

# Fleetio's documented throttle (see budget_source).
REQUESTS_PER_MINUTE = 20
# The odometer interval: its form field, default and range.
INTERVAL_FIELD = "odometer_interval_minutes"
DEFAULT_INTERVAL_MINUTES = 15
INTERVAL_RANGE = (1, 1440)


def interval_minutes(integration: Integration) -> int:
    """The integration's odometer interval in minutes (the form checks the range)."""
    value = (integration.options or {}).get(INTERVAL_FIELD)
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, INTERVAL_RANGE[0]), INTERVAL_RANGE[1])
    return DEFAULT_INTERVAL_MINUTES


def crosses_interval(fix: datetime, previous: datetime | None, minutes: int) -> bool:
    """Whether `fix` lies in another N-minute slot (counted from the epoch) than
    `previous`: at most one report per slot passes, whatever the reporting rate,
    without remembering what was sent. A first fix (no previous) passes."""
    if previous is None:
        return True
    step = minutes * 60
    return math.floor(fix.timestamp() / step) != math.floor(previous.timestamp() / step)


class Fleetio:
    key = "fleetio"
    name = NAME
    software_type = "Fleet Management"
    requirements = "A Fleetio API key and your account's Account Token."
    receives_locations = False
    needs_driver_names = False
    fields: tuple[Field, ...] = (
        Field(
            "api_key",
            "API Key",
            "secret",
            "A Fleetio API key: Account Settings → Manage API Keys → Add API Key "
            "(secure.fleetio.com/api_keys).",
        ),
        Field(
            "account_id",
            "Account Token",
            help="Your Fleetio Account Token, shown below the API keys on the same page.",
        ),
        Field(
            "update_odometer",
            "Update Odometer",
            "checkbox",
            "Send the odometer as meter entries: at most one per vehicle per interval "
            "below while it moves, and one at every trip end.",
            required=False,
        ),
        Field(
            INTERVAL_FIELD,
            "Odometer every (minutes)",
            "number",
            f"At most one meter entry per vehicle this often while it drives "
            f"({INTERVAL_RANGE[0]}–{INTERVAL_RANGE[1]}; blank: "
            f"{DEFAULT_INTERVAL_MINUTES}). Trip ends always send one.",
            required=False,
            minimum=INTERVAL_RANGE[0],
            maximum=INTERVAL_RANGE[1],
        ),
        Field(
            "update_dtcs",
            "Diagnostic Trouble Codes",
            "checkbox",
            "Keep one open fault per vehicle and code: opened when the code is reported, "
            "resolved when it clears; a Fault Rule is added for a new code.",
            required=False,
        ),
    )
    secret_fields = frozenset({"api_key"})
    requests_per_minute = REQUESTS_PER_MINUTE
    budget_source = (
        "Fleetio API reference, Rate Limiting (developer.fleetio.com/reference/rate-limiting): "
        '"a simple throttle of 20 requests per minute"; the current page '
        "(developer.fleetio.com/docs/overview/rate-limiting) makes the limit depend on the "
        "plan and keeps the 20-a-minute example."
    )
    # Every meter entry is kept in Fleetio's history and every fault change matters.
    latest_value_types: frozenset[str] = frozenset()
    setup_steps: tuple[str, ...] = (
        "In Fleetio, open Account Settings → Manage API Keys (secure.fleetio.com/api_keys), "
        "click Add API Key, name it (for example Fleethook) and copy the key into API Key.",
        "On the same page, below the API keys, copy the Account Token into Account Token.",
        "Give each vehicle in Fleetio the same VIN as here: vehicles are matched by VIN, and "
        "a VIN Fleetio does not have is listed on this integration's page.",
        "Odometers go to each vehicle's primary meter, converted when it counts kilometres; "
        "a vehicle whose primary meter counts hours gets no odometer.",
        "Fault codes need a Fault Rule in Fleetio (Settings → Fault Rules); one is added for "
        "a code Fleetio does not know, and you can set its priority there.",
        "Fleetio's request limit depends on your plan; this integration keeps to 20 requests "
        "a minute unless you change its budget, and sends many odometers as one bulk job.",
    )

    # -- the form ----------------------------------------------------------------

    def check_credentials(self, integration: Integration) -> None:
        """List one page of vehicles (two: Fleetio's smallest page)."""
        api = api_for(integration)
        response, result = api.call("GET", "/v1/vehicles", params={"per_page": 2})
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
        """The operations an event asks of Fleetio (see the module's rules), or
        None when it asks none."""
        options = integration.options or {}
        key = event.event_type.key
        if key == "location":
            operations = _location_operations(options, interval_minutes(integration), event)
        elif key == "ignition_off":
            operations = _trip_end_operations(options, event)
        elif key == CURRENT_STATE:
            open_faults = (integration.provider_state or {}).get("open_faults") or {}
            operations = _current_state_operations(options, event, open_faults)
        else:
            return None
        if not operations:
            return None
        return {
            "type": key,
            "vin": event.vehicle.vin,
            "vehicle_name": event.vehicle.name,
            "operations": operations,
        }

    # -- messages → Fleetio ------------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        return Sending(api_for(integration), integration, stop_at).send(messages)


# -- which events make which operations ----------------------------------------------


def _fix_time(event: Any) -> datetime:
    return event.vehicle.fix_time or event.occurred_at


def _meter_operation(odometer: float, when: datetime) -> dict[str, Any]:
    return {"op": "meter_entry", "value": odometer, "date": format_rfc3339(when)}


def _codes(listed: Any) -> dict[str, str]:
    """Code → description of a report's fault codes."""
    return {str(f["code"]): str(f.get("description") or "") for f in listed or []}


def _location_operations(options: dict[str, Any], minutes: int, event: Any) -> list[dict]:
    report, vehicle = event.report, event.vehicle
    fix, previous_fix = _fix_time(event), report.get("previous_fix_time")
    if previous_fix is not None and fix < previous_fix:
        return []  # late: the vehicle has moved on since
    crosses = crosses_interval(fix, previous_fix, minutes)
    operations = []
    odometer, previous = vehicle.odometer_mi, report.get("previous_odometer_mi")
    if options.get("update_odometer") and odometer is not None and crosses:
        if previous is None or odometer > previous:
            operations.append(_meter_operation(odometer, fix))
    if options.get("update_dtcs") and "fault_codes" in report:
        when = format_rfc3339(fix)
        now, before = _codes(report["fault_codes"]), _codes(report.get("previous_fault_codes"))
        for code, description in now.items():
            if code not in before:
                operations.append(
                    {
                        "op": "fault_open",
                        "code": code,
                        "description": description,
                        "occurred_at": when,
                    }
                )
            elif crosses:
                operations.append(
                    {
                        "op": "fault_update",
                        "code": code,
                        "description": description,
                        "occurred_at": when,
                    }
                )
        for code in sorted(set(before) - set(now)):
            operations.append({"op": "fault_resolve", "code": code, "resolved_at": when})
    return operations


def _trip_end_operations(options: dict[str, Any], event: Any) -> list[dict]:
    odometer = event.vehicle.odometer_mi
    if not options.get("update_odometer") or odometer is None:
        return []
    return [_meter_operation(odometer, _fix_time(event))]


def _current_state_operations(
    options: dict[str, Any], event: Any, open_faults: dict[str, Any]
) -> list[dict]:
    operations = _trip_end_operations(options, event)
    if options.get("update_dtcs") and "fault_codes" in event.report:
        codes = _codes(event.report["fault_codes"])
        # With no code open now, only a vehicle with faults open in Fleetio (a
        # catch-up after an outage) needs them resolved; a new integration has none.
        vin = str(event.vehicle.vin).strip().upper()
        if codes or any(key.startswith(f"{vin}|") for key in open_faults):
            operations.append(
                {
                    "op": "fault_sync",
                    "occurred_at": format_rfc3339(_fix_time(event)),
                    "codes": [{"code": code, "description": d} for code, d in codes.items()],
                }
            )
    return operations


# -- calls --------------------------------------------------------------------------


register(Fleetio())
