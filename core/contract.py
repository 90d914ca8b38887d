"""The REST API's contract, written once as typed shapes from which the checks, the
answers and the OpenAPI document (core/openapi.py) are all made.

- A request body is a `TypedDict` whose `Annotated` fields carry the rules: type,
  range, choices, length — the domain's own constants — and what a person reads
  when a value breaks them (`Says`). `check_fields` holds a mapping to it field by
  field, so every bad field is named at once; the domain modules call it, so the
  portal's forms and the API keep the same rules.
- An answer is an `Answer` (a pydantic model read from the domain's objects) and
  `answer` serialises it.
- `operation` says, on a view, what it takes and what it answers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NotRequired, Required, TypeVar, get_args, get_origin

from flask import Response, jsonify
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic import ValidationError as PydanticError
from pydantic_core import CoreSchema, core_schema
from typing_extensions import get_type_hints, is_typeddict

from core.errors import ValidationError

F = TypeVar("F", bound=Callable[..., Any])
Shape = Any  # a TypedDict class: what `check_fields` takes

# Request bodies are JSON: a string is not a number, nor true a 1.
REQUEST_CONFIG = ConfigDict(strict=True, extra="forbid", use_enum_values=True)
# A query is text: "50" is the number 50. (A TypedDict does not inherit its
# config: each query shape names this one.)
QUERY_CONFIG = ConfigDict(strict=False, use_enum_values=True)


@dataclass(frozen=True, eq=False)
class Says:
    """`Annotated` metadata: what a person reads when the field breaks its rule;
    `when` words some failures (pydantic's error types) otherwise."""

    message: str
    when: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OneOf:
    """`Annotated` metadata: the value is one of these — a list the domain keeps
    (the event catalogue's keys, the providers), checked and documented as an enum."""

    values: tuple[str, ...]

    def __init__(self, values: Iterable[str]):
        object.__setattr__(self, "values", tuple(values))

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> CoreSchema:
        return core_schema.literal_schema(list(self.values))


def _says(hint: Any, error_type: str = "") -> str | None:
    if get_origin(hint) is Annotated:
        for extra in get_args(hint)[1:]:
            if isinstance(extra, Says):
                return extra.when.get(error_type, extra.message)
    return None


def _inner(hint: Any) -> Any:
    """The TypedDict a field holds (itself, in Annotated, or beside None), if any."""
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    for candidate in (hint, *get_args(hint)):
        if is_typeddict(candidate):
            return candidate
    return None


@functools.cache
def _fields(shape: Shape) -> dict[str, Any]:
    hints = get_type_hints(shape, include_extras=True)
    for name, hint in hints.items():
        # With postponed annotations a TypedDict cannot see these, and would
        # silently take a required key as optional.
        if get_origin(hint) in (Required, NotRequired):
            raise TypeError(
                f"{shape.__name__}.{name}: say which keys are required by the class's "
                "totality (a total=False base for the optional ones), not Required[]"
            )
    return hints


@functools.cache
def _adapter(shape: Shape, name: str) -> TypeAdapter[Any]:
    hint = _fields(shape)[name]
    if is_typeddict(hint):  # a nested shape brings its own config
        return TypeAdapter(hint)
    # Each field is checked as its shape says: a body strictly, a query's text lax.
    return TypeAdapter(hint, config=getattr(shape, "__pydantic_config__", REQUEST_CONFIG))


def _message(shape: Shape, name: str, location: tuple[Any, ...], problem: Any) -> str:
    """The field's own words for a failure at `location` inside it: the nested
    field's `Says`, else the field's, else pydantic's."""
    hint = _fields(shape)[name]
    inner = _inner(hint)
    error_type = problem["type"]
    if inner is not None and location and isinstance(location[0], str):
        nested = _fields(inner).get(location[0])
        if nested is not None and _says(nested, error_type):
            return str(_says(nested, error_type))
    return _says(hint, error_type) or str(problem["msg"]) + "."


def _error_key(name: str, location: tuple[Any, ...], error_type: str) -> str:
    # A nested field's problem is named "custom_header.name"; an unknown key in
    # it, and anything deeper, belong to the field itself.
    if location and isinstance(location[0], str) and error_type != "extra_forbidden":
        return f"{name}.{location[0]}"
    return name


def check_fields(
    shape: Shape, values: Mapping[str, Any], unknown: str = "Not a field of this request."
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The fields of `values` that keep their rules in `shape`, checked one by
    one, and the problems of the others by name: a required field left out, a
    field the shape does not have (`unknown`), a value breaking its rule."""
    fields = _fields(shape)
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(values) - set(fields)):
        errors[name] = [unknown]
    for name in sorted(shape.__required_keys__ - set(values)):
        errors[name] = [_says(fields[name], "missing") or "Required."]
    for name, value in values.items():
        if name not in fields:
            continue
        try:
            cleaned[name] = _adapter(shape, name).validate_python(value)
        except PydanticError as error:
            for problem in error.errors(include_url=False):
                location = tuple(problem["loc"])
                key = _error_key(name, location, problem["type"])
                message = _message(shape, name, location, problem)
                if message not in errors.setdefault(key, []):
                    errors[key].append(message)
    return cleaned, errors


def checked(
    shape: Shape, values: Mapping[str, Any], unknown: str = "Not a field of this request."
) -> dict[str, Any]:
    """The fields of `values`, checked against `shape`; a ValidationError names
    every one that breaks a rule."""
    cleaned, errors = check_fields(shape, values, unknown)
    if errors:
        raise ValidationError(errors)
    return cleaned


def schema_of(shape: Shape, name: str) -> dict[str, Any]:
    """One field's JSON schema, e.g. for a query parameter."""
    return _adapter(shape, name).json_schema()


# A time as the API writes it: ISO 8601 with its UTC offset ("+00:00").
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Answer(BaseModel):
    """What the API answers, read from the domain's objects (their attributes)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def read(cls, value: Any) -> Any:
        """The object as this answer reads it: what it shows under another name, or
        computes (a masked secret), given beside the object's own attributes with
        `with_fields`. An answer that shows only attributes keeps this one."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _read(cls, value: Any) -> Any:
        # A mapping already holds the answer's fields (a listing's page, a test's).
        return value if isinstance(value, Mapping | BaseModel) else cls.read(value)


A = TypeVar("A", bound=Answer)


class _With:
    def __init__(self, base: Any, extra: Mapping[str, Any]):
        self._base, self._extra = base, extra

    def __getattr__(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        return getattr(self._base, name)


def with_fields(value: Any, **extra: Any) -> Any:
    """`value` (an object or a dict) with `extra` fields beside its own: what an
    answer shows under another name, or beside the object (a secret shown once)."""
    if isinstance(value, Mapping):
        return {**value, **extra}
    return _With(value, extra)


def shaped(shape: type[A], value: Any, **extra: Any) -> A:
    """`value` (an object or a dict), with `extra` fields, as the answer `shape`."""
    return shape.model_validate(with_fields(value, **extra) if extra else value)


def answer(
    shape: type[Answer],
    value: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The JSON answer of `value` as `shape`."""
    # Unset: a field the answer leaves out unless it has something to say.
    response = jsonify(shaped(shape, value, **extra).model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    response.headers.update(headers or {})
    return response


@functools.cache
def page_of(key: str, item: type[Answer]) -> type[Answer]:
    """A listing's answer: a page of `item`s under `key`, and `next_cursor`."""
    from pydantic import create_model

    page: type[Answer] = create_model(  # type: ignore[call-overload]
        f"{item.__name__}Page",
        __base__=Answer,
        __doc__="A page; pass next_cursor as cursor for the next one.",
        **{key: (list[item], ...), "next_cursor": (str | None, ...)},  # type: ignore[valid-type]
    )
    return page


@dataclass(frozen=True)
class Operation:
    """What a view takes and answers, for the OpenAPI document."""

    summary: str
    answers: Mapping[int, type[Answer] | str]
    body: Any = None
    query: Shape | None = None
    problems: Mapping[int, str] = field(default_factory=dict)
    public: bool = False


def operation(
    summary: str,
    answers: Mapping[int, type[Answer] | str],
    *,
    body: Any = None,
    query: Shape | None = None,
    problems: Mapping[int, str] | None = None,
    public: bool = False,
) -> Callable[[F], F]:
    """Declare a view's part of the contract: its summary, its answers by status (a
    shape, or the description of an empty one), the body and query it takes, and
    the problems it may answer besides the ones every call may meet."""

    def mark(view: F) -> F:
        view.operation = Operation(  # type: ignore[attr-defined]
            summary, answers, body, query, problems or {}, public
        )
        return view

    return mark
