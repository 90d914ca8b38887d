"""A fake ServiceTitan: the token endpoint (client credentials grant, checking the
client id and secret) and the Dispatch v2 GPS ping endpoint (checking the bearer
token, the ST-App-Key, the tenant and the GPS provider name), answering one
`{"externalId", "status", "message"}` per ping like the real one. Tests can make
given pings "Fail", expire every token, and (from FakeProvider) answer HTTP errors.

Written from ServiceTitan's published Dispatch v2 OpenAPI (`tenant-dispatch-v2.yml`
as shipped in the generated SDK compwright/servicetitan), operation `Gps_Create`:
the body is an array of `Dispatch.V2.GpsPingCreateRequest`, whose "required" list
is unitId, unitName, eventTime, street, city, region, postalCode, message,
externalId, isNew, statusMessage — strings but `isNew` (boolean) and `eventTime`
(format date-time), none of them nullable; latitude, longitude and speed are
nullable numbers; `additionalProperties: false`. A refused request answers 400
with an `ApiErrorResponse` (RFC 7807): `{"type", "title", "status", "traceId",
"errors": {name: [messages]}, "data"}`. The limit is ServiceTitan's FAQ ("FAQs:
APIs, App Keys & Client Keys"): "60 calls per second per application per tenant".

Serve the auth and API hosts from this one server: point both
FLEETHOOK_SERVICETITAN_AUTH_URL and FLEETHOOK_SERVICETITAN_BASE_URL at `url`."""

from __future__ import annotations

import math
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.base import Answer, FakeProvider, Request

TENANT = "1234567"
CLIENT_ID = "cid.fleethook0test"
CLIENT_SECRET = "cs1.k3ep-th1s-s3cret-0ut-0f-l0gs"
APP_KEY = "ak1.fleethook-app-key-0001"
GPS_PROVIDER = "fleethook"
TOKEN_SECONDS = 900
# ServiceTitan's documented limit: 60 calls a second per application and tenant.
# Guess: the fake counts every request it serves (the token requests too, and
# whatever the app key and tenant): the tests use one app and one tenant.
CALLS_PER_SECOND = 60
# Dispatch.V2.GpsPingCreateRequest, as published: the required non-null strings,
# the required boolean, and the optional nullable numbers.
REQUIRED_STRINGS = (
    "unitId",
    "unitName",
    "eventTime",
    "street",
    "city",
    "region",
    "postalCode",
    "message",
    "externalId",
    "statusMessage",
)
REQUIRED_BOOLEANS = ("isNew",)
NULLABLE_NUMBERS = ("latitude", "longitude", "speed")
KNOWN_FIELDS = frozenset(REQUIRED_STRINGS + REQUIRED_BOOLEANS + NULLABLE_NUMBERS)


def _trace_id() -> str:
    # Guess: a W3C traceparent, as ASP.NET puts in its problem details.
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def _problem(status: int, title: str, errors: dict[str, list[str]] | None = None) -> Answer:
    """An ApiErrorResponse, every field the schema requires present."""
    # Guess: the "type" URIs are ASP.NET's defaults for each status.
    section = {400: "6.5.1", 401: "3.1", 403: "6.5.3", 404: "6.5.4"}[status]
    rfc = "rfc7235" if status == 401 else "rfc7231"
    return Answer(
        status,
        {
            "type": f"https://tools.ietf.org/html/{rfc}#section-{section}",
            "title": title,
            "status": status,
            "traceId": _trace_id(),
            "errors": errors or {},
            "data": {},
        },
    )


