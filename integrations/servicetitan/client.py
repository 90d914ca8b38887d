"""ServiceTitan's API as this integration calls it: the settings a call needs, the
access-token cache, and the GPS pings request.

Sources:
- ServiceTitan's Dispatch v2 OpenAPI (`tenant-dispatch-v2.yml`, as shipped in the
  generated SDK compwright/servicetitan, spec/ and docs/dispatch/Model/
  DispatchV2GpsPingCreateRequest.md; the same schema is in the TypeScript types
  generated from it), operation `Gps_Create`: `POST /dispatch/v2/tenant/{tenant}/
  gps-provider/{gps_provider}/gps-pings` (tenant an integer, gps_provider a
  string) takes an array of `Dispatch.V2.GpsPingCreateRequest`: "required:
  unitId, unitName, eventTime, street, city, region, postalCode, message,
  externalId, isNew, statusMessage", all strings but `isNew` (boolean) and
  `eventTime` (string, format date-time); `latitude`, `longitude` and `speed`
  are "type: number, format: double, nullable: true" (speed: "the speed of the
  vehicle at the time of recording", no unit named); `additionalProperties:
  false`. 200 answers an array of `{"externalId", "status": "Fail" | "Success",
  "message"}`; 400 ("The request cannot be processed, check validation errors
  or request format") an `ApiErrorResponse`: `{"type", "title", "status",
  "traceId", "errors": {name: [messages]}, "data"}` (RFC 7807). Security: the
  `ST-App-Key` header and a bearer token.
- developer.servicetitan.io, "Client ID & Secret" and "OAuth 2.0": a token comes
  from `POST {auth}/connect/token`, form `grant_type=client_credentials`,
  `client_id`, `client_secret`, answering `access_token` and `expires_in`
  (seconds); "we recommend you cache the access token". The tenant's admin
  connects an app under Settings → Integrations → API Application Access
  ("Connect New App", choose the app, Allow); "If you allow access, your Client
  ID & Secret Key are generated".
- developer.servicetitan.io, "FAQs: APIs, App Keys & Client Keys": "Our current
  default is 60 calls per second per application per tenant for all APIs except
  reporting APIs" (the request budget below).


Decisions:
- The "API key" of the original portal maps onto ServiceTitan's app key: it is
  optional, and only a customer who connects through an app of their own (a
  custom app in ServiceTitan's developer portal) enters its key; otherwise every
  call sends Fleethook's app key, FLEETHOOK_SERVICETITAN_APP_KEY.
- The GPS provider in the path is the integration's "GPS Provider" field; left
  blank, FLEETHOOK_SERVICETITAN_GPS_PROVIDER (the name ServiceTitan lists
  Fleethook under). Assumed: the path takes the provider's name as the GPS
  provider list shows it.
- Tokens are cached in this process's memory, keyed by a hash of the auth URL
  and client credentials, until shortly before `expires_in` ends (15 minutes if
  ServiceTitan leaves it out). Each process fetches its own; a restart costs one
  token request; nothing is written to the database, so a drain can never
  overwrite credentials a person is changing meanwhile. Token requests count
  against the integration's request budget like the pings.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import requests
from flask import current_app

from integrations.base import Api, secrets_of
from integrations.models import Integration
from outbox.registry import Result

NAME = "ServiceTitan"
TOKEN_PATH = "/connect/token"
GPS_PINGS_PATH = "/dispatch/v2/tenant/{tenant}/gps-provider/{provider}/gps-pings"
REJECTED = "ServiceTitan did not accept this client id and secret."
# A token is renewed this many seconds before ServiceTitan says it expires, so
# none expires between being picked and being used.
TOKEN_MARGIN_SECONDS = 60
# ServiceTitan's tokens live 15 minutes; assumed when an answer leaves it out.
DEFAULT_TOKEN_SECONDS = 900

# Access tokens of this process: credential hash → (token, monotonic expiry).
_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """Everything a call needs, from the integration and the app's settings."""

    tenant: str
    client_id: str
    client_secret: str
    app_key: str
    auth_url: str
    base_url: str
    gps_provider: str

    @classmethod
    def of(cls, integration: Integration) -> Settings:
        secrets = secrets_of(integration)
        options = integration.options or {}
        config = current_app.config
        return cls(
            tenant=str(options.get("tenant_id") or ""),
            client_id=str(options.get("client_id") or ""),
            client_secret=str(secrets.get("client_secret") or ""),
            app_key=str(secrets.get("api_key") or config["FLEETHOOK_SERVICETITAN_APP_KEY"] or ""),
            auth_url=str(config["FLEETHOOK_SERVICETITAN_AUTH_URL"]).rstrip("/"),
            base_url=str(config["FLEETHOOK_SERVICETITAN_BASE_URL"]).rstrip("/"),
            gps_provider=str(
                options.get("gps_provider") or config["FLEETHOOK_SERVICETITAN_GPS_PROVIDER"]
            ),
        )

    @property
    def token_key(self) -> str:
        material = "\0".join((self.auth_url, self.client_id, self.client_secret))
        return hashlib.sha256(material.encode()).hexdigest()

    @property
    def pings_path(self) -> str:
        return GPS_PINGS_PATH.format(
            tenant=quote(self.tenant, safe=""), provider=quote(self.gps_provider, safe="")
        )


