"""Asana (Task Management): keeps one vehicle attribute in a custom field of each
vehicle's task, and opens a task for every DVIR with defects.

The customer keeps a project whose tasks are the vehicles: a text custom field
holds each vehicle's VIN, another custom field holds the attribute this
integration syncs (odometer, engine hours, fuel level, last location or last DVIR).

Resting on Asana's documentation (developers.asana.com; ../shared/PROVIDERS.md):
- base `https://app.asana.com/api/1.0` (FLEETHOOK_ASANA_BASE_URL), every call with
  `Authorization: Bearer <personal access token>`; errors as
  `{"errors": [{"message": ...}]}`; 429 with `Retry-After`;
- `GET /users/me` (the credential check), `GET /projects/{gid}`,
  `GET /projects/{gid}/custom_field_settings` (the project's custom fields with
  `custom_field.name` and `custom_field.resource_subtype`);
- `GET /projects/{gid}/tasks?opt_fields=custom_fields,name&limit=100`, paged by
  passing the previous page's `next_page.offset` as `offset` (searching tasks by
  custom field needs a premium plan, so the VIN map lists the project);
- `PUT /tasks/{gid} {"data": {"custom_fields": {"<field gid>": value}}}` — a number
  for a number field, a string for a text field;
- `POST /tasks {"data": {"projects": [gid], "name", "notes"}}`.

Our choices, not Asana's:
- the form names the two custom fields (blank: "VIN" and the attribute's own
  label, e.g. "Odometer (mi)"), by name or gid; the credential check finds them
  among the project's custom fields, checks their types and keeps their gids in
  `options` (`vin_field_gid`, `attribute_field_gid`, `attribute_field_type`);
- which events feed which attribute (`payload_for`); the DVIR summary and the
  defect task's wording;
- a DVIR with defects opens a task whatever the attribute, even for a vehicle the
  project lacks (the defect matters more than the match); its field update, when
  the attribute is the last DVIR, goes first, because a PUT can be repeated
  harmlessly and a POST cannot;
- a PUT that answers 404 (the task was deleted since the map was listed) lists
  the project again and tries once more;
- Asana answers 400 to a malformed request (such as a value of the wrong type for
  the field): retried on the schedule like other failures, so that fixing the
  project's fields lets the queue go on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import requests
from flask import current_app

from database import format_rfc3339
from encryption import mask
from integrations.base import (
    VEHICLE_ATTRIBUTE,
    VEHICLE_ATTRIBUTES,
    Api,
    Field,
    ListingFailed,
    ProviderRejected,
    recently_missing,
    secrets_of,
    unmatched,
    vehicle_ref,
)
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result, send_in_order

NAME = "Asana"
PAGE_SIZE = 100  # Asana's largest page
MAX_PAGES = 1000  # 100,000 tasks: more means a loop, not a project
DEFAULT_VIN_FIELD = "VIN"
# The longest text value we send (Asana caps the length of text custom field values).
MAX_TEXT_VALUE = 1024
NUMERIC_ATTRIBUTES = frozenset({"odometer", "engine_hours", "fuel_level"})
ATTRIBUTE_LABELS = dict(VEHICLE_ATTRIBUTES)


def project_gid_in(value: str) -> str | None:
    """The project's gid from what the form got: the gid itself, or the address
    of the project in Asana (`…/0/<gid>/…` or `…/project/<gid>/…`)."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() takes too
        return value
    found = re.search(r"/(?:0|project)/([0-9]+)(?:/|$|\?)", value)
    return found.group(1) if found else None


