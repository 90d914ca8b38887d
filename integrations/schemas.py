"""The integrations' part of the API contract. Each provider declares its form's
fields once (integrations/base.Field); `provider_shapes` makes from that declaration
the shapes a new integration and a change are checked against — the portal's forms
and the API's bodies alike, in `lifecycle.clean_fields` — and that the OpenAPI
document shows (`IntegrationCreate`, a union by `provider`; `IntegrationChange`).
Also the release form's shape, and what the API answers about integrations. The
rules a shape cannot say (the provider's check of the credentials, the budget
left as it is) stay in lifecycle.py."""

from __future__ import annotations

import functools
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from annotated_types import Interval
from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    RootModel,
    StringConstraints,
)
from pydantic_core import CoreSchema, PydanticCustomError
from typing_extensions import TypedDict

from core.contract import REQUEST_CONFIG, Answer, Says, Timestamp, with_fields
from core.encryption import mask
from events.redaction import (
    MAX_DROPPED_FIELDS,
    PATH_PATTERN,
    CoordinateDecimals,
    DropDriverName,
    DropFields,
    paths_of,
)
from integrations.base import Field as FormField
from integrations.base import Provider, form_fields, secrets_of
from integrations.pacing import requests_per_minute
from integrations.providers import PROVIDERS
from outbox.models import TargetStatus

# The longest text any provider's field takes (ids, names, keys, addresses).
MAX_TEXT = 200
MAX_SIGNER_LENGTH = 100  # as Integration.release_signer_name and _title
SIGNER_PROBLEM = f"Required, at most {MAX_SIGNER_LENGTH} characters."
NOT_ACCEPTED = "Accept the release to let locations leave the platform."
KEEPS_PROVIDER = "An integration keeps its provider; connect another one for another provider."


def _stripped(value: Any) -> Any:
    # A form sends "" for a field left empty, and text with spaces around it.
    if isinstance(value, str):
        return value.strip() or None
    return value


def _given(value: Any) -> Any:
    value = _stripped(value)
    if value is None:
        raise PydanticCustomError("missing", "Field required")
    return value


def _whole_number(value: Any) -> Any:
    # The portal's number fields arrive as text, and the API has always taken
    # "90" for 90; anything else that is not a whole number is refused as it is.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def _value_type(field: FormField) -> tuple[Any, str, dict[str, str]]:
    """What a field of this kind holds, what a person reads when it does not, and
    the words for some failures (pydantic's error types)."""
    if field.kind == "checkbox":
        return bool, "true or false.", {}
    if field.kind == "number":
        number = Annotated[
            int, Interval(ge=field.minimum, le=field.maximum), BeforeValidator(_whole_number)
        ]
        return number, f"A whole number from {field.minimum} to {field.maximum}.", {}
    if field.kind == "select":
        keys = tuple(key for key, _label in field.choices)
        return Literal[keys], "One of: " + ", ".join(keys) + ".", {}
    if field.kind == "paths":
        # A form types them in one field, separated by commas: the API sends a list.
        paths = Annotated[
            list[Annotated[str, StringConstraints(pattern=PATH_PATTERN)]],
            Field(max_length=MAX_DROPPED_FIELDS),
            BeforeValidator(lambda value: paths_of(value) if isinstance(value, str) else value),
        ]
        return paths, f'At most {MAX_DROPPED_FIELDS} paths like "data.odometer_mi".', {}
    if field.kind in ("text", "secret"):
        text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
        return text, "A string.", {"string_too_long": f"At most {MAX_TEXT} characters."}
    raise ValueError(f"{field.name}: no field kind {field.kind!r}")


def field_type(field: FormField) -> Any:
    """The rule of one field of a provider's form, as a shape's field: its kind's
    type, its range or choices; blank is left out (required: "Enter the …"); a
    checkbox left out or null is false."""
    value_type, message, when = _value_type(field)
    extra: dict[str, Any] = {}
    if field.kind == "secret":
        extra = {"format": "password", "writeOnly": True}
    described = Field(description=field.help or None, json_schema_extra=extra or None)
    if field.kind == "checkbox":
        # An unticked box is not sent by a form: missing and null are false.
        unticked = BeforeValidator(lambda value: False if value is None else value)
        return Annotated[value_type, unticked, described, Says(message)]
    if field.required:
        says = Says(message, when={**when, "missing": f"Enter the {field.label}."})
        return Annotated[value_type, BeforeValidator(_given), described, says]
    return Annotated[value_type | None, BeforeValidator(_stripped), described, Says(message, when)]


def _typed_dict(name: str, doc: str, required: dict[str, Any], optional: dict[str, Any]) -> Any:
    """A request shape made at run time, as two class statements would make it: the
    `optional` keys in a total=False base, the `required` ones by the totality of
    the shape (core/contract.py takes no Required[])."""

    def namespace(annotations: dict[str, Any], doc: str) -> Any:
        def fill(body: dict[str, Any]) -> None:
            body.update(
                __annotations__=annotations,
                __doc__=doc,
                __module__=__name__,
                # A TypedDict does not inherit it: each class says it.
                __pydantic_config__=REQUEST_CONFIG,
            )

        return fill

    typed_dict: Any = TypedDict
    base = types.new_class(
        f"{name}Options", (typed_dict,), {"total": False}, namespace(optional, doc)
    )
    return types.new_class(name, (base,), {}, namespace(required, doc))


@dataclass(frozen=True)
class ProviderShapes:
    """A provider's fields as request shapes: for a new integration, and for a change."""

    create: Any
    change: Any


