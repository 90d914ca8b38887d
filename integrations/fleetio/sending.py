"""Fleetio's API as this integration calls it: vehicle look-ups and listings,
meter entries one by one or in bulk jobs, and one open fault per vehicle and code;
what a drain's batch learns is kept in the integration's provider_state.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from core.times import utcnow
from integrations.base import VEHICLE_MAP_TTL, Api, json_of, secrets_of, unmatched
from integrations.fleetio.faults import Faults, combined, labelled, settled
from integrations.models import Integration
from outbox.failures import shorten
from outbox.models import OutboxMessage
from outbox.registry import Result

# The date version of Fleetio's API this client speaks (sent on every call).
API_VERSION = "2024-03-15"
NAME = "Fleetio"
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


def base_url() -> str:
    return str(current_app.config["FLEETHOOK_FLEETIO_BASE_URL"]).rstrip("/")


def headers_of(integration: Integration) -> dict[str, str]:
    return {
        "Authorization": f"Token {secrets_of(integration).get('api_key', '')}",
        "Account-Token": str((integration.options or {}).get("account_id") or ""),
        "X-Api-Version": API_VERSION,
        "Accept": "application/json",
    }


def _ambiguous(result: Result) -> bool:
    """Sent, but no answer says whether Fleetio stored it: no response, or a 5xx."""
    if result.delivered or result.not_sent:
        return False
    return result.status_code is None or result.status_code >= 500


@dataclass
class _MeterPlan:
    """What one meter entry needs: settled without a request (`result`), or the
    `body` to POST, after a look in Fleetio when an earlier POST went unanswered."""

    result: Result | None = None
    body: dict[str, Any] | None = None
    verify: bool = False


class Sending:
    """One drain's batch for one integration: its vehicle look-ups, meter entries
    (bulk or single) and fault changes, and what it learns in provider_state."""

    def __init__(self, api: Api, integration: Integration, stop_at: float) -> None:
        self.api = api
        self.integration = integration
        self.stop_at = stop_at
        self.requests = 0
        state = integration.provider_state or {}
        self.faults = Faults(
            dict(state.get("open_faults") or {}), self._request, self._forget_vehicle
        )
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
            else:
                result = self.faults.change(kind, vin, vehicle, operation)
            results.append(result)
            if not (result.delivered or result.permanent):
                break
        return combined(results)

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Result]:
        self.requests += 1
        return self.api.call(method, path, **kwargs)

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
            "open_faults": self.faults.open_faults,
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
            return labelled(result, "Looking up the VIN")
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
                return labelled(result, "Listing the vehicles")
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
            return _MeterPlan(settled(f"Fleetio has this reading ({miles:g} mi) already."))
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
                return labelled(checked, "Checking the meter entries")
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
        return labelled(result, "Meter entry")

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
            return [labelled(accepted, "Meter entry (bulk job)")] * len(chunk)
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


def api_for(integration: Integration) -> Api:
    """Calls to Fleetio for this integration, within its request budget."""
    return Api(base_url(), headers_of(integration), NAME, integration=integration)
