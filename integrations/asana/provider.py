"""Asana (Task Management) as a provider: keeps one vehicle attribute in a custom field of each
vehicle's task, and opens one task for every DVIR with defects.

The customer keeps a project whose tasks are the vehicles: a text custom field
holds each vehicle's VIN, another custom field holds the attribute this
integration syncs (odometer, engine hours, fuel level, last location or last DVIR).

From Asana's OpenAPI file (github.com/Asana/openapi, defs/asana_oas.yaml):
- base `https://app.asana.com/api/1.0` (FLEETHOOK_ASANA_BASE_URL), every call with
  `Authorization: Bearer <personal access token>`;
- `GET /users/me` (the credential check), `GET /projects/{gid}`,
  `GET /projects/{gid}/custom_field_settings` (`custom_field.name`,
  `custom_field.resource_subtype`);
- `GET /projects/{gid}/tasks?opt_fields=custom_fields,name&limit=100`, paged with
  `next_page.offset` ("limit": 1 to 100) — the VIN → task map;
- `PUT /tasks/{gid} {"data": {"custom_fields": {"<field gid>": value}}}`: "An object
  where each key is the GID of a custom field and its corresponding value is either
  an enum GID, string, number, object, or array (depending on the custom field type)";
- `POST /tasks {"data": {"projects": [gid], "name", "notes"}}` ("The workspace need
  not be set explicitly if you specify projects");
- `GET /tasks?project=&modified_since=&opt_fields=name,notes`: "Only return tasks
  that have been modified since the given time" — how an opened DVIR task is found
  again;
- a task's `external` field ("a gid that can be used to retrieve tasks") is
  "*OAuth Required*": a personal access token cannot use it, so the DVIR marker
  lives in the task's name and notes instead;
- error bodies `{"errors": [{"message", "help", "phrase"}]}` ("phrase": "*500
  errors only*", for Asana support).

From developers.asana.com, "Errors": 400 Bad Request ("a missing or malformed
parameter"), 401 Unauthorized, 402 Payment Required ("the queried object or object
mutation specified in the request is above your current premium level"), 403
Forbidden ("objects or properties that the user does not have access to"), 404 Not
Found, 429 Too Many Requests, 451 Unavailable For Legal Reasons, 500 and other 5xx.
"Custom fields" guide: "Custom fields are an Asana Premium feature". "Rate limits":
"Free: 150, Paid: 1,500" requests a minute per token; "a 429 Too Many Requests
response, which contains the standard Retry-After header". "Personal access token":
made in the developer console (profile photo → Settings → Apps → View developer
console, or https://app.asana.com/0/my-apps).

How Asana's answers are read: integrations/asana/answers.py.

Our choices, not Asana's:
- the form names the two custom fields (blank: "VIN" and the attribute's own label,
  e.g. "Odometer (mi)"), by name or gid; the credential check finds them among the
  project's custom fields, checks their types and keeps their gids in `options`;
- which events feed which attribute (`payload_for`); a late report (its fix older
  than the vehicle's previous one) changes no attribute;
- message types: the attribute's key (e.g. "odometer") for a value, which only
  the newest per vehicle matters (latest_value_types); "dvir_task" for a DVIR with
  defects, which is never superseded (it may carry the Last DVIR value too);
- one task per DVIR: of the account's Asana integrations on one project, one opens
  the DVIR tasks (`opens_dvir_tasks`: one that is not held, the Last DVIR one first,
  else the oldest); before opening, it looks for a task of the project already
  carrying the DVIR's marker (its name, or the reference line in its notes), so a
  creation retried after a lost answer opens none twice;
- the Last DVIR field update goes before the task, because a PUT can be repeated
  harmlessly and a POST is only made safe by the look-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from core.times import format_rfc3339
from integrations.asana.answers import (
    asana_result,
    asana_words,
    needs_attention,
    project_gone,
    raise_unless_ok,
    rejection,
)
from integrations.asana.dvir import (
    KEY,
    defect_task,
    opens_dvir_tasks,
)
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
from outbox.failures import shorten
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
# The type of a message that opens a DVIR task (every one matters).
DVIR_TASK = "dvir_task"
# How far before a DVIR message was queued its task may seem to have been modified
# on Asana's clock: room for the two clocks to disagree.
CLOCK_MARGIN = timedelta(hours=1)


def project_gid_in(value: str) -> str | None:
    """The project's gid from what the form got: the gid itself, or the address
    of the project in Asana (`…/0/<gid>/…` or `…/project/<gid>/…`)."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() takes too
        return value
    found = re.search(r"/(?:0|project)/([0-9]+)(?:/|$|\?)", value)
    return found.group(1) if found else None


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _found_in(settings: Sequence[Mapping[str, str]], gid: str) -> Mapping[str, str] | None:
    return next((field for field in settings if field["gid"] == gid), None)


