"""What every provider module shares: the Provider interface the outbox's
integration kind calls, the form fields a provider asks for, one mapping from a
provider's HTTP answers to outbox results, and the VIN → provider vehicle map with
sending to a vehicle by it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests

from core.encryption import mask
from core.times import utcnow
from events.catalogue import CURRENT_STATE as CURRENT_STATE_EVENT
from events.redaction import MAX_DECIMALS
from integrations.models import Integration
from integrations.pacing import REQUESTS_PER_MINUTE_RANGE, requests_per_minute, wait_for_room
from outbox.answers import answered, unanswered
from outbox.failures import describe_failure, shorten
from outbox.http import outbound_session, request_timeouts
from outbox.models import OutboxMessage
from outbox.registry import Result

# Why an integration that sends locations waits after it is connected.
RELEASE_REASON = "Waiting for the release form to be signed."
# How long a VIN map is trusted before it is listed again (a miss refreshes it too).
VEHICLE_MAP_TTL = timedelta(minutes=15)


# "paths": a list of text, typed in one field separated by commas.
FieldKind = Literal["text", "secret", "checkbox", "select", "number", "paths"]


@dataclass(frozen=True)
class Field:
    """One field of a provider's form, and of the API's bodies: the form, the check
    and the OpenAPI document are all made from it (integrations/forms.py,
    integrations/schemas.py). `help` is the form's help text and the field's
    description; a field not `required` may be left blank (a checkbox never is)."""

    name: str
    label: str
    kind: FieldKind = "text"  # a secret is text stored encrypted, shown masked
    help: str = ""
    required: bool = True
    choices: tuple[tuple[str, str], ...] = ()
    # A number's range, both ends included (whole numbers only).
    minimum: int | None = None
    maximum: int | None = None


# Every integration's own request budget; blank keeps the provider's documented
# one. Stored as the target's rate limit (integrations/pacing.py), not in options.
BUDGET_FIELD = Field(
    "requests_per_minute",
    "Requests a minute",
    "number",
    "At most this many requests a minute go to the provider (your plan may allow "
    "more or fewer). Blank: the provider's documented budget.",
    required=False,
    minimum=REQUESTS_PER_MINUTE_RANGE[0],
    maximum=REQUESTS_PER_MINUTE_RANGE[1],
)


# What every integration leaves out of events, or blurs, before its provider sees
# them (events/redaction.py). Stored as the target's columns, not in options.
REDACTION_FIELDS = (
    Field(
        "drop_driver_name",
        "Leave out drivers' names",
        "checkbox",
        "The provider gets drivers by id only; a DVIR's driver is left out.",
    ),
    Field(
        "coordinate_decimals",
        "Round coordinates to (decimals)",
        "number",
        "3: about 110 m; 2: about 1.1 km. Blank: as the device reported them.",
        required=False,
        minimum=0,
        maximum=MAX_DECIMALS,
    ),
    Field(
        "drop_fields",
        "Leave out fields",
        "paths",
        "Fields of the events the provider never gets, by their path in a webhook body, "
        "separated by commas: data.odometer_mi (no odometer readings), data.trip.start.",
        required=False,
    ),
)
REDACTION_FIELD_NAMES = tuple(field.name for field in REDACTION_FIELDS)


def form_fields(provider: Provider) -> tuple[Field, ...]:
    """The fields of a provider's form: its own, the request budget, then the
    redaction."""
    return (*provider.fields, BUDGET_FIELD, *REDACTION_FIELDS)


class ProviderRejected(Exception):
    """The provider refused the credentials or settings; the message says why in
    plain words, for the form."""


# The event an integration gets once per matched vehicle when it is connected (and
# when it resumes after an outage longer than the retention window): a
# DetectedEvent whose event_type.key is CURRENT_STATE, whose vehicle is the
# vehicle's snapshot now (last position, odometer, fix time, driver) and whose
# report holds what else is known (engine_hours, fuel_level_pct, last_dvir,
# fault_codes: the codes open now). Providers answer it in payload_for like any other event.
CURRENT_STATE = CURRENT_STATE_EVENT.key


class Provider(Protocol):
    key: str  # stable API name: "fleetio"
    name: str  # what the portal shows: "Fleetio"
    software_type: str  # "Fleet Management"
    requirements: str  # what the customer needs, in a line
    receives_locations: bool  # needs the signed release form
    needs_driver_names: bool  # matches drivers by name: names cannot be redacted
    fields: tuple[Field, ...]
    secret_fields: frozenset[str]  # of `fields`, those stored encrypted
    # The provider's documented request budget, and where it is documented: every
    # call through an Api made with the integration is paced to it (an integration
    # may set a lower or higher one).
    requests_per_minute: int
    budget_source: str
    # Payload "type"s of which only a vehicle's newest matters (a position, an
    # attribute's value): when a backlog forms, older ones are superseded.
    latest_value_types: frozenset[str]
    # What to do on the provider's side before connecting, step by step (the form
    # shows them).
    setup_steps: tuple[str, ...]

    def check_credentials(self, integration: Integration) -> None:
        """One cheap authenticated call; ProviderRejected if the provider says no."""

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """The message this integration needs for `event` (a DetectedEvent), or None."""

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """As outbox.registry.TargetKind.send."""


def secrets_of(integration: Integration) -> dict[str, Any]:
    return dict(json.loads(integration.credentials or "{}"))


def store_secrets(integration: Integration, values: Mapping[str, Any]) -> None:
    integration.credentials = json.dumps(dict(values), sort_keys=True)


# Request headers an attempt record shows as they are; every other header's value
# is masked (its last 4 characters, and an auth scheme word, shown): a provider's
# new credential header is never shown by omission.
SHOWN_AS_IS = frozenset({"accept", "content-type", "x-api-version"})


def shown_headers(method: str, path: str, headers: Mapping[str, str]) -> dict[str, str]:
    """What an attempt record shows of a request: the method, the path and the
    headers, names lower-cased, credentials masked."""
    shown = {"method": method, "path": urlsplit(path).path}
    for name, value in headers.items():
        if name.lower() in SHOWN_AS_IS:
            shown[name.lower()] = value
        else:
            scheme, space, credential = value.rpartition(" ")
            shown[name.lower()] = f"{scheme}{space}{mask(credential)}"
    return shown


def json_of(response: requests.Response) -> Any:
    """The answer's JSON, or None when its body is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