def provider_shapes(provider: Provider) -> ProviderShapes:
    """The shapes of a provider's form (its `fields` and the request budget)."""
    return _shapes(provider.key, re.sub(r"\W", "", provider.name), form_fields(provider))


@functools.cache
def _shapes(key: str, name: str, fields: tuple[FormField, ...]) -> ProviderShapes:
    types_ = {field.name: field_type(field) for field in fields}
    required = {f.name: types_[f.name] for f in fields if f.required and f.kind != "checkbox"}
    optional = {name: hint for name, hint in types_.items() if name not in required}
    provider_key = Literal[key]  # type: ignore[valid-type]
    create = _typed_dict(
        f"{name}Create",
        f"A new {name} integration; its credentials are checked with {name}.",
        {"provider": provider_key, **required},
        optional,
    )
    change = _typed_dict(
        f"{name}Change",
        f"The fields of a {name} integration to change; those left out stay.",
        {},
        {
            "provider": Annotated[
                provider_key,
                Field(description="Given on a change, it must be the integration's own."),
                Says(KEEPS_PROVIDER),
            ],
            **types_,
        },
    )
    return ProviderShapes(create, change)


def _connectable() -> tuple[Provider, ...]:
    # ServiceMax connects through Salesforce sign-in in the portal only. (Imported
    # here: its package imports lifecycle, which imports this module.)
    from integrations.servicemax.provider import SERVICEMAX

    return tuple(p for p in PROVIDERS.values() if p.key != SERVICEMAX.key)


@functools.cache
def _union(name: str, doc: str, members: tuple[Any, ...], discriminated: bool) -> Any:
    """The shapes of every provider as one, named for the document."""
    union: Any = Union[members]  # noqa: UP007 (made from a tuple)
    if discriminated and len(members) > 1:
        union = Annotated[union, Field(discriminator="provider")]

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(__doc__=doc, __module__=__name__)

    return types.new_class(name, (RootModel[union],), {}, body)


class IntegrationCreate:
    """A new integration: `provider` says which fields it takes (its own, and
    `requests_per_minute`). ServiceMax connects through Salesforce sign-in in the
    portal, not here. The credentials are checked with the provider: a refusal is a
    422 on `credentials`."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Made when the document is: the providers register themselves at start-up.
        members = tuple(provider_shapes(p).create for p in _connectable())
        return handler(_union(cls.__name__, cls.__doc__ or "", members, True))


class IntegrationChange:
    """The fields to change, those of the integration's provider; those left out
    stay (a secret too). New credentials are checked with the provider."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        members = tuple(provider_shapes(p).change for p in PROVIDERS.values())
        return handler(_union(cls.__name__, cls.__doc__ or "", members, False))


SignerText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SIGNER_LENGTH),
    Says(SIGNER_PROBLEM),
]


class ReleaseSign(TypedDict):
    """The release form: who signs it, and that they accept it."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    signer_name: SignerText
    signer_title: SignerText
    accept: Annotated[
        Literal[True],
        Field(description="The locations of the account's vehicles are sent to the provider."),
        Says(NOT_ACCEPTED),
    ]


# Answers


def _provider_keys(schema: dict[str, Any]) -> None:
    # The providers register themselves at start-up: listed when the document is made.
    schema["enum"] = list(PROVIDERS)


class Release(Answer):
    """Who signed the release form, and when."""

    signer_name: str
    signer_title: str
    signed_at: Timestamp
    client_address: Annotated[str | None, Field(description="Where it was signed from.")]


class Integration(Answer):
    """The integration."""

    id: int
    provider: Annotated[str, Field(json_schema_extra=_provider_keys)]
    vehicle_attribute: Annotated[
        str | None, Field(description="Asana and Agile Fleet: the one vehicle attribute synced.")
    ]
    options: Annotated[dict[str, Any], Field(description="Settings that are not secret.")]
    credentials: Annotated[
        dict[str, str],
        Field(
            description="Each secret field masked (last 4 characters); OAuth tokens never appear."
        ),
    ]
    status: TargetStatus
    status_reason: str | None
    queue_depth: Annotated[int, Field(ge=0)]
    total_messages: Annotated[int, Field(ge=0)]
    requests_per_minute: Annotated[
        int | None,
        Field(
            description="The request budget: at most this many requests a minute go to the "
            "provider."
        ),
    ]
    unmatched_vins: Annotated[
        list[str], Field(description="VINs of the account's vehicles the provider does not have.")
    ]
    release_required: Annotated[
        bool,
        Field(
            description="The provider receives locations: nothing is sent before the release "
            "form is signed."
        ),
    ]
    release: Release | None
    drop_driver_name: DropDriverName
    coordinate_decimals: CoordinateDecimals
    drop_fields: DropFields
    created_at: Timestamp

    @classmethod
    def read(cls, value: Any) -> Any:
        provider = PROVIDERS[value.provider]
        secrets = secrets_of(value)
        release = None
        if value.release_signed_at is not None:
            release = {
                "signer_name": value.release_signer_name,
                "signer_title": value.release_signer_title,
                "signed_at": value.release_signed_at,
                "client_address": value.release_client_address,
            }
        return with_fields(
            value,
            options=value.options or {},
            credentials={
                name: mask(str(secrets[name]))
                for name in sorted(provider.secret_fields)
                if secrets.get(name)
            },
            requests_per_minute=requests_per_minute(value),
            unmatched_vins=value.unmatched_vins or [],
            release_required=provider.receives_locations,
            release=release,
        )


class Integrations(Answer):
    """The account's integrations, by id."""

    integrations: list[Integration]
