"""The accounts' part of the API contract: the rules of a new API token's fields,
with the constants they come from — `tokens.issue_token` checks the portal's form,
the command line and the API's body against them — and what the API answers about
the account, its tokens and its audit log. The rule a shape cannot say (a token's
scope within its user's role) stays in tokens.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from accounts.audit import ACTIONS, HIDDEN
from accounts.models import Role, Scope
from core.contract import REQUEST_CONFIG, Answer, Says, Timestamp, with_fields
from core.times import parse_rfc3339, utcnow

MAX_TOKEN_NAME_LENGTH = 100  # as ApiToken.name
TOKEN_NAME_MISSING = "Name the token after what will use it."
EXPIRY_FORMAT = "An RFC 3339 time with its offset, e.g. 2027-01-31T17:00:00Z."
EXPIRY_IN_THE_PAST = "Pick a time in the future, or none for a token that does not expire."
SCOPE_MEANING = (
    "admin: all the token's user may do; read: every GET a member may make, nothing "
    "else; telemetry:write: POST /api/v1/telemetry only. Never beyond the user's role."
)
# What the log's object types are: the first word of each action.
OBJECT_TYPES = tuple(dict.fromkeys(action.partition(".")[0] for action in ACTIONS))


def _time_of(value: Any) -> Any:
    # The API and the command line send text; the portal's form, a time already.
    # Text that is no RFC 3339 time stays text, for the type check to refuse.
    if isinstance(value, str):
        return parse_rfc3339(value) or value
    return value


def _in_the_future(moment: datetime) -> datetime:
    # Checked when the token is made: a time already past would make a dead token.
    if moment <= utcnow():
        raise PydanticCustomError("in_the_past", EXPIRY_IN_THE_PAST)
    return moment


class TokenOptions(TypedDict, total=False):
    """What narrows a new token; each left out (or null) leaves it as wide as its user."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    scope: Annotated[
        Scope | None,
        Field(
            strict=False,
            description=SCOPE_MEANING + " Left out or null: admin, or read for a member (a "
            "member's token may only read).",
        ),
        Says("One of " + ", ".join(scope.value for scope in Scope) + "."),
    ]
    expires_at: Annotated[
        Annotated[AwareDatetime, BeforeValidator(_time_of), AfterValidator(_in_the_future)] | None,
        Field(description="In the future; left out or null: the token never expires."),
        Says(EXPIRY_FORMAT, when={"in_the_past": EXPIRY_IN_THE_PAST}),
    ]


class TokenCreate(TokenOptions):
    """A new token acting as the caller: its name, and a scope and an expiry when it
    is to be narrower than the caller."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TOKEN_NAME_LENGTH),
        Field(description="What will use it, e.g. “Dispatch system”."),
        Says(
            TOKEN_NAME_MISSING,
            when={
                "missing": "A string is required.",
                "string_type": "A string is required.",
                "string_too_long": f"At most {MAX_TOKEN_NAME_LENGTH} characters.",
            },
        ),
    ]


# Answers


class User(Answer):
    id: int
    email: str
    role: Role


class Account(Answer):
    """The token's account and user."""

    id: int
    name: str
    user: User


class Token(Answer):
    """The token: never the token itself, only its first characters."""

    id: int
    name: str
    hint: Annotated[str, Field(description="The token's first characters.")]
    user: Annotated[str, Field(description="The email of the user it acts as.")]
    scope: Annotated[Scope, Field(description=SCOPE_MEANING)]
    created_at: Timestamp
    expires_at: Annotated[
        Timestamp | None, Field(description="After it the token gets 401; null: never.")
    ]
    last_used_at: Annotated[Timestamp | None, Field(description="To the minute; null: never used.")]
    revoked_at: Timestamp | None

    @classmethod
    def read(cls, value: Any) -> Any:
        return with_fields(value, user=value.user.email)


class Tokens(Answer):
    """The account's API tokens, revoked ones included."""

    tokens: list[Token]


class NewToken(Token):
    """The token, shown once."""

    token: Annotated[str, Field(description="The token itself: shown this once.")]


class AuditEvent(Answer):
    """One change to the account's webhooks, integrations, tokens or users."""

    id: int
    at: Timestamp
    actor: Annotated[
        str,
        Field(
            description='The user\'s email; through the API, API token "<name>" (<hint>…) '
            'of <email>; "command line" for flask commands.'
        ),
    ]
    action: Literal[tuple(ACTIONS)]  # type: ignore[valid-type]
    object_type: Literal[OBJECT_TYPES]  # type: ignore[valid-type]
    object_id: int
    object_name: Annotated[str, Field(description="As it was at the change.")]
    details: Annotated[
        dict[str, Any] | None,
        Field(description=f'The fields changed and their new values; secrets are "{HIDDEN}".'),
    ]
    client_address: Annotated[
        str | None, Field(description="The client's address; null for the command line.")
    ]
