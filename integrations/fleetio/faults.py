"""One open Fleetio fault per vehicle and code: a code newly reported opens one
(creating its Fault Rule first when Fleetio has none), a code still reported
updates its count and last occurrence, a code gone from a report resolves it, and
the initial sync opens the codes open now and resolves the rest. The open faults'
ids live in the integration's `provider_state["open_faults"]["<VIN>|<code>"]`.
Also the results of operations that share one message (`combined`).

Guess (Fleetio documents List, Create and Retrieve Fault, no update): a fault is
updated and resolved with `PATCH /v1/faults/{id}`, and a 404 there means the fault
is gone from Fleetio."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from core.times import parse_rfc3339
from integrations.base import json_of
from outbox.failures import shorten
from outbox.registry import Result

FAULT_SOURCE = "Fleethook"
Request = Callable[..., tuple[Any, Result]]


def labelled(result: Result, label: str) -> Result:
    if result.delivered or not result.error or result.not_sent:
        return result
    return replace(result, error=shorten(f"{label}: {result.error}", 500))


def settled(why: str) -> Result:
    """An operation that needs no request: what it asks is already so."""
    return Result(delivered=True, response_body=why)


def combined(results: list[Result]) -> Result:
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


def _not_after(moment: str, other: str) -> bool:
    """Whether RFC 3339 time `moment` is at or before `other` (compared as times:
    as text, "…:00Z" would sort after "…:00.5Z")."""
    first, second = parse_rfc3339(moment), parse_rfc3339(other)
    return first is not None and second is not None and first <= second


class Faults:
    """The fault changes of one drain's batch, through its `request` (counted
    against the drain's time) and the open faults it keeps."""

    def __init__(
        self,
        open_faults: dict[str, dict[str, Any]],
        request: Request,
        forget_vehicle: Callable[[str, Result], None],
    ) -> None:
        self.open_faults = open_faults
        self.request = request
        self.forget_vehicle = forget_vehicle

    def change(
        self, kind: str, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]
    ) -> Result:
        """One fault operation of a message, by its kind."""
        if kind == "fault_sync":
            return self.sync(vin, vehicle, operation)
        if kind == "fault_update":
            return self.update(vin, vehicle, operation)
        if kind == "fault_resolve":
            return self.resolve(vin, operation)
        # "fault_open", and "fault" of messages queued by earlier versions
        return self.open(vin, vehicle, operation)

    def open(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
        key = f"{vin}|{operation['code']}"
        if key in self.open_faults:
            return self.update(vin, vehicle, operation)
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
        response, result = self.request("POST", "/v1/faults", json=body)
        if result.status_code == 422:
            rule = {"code": code, "name": (description or code)[:255], "description": description}
            _, created = self.request("POST", "/v1/fault_rules", json=rule)
            spent = result.duration_ms + created.duration_ms
            if created.delivered:
                response, result = self.request("POST", "/v1/faults", json=body)
                result = replace(result, duration_ms=result.duration_ms + spent)
            elif created.status_code != 422:
                return labelled(created, f"Fault rule {code}")
            # else: Fleetio has the rule already, so the fault's own refusal stands.
        if result.delivered:
            fault = json_of(response)
            fault_id = fault.get("id") if isinstance(fault, dict) else None
            self.open_faults[key] = {"id": fault_id, "count": 1, "last": occurred_at}
        else:
            self.forget_vehicle(vin, result)
        return labelled(result, f"Fault {code}")

    def update(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
        key, code = f"{vin}|{operation['code']}", operation["code"]
        fault = self.open_faults.get(key)
        if fault is None or fault.get("id") is None:
            self.open_faults.pop(key, None)
            return self.open(vin, vehicle, operation)
        occurred_at = operation["occurred_at"]
        if _not_after(occurred_at, fault["last"]):
            return settled(f"Fault {code} already shows this occurrence.")
        body = {"count": fault["count"] + 1, "last_occurred_at": occurred_at}
        _, result = self.request("PATCH", f"/v1/faults/{fault['id']}", json=body)
        if result.status_code == 404:  # deleted in Fleetio: a new one is opened
            self.open_faults.pop(key, None)
            return self.open(vin, vehicle, operation)
        if result.delivered:
            self.open_faults[key] = {**fault, "count": body["count"], "last": occurred_at}
        return labelled(result, f"Fault {code}")

    def resolve(self, vin: str, operation: dict[str, Any]) -> Result:
        key, code = f"{vin}|{operation['code']}", operation["code"]
        fault = self.open_faults.get(key)
        if fault is None or fault.get("id") is None:
            self.open_faults.pop(key, None)
            return settled(f"No open fault {code} to resolve.")
        _, result = self.request("PATCH", f"/v1/faults/{fault['id']}", json={"status": "resolved"})
        if result.delivered or result.status_code == 404:
            self.open_faults.pop(key, None)
            if not result.delivered:
                return replace(
                    result,
                    delivered=True,
                    error=None,
                    response_body=f"Fault {code} is gone from Fleetio.",
                )
        return labelled(result, f"Fault {code}")

    def sync(self, vin: str, vehicle: dict[str, Any], operation: dict[str, Any]) -> Result:
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
                result = self.resolve(vin, step)
            elif f"{vin}|{step['code']}" in self.open_faults:
                result = settled(f"Fault {step['code']} is open in Fleetio.")
            else:
                result = self.open(vin, vehicle, step)
            results.append(result)
            if not (result.delivered or result.permanent):
                break
        return combined(results) if results else settled("No fault codes are open.")
