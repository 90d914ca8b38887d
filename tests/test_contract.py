"""The contract machinery (core/contract.py, core/openapi.py): a shape's rules give
the messages a person reads, strict types for bodies and lax ones for queries,
answers written as their models say, and a document that cannot leave out a route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from flask import Blueprint, Flask
from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

from core.contract import (
    QUERY_CONFIG,
    REQUEST_CONFIG,
    Answer,
    Says,
    Timestamp,
    check_fields,
    checked,
    operation,
    shaped,
)
from core.errors import ValidationError
from core.openapi import openapi_document


class Inner(TypedDict):
    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Annotated[str, StringConstraints(pattern="^[a-z]+$"), Says("Lower-case letters.")]
    size: int


class Options(TypedDict, total=False):
    count: Annotated[int, Field(ge=1, le=3), Says("A whole number from 1 to 3.")]
    ratio: float | None
    inner: Annotated[Inner | None, Says("An object with name and size, or null.")]


class Thing(Options):
    """A title (required) and any options."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=5),
        Says("Give it a title.", when={"string_too_long": "At most 5 characters."}),
    ]


class Query(TypedDict, total=False):
    __pydantic_config__ = QUERY_CONFIG  # type: ignore[misc]

    count: Annotated[int, Field(ge=1, le=3), Says("A whole number from 1 to 3.")]


def test_good_fields_are_cleaned_by_their_rules():
    cleaned = checked(Thing, {"title": "  Hi ", "count": 2, "ratio": 3, "inner": None})
    assert cleaned == {"title": "Hi", "count": 2, "ratio": 3.0, "inner": None}


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({}, "title", "Give it a title."),
        ({"title": "  "}, "title", "Give it a title."),
        ({"title": "toolong"}, "title", "At most 5 characters."),
        ({"title": "a", "count": 4}, "count", "A whole number from 1 to 3."),
        # A body is JSON: text is not a number, nor is true a 1.
        ({"title": "a", "count": "2"}, "count", "A whole number from 1 to 3."),
        ({"title": "a", "count": True}, "count", "A whole number from 1 to 3."),
        ({"title": "a", "inner": "x"}, "inner", "An object with name and size, or null."),
        ({"title": "a", "inner": {"name": "X1", "size": 1}}, "inner.name", "Lower-case letters."),
        ({"title": "a", "surprise": 1}, "surprise", "Not a field of this request."),
    ],
)
def test_each_broken_rule_names_its_field_with_the_shapes_words(values, field, message):
    cleaned, errors = check_fields(Thing, values)
    assert errors[field] == [message]
    assert field.split(".")[0] not in cleaned


def test_every_bad_field_is_named_at_once_and_checked_raises():
    with pytest.raises(ValidationError) as raised:
        checked(Thing, {"count": 0, "ratio": "x", "other": 1}, unknown="Not a thing field.")
    assert set(raised.value.errors) == {"title", "count", "ratio", "other"}
    assert raised.value.errors["other"] == ["Not a thing field."]
    # No words of its own: pydantic's, as a sentence.
    assert raised.value.errors["ratio"][0].endswith(".")


def test_a_query_is_text_and_its_numbers_are_read_from_it():
    assert checked(Query, {"count": "2"}) == {"count": 2}
    assert check_fields(Query, {"count": "two"})[1] == {"count": ["A whole number from 1 to 3."]}


class Shown(Answer):
    """A thing, as answered."""

    id: int
    at: Timestamp
    note: str | None = None


class Row:
    id = 7
    at = datetime(2026, 5, 14, 8, 30, tzinfo=UTC)


def test_an_answer_reads_an_object_and_writes_times_with_their_offset():
    assert shaped(Shown, Row()).model_dump(mode="json", exclude_unset=True) == {
        "id": 7,
        "at": "2026-05-14T08:30:00+00:00",
    }
    assert shaped(Shown, Row(), note="beside").note == "beside"


def api_app(with_unsaid_route: bool) -> Flask:
    app = Flask("contract")
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.get("/said")
    @operation("Said", {200: Shown})
    def said() -> Any:
        return {}

    if with_unsaid_route:

        @api.get("/unsaid")
        def unsaid() -> Any:
            return {}

    app.register_blueprint(api)
    return app


def test_the_document_refuses_an_api_route_that_does_not_say_what_it_answers():
    with pytest.raises(LookupError, match="unsaid"):
        openapi_document(api_app(with_unsaid_route=True))
    document = openapi_document(api_app(with_unsaid_route=False))
    answered = document["paths"]["/api/v1/said"]["get"]["responses"]["200"]
    assert answered["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Shown"
    }
    assert set(document["components"]["schemas"]["Shown"]["required"]) == {"id", "at"}
