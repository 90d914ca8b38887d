"""A webhook's part of the API contract: the rules of its fields, with the constants
they come from — `lifecycle.clean_fields` checks the portal's forms and the API's
bodies against them — and what the API answers about webhooks, their messages and
the event catalogue. The rules that join fields (a threshold only for speed
webhooks, the URL's address) stay in lifecycle.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

from core.api import Limit, PageQuery
from core.contract import QUERY_CONFIG, REQUEST_CONFIG, Answer, OneOf, Says, Timestamp, with_fields
from core.database import MAX_BIG_ID, MAX_ID
from core.encryption import mask
from events import catalogue
from events.catalogue import EVENT_TYPES, SPEEDING_EVENT_TYPES, SpeedingEvents
from events.redaction import CoordinateDecimals, DropDriverName, DropFields
from fleet.schemas import MAX_GROUP_LENGTH
from outbox.models import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_RANGE,
    OPEN_STATUSES,
    MessageStatus,
    Ordering,
    TargetStatus,
)
from webhooks.areas import AreaSetting, shown_area
from webhooks.tracks import TrackSetting, shown_track
from webhooks.url_safety import MAX_URL_LENGTH
from webhooks.wire import USER_AGENT, ContentType

MAX_NAME_LENGTH = 100
MAX_HEADER_VALUE_LENGTH = 1024
# A webhook's rate limit, in messages per second: above 0, at most this.
MAX_RATE_LIMIT = 1000
# Types whose every message is the vehicle's whole latest state (its position), so
# a newer one makes an older one worthless: the only ones "latest wins" may drop.
LATEST_WINS_EVENT_TYPES = ("location", "heartbeat")
# An HTTP field name is a "token" (RFC 9110, section 5.1).
HEADER_NAME_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"

EventTypeKey = Annotated[
    str,
    OneOf(EVENT_TYPES),
    Says("Choose one of: " + ", ".join(EVENT_TYPES) + "."),
]


class CustomHeader(TypedDict):
    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, pattern=HEADER_NAME_PATTERN),
        Says("A header name: letters, digits and - only, no spaces."),
    ]
    value: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_HEADER_VALUE_LENGTH),
        Says(
            "Enter the header's value.",
            when={"string_too_long": f"At most {MAX_HEADER_VALUE_LENGTH} characters."},
        ),
    ]


WebhookName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    Says(
        "Give the webhook a name.",
        when={"string_too_long": f"At most {MAX_NAME_LENGTH} characters."},
    ),
]
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
    Field(json_schema_extra={"format": "uri"}),
    Says(
        "Enter the URL that will receive the events.",
        when={"string_too_long": f"At most {MAX_URL_LENGTH:,} characters."},
    ),
]


# The delivery settings, as a request sets them and an answer shows them.
OrderingSetting = Annotated[
    Ordering,
    Field(
        strict=False,
        description="vehicle: each vehicle's events in order, many vehicles at once; "
        "webhook: every event in order, one request at a time (at most one message per "
        "round trip of the receiver); none: no order, a failed message holds nothing back.",
    ),
    Says("One of: " + ", ".join(f'"{o.value}"' for o in Ordering) + "."),
]
MaxInFlight = Annotated[
    int,
    Field(
        ge=MAX_IN_FLIGHT_RANGE[0],
        le=MAX_IN_FLIGHT_RANGE[1],
        description="Requests this webhook may have in flight at once: more means more "
        "requests at once to the receiver.",
    ),
    Says("A whole number of requests from {} to {}.".format(*MAX_IN_FLIGHT_RANGE)),
]
RateLimit = Annotated[
    float | None,
    Field(
        gt=0,
        le=MAX_RATE_LIMIT,
        allow_inf_nan=False,
        description="At most this many messages per second (null: no limit); messages "
        "wait rather than exceed it.",
    ),
    Says(
        f"Messages per second: a number above 0 and at most {MAX_RATE_LIMIT}, or empty "
        "(null) for no limit."
    ),
]
PullOnly = Annotated[
    bool,
    Field(
        description="Nothing is pushed: every message is kept for the webhook's feed "
        "(GET /api/v1/webhooks/{id}/feed) only. Turned on, the messages waiting are kept "
        "for the feed too; turned off, the next ones are pushed again (those kept stay in "
        "the feed)."
    ),
    Says("true or false."),
]
# A webhook's own time to live, in minutes: at least a minute, at most the
# retention's default (72 h), after which a message is dead or expired anyway.
TTL_MINUTES_RANGE = (1, 72 * 60)
TtlMinutes = Annotated[
    int | None,
    Field(
        ge=TTL_MINUTES_RANGE[0],
        le=TTL_MINUTES_RANGE[1],
        description="A message not delivered within this many minutes ends stale instead "
        "of being tried again. null: its event type's (location and heartbeat 15, speed "
        "and posted_speed 120, every other type the retention, 72 h).",
    ),
    Says(
        "A whole number of minutes from {} to {}, or empty (null) for the event type's.".format(
            *TTL_MINUTES_RANGE
        )
    ),
]
SKIP_LATE_EVENT_TYPES = ("location",)
SkipLate = Annotated[
    bool,
    Field(
        description="location webhooks only: a late position — received more than "
        "FLEETHOOK_LATE_AFTER_SECONDS (120) after its fix, e.g. stored on the device in a "
        "dead zone and sent when the signal came back — is not sent; the others carry "
        '"late": false.'
    ),
    Says("true or false."),
]
LatestWins = Annotated[
    bool,
    Field(
        description=f"{' and '.join(LATEST_WINS_EVENT_TYPES)} webhooks only: when a "
        "backlog forms, older pending messages of a vehicle are dropped (status "
        "superseded) and only its newest is sent.",
    ),
    Says("true or false."),
]


class WebhookSettings(TypedDict, total=False):
    """A webhook's settings; each left out keeps its default, or on a change its value."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    content_type: Annotated[
        ContentType,
        Field(strict=False, default=ContentType.JSON),
        Says('"json" (application/json) or "form" (urlencoded).'),
    ]
    threshold_mph: Annotated[
        int | None,
        Field(
            description="speed: 5–200 mph (default 70); posted_speed: 1–100 mph over the "
            "limit (default 10). Other types take none."
        ),
        Says("A whole number of mph."),
    ]
    idle_minutes: Annotated[
        int | None,
        Field(description="idle: 1–1440 minutes (default 5). Other types take none."),
        Says("A whole number of minutes."),
    ]
    contact_email: Annotated[
        str | None,
        Field(json_schema_extra={"format": "email"}),
        Says("An email address, or nothing."),
    ]
    vehicle_group: Annotated[
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_GROUP_LENGTH)]
        | None,
        Field(
            description="Only vehicles of this group (the vehicles' `group`); null: every vehicle."
        ),
        Says(
            f"A vehicle group's name (at most {MAX_GROUP_LENGTH} characters), or null for "
            "every vehicle."
        ),
    ]
    area: Annotated[AreaSetting, Field(default=None)]
    track: Annotated[TrackSetting, Field(default=None)]
    drop_driver_name: Annotated[DropDriverName, Field(default=False)]
    coordinate_decimals: Annotated[CoordinateDecimals, Field(default=None)]
    drop_fields: Annotated[DropFields, Field(default_factory=list)]
    custom_header: Annotated[
        CustomHeader | None,
        Field(
            description="Sent with every POST; stored encrypted, returned masked. A change "
            "of `url` to another origin (scheme, host or port) removes it unless the same "
            "PATCH gives `custom_header` again: re-enter it."
        ),
        Says('An object {"name": …, "value": …}, or null.'),
    ]
    ordering: Annotated[OrderingSetting, Field(default=Ordering.VEHICLE)]
    max_in_flight: Annotated[MaxInFlight, Field(default=DEFAULT_MAX_IN_FLIGHT)]
    rate_limit: Annotated[RateLimit, Field(default=None)]
    latest_wins: Annotated[LatestWins, Field(default=False)]
    pull_only: Annotated[PullOnly, Field(default=False)]
    skip_late: Annotated[SkipLate, Field(default=False)]
    ttl_minutes: Annotated[TtlMinutes, Field(default=None)]
    speeding_events: Annotated[
        SpeedingEvents,
        Field(
            strict=False,
            default=SpeedingEvents.EVERY_REPORT,
            description=f"{' and '.join(SPEEDING_EVENT_TYPES)} webhooks: an event for every "
            "position report at or over the threshold (every_report), or only when a vehicle "
            "first reaches it, the next only after it has dropped below (episode_start).",
        ),
        Says("One of " + ", ".join(repr(c.value) for c in SpeedingEvents) + "."),
    ]


