"""A provider declares its form's fields once (integrations/base.Field): the shapes
its integrations are checked against — the portal's form and the API's body alike —
and what the OpenAPI document says of them are made from that declaration."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from core.contract import check_fields
from integrations.base import Field
from integrations.pacing import REQUESTS_PER_MINUTE_RANGE
from integrations.schemas import (
    KEEPS_PROVIDER,
    IntegrationChange,
    IntegrationCreate,
    field_type,
    provider_shapes,
)

BUDGET_WORDS = "A whole number from {} to {}.".format(*REQUESTS_PER_MINUTE_RANGE)


class Declared:
    """A provider with a field of each kind."""

    key = "declared"
    name = "Declared Co"
    fields = (
        Field("api_key", "API Key", "secret"),
        Field("account", "Account"),
        Field("note", "Note", required=False),
        Field("sync", "Sync", "checkbox"),
        Field("colour", "Colour", "select", choices=(("red", "Red"), ("blue", "Blue"))),
        Field("every", "Every (minutes)", "number", required=False, minimum=1, maximum=60),
    )


def create(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    shape = provider_shapes(Declared()).create  # type: ignore[arg-type]
    return check_fields(shape, {"provider": "declared", **values}, "Not a field of this provider.")


GOOD = {"api_key": "k-1234", "account": "acme", "colour": "red"}


def test_a_declaration_gives_the_check_of_each_field():
    cleaned, errors = create(
        {**GOOD, "account": "  acme ", "note": " ", "every": " 7 ", "sync": None}
    )
    assert errors == {}
    assert cleaned == {
        "provider": "declared",
        "api_key": "k-1234",
        "account": "acme",
        "colour": "red",
        "note": None,  # blank is left empty
        "every": 7,  # a form's text
        "sync": False,  # an unticked box
    }


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"api_key": None}, "api_key", "Enter the API Key."),
        ({"account": "  "}, "account", "Enter the Account."),
        ({"account": 42}, "account", "A string."),
        ({"note": "n" * 201}, "note", "At most 200 characters."),
        ({"colour": "green"}, "colour", "One of: red, blue."),
        ({"every": 0}, "every", "A whole number from 1 to 60."),
        ({"every": 61}, "every", "A whole number from 1 to 60."),
        ({"every": "7.5"}, "every", "A whole number from 1 to 60."),
        ({"every": 2.5}, "every", "A whole number from 1 to 60."),
        ({"every": True}, "every", "A whole number from 1 to 60."),
        ({"sync": "yes"}, "sync", "true or false."),
        (
            {"requests_per_minute": REQUESTS_PER_MINUTE_RANGE[1] + 1},
            "requests_per_minute",
            BUDGET_WORDS,
        ),
        ({"colour_code": "#f00"}, "colour_code", "Not a field of this provider."),
    ],
)
def test_a_declaration_gives_the_words_of_each_problem(values, field, message):
    _, errors = create({**GOOD, **values})
    assert errors == {field: [message]}


def test_a_required_field_left_out_is_named():
    _, errors = create({"colour": "blue"})
    assert errors == {"api_key": ["Enter the API Key."], "account": ["Enter the Account."]}


def test_a_change_takes_any_of_the_fields_and_only_the_integrations_provider():
    change = provider_shapes(Declared()).change  # type: ignore[arg-type]
    assert check_fields(change, {}) == ({}, {})
    assert check_fields(change, {"provider": "declared", "every": "5"}) == (
        {"provider": "declared", "every": 5},
        {},
    )
    assert check_fields(change, {"provider": "fleetio"})[1] == {"provider": [KEEPS_PROVIDER]}
    assert check_fields(change, {"api_key": ""})[1] == {"api_key": ["Enter the API Key."]}


def test_a_field_of_no_known_kind_is_refused_at_once():
    with pytest.raises(ValueError, match="no field kind"):
        field_type(Field("x", "X", "colour"))  # type: ignore[arg-type]


def test_the_document_shows_each_providers_declaration(app):
    create_shape = TypeAdapter(IntegrationCreate).json_schema(ref_template="{model}")
    defs = create_shape["$defs"]
    assert create_shape["title"] == "IntegrationCreate"
    assert create_shape["discriminator"]["propertyName"] == "provider"
    # ServiceMax connects in the portal only (Salesforce sign-in).
    assert sorted(create_shape["discriminator"]["mapping"]) == [
        "agilefleet",
        "asana",
        "fleetio",
        "servicetitan",
    ]
    fleetio = defs["FleetioCreate"]
    assert fleetio["required"] == ["provider", "api_key", "account_id"]
    assert fleetio["additionalProperties"] is False
    assert fleetio["properties"]["api_key"]["writeOnly"] is True
    budget = fleetio["properties"]["requests_per_minute"]["anyOf"][0]
    assert (budget["minimum"], budget["maximum"]) == REQUESTS_PER_MINUTE_RANGE
    change = TypeAdapter(IntegrationChange).json_schema(ref_template="{model}")["$defs"]
    assert "ServiceMaxChange" in change and "required" not in change["FleetioChange"]