def _shown(method: str, path: str, token: str) -> dict[str, str]:
    """What attempt records show of a request: never the token itself."""
    return {"method": method, "path": path, "authorization": f"Bearer {mask(token)}"}


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_of(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class AsanaProvider:
    key = "asana"
    name = NAME
    software_type = "Task Management"
    requirements = (
        "A personal access token, and a project whose tasks are your vehicles: a text "
        "custom field holding each VIN and a custom field for the attribute."
    )
    receives_locations = False
    fields: tuple[Field, ...] = (
        Field("api_key", "Personal access token", "secret",
              help="Create one in Asana under My settings → Apps → Manage developer apps."),
        VEHICLE_ATTRIBUTE,
        Field("project_gid", "Project",
              help="The project whose tasks are your vehicles: its address in Asana, or the "
              "number in that address."),
        Field("vin_field", "VIN custom field",
              help="The project's text custom field holding each vehicle's VIN: its name or "
              f"gid. Blank: \"{DEFAULT_VIN_FIELD}\".", required=False),
        Field("attribute_field", "Attribute custom field",
              help="The project's custom field this integration updates: its name or gid. "
              "Blank: the attribute's name, e.g. \"Odometer (mi)\". A number field for "
              "odometer, engine hours and fuel level (or text); a text field for "
              "location and DVIR.", required=False),
    )  # fmt: skip
    secret_fields = frozenset({"api_key"})

    # -- connecting ------------------------------------------------------------

    def _api(self, integration: Integration) -> tuple[Api, str]:
        token = str(secrets_of(integration).get("api_key") or "")
        base_url = current_app.config["FLEETHOOK_ASANA_BASE_URL"]
        return Api(base_url, {"Authorization": f"Bearer {token}"}, NAME), token

    def check_credentials(self, integration: Integration) -> None:
        """The token (`GET /users/me`), the project, and its two custom fields,
        whose gids and the attribute field's type are kept in `options`."""
        api, token = self._api(integration)
        options = dict(integration.options or {})
        project = project_gid_in(str(options.get("project_gid") or ""))
        if project is None:
            raise ProviderRejected(
                "The project is the number in its Asana address (or paste the address)."
            )
        response, result = api.call("GET", "/users/me", _shown("GET", "/users/me", token))
        if response is not None and response.status_code in (401, 403):
            raise ProviderRejected("Asana did not accept this personal access token.")
        _raise_unless_ok(response, result)

        path = f"/projects/{project}"
        response, result = api.call(
            "GET", path, _shown("GET", path, token), params={"opt_fields": "name"}
        )
        if response is not None and response.status_code in (400, 403, 404):
            raise ProviderRejected(f"Asana has no project {project} that this token can see.")
        _raise_unless_ok(response, result)

        settings = self._custom_fields(api, token, project)
        vin_field = _find_field(settings, options.get("vin_field") or DEFAULT_VIN_FIELD)
        if vin_field is None or vin_field["type"] != "text":
            raise ProviderRejected(
                f"The project has no text custom field "
                f'"{options.get("vin_field") or DEFAULT_VIN_FIELD}" for the VINs.'
            )
        attribute = integration.vehicle_attribute or ""
        wanted = options.get("attribute_field") or ATTRIBUTE_LABELS.get(attribute, attribute)
        field = _find_field(settings, wanted)
        if field is None:
            raise ProviderRejected(f'The project has no custom field "{wanted}".')
        allowed = ("number", "text") if attribute in NUMERIC_ATTRIBUTES else ("text",)
        if field["type"] not in allowed:
            raise ProviderRejected(
                f'The custom field "{field["name"]}" is of type {field["type"]}; '
                f"{ATTRIBUTE_LABELS.get(attribute, attribute)} needs a "
                + " or ".join(allowed)
                + " field."
            )
        integration.options = {
            **options,
            "project_gid": project,
            "vin_field_gid": vin_field["gid"],
            "attribute_field_gid": field["gid"],
            "attribute_field_type": field["type"],
        }

    def _custom_fields(self, api: Api, token: str, project: str) -> list[dict[str, str]]:
        """The project's custom fields: gid, name and type (text, number, enum …)."""
        path = f"/projects/{project}/custom_field_settings"
        params: dict[str, Any] = {
            "opt_fields": "custom_field.name,custom_field.resource_subtype",
            "limit": PAGE_SIZE,
        }
        found: list[dict[str, str]] = []
        for _ in range(MAX_PAGES):
            response, result = api.call("GET", path, _shown("GET", path, token), params=params)
            body = _raise_unless_ok(response, result)
            for setting in body.get("data") or []:
                field = setting.get("custom_field") or {}
                found.append({
                    "gid": str(field.get("gid")),
                    "name": str(field.get("name") or ""),
                    "type": str(field.get("resource_subtype") or field.get("type") or ""),
                })  # fmt: skip
            offset = (body.get("next_page") or {}).get("offset")
            if not offset:
                break
            params = {**params, "offset": offset}
        return found

    # -- what to send ----------------------------------------------------------

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """A field update when the event carries the integration's attribute, a new
        task when it is a DVIR with defects, both, or None."""
        key = event.event_type.key
        vehicle = event.vehicle
        payload: dict[str, Any] = {
            "type": key,
            "vin": vehicle.vin,
            "vehicle": vehicle.name,
            "occurred_at": format_rfc3339(event.occurred_at),
        }
        value = attribute_value(integration.vehicle_attribute, event)
        if value is not None:
            payload["attribute"] = integration.vehicle_attribute
            payload["value"] = value
        dvir = event.details.get("dvir") if key == "dvir" else None
        if dvir and dvir.get("defects"):
            payload["task"] = defect_task(vehicle.name, vehicle.vin, event.occurred_at, dvir)
        return payload if "value" in payload or "task" in payload else None

    # -- sending ---------------------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        api, token = self._api(integration)
        return send_in_order(
            messages,
            stop_at,
            lambda message: self._send_one(api, token, integration, message.payload),
        )

    def _send_one(
        self, api: Api, token: str, integration: Integration, payload: Mapping[str, Any]
    ) -> Result:
        options = integration.options or {}
        project = str(options.get("project_gid") or "")
        field_gid = options.get("attribute_field_gid")
        if not (project and field_gid and options.get("vin_field_gid")):
            return Result(
                delivered=False,
                needs_attention="Save the Asana integration again so Fleethook can find "
                "the project and its custom fields.",
            )
        if "value" in payload:
            value = payload["value"]
            if options.get("attribute_field_type") == "text":
                value = _number_text(value)[:MAX_TEXT_VALUE]
            update = {"data": {"custom_fields": {str(field_gid): value}}}
            result = self._update_task(api, token, integration, payload["vin"], update)
            # A vehicle the project lacks still gets its defect task.
            if "task" not in payload or not (result.delivered or result.permanent):
                return result
        task = payload["task"]
        new_task = {"data": {"projects": [project], "name": task["name"], "notes": task["notes"]}}
        _, result = api.call("POST", "/tasks", _shown("POST", "/tasks", token), json=new_task)
        return result

    def _update_task(
        self, api: Api, token: str, integration: Integration, vin: str, body: dict[str, Any]
    ) -> Result:
        """PUT the custom field on the vehicle's task; a 404 (the task went away
        since the map was listed) lists the project again and tries once more."""
        result = Result(delivered=False)
        for _attempt in (1, 2):
            if recently_missing(integration, vin):
                return unmatched(vin, NAME)
            try:
                gid = vehicle_ref(integration, vin, lambda: self._vin_map(api, token, integration))
            except ListingFailed as failed:
                return failed.result
            if gid is None:
                return unmatched(vin, NAME)
            path = f"/tasks/{gid}"
            _, result = api.call("PUT", path, _shown("PUT", path, token), json=body)
            if result.status_code != 404:
                return result
            integration.vehicle_map = {k: v for k, v in integration.vehicle_map.items() if k != vin}
        return result

    def _vin_map(self, api: Api, token: str, integration: Integration) -> dict[str, str]:
        """VIN → task gid over every task of the project (the first task wins when
        two hold the same VIN); ListingFailed if Asana did not answer a page."""
        options = integration.options or {}
        project, vin_field = options.get("project_gid"), options.get("vin_field_gid")
        path = f"/projects/{project}/tasks"
        params: dict[str, Any] = {"opt_fields": "custom_fields,name", "limit": PAGE_SIZE}
        vins: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            response, result = api.call("GET", path, _shown("GET", path, token), params=params)
            if response is None or not result.delivered:
                raise ListingFailed(result)
            body = _json_of(response)
            if not isinstance(body, dict):
                result.delivered = False
                result.error = "Asana answered the task list with something other than JSON"
                raise ListingFailed(result)
            for task in body.get("data") or []:
                vin = _vin_of(task, str(vin_field))
                if vin and vin not in vins:
                    vins[vin] = str(task["gid"])
            offset = (body.get("next_page") or {}).get("offset")
            if not offset:
                break
            params = {**params, "offset": offset}
        return vins


def _raise_unless_ok(response: requests.Response | None, result: Result) -> dict[str, Any]:
    """The JSON body of a successful answer during the credential check, else
    ProviderRejected in words."""
    if response is None:
        raise ProviderRejected(f"Asana could not be reached ({result.error}); try again.")
    if not result.delivered:
        raise ProviderRejected(f"Asana answered HTTP {response.status_code}; try again later.")
    body = _json_of(response)
    if not isinstance(body, dict):
        raise ProviderRejected("Asana answered with something other than JSON; try again later.")
    return body


def _find_field(fields: Sequence[dict[str, str]], wanted: str) -> dict[str, str] | None:
    """The custom field with this gid, else the one with this name (any case)."""
    wanted = wanted.strip()
    for field in fields:
        if field["gid"] == wanted:
            return field
    for field in fields:
        if field["name"].strip().casefold() == wanted.casefold():
            return field
    return None


def _vin_of(task: Mapping[str, Any], vin_field_gid: str) -> str | None:
    for field in task.get("custom_fields") or []:
        if str(field.get("gid")) == vin_field_gid:
            value = str(field.get("text_value") or field.get("display_value") or "")
            return value.strip().upper() or None
    return None


def attribute_value(attribute: str | None, event: Any) -> Any:
    """The value of `attribute` this event brings, or None: odometer, engine hours
    and fuel level from location events (the odometer only when it advanced), the
    location as "lat, lon" text, the last DVIR as a one-line summary."""
    key, vehicle, report = event.event_type.key, event.vehicle, event.report
    if key == "location":
        if attribute == "odometer":
            odometer, before = vehicle.odometer_mi, report.get("previous_odometer_mi")
            if odometer is not None and (before is None or odometer > before):
                return odometer
        elif attribute == "engine_hours":
            return report.get("engine_hours")
        elif attribute == "fuel_level":
            return report.get("fuel_level_pct")
        elif attribute == "location":
            if vehicle.latitude is not None and vehicle.longitude is not None:
                return f"{vehicle.latitude}, {vehicle.longitude}"
    elif key == "dvir" and attribute == "last_dvir":
        return dvir_summary(event.occurred_at, event.details.get("dvir") or {})
    return None


def _defect_lines(defects: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        ": ".join(str(part) for part in (d.get("component"), d.get("description")) if part)
        for d in defects
    ]


def dvir_summary(when: datetime, dvir: Mapping[str, Any]) -> str:
    """One line for the Last DVIR field, e.g. "2026-05-14T15:42:07Z — unsafe —
    Dana Whitfield — 1 defect: Brakes: Air leak at the rear axle"."""
    defects = list(dvir.get("defects") or [])
    parts = [format_rfc3339(when)]
    parts += [str(dvir[key]) for key in ("safety_status", "driver") if dvir.get(key)]
    if defects:
        count = f"{len(defects)} defect" + ("s" if len(defects) > 1 else "")
        parts.append(f"{count}: " + "; ".join(_defect_lines(defects)))
    else:
        parts.append("no defects")
    return " — ".join(parts)[:MAX_TEXT_VALUE]


def defect_task(name: str, vin: str, when: datetime, dvir: Mapping[str, Any]) -> dict[str, str]:
    """The task a DVIR with defects opens: its name and notes."""
    defects = list(dvir.get("defects") or [])
    driver = dvir.get("driver") or "The driver"
    count = f"{len(defects)} defect" + ("s" if len(defects) > 1 else "")
    notes = [f"{driver} reported {count} on {name} (VIN {vin}) at {format_rfc3339(when)}."]
    if dvir.get("safety_status"):
        notes.append(f"Safety status: {dvir['safety_status']}")
    notes.append("")
    notes += [f"- {line}" for line in _defect_lines(defects)]
    notes += ["", "Opened by Fleethook from the driver's vehicle inspection report."]
    return {"name": f"DVIR defects: {name} ({vin})", "notes": "\n".join(notes)}


PROVIDER = AsanaProvider()
register(PROVIDER)