class WebhookChange(WebhookSettings, total=False):
    """The fields to change; those left out stay."""

    event_type: Annotated[
        EventTypeKey, Field(description="Given on a change, it must be the webhook's own.")
    ]
    name: WebhookName
    url: WebhookUrl


class WebhookCreate(WebhookSettings):
    """A new webhook: its event type, name and URL, and any settings."""

    event_type: EventTypeKey
    name: WebhookName
    url: WebhookUrl


SINCE_FORMAT = "An RFC 3339 time, e.g. 2026-05-14T00:00:00Z."


class _RecoverScope(TypedDict, total=False):
    vehicle_id: Annotated[
        int,
        Field(ge=1, le=MAX_ID, description="Only this vehicle's messages."),
        Says("One of the account's vehicles (its id)."),
    ]
    vehicle_group: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_GROUP_LENGTH),
        Field(description="Only the messages of the vehicles now in this group."),
        Says("One of the account's vehicle groups."),
    ]
    driver_id: Annotated[
        int,
        Field(ge=1, le=MAX_ID, description="Only the messages about this driver's trips."),
        Says("One of the account's drivers (their id)."),
    ]


class Recover(_RecoverScope):
    """The start of the window whose dead or expired messages are sent again, and
    optionally one vehicle, one vehicle group or one driver (at most one of them)."""

    __pydantic_config__ = REQUEST_CONFIG  # type: ignore[misc]

    since: Annotated[str, Field(json_schema_extra={"format": "date-time"}), Says(SINCE_FORMAT)]


