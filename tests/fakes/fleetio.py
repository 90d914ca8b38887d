"""A fake Fleetio API (base URL `<url>/api`, like https://secure.fleetio.com/api):
token and account-token authentication, vehicles paged by cursor, meter entries
that must increase by date, fault rules, and faults whose code needs a rule.

The shapes follow Fleetio's documentation where it has them (cursor pages with
`records` and `next_cursor`; `{"errors": {"value": [...]}}` for a meter value out
of sequence); the wording of the 401 body, of a fault refused for want of a rule,
and of a duplicate rule code are this fake's own."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

API_KEY = "fl-api-key-8f3c2d9e1b7a"
ACCOUNT_TOKEN = "acct-5e61a0c4"
PREFIX = "/api/v1"


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FleetioFake(FakeProvider):
    def __init__(self, api_key: str = API_KEY, account_token: str = ACCOUNT_TOKEN) -> None:
        super().__init__()
        self.api_key = api_key
        self.account_token = account_token
        self.base_url = f"{self.url}/api"
        self._ids = count(1001)
        self.vehicles: list[dict[str, Any]] = []
        self.meter_entries: dict[int, list[dict[str, Any]]] = {}
        self.fault_rules: dict[str, dict[str, Any]] = {}
        self.faults: list[dict[str, Any]] = []
        self.route("GET", PREFIX + r"/vehicles", self._list_vehicles)
        self.route("POST", PREFIX + r"/meter_entries", self._create_meter_entry)
        self.route("POST", PREFIX + r"/fault_rules", self._create_fault_rule)
        self.route("POST", PREFIX + r"/faults", self._create_fault)

    # -- set-up helpers for tests ------------------------------------------------

    def add_vehicle(self, vin: str, name: str = "", meter_unit: str = "mi") -> int:
        vehicle_id = next(self._ids)
        self.vehicles.append({"id": vehicle_id, "name": name or f"Vehicle {vehicle_id}",
                              "vin": vin, "meter_unit": meter_unit})  # fmt: skip
        return vehicle_id

    def add_meter_entry(self, vehicle_id: int, value: float, date: str) -> None:
        self.meter_entries.setdefault(vehicle_id, []).append(
            {"id": next(self._ids), "vehicle_id": vehicle_id, "value": value, "date": date}
        )

    def add_fault_rule(self, code: str, name: str = "", description: str = "") -> None:
        self.fault_rules[code] = {
            "id": next(self._ids),
            "code": code,
            "name": name,
            "description": description,
            "priority_handling": "off",
        }

    # -- Fleetio -----------------------------------------------------------------

    def authenticate(self, request: Request) -> Answer | None:
        if (
            request.headers.get("Authorization") != f"Token {self.api_key}"
            or request.headers.get("Account-Token") != self.account_token
        ):
            return Answer(401, {"error": "You are not authorized to perform that action."})
        return None

    def _list_vehicles(self, request: Request) -> Answer:
        per_page = int(request.query.get("per_page", ["50"])[0])
        if not 2 <= per_page <= 100:
            return Answer(400, {"errors": {"per_page": ["must be between 2 and 100"]}})
        vin = request.query.get("filter[vin][eq]", [None])[0]
        vehicles = [v for v in self.vehicles if vin is None or v["vin"] == vin]
        start = int(request.query.get("start_cursor", ["0"])[0])
        page = vehicles[start : start + per_page]
        end = start + len(page)
        return Answer(200, {
            "start_cursor": str(start),
            "next_cursor": str(end) if end < len(vehicles) else None,
            "per_page": per_page,
            "estimated_remaining_count": min(len(vehicles) - start, 500),
            "filtered_by": [{"vin": {"eq": vin}}] if vin else [],
            "sorted_by": [{"id": "desc"}],
            "records": page,
        })  # fmt: skip

    def _vehicle(self, vehicle_id: Any) -> dict[str, Any] | None:
        return next((v for v in self.vehicles if v["id"] == vehicle_id), None)

    def _create_meter_entry(self, request: Request) -> Answer:
        body = request.json or {}
        vehicle = self._vehicle(body.get("vehicle_id"))
        if vehicle is None:
            return Answer(422, {"errors": {"vehicle_id": ["must exist"]}})
        value, date = body.get("value"), body.get("date")
        if not isinstance(value, int | float) or not isinstance(date, str):
            return Answer(422, {"errors": {"value": ["is not a number"]}})
        when = _moment(date)
        entries = self.meter_entries.setdefault(vehicle["id"], [])
        before = [e["value"] for e in entries if _moment(e["date"]) <= when]
        after = [e["value"] for e in entries if _moment(e["date"]) > when]
        if before and value <= max(before):
            return Answer(422, {"errors": {"value": [f"must be greater than {max(before):,}"]}})
        if after and value >= min(after):
            return Answer(422, {"errors": {"value": [f"must be less than {min(after):,}"]}})
        entry = {"id": next(self._ids), "vehicle_id": vehicle["id"], "value": value,
                 "date": date, "meter_type": body.get("meter_type")}  # fmt: skip
        entries.append(entry)
        return Answer(201, entry)

    def _create_fault_rule(self, request: Request) -> Answer:
        body = request.json or {}
        code = body.get("code")
        if not code:
            return Answer(422, {"errors": {"code": ["can't be blank"]}})
        if code in self.fault_rules:
            return Answer(422, {"errors": {"code": ["has already been taken"]}})
        self.add_fault_rule(code, body.get("name") or "", body.get("description") or "")
        return Answer(201, self.fault_rules[code])

    def _create_fault(self, request: Request) -> Answer:
        body = request.json or {}
        if self._vehicle(body.get("vehicle_id")) is None:
            return Answer(422, {"errors": {"vehicle_id": ["must exist"]}})
        rule = self.fault_rules.get(body.get("code"))
        if rule is None:
            return Answer(422, {"errors": {"code": ["does not match any Fault Rule"]}})
        fault = {"id": next(self._ids), **body, "fault_rule_id": rule["id"]}
        self.faults.append(fault)
        return Answer(201, fault)