class Api:
    """Calls to one provider for one integration, over the shared outbound session;
    every call becomes a Result the outbox understands (outbox/answers.py read by
    `result_of`), and its attempt record shows the request with its credentials
    masked (`shown_headers`)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        provider_name: str,
        integration: Integration | None = None,
    ):
        """With `integration`, every call waits for room in its request budget
        (integrations/pacing.py)."""
        self.integration = integration
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.provider_name = provider_name
        self.session = outbound_session()
        self.timeouts = request_timeouts()  # what the session waits: for the words of a timeout

    def call(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[requests.Response | None, Result]:
        """Make the request (`path` below the base URL, or a whole URL); the
        response (None if none came) and its Result."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        headers = {**self.headers, **kwargs.pop("headers", {})}
        shown = shown_headers(method, path, headers)
        if self.integration is not None:
            wait = wait_for_room(self.integration)
            if wait is not None:
                return None, budget_spent(self.integration, self.provider_name, wait, shown)
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, headers=headers, **kwargs)
        except requests.RequestException as error:
            connect_timeout, read_timeout = self.timeouts
            failure = describe_failure(error, url, read_timeout, connect_timeout)
            return None, unanswered(started, shown, failure.words, failure.detail)
        return response, result_of(response, started, shown, self.provider_name)


def budget_spent(
    integration: Integration, provider_name: str, wait: float, shown: Mapping[str, str]
) -> Result:
    """The result of a request the budget had no room for: not sent, not an attempt."""
    return Result(
        delivered=False,
        not_sent=True,
        retry_after=wait,
        request_headers=dict(shown),
        error=f"Waiting for room in the request budget for {provider_name} "
        f"({requests_per_minute(integration)} a minute)",
    )