class MessagesQuery(PageQuery, total=False):
    """A webhook's messages: of one status, a page at a time."""

    __pydantic_config__ = QUERY_CONFIG  # type: ignore[misc]

    status: Annotated[MessageStatus, Says("One of: " + ", ".join(MessageStatus) + ".")]


class FeedQuery(TypedDict, total=False):
    """Where to read a webhook's feed from, and how much."""

    __pydantic_config__ = QUERY_CONFIG  # type: ignore[misc]

    after: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_BIG_ID,
            default=0,
            description="The next_cursor of the previous read; left out or 0: from the "
            "oldest message kept.",
        ),
        Says("Pass the next_cursor of the previous read, unchanged (0: from the start)."),
    ]
    limit: Limit


# Answers


class EventVehicle(Answer):
    id: int
    name: str
    vin: str


class EventData(Answer):
    model_config = ConfigDict(extra="allow")

    vehicle: EventVehicle


class Event(Answer):
    __doc__ = f"The JSON body a receiver gets (user-agent {USER_AGENT})."
    model_config = ConfigDict(extra="allow")

    type: Annotated[str, OneOf(EVENT_TYPES)]
    timestamp: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    data: EventData


class TrackFeature(Answer):
    """A track webhook's body: a GeoJSON Feature of one vehicle's window of positions
    (a LineString, or a Point when it holds one), each position's time, speed and
    heading in properties.coordinateProperties."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    geometry: dict[str, Any]
    properties: dict[str, Any]


Body = Annotated[Event | TrackFeature, Field(description="The body a push carries (as JSON).")]


class Setting(Answer):
    field: Literal["threshold_mph", "idle_minutes"]
    label: str
    unit: str
    minimum: int
    maximum: int
    default: int


class EventType(Answer):
    """One event type: its setting and an example of its events."""

    key: Annotated[str, OneOf(EVENT_TYPES)]
    name: str
    description: str
    setting: Setting | None
    example: Event

    @classmethod
    def read(cls, value: Any) -> Any:
        return with_fields(value, example=catalogue.example_event(value))


class EventTypes(Answer):
    """The event catalogue."""

    event_types: list[EventType]


READ_ONLY: dict[str, Any] = {"readOnly": True}


class CustomHeaderShown(Answer):
    name: str
    value: Annotated[str, Field(description="Masked: its last 4 characters.")]


class Webhook(Answer):
    """The webhook."""

    id: int
    event_type: Annotated[str, OneOf(EVENT_TYPES)]
    name: str
    url: str
    content_type: ContentType
    threshold_mph: int | None
    idle_minutes: int | None
    contact_email: str | None
    vehicle_group: str | None
    area: AreaSetting
    track: TrackSetting
    drop_driver_name: DropDriverName
    coordinate_decimals: CoordinateDecimals
    drop_fields: DropFields
    custom_header: CustomHeaderShown | None
    ordering: OrderingSetting
    max_in_flight: MaxInFlight
    rate_limit: RateLimit
    latest_wins: LatestWins
    pull_only: PullOnly
    skip_late: SkipLate
    ttl_minutes: TtlMinutes
    speeding_events: SpeedingEvents
    # The engine's state of sending: read-only, never part of a request.
    in_flight: Annotated[
        int, Field(ge=0, description="Requests in flight now.", json_schema_extra=READ_ONLY)
    ]
    window: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_IN_FLIGHT_RANGE[1],
            description="Requests it may have in flight today: up to max_in_flight, halved "
            "when the receiver answers 429, 502, 503, 504 or times out, grown by one after "
            "successes.",
            json_schema_extra=READ_ONLY,
        ),
    ]
    throttled_until: Annotated[
        Timestamp | None,
        Field(
            description="The receiver asked to wait (Retry-After): nothing is sent before this.",
            json_schema_extra=READ_ONLY,
        ),
    ]
    status: TargetStatus
    status_reason: str | None
    queue_depth: Annotated[int, Field(ge=0)]
    total_messages: Annotated[int, Field(ge=0)]
    previous_secret_expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def read(cls, value: Any) -> Any:
        header = None
        if value.custom_header_name and value.custom_header_value:
            header = {"name": value.custom_header_name, "value": mask(value.custom_header_value)}
        return with_fields(
            value,
            window=value.send_window,
            custom_header=header,
            area=shown_area(value),
            track=shown_track(value),
        )


class ChangedWebhook(Webhook):
    """The webhook, changed; `warnings` says what else changed with it."""

    warnings: Annotated[
        list[str],
        Field(
            description="What else changed (the custom header removed by a move to another host)."
        ),
    ]


class WebhookWithSecret(Webhook):
    """The webhook and its signing secret, shown in this answer only."""

    secret: Annotated[str, Field(pattern="^whsec_", description="The signing secret.")]


class Message(Answer):
    """The message."""

    id: Annotated[str, Field(description="The webhook-id header it is sent with.")]
    sequence: Annotated[int, Field(ge=1)]
    event_type: str
    test: bool
    status: MessageStatus
    attempts: Annotated[int, Field(ge=0)]
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def read(cls, value: Any) -> Any:
        waiting = value.status in OPEN_STATUSES
        return with_fields(
            value,
            **_as_sent(value),
            next_attempt_at=value.next_attempt_at if waiting else None,
        )


def _as_sent(message: Any) -> dict[str, Any]:
    """What every answer about an outbox message names otherwise than its row: the
    webhook-id it is sent with, and whether it is a Demo's."""
    return {"id": message.message_id, "test": message.is_test}


