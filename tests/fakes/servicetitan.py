"""A fake ServiceTitan: the token endpoint (client credentials grant, checking the
client id and secret) and the Dispatch v2 GPS ping endpoint (checking the bearer
token, the ST-App-Key, the tenant and the GPS provider name), answering one
`{"externalId", "status", "message"}` per ping like the real one. Tests can make
given pings "Fail", expire every token, and (from FakeProvider) answer HTTP errors.

Serve the auth and API hosts from this one server: point both
FLEETHOOK_SERVICETITAN_AUTH_URL and FLEETHOOK_SERVICETITAN_BASE_URL at `url`."""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

TENANT = "1234567"
CLIENT_ID = "cid.fleethook0test"
CLIENT_SECRET = "cs1.k3ep-th1s-s3cret-0ut-0f-l0gs"
APP_KEY = "ak1.fleethook-app-key-0001"
GPS_PROVIDER = "fleethook"
TOKEN_SECONDS = 900
REQUIRED_STRINGS = ("unitId", "unitName", "eventTime", "street", "city", "region",
                    "postalCode", "externalId")  # fmt: skip


def _unauthorized(detail: str) -> Answer:
    return Answer(401, {"type": "https://tools.ietf.org/html/rfc7235#section-3.1",
                        "title": "Unauthorized", "status": 401, "detail": detail})  # fmt: skip


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
        self.gps_provider = gps_provider
        self.token_seconds = TOKEN_SECONDS
        self.tokens: dict[str, float] = {}  # issued token → wall-clock expiry
        self.pings: list[dict[str, Any]] = []  # every ping answered "Success"
        self.failing: dict[str, str] = {}  # externalId → the message of its "Fail"
        self.route("POST", r"/connect/token", self._token)
        self.route(
            "POST", r"/dispatch/v2/tenant/([^/]+)/gps-provider/([^/]+)/gps-pings", self._gps_pings
        )

    # -- what tests change -------------------------------------------------------

    def fail_ping(self, external_id: str, message: str) -> None:
        """Answer "Fail" with `message` for this ping (every time until cleared)."""
        self.failing[external_id] = message

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on."""
        self.tokens.clear()

    # -- the API -----------------------------------------------------------------

    def authenticate(self, request: Request) -> Answer | None:
        if request.path == "/connect/token":
            return None  # the client credentials are in the form; _token checks them
        if request.headers.get("ST-App-Key") != self.app_key:
            return _unauthorized("ST-App-Key is missing or not valid")
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or self.tokens.get(token, 0) < time.time():
            return _unauthorized("The access token is missing, expired or not valid")
        return None

    def _token(self, request: Request) -> Answer:
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
        if tenant != self.tenant:
            detail = "The application has no access to this tenant"
            return Answer(403, {"title": "Forbidden", "status": 403, "detail": detail})
        if provider != self.gps_provider:
            return Answer(404, {"title": "Not Found", "status": 404,
                                "detail": f"GPS provider {provider} not found"})  # fmt: skip
        try:
            body = request.json
        except ValueError:
            body = None
        if not isinstance(body, list):
            return self._invalid({"": ["A JSON array of GPS pings is required."]})
        errors: dict[str, list[str]] = {}
        for index, item in enumerate(body):
            errors.update(_problems(index, item))
        if errors:
            return self._invalid(errors)
        answers = []
        for item in body:
            external_id = item["externalId"]
            if external_id in self.failing:
                answers.append({"externalId": external_id, "status": "Fail",
                                "message": self.failing[external_id]})  # fmt: skip
            else:
                self.pings.append(item)
                answers.append({"externalId": external_id, "status": "Success", "message": ""})
        return Answer(200, answers)

    @staticmethod
    def _invalid(errors: dict[str, list[str]]) -> Answer:
        return Answer(400, {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                            "title": "One or more validation errors occurred.", "status": 400,
                            "errors": errors})  # fmt: skip


def _problems(index: int, item: Any) -> dict[str, list[str]]:
    """The model errors ServiceTitan's validation would report for one ping."""
    if not isinstance(item, dict):
        return {f"[{index}]": ["A GPS ping object is required."]}
    errors: dict[str, list[str]] = {}
    for name in REQUIRED_STRINGS:
        if not isinstance(item.get(name), str):
            errors[f"[{index}].{name}"] = [f"The {name} field is required."]
    if not isinstance(item.get("isNew"), bool):
        errors[f"[{index}].isNew"] = ["The isNew field is required."]
    for name in ("latitude", "longitude", "speed"):
        value = item.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            errors[f"[{index}].{name}"] = [f"The {name} field must be a number."]
    try:
        datetime.fromisoformat(str(item.get("eventTime")))
    except ValueError:
        errors[f"[{index}].eventTime"] = ["The eventTime field is not a valid date-time."]
    return errors