class AsanaProvider:
    key = KEY
    name = NAME
    software_type = "Task Management"
    requirements = (
        "A personal access token, and a project whose tasks are your vehicles, in a "
        "workspace on a paid Asana plan (custom fields are a premium feature): a text "
        "custom field holding each VIN and a custom field for the attribute."
    )
    receives_locations = False
    needs_driver_names = False
    # developers.asana.com "Rate limits": 150 requests a minute per token on a free
    # domain, 1,500 on a paid one. Custom fields need a paid plan, so most
    # workspaces may set 1,500; the free figure is the one that is safe everywhere.
    requests_per_minute = 150
    budget_source = (
        "developers.asana.com/docs/rate-limits: 150 requests a minute per token on free "
        "domains, 1,500 on paid ones (429 with Retry-After past it)"
    )
    latest_value_types = frozenset(key for key, _ in VEHICLE_ATTRIBUTES)
    setup_steps: tuple[str, ...] = (
        "In Asana, open the developer console (your profile photo → Settings → Apps → "
        "View developer console, or app.asana.com/0/my-apps), choose Create new token, "
        "name it Fleethook, accept the API terms and copy the token: Asana shows it only "
        "once. The token acts as your user, so that user must be able to edit the "
        "project below.",
        "Choose or create a project with one task per vehicle, in a workspace on a paid "
        "plan: custom fields are a premium feature, and Asana answers 402 Payment "
        "Required to custom field updates in a free workspace.",
        'Add a text custom field named "VIN" to the project and fill it in on each '
        "vehicle's task; vehicles whose VIN no task holds are listed on the "
        "integration's page.",
        "Add a custom field for the attribute this integration keeps: a number (or "
        "text) field for odometer, engine hours or fuel level, a text field for last "
        'location or last DVIR. Named like the attribute (e.g. "Odometer (mi)") it is '
        "found by itself; otherwise enter its name below. Each attribute is its own "
        "integration.",
        "Project: paste the project's address from the browser, or the long number in "
        "it (app.asana.com/0/<project gid>/…). Names are enough for the custom fields; "
        "where two share a name, enter the gid, which Asana's API explorer lists under "
        "GET /projects/<project gid>/custom_field_settings.",
        "A DVIR with defects opens one task in the project, even when several "
        "integrations share it: the Last DVIR integration opens it, else the oldest.",
        "Asana allows 150 requests a minute on a free plan and 1,500 on a paid one; "
        "Fleethook keeps to 150 unless you enter more under Requests a minute.",
    )
    fields: tuple[Field, ...] = (
        Field(
            "api_key",
            "Personal access token",
            "secret",
            help="Create one in Asana's developer console: profile photo → Settings → "
            "Apps → View developer console → Create new token.",
        ),
        VEHICLE_ATTRIBUTE,
        Field(
            "project_gid",
            "Project",
            help="The project whose tasks are your vehicles: its address in Asana, or the "
            "number in that address.",
        ),
        Field(
            "vin_field",
            "VIN custom field",
            help="The project's text custom field holding each vehicle's VIN: its name or "
            f'gid. Blank: "{DEFAULT_VIN_FIELD}".',
            required=False,
        ),
        Field(
            "attribute_field",
            "Attribute custom field",
            help="The project's custom field this integration updates: its name or gid. "
            'Blank: the attribute\'s name, e.g. "Odometer (mi)". A number field for '
            "odometer, engine hours and fuel level (or text); a text field for "
            "location and DVIR.",
            required=False,
        ),
    )
    secret_fields = frozenset({"api_key"})

    # -- connecting ------------------------------------------------------------

    def _api(self, integration: Integration) -> tuple[Api, str]:
        token = str(secrets_of(integration).get("api_key") or "")
        base_url = current_app.config["FLEETHOOK_ASANA_BASE_URL"]
        return Api(base_url, {"Authorization": f"Bearer {token}"}, NAME, integration), token

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
        response, result = api.call("GET", "/users/me")
        if response is not None and response.status_code in (401, 403):
            raise ProviderRejected("Asana did not accept this personal access token.")
        raise_unless_ok(response, result)

        path = f"/projects/{project}"
        response, result = api.call("GET", path, params={"opt_fields": "name"})
        if response is not None and response.status_code in (400, 403, 404):
            raise ProviderRejected(f"Asana has no project {project} that this token can see.")
        raise_unless_ok(response, result)

        try:
            settings = self._custom_fields(api, token, project)
        except ListingFailed as failed:
            raise rejection(failed.result) from None
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
        allowed = _allowed_types(attribute)
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
        """The project's custom fields (gid, name and type: text, number, enum …);
        ListingFailed when a page did not come."""
        path = f"/projects/{project}/custom_field_settings"
        params: dict[str, Any] = {
            "opt_fields": "custom_field.name,custom_field.resource_subtype",
            "limit": PAGE_SIZE,
        }
        found: list[dict[str, str]] = []
        for settings, _result in _pages(api, path, params, project, "the custom fields"):
            for setting in settings:
                field = setting.get("custom_field") or {}
                kind = field.get("resource_subtype") or field.get("type") or ""
                found.append(
                    {
                        "gid": str(field.get("gid")),
                        "name": str(field.get("name") or ""),
                        "type": str(kind),
                    }
                )
        return found

    # -- what to send ----------------------------------------------------------

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """The attribute's value for the vehicle's task (typed by the attribute),
        a new task for a DVIR with defects ("dvir_task", with the value when the
        attribute is the last DVIR), or None."""
        key = event.event_type.key
        vehicle = event.vehicle
        attribute = integration.vehicle_attribute
        value = event_value(attribute, event)
        dvir = event.details.get("dvir") if key == "dvir" else None
        task = None
        if dvir and dvir.get("defects") and opens_dvir_tasks(integration):
            task = defect_task(vehicle.name, vehicle.vin, event.occurred_at, dvir)
        if (value is None or attribute is None) and task is None:
            return None
        payload: dict[str, Any] = {
            "type": DVIR_TASK if task is not None else attribute,
            "vin": vehicle.vin,
            "vehicle": vehicle.name,
            "occurred_at": format_rfc3339(event.occurred_at),
        }
        if value is not None:
            payload["attribute"] = attribute
            payload["value"] = value
        if task is not None:
            payload["task"] = task
        return payload

    # -- sending ---------------------------------------------------------------

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        api, token = self._api(integration)
        return send_in_order(
            messages,
            stop_at,
            lambda message: self._send_one(api, token, integration, message),
        )

    def _send_one(
        self, api: Api, token: str, integration: Integration, message: OutboxMessage
    ) -> Result:
        payload = message.payload
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
            opened = self._open_task(api, token, integration, payload["task"], message.created_at)
            if opened.delivered and not result.delivered:
                # The task went; the refused update stays on the attempt's record.
                opened.error = shorten(
                    f"The task was opened, but not the update: {result.error}", 500
                )
            return opened
        return self._open_task(api, token, integration, payload["task"], message.created_at)

    def _update_task(
        self, api: Api, token: str, integration: Integration, vin: str, body: dict[str, Any]
    ) -> Result:
        """PUT the custom field on the vehicle's task; a 404 (the task went away
        since the map was listed) lists the project again and tries once more."""
        project = str((integration.options or {}).get("project_gid"))

        def put(gid: str) -> Result:
            _, result = api.call("PUT", f"/tasks/{gid}", json=body)
            result = asana_result(result, project)
            if result.status_code == 400:
                return self._refused(api, token, integration, result, "update")
            return result

        def gone_again(result: Result) -> Result:
            # The task listed again answered 404 too: this message cannot go anywhere.
            result.permanent = True
            result.error = shorten(
                f"The task of VIN {vin} is gone from Asana ({result.error}); the message is "
                "not retried.",
                500,
            )
            return result

        return send_to_vehicle(
            integration, vin, NAME, lambda: self._vin_map(api, token, integration), put, gone_again
        )

    def _refused(
        self, api: Api, token: str, integration: Integration, result: Result, what: str
    ) -> Result:
        """A 400 to one task's update or to a new task. When the project's custom
        fields still are as the integration was saved with, the fault is this
        message's: dead with Asana's reason, and the queue goes on. When they
        changed, every message would fail alike: Needs attention. When they cannot
        be read now, the message waits for its retry."""
        problem = self._configuration_problem(api, token, integration)
        if isinstance(problem, Result):
            return result
        if problem is not None:
            return needs_attention(result, problem)
        result.permanent = True
        result.error = shorten(
            f"Asana refused this {what} (HTTP 400: {asana_words(result.response_body)}); "
            "the message is not retried.",
            500,
        )
        return result

    def _configuration_problem(
        self, api: Api, token: str, integration: Integration
    ) -> str | Result | None:
        """What changed in the project since the integration was saved, in words
        saying what to do; None when nothing did; the failed Result when the
        project's fields could not be read."""
        options = integration.options or {}
        project = str(options.get("project_gid"))
        try:
            settings = self._custom_fields(api, token, project)
        except ListingFailed as failed:
            # As _pages read it: the project gone (404), 402, 403 and 451 need a person.
            return failed.result.needs_attention or failed.result
        save_again = "then save the integration again."
        vin_field = _found_in(settings, str(options.get("vin_field_gid")))
        if vin_field is None or vin_field["type"] != "text":
            return (
                f"The VIN custom field is no longer a text field of project {project}: "
                f"add it back in Asana (or choose another in the integration's settings), "
                + save_again
            )
        field = _found_in(settings, str(options.get("attribute_field_gid")))
        label = options.get("attribute_field") or ATTRIBUTE_LABELS.get(
            integration.vehicle_attribute or "", "attribute"
        )
        if field is None:
            return (
                f'The custom field "{label}" is no longer on project {project}: add it back '
                "in Asana (or choose another in the integration's settings), " + save_again
            )
        if field["type"] != options.get("attribute_field_type"):
            return (
                f'The custom field "{field["name"]}" is now of type {field["type"]}: change '
                "it back in Asana (or choose another field in the integration's settings), "
                + save_again
            )
        return None

    def _open_task(
        self,
        api: Api,
        token: str,
        integration: Integration,
        task: Mapping[str, str],
        queued_at: datetime,
    ) -> Result:
        """POST the DVIR's task, unless the project has it already (an earlier
        attempt whose answer was lost)."""
        project = str((integration.options or {}).get("project_gid"))
        found, result = self._opened_task(api, token, project, task, queued_at)
        if not result.delivered:
            if result.status_code == 404:
                return project_gone(result, project)
            return result
        if found is not None:
            return result  # the look-up that found it is the attempt on record
        body = {"data": {"projects": [project], "name": task["name"], "notes": task["notes"]}}
        _, result = api.call("POST", "/tasks", json=body)
        result = asana_result(result, project)
        if result.status_code == 404:
            return project_gone(result, project)
        if result.status_code == 400:
            return self._refused(api, token, integration, result, "new task")
        return result

    def _opened_task(
        self, api: Api, token: str, project: str, task: Mapping[str, str], queued_at: datetime
    ) -> tuple[str | None, Result]:
        """The gid of the project's task for this DVIR, if one was opened: among the
        tasks modified since the message was queued (less the clock margin), the
        one with the DVIR's reference in its notes or its very name."""
        reference = task.get("reference")
        params: dict[str, Any] = {
            "project": project,
            "modified_since": format_rfc3339(queued_at - CLOCK_MARGIN),
            "opt_fields": "name,notes",
            "limit": PAGE_SIZE,
        }
        result = Result(delivered=False)
        try:
            for candidates, result in _pages(api, "/tasks", params, project, "the task look-up"):
                for candidate in candidates:
                    notes = str(candidate.get("notes") or "")
                    if (reference and reference in notes) or candidate.get("name") == task["name"]:
                        return str(candidate.get("gid")), result
        except ListingFailed as failed:
            return None, failed.result
        return None, result

    def _vin_map(self, api: Api, token: str, integration: Integration) -> dict[str, str]:
        """VIN → task gid over every task of the project (the first task wins when
        two hold the same VIN); ListingFailed if Asana did not answer a page."""
        options = integration.options or {}
        project, vin_field = str(options.get("project_gid")), options.get("vin_field_gid")
        path = f"/projects/{project}/tasks"
        params: dict[str, Any] = {"opt_fields": "custom_fields,name", "limit": PAGE_SIZE}
        vins: dict[str, str] = {}
        for tasks, _result in _pages(api, path, params, project, "the task list"):
            for task in tasks:
                vin = _vin_of(task, str(vin_field))
                if vin and vin not in vins:
                    vins[vin] = str(task["gid"])
        return vins


def _pages(
    api: Api, path: str, params: dict[str, Any], project: str, what: str
) -> Iterator[tuple[list[Any], Result]]:
    """Each page of one of the project's lists (its "data", paged with
    `next_page.offset`), with the answer's Result as `asana_result` reads it. A page
    that did not come, or came as something other than JSON (`what` names the list),
    ends the listing with ListingFailed; a 404 says the project is gone."""
    for _ in range(MAX_PAGES):
        response, result = api.call("GET", path, params=params)
        result = asana_result(result, project)
        body = json_of(response) if response is not None and result.delivered else None
        if not isinstance(body, dict):
            if result.delivered:
                result.delivered = False
                result.error = f"Asana answered {what} with something other than JSON"
            elif result.status_code == 404:
                result = project_gone(result, project)
            raise ListingFailed(result)
        yield body.get("data") or [], result
        offset = (body.get("next_page") or {}).get("offset")
        if not offset:
            return
        params = {**params, "offset": offset}


def _allowed_types(attribute: str) -> tuple[str, ...]:
    return ("number", "text") if attribute in NUMERIC_ATTRIBUTES else ("text",)


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


PROVIDER = AsanaProvider()
register(PROVIDER)
