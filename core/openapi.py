"""The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`
without authentication. Nothing in it is written by hand: the paths are the URL
map's `/api/v1` routes, each described by its view's `operation`
(core/contract.py), and the schemas are generated from the shapes those name. A
route without an `operation` fails the document, so none can be left out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from core.api import API_PREFIX
from core.contract import Operation, operation, schema_of
from core.database import MAX_ID

bp = Blueprint("openapi", __name__, url_prefix=API_PREFIX)

JSON = "application/json"
PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"
_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")

# What any call may meet; an operation's own `problems` say more where it knows more.
UNAUTHORIZED = "No API token, or one unknown, revoked or expired."
FORBIDDEN = (
    "The token's scope, capped by its user's role, does not allow this: changes need an "
    "admin's admin token; telemetry:write may only post telemetry."
)
BODY_PROBLEMS = {
    400: "The body is not a JSON object.",
    415: "The body is not application/json.",
    422: "Some fields are invalid; `errors` names them.",
}
QUERY_PROBLEM = "A query parameter is invalid; `errors` names it."


class _Schemas(GenerateJsonSchema):
    # Pydantic titles every property; the names already say what each is.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _routes(app: Flask) -> Iterator[tuple[str, str, Operation]]:
    """(path, method, operation) of every API route, in the URL map's order."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        view = app.view_functions[rule.endpoint]
        described = getattr(view, "operation", None)
        if described is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) has no @operation")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.rule, method.lower(), described


def _path(rule: str) -> str:
    return _PARAMETER.sub(lambda match: "{" + match.group(2) + "}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    parameters = []
    for converter, name in _PARAMETER.findall(rule):
        what = name.removesuffix("_id").replace("_", " ")
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            if converter == "int"
            else {"type": "string"}
        )
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": f"The {what}'s ID.",
                "schema": schema,
            }
        )
    return parameters


def _query_parameters(described: Operation) -> list[dict[str, Any]]:
    shape = described.query
    if shape is None:
        return []
    return [
        {
            "name": name,
            "in": "query",
            "required": name in shape.__required_keys__,
            "schema": {
                key: value for key, value in schema_of(shape, name).items() if key != "title"
            },
        }
        for name in shape.__annotations__
    ]


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
    }


Key = tuple[int, JsonSchemaMode]


class _Collected:
    """The shapes the operations name, to be generated in one pass into
    components/schemas (so a shape used twice is written once)."""

    def __init__(self) -> None:
        self.adapters: list[
            tuple[tuple[int, JsonSchemaMode], JsonSchemaMode, TypeAdapter[Any]]
        ] = []
        self.references: dict[tuple[int, JsonSchemaMode], dict[str, Any]] = {}

    def add(self, shape: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        """A placeholder filled with the shape's schema by `generate`."""
        key = (len(self.adapters), mode)
        self.adapters.append((key, mode, TypeAdapter(shape)))
        self.references[key] = {}
        return self.references[key]

    def generate(self) -> dict[str, Any]:
        schemas, definitions = TypeAdapter.json_schemas(
            self.adapters, ref_template=REF, schema_generator=_Schemas
        )
        for (key, _mode), schema in schemas.items():
            self.references[key].update(schema)
        return dict(definitions.get("$defs", {}))


def _operation(
    rule: str, method: str, described: Operation, collected: _Collected
) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, shape in described.answers.items():
        if isinstance(shape, str):
            answers[str(status)] = {"description": shape}
        else:
            schema = collected.add(shape, "serialization")
            description = (shape.__doc__ or "").strip().split("\n")[0]
            answers[str(status)] = {
                "description": description,
                "content": {JSON: {"schema": schema}},
            }
    problems: dict[int, str] = {}
    if not described.public:
        problems.update({401: UNAUTHORIZED, 403: FORBIDDEN})
    if described.body is not None:
        problems.update(BODY_PROBLEMS)
    if described.query is not None:
        problems[422] = QUERY_PROBLEM
    problems.update(described.problems)
    for status, description in problems.items():
        answers[str(status)] = _problem(description)

    document: dict[str, Any] = {
        "summary": described.summary,
        "responses": dict(sorted(answers.items())),
    }
    if described.public:
        document["security"] = []
    parameters = _path_parameters(rule) + _query_parameters(described)
    if parameters:
        document["parameters"] = parameters
    if described.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": collected.add(described.body, "validation")}},
        }
    return document


def _inline_enums(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Write each enum (Ordering, MessageStatus …) where it is used, as the field's
    own `enum`, rather than as a component of its own: a reader sees the choices
    beside the field."""
    enums = {
        REF.format(model=name): schema
        for name, schema in schemas.items()
        if "enum" in schema and "properties" not in schema
    }

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            target = enums.get(node.get("$ref", ""))
            if target is not None:
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return {"type": target.get("type", "string"), "enum": target["enum"], **rest}
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    for ref in enums:
        del schemas[ref.rsplit("/", 1)[1]]
    for name in list(schemas):
        schemas[name] = inline(schemas[name])
    for path in paths:
        paths[path] = inline(paths[path])


PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An RFC 9457 problem; `errors` names each invalid field and what is wrong.",
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
}


def openapi_document(app: Flask) -> dict[str, Any]:
    """The document of `app`'s API, as its routes and shapes are now."""
    collected = _Collected()
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, described in _routes(app):
        paths.setdefault(_path(rule), {})[method] = _operation(rule, method, described, collected)
    schemas = {"Problem": PROBLEM_SCHEMA, **collected.generate()}
    _inline_enums(paths, schemas)
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
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
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
@operation("This document", {200: "The OpenAPI 3.1 document of this API."}, public=True)
def openapi_json() -> Response:
    """This API's OpenAPI 3.1 document (made once per process: routes do not change)."""
    document = current_app.extensions.get("openapi_document")
    if document is None:
        document = current_app.extensions["openapi_document"] = openapi_document(current_app)
    return jsonify(document)
