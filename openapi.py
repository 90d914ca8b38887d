"""The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`
without authentication. A test holds it to the URL map: every `/api/v1` route and
method must appear here."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from accounts.audit import ACTIONS, HIDDEN
from accounts.models import Scope
from core.database import MAX_ID
from events.catalogue import EVENT_TYPES, SPEEDING_EVENT_TYPES, SpeedingEvents
from integrations.pacing import REQUESTS_PER_MINUTE_RANGE
from outbox.models import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_RANGE,
    MessageStatus,
    Ordering,
    TargetStatus,
)
from webhooks.lifecycle import (
    LATEST_WINS_EVENT_TYPES,
    MAX_HEADER_VALUE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RATE_LIMIT,
)
from webhooks.url_safety import MAX_URL_LENGTH
from webhooks.wire import USER_AGENT

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

JSON = "application/json"
PROBLEM = "application/problem+json"


BUDGET = {
    "type": ["integer", "null"],
    "minimum": REQUESTS_PER_MINUTE_RANGE[0],
    "maximum": REQUESTS_PER_MINUTE_RANGE[1],
    "description": "At most this many requests a minute to the provider; null or left out: "
    "the provider's documented budget.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _operation(
    summary: str,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
    admin: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    answers = {**responses}
    answers.setdefault("401", _problem("No API token, or one unknown, revoked or expired."))
    # Every operation needs a scope (tokens.py): a narrower token gets 403 anywhere.
    answers.setdefault(
        "403",
        _problem(
            "The token's user is a member, or its scope is read or telemetry:write; "
            "only an admin's admin token changes things."
            if admin
            else "The token's scope does not allow this (telemetry:write may only post telemetry)."
        ),
    )
    if body is not None:
        answers["400"] = _problem("The body is not a JSON object.")
        answers["415"] = _problem("The body is not application/json.")
        answers.setdefault("422", _problem("Some fields are invalid; `errors` names them."))
    operation: dict[str, Any] = {"summary": summary, "responses": answers}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _page(key: str, item: str) -> dict[str, Any]:
    """The 200 answer of a listing: a page of `item`s under `key`, and next_cursor."""
    return _json(
        {
            "type": "object",
            "required": [key, "next_cursor"],
            "properties": {
                key: {"type": "array", "items": _ref(item)},
                "next_cursor": NULLABLE_STRING,
            },
        },
        "A page; pass next_cursor as cursor for the next one.",
    )


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


WEBHOOK_ID = _path_id("webhook_id", "The webhook's ID.")
PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
MESSAGE_ID = {
    "name": "message_id",
    "in": "path",
    "required": True,
    "description": "The message's webhook-id (msg_…).",
    "schema": {"type": "string"},
}
NOT_FOUND = _problem("No such webhook in this account.")
INTEGRATION_PROVIDERS = ["servicemax", "servicetitan", "fleetio", "asana", "agilefleet"]
INTEGRATION_ID = _path_id("integration_id", "The integration's ID.")
INTEGRATION_NOT_FOUND = _problem("No such integration in this account.")
FLEET_COLLECTIONS = (("vehicles", "Vehicle"), ("drivers", "Driver"), ("landmarks", "Landmark"))


def _fleet_not_found(plural: str) -> dict[str, Any]:
    return _problem(f"No such {plural[:-1]} in this account.")


NULLABLE_STRING = {"type": ["string", "null"]}
TARGET_STATUSES = [status.value for status in TargetStatus]
MESSAGE_STATUSES = [status.value for status in MessageStatus]
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
TOKEN_SCOPE: dict[str, Any] = {
    "enum": [scope.value for scope in Scope],
    "description": "admin: all the token's user may do; read: every GET a member may make, "
    "nothing else; telemetry:write: POST /api/v1/telemetry only. Never beyond the user's role.",
}

CUSTOM_HEADER = {
    "type": ["object", "null"],
    "required": ["name", "value"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"},
        "value": {"type": "string", "minLength": 1, "maxLength": MAX_HEADER_VALUE_LENGTH},
    },
}

_WEBHOOK_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
    "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
    "content_type": {"enum": ["json", "form"], "default": "json"},
    "threshold_mph": {
        "type": ["integer", "null"],
        "description": "speed: 5–200 mph (default 70); posted_speed: 1–100 mph over the "
        "limit (default 10). Other types take none.",
    },
    "idle_minutes": {
        "type": ["integer", "null"],
        "description": "idle: 1–1440 minutes (default 5). Other types take none.",
    },
    "contact_email": {"type": ["string", "null"], "format": "email"},
    "vehicle_group": {
        "type": ["string", "null"],
        "maxLength": 60,
        "description": "Only vehicles of this group (the vehicles' `group`); null: every vehicle.",
    },
    "custom_header": {
        **CUSTOM_HEADER,
        "description": "Sent with every POST; stored encrypted, returned masked. A change of "
        "`url` to another origin (scheme, host or port) removes it unless the same PATCH "
        "gives `custom_header` again: re-enter it.",
    },
    "ordering": {
        "enum": [o.value for o in Ordering],
        "default": Ordering.VEHICLE.value,
        "description": "vehicle: each vehicle's events in order, many vehicles at once; "
        "webhook: every event in order, one request at a time (at most one message per "
        "round trip of the receiver); none: no order, a failed message holds nothing back.",
    },
    "max_in_flight": {
        "type": "integer",
        "minimum": MAX_IN_FLIGHT_RANGE[0],
        "maximum": MAX_IN_FLIGHT_RANGE[1],
        "default": DEFAULT_MAX_IN_FLIGHT,
        "description": "Requests this webhook may have in flight at once: more means more "
        "requests at once to the receiver.",
    },
    "rate_limit": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "maximum": MAX_RATE_LIMIT,
        "default": None,
        "description": "At most this many messages per second (null: no limit); messages "
        "wait rather than exceed it.",
    },
    "latest_wins": {
        "type": "boolean",
        "default": False,
        "description": f"{' and '.join(LATEST_WINS_EVENT_TYPES)} webhooks only: when a "
        "backlog forms, older pending messages of a vehicle are dropped (status superseded) "
        "and only its newest is sent.",
    },
    "speeding_events": {
        "enum": [choice.value for choice in SpeedingEvents],
        "default": SpeedingEvents.EVERY_REPORT.value,
        "description": f"{' and '.join(SPEEDING_EVENT_TYPES)} webhooks: an event for every "
        "position report at or over the threshold (every_report), or only when a vehicle "
        "first reaches it, the next only after it has dropped below (episode_start).",
    },
}
# What the engine reports of a webhook's sending; never part of a request.
_WEBHOOK_STATE: dict[str, Any] = {
    "in_flight": {
        "type": "integer",
        "minimum": 0,
        "readOnly": True,
        "description": "Requests in flight now.",
    },
    "window": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_IN_FLIGHT_RANGE[1],
        "readOnly": True,
        "description": "Requests it may have in flight today: up to max_in_flight, halved "
        "when the receiver answers 429, 502, 503, 504 or times out, grown by one after "
        "successes.",
    },
    "throttled_until": {
        **NULLABLE_TIMESTAMP,
        "readOnly": True,
        "description": "The receiver asked to wait (Retry-After): nothing is sent before this.",
    },
}


def _schemas() -> dict[str, Any]:
    event_keys = list(EVENT_TYPES)
    return {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "Account": {
            "type": "object",
            "required": ["id", "name", "user"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "user": {
                    "type": "object",
                    "required": ["id", "email", "role"],
                    "properties": {
                        "id": {"type": "integer"},
                        "email": {"type": "string"},
                        "role": {"enum": ["admin", "member"]},
                    },
                },
            },
        },
        "Token": {
            "type": "object",
            "required": ["id", "name", "hint", "user", "scope", "created_at", "expires_at"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "hint": {"type": "string", "description": "The token's first characters."},
                "user": {"type": "string"},
                "scope": TOKEN_SCOPE,
                "created_at": TIMESTAMP,
                "expires_at": {
                    **NULLABLE_TIMESTAMP,
                    "description": "After it the token gets 401; null: never.",
                },
                "last_used_at": NULLABLE_TIMESTAMP,
                "revoked_at": NULLABLE_TIMESTAMP,
            },
        },
        "AuditEvent": {
            "type": "object",
            "required": [
                "id",
                "at",
                "actor",
                "action",
                "object_type",
                "object_id",
                "object_name",
                "details",
                "client_address",
            ],
            "properties": {
                "id": {"type": "integer"},
                "at": TIMESTAMP,
                "actor": {
                    "type": "string",
                    "description": "The user's email; through the API, API token "
                    '"<name>" (<hint>…) of <email>; "command line" for flask commands.',
                },
                "action": {"enum": list(ACTIONS)},
                "object_type": {"enum": ["webhook", "integration", "token", "user"]},
                "object_id": {"type": "integer"},
                "object_name": {"type": "string", "description": "As it was at the change."},
                "details": {
                    "type": ["object", "null"],
                    "description": "The fields changed and their new values; secrets are "
                    f'"{HIDDEN}".',
                },
                "client_address": {
                    "type": ["string", "null"],
                    "description": "The client's address; null for the command line.",
                },
            },
        },
        "NewToken": {
            "allOf": [
                _ref("Token"),
                {
                    "type": "object",
                    "required": ["token"],
                    "properties": {"token": {"type": "string", "description": "Shown once."}},
                },
            ]
        },
        "EventType": {
            "type": "object",
            "required": ["key", "name", "description", "setting", "example"],
            "properties": {
                "key": {"enum": event_keys},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "setting": {
                    "type": ["object", "null"],
                    "properties": {
                        "field": {"enum": ["threshold_mph", "idle_minutes"]},
                        "label": {"type": "string"},
                        "unit": {"type": "string"},
                        "minimum": {"type": "integer"},
                        "maximum": {"type": "integer"},
                        "default": {"type": "integer"},
                    },
                },
                "example": _ref("Event"),
            },
        },
        "Event": {
            "type": "object",
            "description": f"The JSON body a receiver gets (user-agent {USER_AGENT}).",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"enum": event_keys},
                "timestamp": TIMESTAMP,
                "data": {
                    "type": "object",
                    "required": ["vehicle"],
                    "properties": {
                        "vehicle": {
                            "type": "object",
                            "required": ["id", "name", "vin"],
                            "properties": {
                                "id": {"type": "integer"},
                                "name": {"type": "string"},
                                "vin": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
        "Webhook": {
            "type": "object",
            "required": [
                "id",
                "event_type",
                "name",
                "url",
                "content_type",
                "status",
                "queue_depth",
                "total_messages",
                "ordering",
                "max_in_flight",
                "rate_limit",
                "latest_wins",
                "speeding_events",
                "in_flight",
                "window",
                "throttled_until",
                "created_at",
            ],
            "properties": {
                "id": {"type": "integer"},
                "event_type": {"enum": event_keys},
                **_WEBHOOK_FIELDS,
                **_WEBHOOK_STATE,
                "status": {"enum": TARGET_STATUSES},
                "status_reason": NULLABLE_STRING,
                "queue_depth": {"type": "integer", "minimum": 0},
                "total_messages": {"type": "integer", "minimum": 0},
                "previous_secret_expires_at": NULLABLE_TIMESTAMP,
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "PATCH only: what else changed (the custom header removed "
                    "by a move to another host).",
                },
            },
        },
        "WebhookWithSecret": {
            "allOf": [
                _ref("Webhook"),
                {
                    "type": "object",
                    "required": ["secret"],
                    "properties": {
                        "secret": {
                            "type": "string",
                            "pattern": "^whsec_",
                            "description": "The signing secret, in this response only.",
                        }
                    },
                },
            ]
        },
        "Message": {
            "type": "object",
            "required": ["id", "sequence", "event_type", "status", "attempts", "created_at"],
            "properties": {
                "id": {"type": "string", "description": "The webhook-id header it is sent with."},
                "sequence": {"type": "integer", "minimum": 1},
                "event_type": {"type": "string"},
                "test": {"type": "boolean"},
                "status": {"enum": MESSAGE_STATUSES},
                "attempts": {"type": "integer", "minimum": 0},
                "last_status_code": {"type": ["integer", "null"]},
                "last_latency_ms": {"type": ["integer", "null"]},
                "last_error": NULLABLE_STRING,
                "created_at": TIMESTAMP,
                "next_attempt_at": NULLABLE_TIMESTAMP,
                "finished_at": NULLABLE_TIMESTAMP,
            },
        },
        "MessageDetail": {
            "allOf": [
                _ref("Message"),
                {
                    "type": "object",
                    "properties": {
                        "payload": _ref("Event"),
                        "attempt_log": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "attempted_at": TIMESTAMP,
                                    "outcome": {"type": "string"},
                                    "status_code": {"type": ["integer", "null"]},
                                    "duration_ms": {"type": "integer"},
                                    "error": {
                                        "type": ["string", "null"],
                                        "description": "What went wrong, in a short sentence.",
                                    },
                                    "error_detail": {
                                        "type": ["string", "null"],
                                        "description": "The technical text of the failure "
                                        "(the exception), for whoever debugs the receiver.",
                                    },
                                    "request_headers": {"type": "object"},
                                    "response_headers": {"type": ["object", "null"]},
                                    "response_body": NULLABLE_STRING,
                                },
                            },
                        },
                    },
                },
            ]
        },
        "Vehicle": {
            "type": "object",
            "required": ["id", "name", "vin"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string", "maxLength": 100},
                "vin": {"type": "string", "pattern": "^[A-HJ-NPR-Z0-9]{17}$"},
                "plate": NULLABLE_STRING,
                "group": NULLABLE_STRING,
                "driver": {
                    "type": ["object", "null"],
                    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                },
                "odometer_mi": {"type": ["number", "null"]},
                "engine_hours": {"type": ["number", "null"]},
                "fuel_level_pct": {"type": ["number", "null"]},
                "last_location": {
                    "type": ["object", "null"],
                    "properties": {
                        "latitude": {"type": "number"},
                        "longitude": {"type": "number"},
                        "fix_time": TIMESTAMP,
                    },
                },
                "last_dvir": {"type": ["object", "null"]},
                "created_at": TIMESTAMP,
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
        },
        "VehicleChange": {
            "type": "object",
            "additionalProperties": False,
            "description": "The fields given change; the VIN never does.",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "plate": {"type": ["string", "null"], "maxLength": 20},
                "group": {"type": ["string", "null"], "maxLength": 60},
                "driver_id": {
                    "type": ["integer", "null"],
                    "description": "Assign one of the account's drivers (null: none); a "
                    "change makes a driver_assignment event.",
                },
            },
        },
        "Driver": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "external_id": NULLABLE_STRING,
                "created_at": TIMESTAMP,
            },
        },
        "DriverCreate": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "external_id": {"type": ["string", "null"], "maxLength": 60},
            },
        },
        "DriverChange": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "external_id": {"type": ["string", "null"], "maxLength": 60},
            },
        },
        "VehicleCreate": {
            "type": "object",
            "required": ["name", "vin"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "vin": {"type": "string", "description": "17 characters, no I, O or Q."},
                "plate": {"type": ["string", "null"], "maxLength": 20},
                "group": {"type": ["string", "null"], "maxLength": 60},
            },
        },
        "Circle": {
            "type": "object",
            "required": ["latitude", "longitude", "radius_m"],
            "properties": {
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                "radius_m": {"type": "number", "minimum": 1, "maximum": 100000},
            },
        },
        "Polygon": {
            "type": "object",
            "description": "GeoJSON Polygon: [longitude, latitude] rings, outline first, "
            "then holes; each ring closed.",
            "required": ["type", "coordinates"],
            "properties": {"type": {"const": "Polygon"}, "coordinates": {"type": "array"}},
        },
        "Landmark": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "circle": _ref("Circle"),
                "polygon": _ref("Polygon"),
                "created_at": TIMESTAMP,
            },
        },
        "LandmarkCreate": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "circle": _ref("Circle"),
                "polygon": _ref("Polygon"),
            },
        },
        "LandmarkChange": {
            "type": "object",
            "additionalProperties": False,
            "description": "A new name, or a new shape (circle or polygon) replacing the old.",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "circle": _ref("Circle"),
                "polygon": _ref("Polygon"),
            },
        },
        "TelemetryReport": {
            "type": "object",
            "description": "One report. Name the vehicle by `vin` or `vehicle_id`. position: "
            "latitude, longitude, speed_mph (0–250), heading [0, 360), ignition; optional "
            "odometer_mi, posted_speed_mph, engine_hours, fuel_level_pct (0–100), "
            "temperatures [{sensor, fahrenheit}], fault_codes [{code, description}]. "
            "dvir: driver, defects [{component, description}], safety_status. "
            "driver_assignment: driver. heartbeat: nothing more. A report repeated (same "
            "vehicle, type and time) is a duplicate; one older than the vehicle's newest "
            "position makes only the events of the report itself, never a transition.",
            "required": ["type", "time"],
            "properties": {
                "type": {"enum": ["position", "heartbeat", "dvir", "driver_assignment"]},
                "time": {**TIMESTAMP, "description": "At most 5 minutes in the future."},
                "vin": {"type": "string"},
                "vehicle_id": {"type": "integer", "minimum": 1},
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                "speed_mph": {"type": "number", "minimum": 0, "maximum": 250},
                "heading": {"type": "number", "minimum": 0, "exclusiveMaximum": 360},
                "ignition": {"type": "boolean"},
                "odometer_mi": {"type": "number", "minimum": 0},
                "posted_speed_mph": {"type": "number", "minimum": 0, "maximum": 120},
                "engine_hours": {"type": "number", "minimum": 0},
                "fuel_level_pct": {"type": "number", "minimum": 0, "maximum": 100},
                "temperatures": {"type": "array", "maxItems": 32},
                "fault_codes": {"type": "array", "maxItems": 64},
                "driver": {"type": "string", "maxLength": 100},
                "defects": {"type": "array", "maxItems": 50},
                "safety_status": {"enum": ["safe", "unsafe"]},
            },
        },
        "TelemetryBatch": {
            "type": "object",
            "required": ["reports"],
            "additionalProperties": False,
            "properties": {
                "reports": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1000,
                    "items": _ref("TelemetryReport"),
                }
            },
        },
        "IngestResult": {
            "type": "object",
            "required": ["accepted", "duplicates", "events", "messages"],
            "properties": {
                "accepted": {"type": "integer", "description": "Reports stored and detected."},
                "duplicates": {"type": "integer", "description": "Reports seen before."},
                "events": {
                    "type": "integer",
                    "description": "Events detected (speed, posted_speed and idle counted "
                    "when a webhook's threshold took them).",
                },
                "messages": {"type": "integer", "description": "Outbox messages queued."},
            },
        },
        "Integration": {
            "type": "object",
            "required": ["id", "provider", "status", "queue_depth", "total_messages"],
            "properties": {
                "id": {"type": "integer"},
                "provider": {"enum": INTEGRATION_PROVIDERS},
                "vehicle_attribute": NULLABLE_STRING,
                "options": {"type": "object", "description": "Settings that are not secret."},
                "credentials": {
                    "type": "object",
                    "description": "Each secret field masked (last 4 characters); OAuth tokens "
                    "never appear.",
                },
                "status": {"enum": TARGET_STATUSES},
                "status_reason": NULLABLE_STRING,
                "queue_depth": {"type": "integer"},
                "total_messages": {"type": "integer"},
                "requests_per_minute": {
                    "type": ["integer", "null"],
                    "description": "The request budget: at most this many requests a minute "
                    "go to the provider.",
                },
                "unmatched_vins": {"type": "array", "items": {"type": "string"}},
                "release_required": {"type": "boolean"},
                "release": {"type": ["object", "null"]},
                "created_at": TIMESTAMP,
            },
        },
        "IntegrationCreate": {
            "type": "object",
            "required": ["provider"],
            "description": "fleetio: api_key, account_id, update_odometer, update_dtcs. "
            "servicetitan: tenant_id, client_id, client_secret (and api_key). asana: api_key, "
            "vehicle_attribute and the project. agilefleet: api_key, vehicle_attribute. "
            "servicemax connects in the portal (Salesforce sign-in), not here. The "
            "credentials are checked with the provider: a refusal is a 422 on `credentials`.",
            "properties": {
                "provider": {"enum": INTEGRATION_PROVIDERS},
                "requests_per_minute": BUDGET,
            },
        },
        "IntegrationChange": {
            "type": "object",
            "description": "The provider's fields to change; secrets left out are kept.",
            "properties": {"requests_per_minute": BUDGET},
        },
        "ReleaseSign": {
            "type": "object",
            "required": ["signer_name", "signer_title", "accept"],
            "properties": {
                "signer_name": {"type": "string", "maxLength": 100},
                "signer_title": {"type": "string", "maxLength": 100},
                "accept": {"const": True},
            },
        },
        "WebhookCreate": {
            "type": "object",
            "required": ["event_type", "name", "url"],
            "additionalProperties": False,
            "properties": {"event_type": {"enum": event_keys}, **_WEBHOOK_FIELDS},
        },
        "WebhookChange": {
            "type": "object",
            "additionalProperties": False,
            "properties": _WEBHOOK_FIELDS,
        },
    }


def _paths() -> dict[str, Any]:
    webhook = _json(_ref("Webhook"), "The webhook.")
    return {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}},
            }
        },
        "/api/v1/account": {
            "get": _operation("The token's account and user", {"200": _json(_ref("Account"), "")})
        },
        "/api/v1/tokens": {
            "get": _operation(
                "The account's API tokens (never the tokens themselves)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
                        },
                        "Tokens.",
                    )
                },
            ),
            "post": _operation(
                "Issue a token acting as the caller, with a scope and an optional expiry",
                {"201": _json(_ref("NewToken"), "The token, shown once.")},
                body={
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 100},
                        "scope": {
                            **TOKEN_SCOPE,
                            "description": TOKEN_SCOPE["description"]
                            + " Left out: admin, or read for a member (a member's token may "
                            "only read).",
                        },
                        "expires_at": {
                            **TIMESTAMP,
                            "description": "In the future; left out: the token never expires.",
                        },
                    },
                },
                admin=True,
            ),
        },
        "/api/v1/tokens/{token_id}": {
            "delete": _operation(
                "Revoke a token",
                {"204": {"description": "Revoked."}, "404": _problem("No such token.")},
                admin=True,
                parameters=[_path_id("token_id", "The token's ID.")],
            )
        },
        "/api/v1/audit-events": {
            "get": _operation(
                "The account's audit log, newest first, a page at a time (admins only)",
                {
                    "200": _page("audit_events", "AuditEvent"),
                    "403": _problem(
                        "The token's user is a member, or its scope is not admin: only an "
                        "admin's admin token reads the log."
                    ),
                    "422": _problem("limit or cursor is invalid."),
                },
                parameters=PAGE_PARAMETERS,
            )
        },
        "/api/v1/event-types": {
            "get": _operation(
                "The event catalogue",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "event_types": {"type": "array", "items": _ref("EventType")}
                            },
                        },
                        "",
                    )
                },
            )
        },
        "/api/v1/webhooks": {
            "get": _operation(
                "The account's webhooks, by id, a page at a time",
                {
                    "200": _page("webhooks", "Webhook"),
                    "422": _problem("limit or cursor is invalid."),
                },
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
            ),
            "post": _operation(
                "Create a webhook",
                {"201": _json(_ref("WebhookWithSecret"), "Created; the secret is shown once.")},
                body=_ref("WebhookCreate"),
                admin=True,
            ),
        },
        "/api/v1/webhooks/{webhook_id}": {
            "get": _operation(
                "One webhook", {"200": webhook, "404": NOT_FOUND}, parameters=[WEBHOOK_ID]
            ),
            "patch": _operation(
                "Change some fields",
                {"200": webhook, "404": NOT_FOUND},
                body=_ref("WebhookChange"),
                admin=True,
                parameters=[WEBHOOK_ID],
            ),
            "delete": _operation(
                "Delete a webhook",
                {"204": {"description": "Deleted."}, "404": NOT_FOUND},
                admin=True,
                parameters=[WEBHOOK_ID],
            ),
        },
        **{
            f"/api/v1/{plural}": {
                "get": _operation(
                    f"The account's {plural}, by id, a page at a time",
                    {
                        "200": _page(plural, schema),
                        "422": _problem("limit or cursor is invalid."),
                    },
                    parameters=PAGE_PARAMETERS,
                ),
                "post": _operation(
                    f"Add a {plural[:-1]}",
                    {"201": _json(_ref(schema), "Added.")},
                    body=_ref(f"{schema}Create"),
                    admin=True,
                ),
            }
            for plural, schema in FLEET_COLLECTIONS
        },
        **{
            f"/api/v1/{plural}/{{{plural[:-1]}_id}}": {
                "get": _operation(
                    f"One {plural[:-1]}",
                    {"200": _json(_ref(schema), ""), "404": _fleet_not_found(plural)},
                    parameters=[_path_id(f"{plural[:-1]}_id", f"The {plural[:-1]}'s ID.")],
                ),
                "patch": _operation(
                    f"Change a {plural[:-1]}",
                    {"200": _json(_ref(schema), "Changed."), "404": _fleet_not_found(plural)},
                    body=_ref(f"{schema}Change"),
                    admin=True,
                    parameters=[_path_id(f"{plural[:-1]}_id", f"The {plural[:-1]}'s ID.")],
                ),
                "delete": _operation(
                    f"Delete a {plural[:-1]}",
                    {"204": {"description": "Deleted."}, "404": _fleet_not_found(plural)},
                    admin=True,
                    parameters=[_path_id(f"{plural[:-1]}_id", f"The {plural[:-1]}'s ID.")],
                ),
            }
            for plural, schema in FLEET_COLLECTIONS
        },
        "/api/v1/integrations": {
            "get": _operation(
                "The account's integrations",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "integrations": {"type": "array", "items": _ref("Integration")}
                            },
                        },
                        "",
                    )
                },
            ),
            "post": _operation(
                "Connect a provider (credentials checked with it)",
                {
                    "201": _json(
                        _ref("Integration"),
                        "Connected (providers that receive "
                        "locations stay paused until the release is signed).",
                    )
                },
                body=_ref("IntegrationCreate"),
                admin=True,
            ),
        },
        "/api/v1/integrations/{integration_id}": {
            "get": _operation(
                "One integration",
                {"200": _json(_ref("Integration"), ""), "404": INTEGRATION_NOT_FOUND},
                parameters=[INTEGRATION_ID],
            ),
            "patch": _operation(
                "Change settings or credentials",
                {"200": _json(_ref("Integration"), ""), "404": INTEGRATION_NOT_FOUND},
                body=_ref("IntegrationChange"),
                admin=True,
                parameters=[INTEGRATION_ID],
            ),
            "delete": _operation(
                "Delete it and its queue (a Salesforce token is revoked)",
                {"204": {"description": "Deleted."}, "404": INTEGRATION_NOT_FOUND},
                admin=True,
                parameters=[INTEGRATION_ID],
            ),
        },
        "/api/v1/integrations/{integration_id}/release": {
            "post": _operation(
                "Sign the release form; the integration becomes active",
                {"200": _json(_ref("Integration"), ""), "404": INTEGRATION_NOT_FOUND},
                body=_ref("ReleaseSign"),
                admin=True,
                parameters=[INTEGRATION_ID],
            )
        },
        **{
            f"/api/v1/integrations/{{integration_id}}/{action}": {
                "post": _operation(
                    summary,
                    {
                        "200": _json(_ref("Integration"), ""),
                        "404": INTEGRATION_NOT_FOUND,
                        "409": _problem("The release form is not signed."),
                    },
                    admin=True,
                    parameters=[INTEGRATION_ID],
                )
            }
            for action, summary in (
                ("pause", "Stop sending; messages queue up"),
                ("resume", "Send again, the backlog first"),
            )
        },
        "/api/v1/telemetry": {
            "post": _operation(
                "Ingest one report or a batch of up to 1,000 (scope telemetry:write or admin)",
                {
                    "403": _problem(
                        "The token's scope is read, or its user is a member: ingest needs "
                        "an admin's token with the scope telemetry:write or admin."
                    ),
                    "202": _json(_ref("IngestResult"), "Stored; events queued."),
                    "422": _problem(
                        'A report is invalid ("reports[3].latitude") or names a vehicle the '
                        "account does not have; nothing was written."
                    ),
                    "429": _problem(
                        "More reports than the account's quota allows (reports a second, in "
                        "bursts); nothing was written. Retry-After: the seconds until the same "
                        "request fits."
                    ),
                },
                body={"oneOf": [_ref("TelemetryReport"), _ref("TelemetryBatch")]},
            )
        },
        "/api/v1/webhooks/{webhook_id}/demo": {
            "post": _operation(
                'Send a test event ("test": true) through the real pipeline',
                {"202": _json(_ref("Message"), "Queued."), "404": NOT_FOUND},
                admin=True,
                parameters=[WEBHOOK_ID],
            )
        },
        "/api/v1/webhooks/{webhook_id}/messages": {
            "get": _operation(
                "The webhook's messages, newest first",
                {
                    "200": _page("messages", "Message"),
                    "404": NOT_FOUND,
                    "422": _problem("status, limit or cursor is invalid."),
                },
                parameters=[
                    WEBHOOK_ID,
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": MESSAGE_STATUSES},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/api/v1/webhooks/{webhook_id}/messages/{message_id}": {
            "get": _operation(
                "One message, its payload and every attempt",
                {"200": _json(_ref("MessageDetail"), ""), "404": NOT_FOUND},
                parameters=[WEBHOOK_ID, MESSAGE_ID],
            )
        },
        "/api/v1/webhooks/{webhook_id}/messages/{message_id}/redeliver": {
            "post": _operation(
                "Send a finished message again (same webhook-id)",
                {
                    "202": _json(_ref("Message"), "Queued."),
                    "404": NOT_FOUND,
                    "409": _problem("The message is still on its way."),
                },
                admin=True,
                parameters=[WEBHOOK_ID, MESSAGE_ID],
            )
        },
        "/api/v1/webhooks/{webhook_id}/recover": {
            "post": _operation(
                "Send again every dead or expired message since a time",
                {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["recovered"],
                            "properties": {
                                "recovered": {"type": "integer"},
                                # Only when the retention deleted messages of the window.
                                "pruned_before": TIMESTAMP,
                                "detail": {"type": "string"},
                            },
                        },
                        "Queued; pruned_before and detail say when the retention deleted "
                        "some of the window's dead or expired messages.",
                    ),
                    "404": NOT_FOUND,
                },
                body={"type": "object", "required": ["since"], "properties": {"since": TIMESTAMP}},
                admin=True,
                parameters=[WEBHOOK_ID],
            )
        },
        **{
            f"/api/v1/webhooks/{{webhook_id}}/{action}": {
                "post": _operation(
                    summary,
                    {"200": _json(_ref(schema), ""), "404": NOT_FOUND},
                    admin=True,
                    parameters=[WEBHOOK_ID],
                )
            }
            for action, summary, schema in [
                ("pause", "Pause: messages queue up, nothing is sent", "Webhook"),
                ("resume", "Resume sending", "Webhook"),
                (
                    "rotate-secret",
                    "New secret (shown once); the old one signs 24 h more",
                    "WebhookWithSecret",
                ),
            ]
        },
        "/api/v1/webhooks/{webhook_id}/expire-previous-secret": {
            "post": _operation(
                "End a rotation's overlap now: only the current secret signs",
                {
                    "200": webhook,
                    "404": NOT_FOUND,
                    "409": _problem("No previous secret is signing."),
                },
                admin=True,
                parameters=[WEBHOOK_ID],
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fleethook API",
            "version": "1",
            "description": "Webhooks and integrations of a fleet-telematics platform. "
            "Errors are application/problem+json (RFC 9457).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An account API token (fh_…), from the portal or the CLI.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This API's OpenAPI 3.1 document."""
    return jsonify(openapi_document())