class Client:
    """Calls to ServiceTitan for one integration: its token, then the GPS API,
    both paced by the integration's request budget."""

    def __init__(self, settings: Settings, integration: Integration):
        self.settings = settings
        self.auth = Api(
            settings.auth_url, {"Accept": "application/json"}, NAME, integration=integration
        )
        self.api = Api(
            settings.base_url,
            {"ST-App-Key": settings.app_key, "Accept": "application/json"},
            NAME,
            integration=integration,
        )

    def token(self) -> tuple[str | None, Result | None]:
        """The cached token, or a new one; (None, the failure) if none came.
        Refused client credentials are a failure that needs attention."""
        key = self.settings.token_key
        now = time.monotonic()
        with _tokens_lock:
            cached = _tokens.get(key)
        if cached is not None and cached[1] > now:
            return cached[0], None
        response, result = self.auth.call(
            "POST",
            TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
            },
        )
        if response is None:
            return None, result
        if response.status_code in (400, 401, 403):
            # invalid_client (OAuth answers 400 or 401): new credentials are needed.
            return None, replace(result, needs_attention=REJECTED, error=REJECTED)
        if not result.delivered:
            return None, result
        try:
            answer = response.json()
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, replace(
                result,
                delivered=False,
                response_body=None,  # might hold a token
                error="ServiceTitan's token answer had no access_token",
            )
        expires = now + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)
        with _tokens_lock:
            for stale in [k for k, (_, at) in _tokens.items() if at <= now]:
                del _tokens[stale]
            _tokens[key] = (token, expires)
        return token, None

    def forget_token(self) -> None:
        with _tokens_lock:
            _tokens.pop(self.settings.token_key, None)

    def post_pings(self, items: list[dict[str, Any]]) -> tuple[requests.Response | None, Result]:
        """POST the pings with the current token (fetching one if needed)."""
        token, failure = self.token()
        if token is None:
            assert failure is not None
            return None, failure
        return self.api.call(
            "POST",
            self.settings.pings_path,
            headers={"Authorization": f"Bearer {token}"},
            json=items,
        )

    def post_pings_once_more_on_401(
        self, items: list[dict[str, Any]], stop_at: float
    ) -> tuple[requests.Response | None, Result]:
        """post_pings; a 401 drops the token and sends again with a new one if there
        is time left in the drain (a token may be revoked before it expires)."""
        response, result = self.post_pings(items)
        if response is None or response.status_code != 401:
            return response, result
        self.forget_token()
        if time.monotonic() <= stop_at:
            return self.post_pings(items)
        # No time left for a second request in this drain: the next one fetches a
        # new token before it decides the credentials are bad.
        return response, replace(
            result,
            needs_attention=None,
            error="ServiceTitan refused the access token; a new one is fetched for the "
            "next attempt.",
        )