class FakeServiceTitan(FakeProvider):
    def __init__(
        self,
        tenant: str = TENANT,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        app_key: str = APP_KEY,
        gps_provider: str = GPS_PROVIDER,
    ) -> None:
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_key = app_key
        # The GPS providers set up (Settings → Integrations → GPS) and selected
        # for the app in this tenant.
        self.gps_providers = {gps_provider}
        self.token_seconds = TOKEN_SECONDS
        self.tokens: dict[str, float] = {}  # issued token → wall-clock expiry
        self.pings: list[dict[str, Any]] = []  # every ping answered "Success"
        self.failing: dict[str, str] = {}  # externalId → the message of its "Fail"
        self.route("POST", r"/connect/token", self._token)
        self.route(
            "POST", r"/dispatch/v2/tenant/([^/]+)/gps-provider/([^/]+)/gps-pings", self._gps_pings
        )
        self.throttle(CALLS_PER_SECOND, 1.0)

    # -- what tests change -------------------------------------------------------

    def fail_ping(self, external_id: str, message: str) -> None:
        """Answer "Fail" with `message` for this ping (every time until cleared)."""
        self.failing[external_id] = message

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on."""
        self.tokens.clear()

    # -- the API -----------------------------------------------------------------

    def throttled(self, retry_after: float, request: Request) -> Answer:
        # Guess: ServiceTitan's API gateway is Azure API Management (its developer
        # portal is one), whose rate-limit policy answers 429 with Retry-After in
        # whole seconds and this body.
        seconds = max(1, math.ceil(retry_after))
        return Answer(
            429,
            {
                "statusCode": 429,
                "message": f"Rate limit is exceeded. Try again in {seconds} seconds.",
            },
            {"Retry-After": str(seconds)},
        )

    def authenticate(self, request: Request) -> Answer | None:
        if request.path == "/connect/token":
            return None  # the client credentials are in the form; _token checks them
        if request.headers.get("ST-App-Key") != self.app_key:
            return _problem(401, "ST-App-Key is missing or not valid")
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or self.tokens.get(token, 0) < time.time():
            return _problem(401, "The access token is missing, expired or not valid")
        return None

    def _token(self, request: Request) -> Answer:
        # OAuth 2.0 (RFC 6749 §5.2) errors, as ServiceTitan's identity server gives.
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Answer(400, {"error": "invalid_client"})
        token = "st-" + secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_seconds
        return Answer(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_seconds}
        )

    def _gps_pings(self, request: Request, tenant: str, provider: str) -> Answer:
        tenant, provider = unquote(tenant), unquote(provider)  # path segments, as routed
        # Guess: which status each of these gets (the operation documents only 200
        # and 400): an app not connected to the tenant 403, a GPS provider the
        # tenant has not set up (or not selected for the app) 404.
        if tenant != self.tenant:
            return _problem(403, "The application has no access to this tenant")
        if provider not in self.gps_providers:
            return _problem(404, f"GPS provider {provider} was not found")
        try:
            body = request.json
        except ValueError:
            body = None
        if not isinstance(body, list):
            return _problem(
                400,
                "One or more validation errors occurred.",
                {"": ["A JSON array of GPS pings is required."]},
            )
        errors: dict[str, list[str]] = {}
        for index, item in enumerate(body):
            errors.update(_problems(index, item))
        if errors:
            # Guess: ASP.NET model validation refuses the whole request, recording
            # none of its pings, and keys each error by the ping's index.
            return _problem(400, "One or more validation errors occurred.", errors)
        answers = []
        for item in body:
            external_id = item["externalId"]
            if external_id in self.failing:
                answers.append(
                    {
                        "externalId": external_id,
                        "status": "Fail",
                        "message": self.failing[external_id],
                    }
                )
            else:
                self.pings.append(item)
                answers.append({"externalId": external_id, "status": "Success", "message": ""})
        return Answer(200, answers)


def _problems(index: int, item: Any) -> dict[str, list[str]]:
    """The model errors ServiceTitan's validation reports for one ping."""
    # Guess: the error keys ("[0].statusMessage") and words are ASP.NET's.
    if not isinstance(item, dict):
        return {f"[{index}]": ["A GPS ping object is required."]}
    errors: dict[str, list[str]] = {}
    for name in REQUIRED_STRINGS:
        if not isinstance(item.get(name), str):  # missing, null or not a string
            errors[f"[{index}].{name}"] = [f"The {name} field is required."]
    for name in REQUIRED_BOOLEANS:
        if not isinstance(item.get(name), bool):
            errors[f"[{index}].{name}"] = [f"The {name} field is required."]
    for name in NULLABLE_NUMBERS:
        value = item.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            errors[f"[{index}].{name}"] = [f"The {name} field must be a number."]
    for name in sorted(set(item) - KNOWN_FIELDS):
        # The schema says additionalProperties: false. Guess: refused (ASP.NET
        # ignores unknown members unless told not to; refusing is the stricter).
        errors[f"[{index}].{name}"] = [f"The {name} field is not part of the GPS ping."]
    if isinstance(item.get("eventTime"), str):
        try:
            # Guess: any ISO 8601 date-time with its offset ("Z" included) parses.
            parsed = datetime.fromisoformat(item["eventTime"].replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            errors[f"[{index}].eventTime"] = ["The eventTime field is not a valid date-time."]
    # Guess: an empty string passes (the schema says "required", not "non-empty").
    return errors
