"""A fake Fleetio API (base URL `<url>/api`, like https://secure.fleetio.com/api),
written from Fleetio's developer documentation (developer.fleetio.com, version
2024-03-15), not from our client:

- authentication: `Authorization: Token <api key>` and `Account-Token: <token>`;
- `GET /v1/vehicles`: keyset pages (`per_page` 2–100, default 50; `start_cursor`
  ← `next_cursor`) of `{"start_cursor", "next_cursor", "per_page",
  "estimated_remaining_count", "filtered_by", "sorted_by", "records"}`, filtered
  by `filter[vin][eq]` (also `filter[name][eq]`, `filter[license_plate][eq]`);
- `GET /v1/vehicles/{id}/meter_entries`: the same pages of a vehicle's meter
  entries, filtered by `filter[date][eq|lt|lte|gt|gte]`, sorted by `sort[date]`;
- `POST /v1/meter_entries {"vehicle_id", "value", "date", "meter_type", "void"}`:
  "Meter Entries must follow the correct sequence, incrementing in value by date.
  For each entry, Fleetio validates to ensure that the value falls between any
  entries logged before and/or after" — an equal value is accepted ("greater than
  or equal"), a lower one is refused with 422; `value` comes back as a string;
- `POST /v1/fault_rules {"code", "name", "description"}`;
- `POST /v1/faults {"vehicle_id", "code", "count", "description", "external_id",
  "last_occurred_at", "name", "status" (open | resolved | ignored), "source"}`,
  whose code "Must correspond with an existing Fault Rule";
- `POST /v1/bulk_api_jobs {"resource", "operation", "records"}`: resource one of
  fault, group, inventory_journal_entry, location_entry, meter_entry, vehicle;
  operation create or update; meter entries, location entries and faults are
  create only; at most 100 records a job; each record takes the attributes of the
  single create and unexpected attributes are ignored; the job "will be enqueued
  and processed in the background", its status read back afterwards;
- Rate limiting (developer.fleetio.com/docs/overview/rate-limiting): past the
  limit, 429 with `Retry-After` (seconds until the limit lifts) and the body
  `{"error": "Too many requests detected from your account token. ..."}`; the
  documented example is 20 requests a minute (the older reference page: "a simple
  throttle of 20 requests per minute"), and no X-RateLimit-* headers are
  documented, so none are sent. Guess: the documented example (one request a
  second from 12:00:18 is refused from 12:00:38 until 12:01:00) reads as a window
  of the clock's minute; this fake counts a sliding 60 seconds, which is stricter.

Every "Guess:" comment marks what the documentation does not settle."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

API_KEY = "fl-api-key-8f3c2d9e1b7a"
ACCOUNT_TOKEN = "acct-5e61a0c4"
PREFIX = "/api/v1"
# The documented example of Fleetio's throttle: 20 requests in a minute.
REQUESTS_PER_MINUTE = 20
THROTTLED_BODY = {
    "error": "Too many requests detected from your account token. Please try again later. "
    "If you believe this is an error, please contact Fleetio Support at api@fleetio.com"
}
BULK_RESOURCES = {
    "fault",
    "group",
    "inventory_journal_entry",
    "location_entry",
    "meter_entry",
    "vehicle",
}
BULK_MAX_RECORDS = 100
FAULT_STATUSES = ("open", "resolved", "ignored")


def _moment(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _page(request: Request, records: list[dict[str, Any]], filtered: list[Any]) -> Answer:
    """One keyset page of `records`, as every list endpoint answers."""
    try:
        per_page = int(request.query.get("per_page", ["50"])[0])
        start = int(request.query.get("start_cursor", ["0"])[0])
    except ValueError:
        # Guess: the wording of a 400 for a malformed parameter.
        return Answer(400, {"errors": {"per_page": ["must be an integer"]}})
    if not 2 <= per_page <= 100:
        return Answer(400, {"errors": {"per_page": ["must be between 2 and 100"]}})
    page = records[start : start + per_page]
    end = start + len(page)
    return Answer(
        200,
        {
            # Guess: the cursors are opaque strings; offsets stand in for them here.
            "start_cursor": str(start),
            "next_cursor": str(end) if end < len(records) else None,
            "per_page": per_page,
            "estimated_remaining_count": min(len(records) - start, 500),
            "filtered_by": filtered,
            "sorted_by": [{"id": "desc"}],
            "records": page,
        },
    )


class FleetioFake(FakeProvider):
    def __init__(self, api_key: str = API_KEY, account_token: str = ACCOUNT_TOKEN) -> None:
        super().__init__()
        self.api_key = api_key
        self.account_token = account_token
        self.base_url = f"{self.url}/api"
        self._ids = count(1001)
        self.vehicles: list[dict[str, Any]] = []
        # Per vehicle id, its meter entries as stored (value a number).
        self.meter_entries: dict[int, list[dict[str, Any]]] = {}
        self.location_entries: list[dict[str, Any]] = []
        self.fault_rules: dict[str, dict[str, Any]] = {}
        self.faults: list[dict[str, Any]] = []
        self.bulk_jobs: dict[int, dict[str, Any]] = {}
        self.route("GET", PREFIX + r"/vehicles", self._list_vehicles)
        self.route("GET", PREFIX + r"/vehicles/(\d+)/meter_entries", self._list_meter_entries)
        self.route("POST", PREFIX + r"/meter_entries", self._create_meter_entry)
        self.route("POST", PREFIX + r"/fault_rules", self._create_fault_rule)
        self.route("POST", PREFIX + r"/faults", self._create_fault)
        self.route("PATCH", PREFIX + r"/faults/(\d+)", self._update_fault)
        self.route("POST", PREFIX + r"/bulk_api_jobs", self._create_bulk_job)
        self.route("GET", PREFIX + r"/bulk_api_jobs/(\d+)", self._show_bulk_job)
        self.throttle(REQUESTS_PER_MINUTE, 60)

    # -- set-up helpers for tests ------------------------------------------------

    def add_vehicle(self, vin: str, name: str = "", meter_unit: str = "mi") -> int:
        vehicle_id = next(self._ids)
        self.vehicles.append(
            {
                "id": vehicle_id,
                "name": name or f"Vehicle {vehicle_id}",
                "vin": vin,
                "license_plate": None,
                "meter_unit": meter_unit,
            }
        )
        return vehicle_id

    def add_meter_entry(self, vehicle_id: int, value: float, date: str) -> None:
        self.meter_entries.setdefault(vehicle_id, []).append(
            {
                "id": next(self._ids),
                "vehicle_id": vehicle_id,
                "value": value,
                "date": date,
                "meter_type": None,
                "void": False,
            }
        )

    def add_fault_rule(self, code: str, name: str = "", description: str = "") -> None:
        self.fault_rules[code] = {
            "id": next(self._ids),
            "code": code,
            "name": name,
            "description": description,
            "priority_handling": "off",
        }

    def values(self, vehicle_id: int) -> list[float]:
        """A vehicle's stored primary meter values, in the order they were stored."""
        return [
            e["value"] for e in self.meter_entries.get(vehicle_id, []) if e["meter_type"] is None
        ]

    def open_faults(self, vehicle_id: int | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.faults
            if f["status"] == "open" and (vehicle_id is None or f["vehicle_id"] == vehicle_id)
        ]

    # -- Fleetio -----------------------------------------------------------------

    def authenticate(self, request: Request) -> Answer | None:
        if (
            request.headers.get("Authorization") != f"Token {self.api_key}"
            or request.headers.get("Account-Token") != self.account_token
        ):
            # Guess: the 401 body's wording.
            return Answer(401, {"error": "You are not authorized to perform that action."})
        return None

    def throttled(self, retry_after: float, request: Request) -> Answer:
        return Answer(429, THROTTLED_BODY, {"Retry-After": str(max(1, round(retry_after + 0.5)))})

    def _list_vehicles(self, request: Request) -> Answer:
        vehicles, filtered = list(self.vehicles), []
        for field in ("vin", "name", "license_plate"):
            wanted = request.query.get(f"filter[{field}][eq]", [None])[0]
            if wanted is not None:
                vehicles = [v for v in vehicles if v[field] == wanted]
                filtered.append({field: {"eq": wanted}})
        vehicles.sort(key=lambda v: v["id"], reverse=True)  # the documented default sort
        return _page(request, vehicles, filtered)

    def _vehicle(self, vehicle_id: Any) -> dict[str, Any] | None:
        return next((v for v in self.vehicles if v["id"] == vehicle_id), None)

    def _list_meter_entries(self, request: Request, vehicle_id: str) -> Answer:
        vehicle = self._vehicle(int(vehicle_id))
        if vehicle is None:
            return Answer(404, {"error": "Not found"})  # Guess: the 404 body
        entries = list(self.meter_entries.get(vehicle["id"], []))
        filtered = []
        tests = {
            "eq": lambda a, b: a == b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
        }
        for operation, test in tests.items():
            wanted = request.query.get(f"filter[date][{operation}]", [None])[0]
            if wanted is None:
                continue
            moment = _moment(wanted)
            if moment is None:
                return Answer(400, {"errors": {"date": ["is invalid"]}})  # Guess: wording
            entries = [e for e in entries if test(_moment(e["date"]), moment)]
            filtered.append({"date": {operation: wanted}})
        direction = request.query.get("sort[date]", [None])[0]
        if direction is not None:
            entries.sort(key=lambda e: _moment(e["date"]), reverse=direction == "desc")  # type: ignore[arg-type, return-value]
        else:
            entries.sort(key=lambda e: e["id"], reverse=True)
        return _page(request, [self._shown_entry(e) for e in entries], filtered)

    @staticmethod
    def _shown_entry(entry: dict[str, Any]) -> dict[str, Any]:
        """A meter entry as the API answers it: the value is a string (documented)."""
        return {**entry, "value": str(entry["value"]), "type": "MeterEntry"}

    def _meter_entry_problems(self, body: Any) -> dict[str, list[str]]:
        """Why Fleetio refuses this meter entry (empty when it takes it). Guess: the
        wording of every message; the shape {"errors": {field: [..]}} is the one
        Fleetio's 422 answers carry."""
        if not isinstance(body, dict):
            return {"base": ["must be an object"]}
        problems: dict[str, list[str]] = {}
        if not _is_id(body.get("vehicle_id")) or self._vehicle(body["vehicle_id"]) is None:
            problems["vehicle"] = ["must exist"]
        if not _is_number(body.get("value")):
            problems["value"] = ["is not a number"]
        when = _moment(body["date"]) if isinstance(body.get("date"), str) else None
        if when is None:
            problems["date"] = ["can't be blank"]
        meter_type = body.get("meter_type")
        if meter_type not in (None, "secondary"):
            problems["meter_type"] = ["is not included in the list"]
        if problems:
            return problems
        assert when is not None
        value = body["value"]
        same_meter = [
            e
            for e in self.meter_entries.get(body["vehicle_id"], [])
            if e["meter_type"] == meter_type and not e["void"]
        ]
        before = [e["value"] for e in same_meter if _moment(e["date"]) <= when]  # type: ignore[operator]
        after = [e["value"] for e in same_meter if _moment(e["date"]) > when]  # type: ignore[operator]
        # Documented: the value falls between the entries before and after it;
        # equal values are accepted ("greater than or equal").
        if before and value < max(before):
            return {"value": [f"must be greater than or equal to {max(before):,}"]}
        if after and value > min(after):
            return {"value": [f"must be less than or equal to {min(after):,}"]}
        return {}

    def _store_meter_entry(self, body: dict[str, Any]) -> dict[str, Any]:
        entry = {
            "id": next(self._ids),
            "vehicle_id": body["vehicle_id"],
            "value": body["value"],
            "date": body["date"],
            "meter_type": body.get("meter_type"),
            "void": bool(body.get("void", False)),
        }
        self.meter_entries.setdefault(body["vehicle_id"], []).append(entry)
        return entry

    def _create_meter_entry(self, request: Request) -> Answer:
        body = request.json
        problems = self._meter_entry_problems(body)
        if problems:
            return Answer(422, {"errors": problems})
        return Answer(201, self._shown_entry(self._store_meter_entry(body)))

    def _create_fault_rule(self, request: Request) -> Answer:
        body = request.json or {}
        code = body.get("code")
        if not isinstance(code, str) or not code or len(code) > 255:
            return Answer(422, {"errors": {"code": ["can't be blank"]}})
        if code in self.fault_rules:
            # Guess: a second rule for one code is refused, with this wording.
            return Answer(422, {"errors": {"code": ["has already been taken"]}})
        self.add_fault_rule(code, body.get("name") or "", body.get("description") or "")
        return Answer(201, self.fault_rules[code])

    def _fault_problems(self, body: Any, creating: bool) -> dict[str, list[str]]:
        """Why Fleetio refuses these fault fields (Guess: the wording)."""
        if not isinstance(body, dict):
            return {"base": ["must be an object"]}
        problems: dict[str, list[str]] = {}
        if creating:
            if not _is_id(body.get("vehicle_id")) or self._vehicle(body["vehicle_id"]) is None:
                problems["vehicle"] = ["must exist"]
            code = body.get("code")
            if not isinstance(code, str) or not code or len(code) > 255:
                problems["code"] = ["can't be blank"]
            elif code not in self.fault_rules:
                # Guess: how a code without a Fault Rule is refused.
                problems["fault_rule"] = ["must exist"]
        if "count" in body and (not isinstance(body["count"], int) or body["count"] < 0):
            problems["count"] = ["must be an integer"]
        for field in ("name", "external_id"):
            if field in body and not (isinstance(body[field], str) and len(body[field]) <= 255):
                problems[field] = ["is too long (maximum is 255 characters)"]
        if "last_occurred_at" in body and _moment(str(body["last_occurred_at"])) is None:
            problems["last_occurred_at"] = ["is invalid"]
        if "status" in body and body["status"] not in FAULT_STATUSES:
            problems["status"] = ["is not included in the list"]
        return problems

    def _store_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        fields = (
            "vehicle_id",
            "code",
            "count",
            "description",
            "external_id",
            "last_occurred_at",
            "name",
            "status",
            "source",
        )
        fault = {
            "id": next(self._ids),
            **{k: body.get(k) for k in fields},
            "fault_rule_id": self.fault_rules[body["code"]]["id"],
        }
        fault["status"] = fault["status"] or "open"  # documented default
        self.faults.append(fault)
        return fault

    def _create_fault(self, request: Request) -> Answer:
        body = request.json
        problems = self._fault_problems(body, creating=True)
        if problems:
            return Answer(422, {"errors": problems})
        return Answer(201, self._store_fault(body))

    def _update_fault(self, request: Request, fault_id: str) -> Answer:
        # Guess: Fleetio documents no Update Fault route; this one follows its other
        # resources (PATCH /v1/<resource>/{id} with the create's fields).
        fault = next((f for f in self.faults if f["id"] == int(fault_id)), None)
        if fault is None:
            return Answer(404, {"error": "Not found"})
        body = request.json
        problems = self._fault_problems(body, creating=False)
        if problems:
            return Answer(422, {"errors": problems})
        for field in ("count", "description", "last_occurred_at", "name", "status"):
            if field in body:
                fault[field] = body[field]
        return Answer(200, fault)

    def _create_bulk_job(self, request: Request) -> Answer:
        body = request.json
        if not isinstance(body, dict):
            return Answer(422, {"errors": {"base": ["must be an object"]}})
        resource, operation = body.get("resource"), body.get("operation")
        records = body.get("records")
        problems: dict[str, list[str]] = {}
        # Guess: the wording of each refusal (the rules are documented).
        if resource not in BULK_RESOURCES:
            problems["resource"] = ["is not included in the list"]
        if operation not in ("create", "update"):
            problems["operation"] = ["is not included in the list"]
        elif resource in ("meter_entry", "location_entry", "fault") and operation != "create":
            problems["operation"] = [f"{operation} is not supported for {resource}"]
        if not isinstance(records, list) or not records:
            problems["records"] = ["can't be blank"]
        elif len(records) > BULK_MAX_RECORDS:
            problems["records"] = [f"at most {BULK_MAX_RECORDS} records per job"]
        if not problems and resource not in ("meter_entry", "location_entry", "fault"):
            problems["resource"] = ["not served by this fake"]
        if problems:
            return Answer(422, {"errors": problems})
        job_id = next(self._ids)
        errors = []
        for index, record in enumerate(records):
            refused = self._bulk_record(resource, record)
            if refused:
                errors.append({"index": index, "errors": refused})
        # Guess: the job's shape. Documented: it is enqueued and processed in the
        # background, then its status can be retrieved. This fake processes it at
        # once and says so only when asked (GET), as the real one would later.
        self.bulk_jobs[job_id] = {
            "id": job_id,
            "resource": resource,
            "operation": operation,
            "status": "completed",
            "records_count": len(records),
            "errors": errors,
        }
        return Answer(
            201,
            {
                "id": job_id,
                "resource": resource,
                "operation": operation,
                "status": "pending",
                "records_count": len(records),
            },
        )

    def _bulk_record(self, resource: str, record: Any) -> dict[str, list[str]]:
        """Create one record of a bulk job; why it was refused, if it was."""
        if resource == "meter_entry":
            problems = self._meter_entry_problems(record)
            if not problems:
                self._store_meter_entry(record)
            return problems
        if resource == "fault":
            problems = self._fault_problems(record, creating=True)
            if not problems:
                self._store_fault(record)
            return problems
        if not isinstance(record, dict) or self._vehicle(record.get("vehicle_id")) is None:
            return {"vehicle": ["must exist"]}
        self.location_entries.append(dict(record))
        return {}

    def _show_bulk_job(self, request: Request, job_id: str) -> Answer:
        job = self.bulk_jobs.get(int(job_id))
        if job is None:
            return Answer(404, {"error": "Not found"})
        return Answer(200, job)
