"""Fleetio: odometer readings become meter entries and diagnostic trouble codes
become faults on the Fleetio vehicle with the same VIN. Owns the Fleetio form,
the credential check, which events make a message (and so how often a vehicle's
odometer is sent), and the API calls: vehicle look-ups, meter entries one by one
or in bulk jobs, and one open fault per vehicle and code.

From Fleetio's developer documentation (developer.fleetio.com, API version
2024-03-15, the version this client pins):
- every call sends `Authorization: Token <api key>` and `Account-Token: <account
  token>`; both are on secure.fleetio.com/api_keys ("Account Settings → Manage API
  Keys"); `X-Api-Version` pins the date version (a key is otherwise locked to the
  version current when it was made);
- `GET /v1/vehicles` pages by cursor (`per_page` 2–100, `start_cursor` ← the
  previous page's `next_cursor`, vehicles in `records` with `id`, `vin`,
  `meter_unit`) and filters with `filter[vin][eq]=<VIN>`; "Use Filtering" is
  Fleetio's own advice against 429s (guide "Avoiding Too Many Requests Errors");
- `POST /v1/meter_entries {"vehicle_id", "value", "date"}` (no `meter_type`: the
  primary meter): "Meter Entries must follow the correct sequence, incrementing
  in value by date ... the value falls between any entries logged before and/or
  after"; an equal value is accepted, a lower one refused with 422. The create
  takes no external id or idempotency key. `GET /v1/vehicles/{id}/meter_entries`
  lists a vehicle's entries, filtered by `filter[date][gte]`;
- `POST /v1/faults {"vehicle_id", "code", "name", "description", "count",
  "external_id", "last_occurred_at", "status": open|resolved|ignored, "source"}`,
  whose code "Must correspond with an existing Fault Rule"; `POST /v1/fault_rules
  {"code", "name", "description"}`; the answer carries the fault's `id`;
- Bulk API (guides "Bulk API" and "Creating Records in Bulk"): `POST
  /v1/bulk_api_jobs {"resource": "meter_entry", "operation": "create",
  "records": [...]}`, up to 100 records a job, each record "the exact same
  attribute set" as the single create; meter entries, location entries and faults
  are create only; the job "will be enqueued and processed in the background" and
  its status retrieved afterwards; 10 jobs run at once, more wait their turn.
  Fleetio: "If you anticipate sending more than 20 requests per minute, we
  recommend using our Bulk API";
- Rate limiting: plan-dependent; the documented example and the older reference
  page: "a simple throttle of 20 requests per minute"; past it 429 with
  `Retry-After` (seconds until the limit lifts) and `{"error": "Too many requests
  detected from your account token ..."}`. No X-RateLimit-* headers are documented.

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

Assumed, for want of documentation (each marked "Guess:" in tests/fakes/fleetio.py):
- Update Fault: Fleetio documents List, Create and Retrieve Fault, no update. We
  send `PATCH /v1/faults/{id}` with the create's fields (`count`,
  `last_occurred_at`; `status: "resolved"` to resolve), as Fleetio's other
  resources are updated; a 404 there means the fault is gone from Fleetio.
- The bulk job's answers: `{"id", "status", ...}` on creation; on `GET`,
  `status` one of JOB_FINISHED when done and `errors: [{"index": <position in
  records>, "errors": {field: [words]}}]` for refused records.
- The body of a 422 for a fault whose code has no rule is not parsed: any 422 on a
  fault makes us create the rule; Fleetio accepting it means it was missing and
  the fault is posted once more; Fleetio refusing it (a duplicate code) means the
  rule exists and the fault's own 422 stands.
- `count` counts the odometer intervals in which the code was reported (Fleetio:
  "The number of times this Fault has occurred"); `source` "Fleethook";
  `external_id` "<VIN>:<code>:<first occurrence>".
- Readings go in miles, converted for a vehicle whose `meter_unit` is km; a
  vehicle whose primary meter counts hours gets no odometer.

One message carries all its operations (a meter entry, fault changes). All must
succeed for it to be delivered; a refused operation (422) does not stop the
others and is the message's result (dead, with Fleetio's reason); a failure worth
retrying (401/403, 429, 5xx, timeout) stops it there, and the retry repeats only
what did not happen: delivered readings and fault changes are remembered."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from core.times import format_rfc3339, parse_rfc3339, utcnow
from integrations.base import (
    CURRENT_STATE,
    VEHICLE_MAP_TTL,
    Api,
    Field,
    ProviderRejected,
    json_of,
    secrets_of,
    unmatched,
)
from integrations.models import Integration
from integrations.providers import register
from outbox.failures import shorten
from outbox.models import OutboxMessage
from outbox.registry import Result

# The date version of Fleetio's API this client speaks (sent on every call).
API_VERSION = "2024-03-15"
NAME = "Fleetio"
# Fleetio's documented throttle (see budget_source).
REQUESTS_PER_MINUTE = 20
# The odometer interval: its form field, default and range.
INTERVAL_FIELD = "odometer_interval_minutes"
DEFAULT_INTERVAL_MINUTES = 15
INTERVAL_RANGE = (1, 1440)
# More meter entries than this in one drain go as a bulk job, fewer one by one.
BULK_THRESHOLD = 3
# Fleetio's most records a bulk job takes.
BULK_MAX_RECORDS = 100
# Guess: the statuses of a bulk job that is done (undocumented).
JOB_FINISHED = frozenset({"complete", "completed", "finished", "failed", "succeeded"})
# Pauses before each look at a running bulk job, while the drain has time.
JOB_POLL_PAUSES = (0.0, 0.5, 1.0, 2.0)
# Vehicles per page when listing them all (Fleetio's maximum) and a bound on pages.
VEHICLES_PER_PAGE = 100
MAX_VEHICLE_PAGES = 1000
# More unknown VINs than this in one drain: list the vehicles instead of one look-up each.
LOOKUPS_BEFORE_LISTING = 3
# How long a found VIN's vehicle id and meter unit are trusted before a new look-up.
VIN_TRUSTED_FOR = timedelta(hours=24)
# How long a VIN Fleetio lacks fails at once before it is looked up again.
MISS_REMEMBERED_FOR = VEHICLE_MAP_TTL
# Readings remembered per vehicle, to send none twice.
METERS_REMEMBERED = 5
KM_PER_MILE = 1.609344
FAULT_SOURCE = "Fleethook"


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
            "Your Fleetio Account Token, shown below the API keys on the same page.",
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
        return _Sending(self._api(integration), integration, stop_at).send(messages)

    def _api(self, integration: Integration) -> Api:
        return Api(_base_url(), _headers(integration), NAME, integration=integration)


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


def _base_url() -> str:
    return str(current_app.config["FLEETHOOK_FLEETIO_BASE_URL"]).rstrip("/")


def _headers(integration: Integration) -> dict[str, str]:
    return {
        "Authorization": f"Token {secrets_of(integration).get('api_key', '')}",
        "Account-Token": str((integration.options or {}).get("account_id") or ""),
        "X-Api-Version": API_VERSION,
        "Accept": "application/json",
    }


def _call(api: Api, method: str, path: str, **kwargs: Any) -> tuple[Any, Result]:
    return api.call(method, path, **kwargs)


def _labelled(result: Result, label: str) -> Result:
    if result.delivered or not result.error or result.not_sent:
        return result
    return replace(result, error=shorten(f"{label}: {result.error}", 500))


def _ambiguous(result: Result) -> bool:
    """Sent, but no answer says whether Fleetio stored it: no response, or a 5xx."""
    if result.delivered or result.not_sent:
        return False
    return result.status_code is None or result.status_code >= 500


def _settled(why: str) -> Result:
    """An operation that needs no request: what it asks is already so."""
    return Result(delivered=True, response_body=why)


def _combined(results: list[Result]) -> Result:
    """One message's result from its operations': delivered if all were; else the
    failure that stopped it, or the first refusal."""
    spent = sum(r.duration_ms for r in results)
    failed = [r for r in results if not r.delivered]
    if not failed:
        sent = [r for r in results if r.status_code is not None]
        final = sent[-1] if sent else results[-1]
    else:
        retried = [r for r in failed if not r.permanent]
        final = retried[-1] if retried else failed[0]
    return replace(final, duration_ms=spent)


@dataclass
class _MeterPlan:
    """What one meter entry needs: settled without a request (`result`), or the
    `body` to POST, after a look in Fleetio when an earlier POST went unanswered."""

    result: Result | None = None
    body: dict[str, Any] | None = None
    verify: bool = False


class _Sending:
    """One drain's batch for one integration: its vehicle look-ups, meter entries
    (bulk or single) and fault changes, and what it learns in provider_state."""

    def __init__(self, api: Api, integration: Integration, stop_at: float) -> None:
        self.api = api
        self.integration = integration
        self.stop_at = stop_at
        self.requests = 0
        state = integration.provider_state or {}
        self.open_faults: dict[str, dict[str, Any]] = dict(state.get("open_faults") or {})
        self.meters: dict[str, list[list[Any]]] = dict(state.get("meters") or {})
        self.unsure: dict[str, list[list[Any]]] = dict(state.get("unsure") or {})
        self.misses: dict[str, str] = dict(state.get("vin_misses") or {})
        self.vehicle_map: dict[str, Any] = dict(integration.vehicle_map or {})
        if integration.vehicle_map_at is None:
            self.vehicle_map = {}  # new credentials may see other vehicles
        self.listed = False

    # -- the batch ------------------------------------------------------------------

    def send(self, messages: Sequence[OutboxMessage]) -> list[Result]:
        try:
            return self._send(messages)
        finally:
            self._keep_state()

    def _send(self, messages: Sequence[OutboxMessage]) -> list[Result]:
        vins = [str(m.payload["vin"]).strip().upper() for m in messages]
        unknown = {vin for vin in vins if self._needs_lookup(vin)}
        list_instead = len(unknown) > LOOKUPS_BEFORE_LISTING
        vehicles: list[Any] = []
        for vin in vins:
            if self.requests and self._needs_lookup(vin) and time.monotonic() > self.stop_at:
                break
            found = self._vehicle(vin, list_instead)
            vehicles.append(found)
            if isinstance(found, Result) and not (found.delivered or found.permanent):
                break  # the look-up failed: the later messages wait
        bulk = self._bulk_meter_entries(messages, vins, vehicles)
        results: list[Result] = []
        for index, found in enumerate(vehicles):
            if isinstance(found, Result):
                results.append(found)
            else:
                message = messages[index]
                if self._needs_requests(message, index, bulk) and self._out_of_time(results):
                    break
                results.append(self._send_one(message.payload, vins[index], found, bulk.get(index)))
            if not (results[-1].delivered or results[-1].permanent):
                break
        return results

    def _out_of_time(self, results: list[Result]) -> bool:
        return bool(results) and self.requests > 0 and time.monotonic() > self.stop_at

    def _needs_requests(self, message: OutboxMessage, index: int, bulk: dict) -> bool:
        operations = message.payload["operations"]
        return any(op["op"] != "meter_entry" for op in operations) or index not in bulk

    def _send_one(
        self, payload: dict[str, Any], vin: str, vehicle: dict[str, Any], bulk: Result | None
    ) -> Result:
        results: list[Result] = []
        for operation in payload["operations"]:
            kind = operation["op"]
            if kind == "meter_entry":
                result = bulk or self._meter_entry(vin, vehicle, operation, payload)
            elif kind == "fault_sync":
                result = self._fault_sync(vin, vehicle, operation)
            elif kind == "fault_update":
                result = self._fault_update(vin, vehicle, operation)
            elif kind == "fault_resolve":
                result = self._fault_resolve(vin, operation)
            else:  # "fault_open", and "fault" of messages queued by earlier versions
                result = self._fault_open(vin, vehicle, operation)
            results.append(result)
            if not (result.delivered or result.permanent):
                break
        return _combined(results)

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Result]:
        self.requests += 1
        return _call(self.api, method, path, **kwargs)

    def _keep_state(self) -> None:
        """Write what was learnt (assigned anew: the JSON column sees a new value)."""
        now = utcnow()
        misses = {
            vin: at
            for vin, at in self.misses.items()
            if now - datetime.fromisoformat(at) <= MISS_REMEMBERED_FOR
        }
        state = {
            **(self.integration.provider_state or {}),
            "open_faults": self.open_faults,
            "meters": self.meters,
            "unsure": {v: u for v, u in self.unsure.items() if u},
            "vin_misses": misses,
        }
        if state != (self.integration.provider_state or {}):
            self.integration.provider_state = state
        if self.vehicle_map != (self.integration.vehicle_map or {}):
            self.integration.vehicle_map = self.vehicle_map
            self.integration.vehicle_map_at = now
        unmatched_vins = sorted({*self.integration.unmatched_vins, *misses} - set(self.vehicle_map))
        if unmatched_vins != sorted(self.integration.unmatched_vins or []):
            self.integration.unmatched_vins = unmatched_vins

    # -- vehicles -------------------------------------------------------------------

    def _needs_lookup(self, vin: str) -> bool:
        if self._missed_lately(vin):
            return False
        entry = self.vehicle_map.get(vin)
        if not isinstance(entry, dict) or "at" not in entry:
            return True
        return utcnow() - datetime.fromisoformat(entry["at"]) > VIN_TRUSTED_FOR

    def _missed_lately(self, vin: str) -> bool:
        at = self.misses.get(vin)
        return at is not None and utcnow() - datetime.fromisoformat(at) <= MISS_REMEMBERED_FOR

    def _vehicle(self, vin: str, list_instead: bool) -> dict[str, Any] | Result:
        """The Fleetio vehicle {"id", "meter_unit"} with this VIN, or the Result of
        its message when there is none or the look-up failed."""
        if self._missed_lately(vin):
            return unmatched(vin, NAME)
        if self._needs_lookup(vin):
            failed = self._list_vehicles() if list_instead else self._look_up(vin)
            if failed is not None:
                return failed
        entry = self.vehicle_map.get(vin)
        if entry is None:
            self.misses[vin] = utcnow().isoformat()
            return unmatched(vin, NAME)
        self.misses.pop(vin, None)
        return dict(entry)

    def _found(self, records: Any) -> dict[str, dict[str, Any]]:
        now = utcnow().isoformat()
        found = {}
        for record in records if isinstance(records, list) else []:
            vin = str(record.get("vin") or "").strip().upper()
            if vin and record.get("id") is not None:
                found[vin] = {"id": record["id"], "meter_unit": record.get("meter_unit"), "at": now}
        return found

    def _look_up(self, vin: str) -> Result | None:
        """`GET /v1/vehicles?filter[vin][eq]=<VIN>`; None when it answered."""
        params = {"filter[vin][eq]": vin, "per_page": 2}
        response, result = self._request("GET", "/v1/vehicles", params=params)
        if not result.delivered:
            return _labelled(result, "Looking up the VIN")
        page = json_of(response)
        found = self._found(page.get("records") if isinstance(page, dict) else None)
        self.vehicle_map.pop(vin, None)
        self.vehicle_map.update(found)
        return None

    def _list_vehicles(self) -> Result | None:
        """Every vehicle, page by page (once a batch); None when it answered."""
        if self.listed:
            return None
        found: dict[str, Any] = {}
        cursor: str | None = None
        for _ in range(MAX_VEHICLE_PAGES):
            params: dict[str, Any] = {"per_page": VEHICLES_PER_PAGE}
            if cursor:
                params["start_cursor"] = cursor
            response, result = self._request("GET", "/v1/vehicles", params=params)
            if not result.delivered:
                return _labelled(result, "Listing the vehicles")
            page = json_of(response)
            if not isinstance(page, dict) or not isinstance(page.get("records"), list):
                return replace(
                    result, delivered=False, error="Fleetio's vehicle list was not understood"
                )
            found.update(self._found(page["records"]))
            next_cursor = page.get("next_cursor")
            if not next_cursor or next_cursor == cursor:
                break
            cursor = next_cursor
        self.vehicle_map = found
        self.listed = True
        return None

    def _forget_vehicle(self, vin: str, result: Result) -> None:
        """Fleetio refused the vehicle id: it is looked up again next time."""
        if result.status_code == 422 and "vehicle" in (result.response_body or ""):
            self.vehicle_map.pop(vin, None)

    # -- meter entries ----------------------------------------------------------------

    def _meter_plan(
        self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any], name: str
    ) -> _MeterPlan:
        unit = vehicle.get("meter_unit")
        miles, date = float(operation["value"]), operation["date"]
        if unit == "hr":
            return _MeterPlan(
                Result(
                    delivered=False,
                    permanent=True,
                    error=f"Meter entry: {name}'s primary meter in Fleetio counts hours, so its "
                    "odometer is not sent.",
                )
            )
        delivered = self.meters.get(vin, [])
        if [date, miles] in delivered or (delivered and delivered[-1][1] == miles):
            return _MeterPlan(_settled(f"Fleetio has this reading ({miles:g} mi) already."))
        value = round(miles * KM_PER_MILE if unit == "km" else miles, 1)
        body = {"vehicle_id": vehicle["id"], "value": value, "date": date}
        return _MeterPlan(body=body, verify=[date, miles] in self.unsure.get(vin, []))

    def _remember_meter(self, vin: str, operation: dict[str, Any]) -> None:
        reading = [operation["date"], float(operation["value"])]
        self.meters[vin] = [*self.meters.get(vin, []), reading][-METERS_REMEMBERED:]
        self._drop_unsure(vin, reading)

    def _drop_unsure(self, vin: str, reading: list[Any]) -> None:
        self.unsure[vin] = [r for r in self.unsure.get(vin, []) if r != reading]

    def _note_unsure(self, vin: str, operation: dict[str, Any]) -> None:
        reading = [operation["date"], float(operation["value"])]
        if reading not in self.unsure.get(vin, []):
            self.unsure[vin] = [*self.unsure.get(vin, []), reading][-METERS_REMEMBERED:]

    def _meter_entry(
        self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any], payload: dict
    ) -> Result:
        plan = self._meter_plan(vin, vehicle, operation, payload.get("vehicle_name") or vin)
        if plan.result is not None:
            return plan.result
        assert plan.body is not None
        if plan.verify:
            stored, checked = self._stored_already(plan.body)
            if stored is None:
                return _labelled(checked, "Checking the meter entries")
            if stored:
                self._remember_meter(vin, operation)
                return replace(checked, response_body="Fleetio had this reading already.")
        _, result = self._request("POST", "/v1/meter_entries", json=plan.body)
        if result.delivered:
            self._remember_meter(vin, operation)
        elif _ambiguous(result):
            self._note_unsure(vin, operation)
        else:
            self._forget_vehicle(vin, result)
        return _labelled(result, "Meter entry")

    def _stored_already(self, body: dict[str, Any]) -> tuple[bool | None, Result]:
        """Whether Fleetio holds this reading: the vehicle's entries from its date on
        include its value. None (and the failed Result) when Fleetio did not say."""
        params = {"filter[date][gte]": body["date"], "per_page": 100}
        path = f"/v1/vehicles/{body['vehicle_id']}/meter_entries"
        response, result = self._request("GET", path, params=params)
        if not result.delivered:
            return None, result
        page = json_of(response)
        records = page.get("records") if isinstance(page, dict) else None
        for record in records if isinstance(records, list) else []:
            try:
                value = float(record.get("value"))
            except (TypeError, ValueError):
                continue
            if record.get("meter_type") is None and abs(value - body["value"]) < 0.05:
                return True, result
        return False, result

    def _bulk_meter_entries(
        self, messages: Sequence[OutboxMessage], vins: list[str], vehicles: list[Any]
    ) -> dict[int, Result]:
        """The meter entries of the batch as bulk jobs when there are more than
        BULK_THRESHOLD: each message's meter result by its index (none: send alone)."""
        records: list[tuple[int, dict[str, Any], dict[str, Any]]] = []  # index, op, body
        same_as: dict[int, int] = {}  # a message repeating an earlier one's reading
        planned: dict[str, list[tuple[int, list[Any]]]] = {}
        for index, vehicle in enumerate(vehicles):
            if isinstance(vehicle, Result):
                continue
            payload = messages[index].payload
            for operation in payload["operations"]:
                if operation["op"] != "meter_entry":
                    continue
                plan = self._meter_plan(vins[index], vehicle, operation, vins[index])
                if plan.body is None or plan.verify:
                    continue  # settled, refused, or to be checked first: alone
                reading = [operation["date"], float(operation["value"])]
                earlier = planned.setdefault(vins[index], [])
                twin = next((i for i, r in earlier if r == reading or r[1] == reading[1]), None)
                if twin is not None:
                    same_as[index] = twin
                else:
                    earlier.append((index, reading))
                    records.append((index, operation, plan.body))
        if len(records) <= BULK_THRESHOLD:
            return {}
        outcomes: dict[int, Result] = {}
        for start in range(0, len(records), BULK_MAX_RECORDS):
            chunk = records[start : start + BULK_MAX_RECORDS]
            if start and time.monotonic() > self.stop_at:
                break
            for (index, operation, _), result in zip(chunk, self._bulk_job(chunk), strict=True):
                vin = vins[index]
                if result.delivered:
                    self._remember_meter(vin, operation)
                elif _ambiguous(result):
                    self._note_unsure(vin, operation)
                outcomes[index] = result
        for index, twin in same_as.items():
            if twin in outcomes:
                outcomes[index] = outcomes[twin]
        return outcomes

    def _bulk_job(self, chunk: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> list[Result]:
        """One bulk job of meter entries; each record's result, in order."""
        body = {
            "resource": "meter_entry",
            "operation": "create",
            "records": [record for _, _, record in chunk],
        }
        response, accepted = self._request("POST", "/v1/bulk_api_jobs", json=body)
        if not accepted.delivered:
            return [_labelled(accepted, "Meter entry (bulk job)")] * len(chunk)
        job = json_of(response)
        job_id = job.get("id") if isinstance(job, dict) else None
        done = self._finished_job(job_id) if job_id is not None else None
        if done is None:  # still running when the drain must stop: acceptance counts
            note = f"Accepted by Fleetio in bulk job {job_id}."
            return [replace(accepted, response_body=note)] * len(chunk)
        refused = _refused_records(done)
        if done.get("status") == "failed" and not refused:
            failed = replace(
                accepted,
                delivered=False,
                error=f"Meter entry: Fleetio's bulk job {job_id} failed without "
                "saying why; it is sent again.",
            )
            return [failed] * len(chunk)
        results = []
        for position in range(len(chunk)):
            words = refused.get(position)
            if words is None:
                results.append(replace(accepted, response_body=f"Created in bulk job {job_id}."))
            else:
                results.append(
                    Result(
                        delivered=False,
                        permanent=True,
                        duration_ms=accepted.duration_ms,
                        request_headers=accepted.request_headers,
                        error=shorten(
                            f"Meter entry: Fleetio refused it in bulk job {job_id}: {words}", 500
                        ),
                    )
                )
        return results

    def _finished_job(self, job_id: Any) -> dict[str, Any] | None:
        """The bulk job once Fleetio says it is done, if that happens while the drain
        may still send; else None."""
        for pause in JOB_POLL_PAUSES:
            if time.monotonic() + pause > self.stop_at:
                return None
            time.sleep(pause)
            response, result = self._request("GET", f"/v1/bulk_api_jobs/{job_id}")
            if not result.delivered:
                return None
            job = json_of(response)
            if isinstance(job, dict) and str(job.get("status", "")).lower() in JOB_FINISHED:
                return job
        return None

    # -- faults -------------------------------------------------------------------------

    def _fault_open(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
        key = f"{vin}|{operation['code']}"
        if key in self.open_faults:
            return self._fault_update(vin, vehicle, operation)
        code, description = operation["code"], operation.get("description") or ""
        occurred_at = operation["occurred_at"]
        body = {
            "vehicle_id": vehicle["id"],
            "code": code,
            "name": (description or code)[:255],
            "description": description,
            "count": 1,
            "external_id": f"{vin}:{code}:{occurred_at}"[:255],
            "last_occurred_at": occurred_at,
            "status": "open",
            "source": FAULT_SOURCE,
        }
        response, result = self._request("POST", "/v1/faults", json=body)
        if result.status_code == 422:
            rule = {"code": code, "name": (description or code)[:255], "description": description}
            _, created = self._request("POST", "/v1/fault_rules", json=rule)
            spent = result.duration_ms + created.duration_ms
            if created.delivered:
                response, result = self._request("POST", "/v1/faults", json=body)
                result = replace(result, duration_ms=result.duration_ms + spent)
            elif created.status_code != 422:
                return _labelled(created, f"Fault rule {code}")
            # else: Fleetio has the rule already, so the fault's own refusal stands.
        if result.delivered:
            fault = json_of(response)
            fault_id = fault.get("id") if isinstance(fault, dict) else None
            self.open_faults[key] = {"id": fault_id, "count": 1, "last": occurred_at}
        else:
            self._forget_vehicle(vin, result)
        return _labelled(result, f"Fault {code}")

    def _fault_update(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
        key, code = f"{vin}|{operation['code']}", operation["code"]
        fault = self.open_faults.get(key)
        if fault is None or fault.get("id") is None:
            self.open_faults.pop(key, None)
            return self._fault_open(vin, vehicle, operation)
        occurred_at = operation["occurred_at"]
        if _not_after(occurred_at, fault["last"]):
            return _settled(f"Fault {code} already shows this occurrence.")
        body = {"count": fault["count"] + 1, "last_occurred_at": occurred_at}
        _, result = self._request("PATCH", f"/v1/faults/{fault['id']}", json=body)
        if result.status_code == 404:  # deleted in Fleetio: a new one is opened
            self.open_faults.pop(key, None)
            return self._fault_open(vin, vehicle, operation)
        if result.delivered:
            self.open_faults[key] = {**fault, "count": body["count"], "last": occurred_at}
        return _labelled(result, f"Fault {code}")

    def _fault_resolve(self, vin: str, operation: dict[str, Any]) -> Result:
        key, code = f"{vin}|{operation['code']}", operation["code"]
        fault = self.open_faults.get(key)
        if fault is None or fault.get("id") is None:
            self.open_faults.pop(key, None)
            return _settled(f"No open fault {code} to resolve.")
        _, result = self._request("PATCH", f"/v1/faults/{fault['id']}", json={"status": "resolved"})
        if result.delivered or result.status_code == 404:
            self.open_faults.pop(key, None)
            if not result.delivered:
                return replace(
                    result,
                    delivered=True,
                    error=None,
                    response_body=f"Fault {code} is gone from Fleetio.",
                )
        return _labelled(result, f"Fault {code}")

    def _fault_sync(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
        """The codes open now get an open fault each; the vehicle's other open
        faults are resolved."""
        results = []
        codes = {c["code"]: c.get("description") or "" for c in operation["codes"]}
        stale = sorted(
            k.split("|", 1)[1]
            for k in self.open_faults
            if k.startswith(f"{vin}|") and k.split("|", 1)[1] not in codes
        )
        steps = [{"op": "fault_resolve", "code": code} for code in stale] + [
            {
                "op": "fault_open",
                "code": code,
                "description": description,
                "occurred_at": operation["occurred_at"],
            }
            for code, description in codes.items()
        ]
        for step in steps:
            if step["op"] == "fault_resolve":
                result = self._fault_resolve(vin, step)
            elif f"{vin}|{step['code']}" in self.open_faults:
                result = _settled(f"Fault {step['code']} is open in Fleetio.")
            else:
                result = self._fault_open(vin, vehicle, step)
            results.append(result)
            if not (result.delivered or result.permanent):
                break
        return _combined(results) if results else _settled("No fault codes are open.")


def _not_after(moment: str, other: str) -> bool:
    """Whether RFC 3339 time `moment` is at or before `other` (compared as times:
    as text, "…:00Z" would sort after "…:00.5Z")."""
    first, second = parse_rfc3339(moment), parse_rfc3339(other)
    return first is not None and second is not None and first <= second


def _refused_records(job: dict[str, Any]) -> dict[int, str]:
    """Position in the job's records → Fleetio's words for each refused record
    (Guess: `errors: [{"index", "errors"}]`, see the module's assumptions)."""
    refused: dict[int, str] = {}
    errors = job.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and isinstance(error.get("index"), int):
            words = error.get("errors")
            refused[error["index"]] = shorten(
                words if isinstance(words, str) else _words(words), 300
            )
    return refused


def _words(errors: Any) -> str:
    if isinstance(errors, dict):
        return "; ".join(
            f"{field} {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for field, v in errors.items()
        )
    return str(errors)


register(Fleetio())