class Attempt(Answer):
    attempted_at: Timestamp
    outcome: str
    status_code: int | None
    duration_ms: int
    error: Annotated[str | None, Field(description="What went wrong, in a short sentence.")]
    error_detail: Annotated[
        str | None,
        Field(
            description="The technical text of the failure (the exception), for whoever "
            "debugs the receiver."
        ),
    ]
    request_headers: dict[str, Any]
    response_headers: dict[str, Any] | None
    response_body: str | None


class MessageDetail(Message):
    """One message: its payload and every attempt."""

    payload: Body
    attempt_log: list[Attempt]

    @classmethod
    def read(cls, value: Any) -> Any:
        return with_fields(super().read(value), attempt_log=value.attempt_records)


class FeedMessage(Answer):
    """A message as a push carries it: its webhook-id, its ordering headers and its
    body."""

    id: Annotated[str, Field(description="The webhook-id header its pushes carry.")]
    ordering_key: Annotated[
        str, Field(description="Its fleethook-ordering-key header: the lane it is ordered in.")
    ]
    sequence: Annotated[
        int, Field(ge=1, description="Its fleethook-sequence header: its number in the lane.")
    ]
    event_type: str
    test: bool
    status: Annotated[
        MessageStatus, Field(description="Where its push stands (pending while paused).")
    ]
    created_at: Timestamp
    event: Body

    @classmethod
    def read(cls, value: Any) -> Any:
        return with_fields(value, **_as_sent(value), event=value.payload)


class Feed(Answer):
    """Messages in the order the webhook's receiver gets them, and the cursor to read
    on from; reading changes nothing of their delivery."""

    messages: list[FeedMessage]
    next_cursor: Annotated[
        str,
        Field(description="Pass it as `after` to read on; the same when nothing is new yet."),
    ]


class Recovered(Answer):
    """Queued; pruned_before and detail say when the retention deleted some of the
    window's dead or expired messages."""

    recovered: int
    pruned_before: Annotated[
        Timestamp | None, Field(default=None, description="Only when the retention deleted some.")
    ]
    detail: Annotated[str | None, Field(default=None)]
