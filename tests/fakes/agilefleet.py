"""A fake Agile Fleet speaking the API that integrations/agilefleet.py ASSUMES. No
public documentation of an Agile Fleet API exists, so every part of this fake is a
guess, marked "Guess:" where it is written; it changes with the adapter once the
vendor's documentation is in hand.

- Guess: an `X-API-Key` header, refused with 401 `{"error": "Invalid API key"}`.
- Guess: `GET /v1/vehicles` paged by `limit` (≤ 100) and an opaque `cursor`
  (`next_cursor` in the answer).
- Guess: `POST /v1/vehicles/{id}/readings`, its body checked field by field (422
  with an `errors` map when a field is wrong), 201 with the stored reading.
- Guess: a limit of 60 requests a minute (the adapter's assumed budget), past it a
  429 with `Retry-After` in seconds.
"""

from __future__ import annotations

import itertools
import math
import secrets
from datetime import datetime
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

API_KEY = "af_live_6c1d0e2f9b8a47d3a5e4f3b2c1d0e9f8"
MAX_LIMIT = 100  # Guess: the largest page
UNITS = {"odometer": "mi", "engine_hours": "h", "fuel_level": "%"}  # Guess: types and units
# Guess: the limit, taken to be the adapter's assumed budget.
ASSUMED_REQUESTS_PER_MINUTE = 60


class FakeAgileFleet(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.vehicles: dict[str, dict[str, Any]] = {}  # id → {id, vin, name}
        self.readings: list[dict[str, Any]] = []  # each with its vehicle_id
        self._ids = itertools.count(5001)
        self._cursors: dict[str, int] = {}
        self.issued_cursors: list[str] = []  # every next_cursor handed out, in order
        self.throttle(ASSUMED_REQUESTS_PER_MINUTE, 60)
        self.route("GET", r"/v1/vehicles", self.list_vehicles)
        self.route("POST", r"/v1/vehicles/([^/]+)/readings", self.add_reading)

    def add_vehicle(self, vin: str, name: str = "") -> str:
        vehicle_id = f"veh_{next(self._ids)}"
        self.vehicles[vehicle_id] = {"id": vehicle_id, "vin": vin, "name": name or vin}
        return vehicle_id

    def throttled(self, retry_after: float, request: Request) -> Answer:
        # Guess: the status, header and body past the limit.
        return Answer(
            429,
            {"error": "Rate limit exceeded"},
            {"Retry-After": str(max(1, math.ceil(retry_after)))},
        )

    def authenticate(self, request: Request) -> Answer | None:
        if request.headers.get("X-API-Key") != self.api_key:
            return Answer(401, {"error": "Invalid API key"})  # Guess: header, status, body
        return None

    def list_vehicles(self, request: Request) -> Answer:
        query = {k: v[0] for k, v in request.query.items()}
        limit = query.get("limit", "25")  # Guess: the default page
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            # Guess: a bad query answers 422 with an errors map.
            return Answer(422, {"errors": {"limit": "must be between 1 and 100"}})
        start = 0
        if "cursor" in query:
            if query["cursor"] not in self._cursors:
                return Answer(422, {"errors": {"cursor": "is invalid"}})
            start = self._cursors[query["cursor"]]
        items = list(self.vehicles.values())
        end = start + int(limit)
        cursor = None
        if end < len(items):
            cursor = secrets.token_urlsafe(16)
            self._cursors[cursor] = end
            self.issued_cursors.append(cursor)
        # Guess: the answer's shape (a `vehicles` list of {id, vin, name}, `next_cursor`).
        return Answer(200, {"vehicles": items[start:end], "next_cursor": cursor})

    def add_reading(self, request: Request, vehicle_id: str) -> Answer:
        if vehicle_id not in self.vehicles:
            return Answer(404, {"error": "Vehicle not found"})  # Guess
        body = request.json if isinstance(request.json, dict) else {}
        # Guess: the fields, their checks, and the 422 with an errors map.
        errors = {}
        if body.get("type") not in UNITS:
            errors["type"] = "must be one of odometer, engine_hours, fuel_level"
        elif body.get("unit") != UNITS[body["type"]]:
            errors["unit"] = f"must be {UNITS[body['type']]}"
        value = body.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors["value"] = "must be a number"
        try:
            datetime.fromisoformat(str(body.get("recorded_at")))
        except ValueError:
            errors["recorded_at"] = "must be an RFC 3339 time"
        if errors:
            return Answer(422, {"errors": errors})
        # Guess: 201 with the stored reading.
        reading = {"id": f"rd_{next(self._ids)}", "vehicle_id": vehicle_id, **body}
        self.readings.append(reading)
        return Answer(201, reading)