def result_of(
    response: requests.Response, started: float, shown: Mapping[str, str], provider_name: str
) -> Result:
    """The outbox's reading of a provider's answer: 2xx delivered; 401/403 the
    credentials need attention (the queue waits); 422 a permanent refusal of this
    message; 429 and 502–504 throttling (outbox/answers.py: Retry-After honoured);
    the rest retried."""
    status = response.status_code
    result = answered(status, response.headers, response.content, started, shown)
    if result.delivered:
        return result
    reason = reason_in(result.response_body or "")
    result.error = shorten(f"{provider_name} answered HTTP {status}: {reason}", 500)
    if status in (401, 403):
        result.needs_attention = (
            f"{provider_name} refused the credentials (HTTP {status}); update them to resume."
        )
    elif status == 422:
        result.permanent = True
    return result


def reason_in(body: str) -> str:
    """The provider's own words from an error body, when it has some."""
    try:
        data = json.loads(body)
    except ValueError:
        return shorten(body.strip(), 200) or "no reason given"
    if isinstance(data, Mapping):
        for key in ("errors", "error", "message", "title", "detail"):
            if key in data:
                value = data[key]
                return shorten(value if isinstance(value, str) else json.dumps(value), 300)
    return shorten(json.dumps(data), 300)


def vehicle_ref(
    integration: Integration, vin: str, list_vehicles: Callable[[], dict[str, Any]]
) -> Any:
    """The provider's id of the vehicle with this VIN, from the cached map; the map
    is listed again when it is stale or the VIN is missing. A VIN the provider
    does not know is remembered in `unmatched_vins` (shown on the page) and None
    returned."""
    now = utcnow()
    stale = integration.vehicle_map_at is None or now - integration.vehicle_map_at > VEHICLE_MAP_TTL
    if stale or vin not in integration.vehicle_map:
        integration.vehicle_map = list_vehicles()
        integration.vehicle_map_at = now
        integration.unmatched_vins = sorted(
            v for v in integration.unmatched_vins if v not in integration.vehicle_map
        )
    ref = integration.vehicle_map.get(vin)
    if ref is None and vin not in integration.unmatched_vins:
        integration.unmatched_vins = sorted([*integration.unmatched_vins, vin])
    return ref


class ListingFailed(Exception):
    """Listing the provider's vehicles did not work; `result` says why."""

    def __init__(self, result: Result):
        super().__init__(result.error)
        self.result = result


def recently_missing(integration: Integration, vin: str) -> bool:
    """A VIN the last listing lacked, while that listing is fresh: its messages fail
    at once instead of listing every vehicle again for each of them (vehicle_ref
    lists on every miss; a fleet often has vehicles the provider lacks)."""
    listed_at = integration.vehicle_map_at
    return (
        vin in integration.unmatched_vins
        and listed_at is not None
        and utcnow() - listed_at <= VEHICLE_MAP_TTL
    )


def unmatched(vin: str, provider_name: str) -> Result:
    """A message for a vehicle the provider does not have: not sendable, ever."""
    return Result(
        delivered=False,
        permanent=True,
        error=f"No vehicle with VIN {vin} in {provider_name}; it is listed on the "
        "integration's page.",
    )


def send_to_vehicle(
    integration: Integration,
    vin: str,
    provider_name: str,
    list_vehicles: Callable[[], dict[str, Any]],
    send: Callable[[Any], Result],
    gone_again: Callable[[Result], Result] | None = None,
) -> Result:
    """`send` to the provider's vehicle with this VIN, by its id from `vehicle_ref`:
    a VIN the provider lacks is `unmatched`, and a listing that failed gives its
    Result. A 404 (the vehicle went away since the map was listed) takes the VIN out
    of the map and sends once more, listing again; a second 404 comes back as
    `gone_again` makes it (by default as it is)."""
    result = Result(delivered=False)
    for _attempt in (1, 2):
        if recently_missing(integration, vin):
            return unmatched(vin, provider_name)
        try:
            ref = vehicle_ref(integration, vin, list_vehicles)
        except ListingFailed as failed:
            return failed.result
        if ref is None:
            return unmatched(vin, provider_name)
        result = send(ref)
        if result.status_code != 404:
            return result
        integration.vehicle_map = {k: v for k, v in integration.vehicle_map.items() if k != vin}
    return result if gone_again is None else gone_again(result)
