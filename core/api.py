"""REST API plumbing shared by every `/api/v1` blueprint: problem answers, JSON
bodies, paging and times. Who may call the API (bearer tokens, scopes) is the
accounts layer's: accounts/api_access.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from flask import Response, request
from pydantic import Field
from typing_extensions import TypedDict
from werkzeug.exceptions import BadRequest, HTTPException

from core.contract import QUERY_CONFIG, Answer, Says, answer, checked, page_of
from core.database import MAX_ID, whole_number
from core.errors import ValidationError, problem, validation_problem

API_PREFIX = "/api/v1"


class ApiProblem(HTTPException):
    """Abort an API request with a problem response."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(
            description=detail, response=problem(status, title, detail, headers=headers)
        )


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 problem saying what is wrong;
    a 422 problem naming the field whose text no database can store."""
    if not request.is_json:
        raise ApiProblem(415, "Unsupported Media Type", "Send the body as application/json.")
    try:
        body = request.get_json()
    except (BadRequest, RecursionError):  # RecursionError: nested too deep to parse
        raise ApiProblem(400, "Bad Request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "Bad Request", "The body must be a JSON object.")
    where = unstorable_text(body)
    if where is not None:
        raise HTTPException(
            response=validation_problem(
                {
                    where: [
                        "Text may not hold NUL characters (\\u0000) or unpaired surrogates "
                        "(\\ud800–\\udfff)."
                    ]
                }
            )
        )
    return body


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable_text(body: Any) -> str | None:
    """Where a parsed JSON body holds a string (key or value) with a NUL character
    or an unpaired surrogate — JSON spells both (\\u0000, \\ud800), but
    PostgreSQL stores neither and UTF-8 has no unpaired surrogates — as the path
    "reports[3].driver"; None if it holds none."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                shown = key if _storable(key) else ascii(key)[1:-1]
                where = f"{path}.{shown}" if path else shown
                if not _storable(key):
                    return where
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CURSOR_PROBLEM = "Pass the next_cursor of the previous page, unchanged."


Limit = Annotated[
    int,
    Field(ge=1, le=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE),
    Says(f"A whole number from 1 to {MAX_PAGE_SIZE}."),
]


class PageQuery(TypedDict, total=False):
    """A listing, a page at a time."""

    __pydantic_config__ = QUERY_CONFIG  # type: ignore[misc]

    limit: Limit
    cursor: Annotated[
        str,
        Field(description="The next_cursor of the previous page."),
        Says(CURSOR_PROBLEM),
    ]


def query_arguments(shape: Any) -> dict[str, Any]:
    """The query's parameters that `shape` names, checked; others are ignored (a
    client's cache-buster)."""
    given = {name: request.args[name] for name in shape.__annotations__ if name in request.args}
    return checked(shape, given)


def page_arguments(max_cursor: int = MAX_ID) -> tuple[int, int | None]:
    """`limit` (1–200, default 50) and `cursor` (the last id of the previous page,
    at most `max_cursor`: the largest id of the rows paged)."""
    page = query_arguments(PageQuery)
    cursor_text = page.get("cursor")
    cursor = whole_number(cursor_text, max_cursor)
    if cursor_text is not None and cursor is None:
        raise ValidationError({"cursor": [CURSOR_PROBLEM]})
    return page.get("limit", DEFAULT_PAGE_SIZE), cursor


def page_json(key: str, found: Sequence[Any], limit: int, item: type[Answer]) -> Response:
    """A page of a listing: `found` holds up to limit + 1 rows — one more than asked
    tells whether another page follows, and the last row shown is its cursor."""
    page = found[:limit]
    next_cursor = str(page[-1].id) if len(found) > limit else None
    return answer(page_of(key, item), {key: page, "next_cursor": next_cursor})


def iso_time(value: datetime | None) -> str | None:
    """A timestamp as the API writes it (ISO 8601 with its UTC offset), or None."""
    return value.isoformat() if value is not None else None
