"""ServiceMax (on Salesforce): the Salesforce connection of one integration (the
OAuth 2.0 web-server flow with PKCE at the integration's own login host: authorize
URL, `state`, code exchange, token renewal and revocation), the callback URL built
from FLEETHOOK_PUBLIC_URL, the driver → technician mapping the integration keeps
and the drivers it has no technician for, and the client that sets technicians'
locations, up to 200 in one sObject Collections call.

From Salesforce Help, "OAuth 2.0 Web Server Flow for Web App Integration": the
authorize request `GET {login host}/services/oauth2/authorize` with
`response_type=code`, `client_id`, `redirect_uri` (the connected app's Callback
URL), `state`, and for PKCE `code_challenge` ("the SHA256 hash value of the
code_verifier … base64url encoded", sent with `code_challenge_method=S256`); the
token request `POST {login host}/services/oauth2/token` with
`grant_type=authorization_code`, `code`, `client_id`, `client_secret`,
`redirect_uri` and `code_verifier`; "We recommend that you use the web server flow
with Proof Key for Code Exchange (PKCE)". From "Proof Key for Code Exchange (PKCE)
Extension" (RFC 7636, which Salesforce's help points to): a verifier of 43–128
unreserved characters, the S256 challenge BASE64URL(SHA256(verifier)) unpadded.
The login hosts: login.salesforce.com (production), test.salesforce.com
(sandboxes), or the org's My Domain (https://name.my.salesforce.com). The token
answer's `access_token`, `refresh_token`, `instance_url`; the OAuth error body
`{"error", "error_description"}` (`invalid_grant` for a bad, used or expired code or
refresh token, and for a missing code_verifier when the authorize request had a
challenge; the older REST API guide says a verifier that does not match fails with
`invalid_request`, while orgs answer `invalid_grant` "invalid code verifier" — we
read both the same way); a refresh answer that may carry a new refresh token
(rotation); `POST {login host}/services/oauth2/revoke` with `token`.

From the REST API Developer Guide: "Update Records Using sObject Collections" —
`PATCH /services/data/vXX.X/composite/sobjects` with `{"allOrNone", "records"}`,
"The list can contain up to 200 objects", each with an `attributes` map holding
`type` and an `id`; "The SaveResult objects are returned in the order in which the
update requests were specified": `[{"id", "success", "errors": [{"statusCode",
"message", "fields"}]}]` (a failed one may lack `id`); "The entire request counts
as a single call toward your API limits" (sObject Collections). Errors of a whole
request: `[{"message", "errorCode", "fields"}]`; 401 for an expired session; 403
`REQUEST_LIMIT_EXCEEDED` when the org's API requests are used up. From "API Request
Limits and Allocations" (Salesforce Developer Limits and Allocations Quick
Reference): requests are counted per org over a rolling 24 hours — Enterprise and
Professional 100,000 plus 1,000 per license, Unlimited and Performance 100,000
plus 5,000 per license, Developer Edition 15,000 — and "When an org exceeds a
limit, all users in the org can be temporarily blocked … until usage for the
preceding 24 hours drops below the limit" (System Overview: API Usage).

From Salesforce Help, "Prepare for Connected App Usage Restrictions Change"
(knowledge article 005132365, and
the Salesforce Admins blog, "Get Ready: Changes to Connected App Usage
Restrictions Coming This September", 2025): since early September 2025 users
without "Approve Uninstalled Connected Apps" (or "Use Any API Client") cannot
authorise a connected app that is not installed in the org; an admin installs it
from Setup → Connected Apps OAuth Usage.

From ServiceMax's managed package (its field names; no public API guide found):
the Technician object `SVMXC__Service_Group_Members__c` and its fields
`SVMXC__Latitude__c`, `SVMXC__Longitude__c` and `SVMXC__Latlong_Captured_On__c`
(assumed a DateTime, sent as RFC 3339 UTC).

Our decisions, not the provider's:
- The code verifier lives in the user's session only as Fernet ciphertext (the
  session is a signed cookie): it is never in a URL and only the server reads it.
- The callback URL is FLEETHOOK_PUBLIC_URL + the callback's path; without it,
  development builds it from the request (and logs that it does), production
  refuses to start a sign-in.
- The login host is the integration's setting; authorize, token, refresh and
  revoke all go to it. Changing it needs a new sign-in (the tokens belong to the
  org they came from), so a settings change of the host alone is refused.
- Which technician a driver is comes from a mapping in the integration's options
  (driver name → Technician record Id). Drivers seen without one are kept in
  `provider_state["unmapped_drivers"]` ([{"id", "name", "since"}]) and listed on
  the integration's page (ServiceMax.unmapped_drivers).
- One Collections call carries up to 200 technicians; when a batch holds several
  positions of one technician only the newest (by fix time) is sent and the older
  ones count as delivered, superseded by it (their attempt says so): positions
  are latest-value messages. Records are answered one by one: a configuration or
  permission refusal (INVALID_FIELD, INVALID_FIELD_FOR_INSERT_UPDATE,
  INSUFFICIENT_ACCESS_*, an unknown object type) needs attention with
  Salesforce's words and what to do; a technician record that is gone
  (ENTITY_IS_DELETED, NOT_FOUND, a malformed Id) ends that message dead with the
  reason; a record a validation rule refuses ends dead too; anything else is
  retried. So the messages after a failed record in the same call may be
  delivered: Salesforce wrote them.
- REQUEST_LIMIT_EXCEEDED is throttling, not attention: the daily allocation waits
  10 minutes (Salesforce sends no Retry-After; the rolling window frees requests
  as the day's first ones age out), the limit on long-running concurrent
  requests 30 seconds.
- The request budget: 10 requests a minute (14,400 a day), under a Developer
  Edition org's 15,000 and about 14% of the smallest production allocation, so the
  org's other integrations keep the rest; at up to 200 technicians a call that is
  2,000 technician updates a minute.
- A position older than the vehicle's previous fix (a late report) is not sent:
  it would move the technician back in time.
- The access token is renewed at most once per drain.

Assumed (no document settles it): the Technician fields' types; what Collections
answers for an Id that never existed (ENTITY_IS_DELETED or NOT_FOUND, both read as
"gone") and for an object type the org lacks (INVALID_TYPE or NOT_FOUND, both
"needs attention"); how long to wait after REQUEST_LIMIT_EXCEEDED."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from cryptography.fernet import InvalidToken
from flask import current_app, url_for

from accounts.quotas import check_room
from core.encryption import decrypt, encrypt, mask
from core.errors import ValidationError
from core.extensions import db
from core.times import format_rfc3339, parse_rfc3339, utcnow
from integrations.base import (
    CURRENT_STATE,
    MAX_RESPONSE_BYTES,
    RELEASE_REASON,
    Api,
    Field,
    ProviderRejected,
    secrets_of,
    store_secrets,
)
from integrations.lifecycle import send_current_state
from integrations.models import Integration
from integrations.providers import register
from outbox.models import OutboxMessage
from outbox.registry import Result
from outbox.status import activate, hold_for_release, needs_fixing

log = logging.getLogger(__name__)

API_VERSION = "v60.0"
# ServiceMax's Technician object and the fields its location lives in.
TECHNICIAN_OBJECT = "SVMXC__Service_Group_Members__c"
LATITUDE, LONGITUDE, CAPTURED_ON = (
    "SVMXC__Latitude__c",
    "SVMXC__Longitude__c",
    "SVMXC__Latlong_Captured_On__c",
)
COLLECTIONS_PATH = f"/services/data/{API_VERSION}/composite/sobjects"
# sObject Collections: "The list can contain up to 200 objects."
RECORDS_PER_CALL = 200
CONNECT_ONLY = (
    "ServiceMax connects through Salesforce sign-in: use Connect with Salesforce in the "
    "portal's Webhook Manager."
)
# Salesforce record Ids: 15 characters (case-sensitive) or 18 (case-safe).
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
MAX_TECHNICIANS = 1000
MAX_DRIVER_NAME = 100  # as fleet.models.Driver.name
# Drivers without a technician the integration remembers (the oldest stay).
MAX_UNMAPPED_DRIVERS = 200
SALESFORCE = "Salesforce"

# --- Where an integration signs in ------------------------------------------------

PRODUCTION, SANDBOX, MY_DOMAIN = "production", "sandbox", "my_domain"
SANDBOX_LOGIN_URL = "https://test.salesforce.com"
LOGIN_HOSTS = (
    (PRODUCTION, "Production (login.salesforce.com)"),
    (SANDBOX, "Sandbox (test.salesforce.com)"),
    (MY_DOMAIN, "My Domain (your org's own address)"),
)
# A My Domain is a host of Salesforce's: name.my.salesforce.com, the sandbox
# name--box.sandbox.my.salesforce.com, or an older *.force.com address.
MY_DOMAIN_SUFFIXES = (".salesforce.com", ".force.com")
HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
MY_DOMAIN_EXAMPLE = "https://acme.my.salesforce.com"


@dataclass(frozen=True)
class LoginHost:
    """Where one integration signs in, and renews and revokes its tokens."""

    choice: str  # PRODUCTION | SANDBOX | MY_DOMAIN
    my_domain: str | None = None  # the https://… address, MY_DOMAIN only

    @property
    def url(self) -> str:
        config = current_app.config
        if self.choice == MY_DOMAIN and self.my_domain:
            return self.my_domain
        if self.choice == SANDBOX:
            # A setting only so tests can point sandboxes at a fake of their own.
            return str(
                config.get("FLEETHOOK_SALESFORCE_SANDBOX_LOGIN_URL") or SANDBOX_LOGIN_URL
            ).rstrip("/")
        return str(config["FLEETHOOK_SALESFORCE_LOGIN_URL"]).rstrip("/")

    def options(self) -> dict[str, Any]:
        return {"login_host": self.choice, "my_domain": self.my_domain}


def my_domain_url(text: str) -> str:
    """The My Domain address as https://host, or ValidationError under "my_domain"
    saying what is wrong with it."""
    value = text.strip()
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme != "https" or not host:
        raise ValidationError(
            {
                "my_domain": [
                    f"Enter your org's My Domain address starting with https://, like "
                    f"{MY_DOMAIN_EXAMPLE}."
                ]
            }
        )
    if (
        parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or port not in (None, 443)
    ):
        raise ValidationError(
            {
                "my_domain": [
                    f"Only the address itself, like {MY_DOMAIN_EXAMPLE}: no path, port, query or "
                    "user name."
                ]
            }
        )
    if not HOST_NAME.fullmatch(host) or not host.endswith(MY_DOMAIN_SUFFIXES):
        raise ValidationError(
            {
                "my_domain": [
                    f"{host[:100]} is not a Salesforce address: a My Domain ends in "
                    f".my.salesforce.com (or .force.com), like {MY_DOMAIN_EXAMPLE}."
                ]
            }
        )
    return f"https://{host}"


def login_host_from(values: Mapping[str, Any]) -> LoginHost:
    """The login host chosen in `values` ("login_host", and "my_domain" for My
    Domain); production when none is chosen. ValidationError naming the field."""
    choice = values.get("login_host") or PRODUCTION
    if choice not in {key for key, _ in LOGIN_HOSTS}:
        raise ValidationError(
            {"login_host": ["One of: " + ", ".join(key for key, _ in LOGIN_HOSTS) + "."]}
        )
    if choice != MY_DOMAIN:
        return LoginHost(choice)
    given = values.get("my_domain")
    if not isinstance(given, str) or not given.strip():
        raise ValidationError(
            {"my_domain": [f"Enter your org's My Domain address, like {MY_DOMAIN_EXAMPLE}."]}
        )
    return LoginHost(MY_DOMAIN, my_domain_url(given))


def login_host_of(integration: Integration) -> LoginHost:
    """The integration's own login host (production for integrations made before
    there was a choice)."""
    return login_host_from(integration.options or {})


# --- The OAuth web-server flow with PKCE -----------------------------------------


def new_state() -> str:
    """A random `state` for one sign-in."""
    return secrets.token_urlsafe(32)


def state_matches(expected: str | None, given: str | None) -> bool:
    """Whether the callback's `state` is the one this session started with."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43–128 unreserved characters; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256: BASE64URL(SHA256(ASCII(verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SignIn:
    """One Salesforce sign-in under way, between the connect page and the callback:
    kept in the user's session (`for_session`), the code verifier encrypted."""

    state: str
    code_verifier: str
    login: LoginHost
    redirect_uri: str

    def for_session(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "code_verifier": encrypt(self.code_verifier),
            "redirect_uri": self.redirect_uri,
            **self.login.options(),
        }

    @classmethod
    def from_session(cls, kept: Any) -> SignIn | None:
        """The sign-in a session holds, or None (none, or not readable)."""
        if not isinstance(kept, Mapping):
            return None
        try:
            return cls(
                state=str(kept["state"]),
                code_verifier=decrypt(str(kept["code_verifier"])),
                login=login_host_from(kept),
                redirect_uri=str(kept["redirect_uri"]),
            )
        except (KeyError, ValueError, ValidationError, InvalidToken):
            return None  # e.g. encrypted under a key that is no longer configured


def start_sign_in(login: LoginHost, redirect_uri: str) -> SignIn:
    return SignIn(new_state(), new_code_verifier(), login, redirect_uri)


def authorize_url(sign_in: SignIn) -> str:
    """The login page of the sign-in's host, which sends the user back to its
    redirect_uri with a code and its `state`."""
    client_id, _ = _client()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": sign_in.redirect_uri,
            "state": sign_in.state,
            "code_challenge": code_challenge(sign_in.code_verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{sign_in.login.url}/services/oauth2/authorize?{query}"


PUBLIC_URL_MISSING = (
    "Connecting to Salesforce needs this Fleethook's public address: the operator must set "
    "FLEETHOOK_PUBLIC_URL (like https://fleethook.example.com), which is also the start of "
    "the connected app's Callback URL."
)


def callback_url(path: str, from_request: str) -> str:
    """The redirect_uri: FLEETHOOK_PUBLIC_URL followed by the callback's `path`.
    Without it, development uses `from_request` (built from the request's Host
    header, which the client chooses) and logs that it does; production refuses
    with ProviderRejected."""
    public = str(current_app.config.get("FLEETHOOK_PUBLIC_URL") or "").rstrip("/")
    if public:
        return public + path
    if current_app.config.get("FLEETHOOK_ENV", "production") == "production":
        raise ProviderRejected(PUBLIC_URL_MISSING)
    log.warning(
        "FLEETHOOK_PUBLIC_URL is not set: the Salesforce callback URL %s comes from the "
        "request's Host header (development only; production refuses)",
        from_request,
    )
    return from_request


def _client() -> tuple[str, str]:
    config = current_app.config
    return config["FLEETHOOK_SALESFORCE_CLIENT_ID"], config["FLEETHOOK_SALESFORCE_CLIENT_SECRET"]


def _token_api(login: LoginHost) -> Api:
    # OAuth requests do not count toward the org's API requests: not paced.
    return Api(login.url, {"Accept": "application/json"}, SALESFORCE)


def _oauth_refusal(response: requests.Response) -> tuple[str, str]:
    """Salesforce's OAuth error code and description from a refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        return str(body.get("error", "")), str(body.get("error_description", ""))
    return "", response.text.strip()[:200]


def _refusal_words(response: requests.Response, renewing: bool) -> str:
    """Why Salesforce refused a token request, in plain words."""
    code, description = _oauth_refusal(response)
    said = f" (Salesforce said: {code}{': ' if code and description else ''}{description})"
    if code in ("invalid_client_id", "invalid_client"):
        return (
            "Salesforce does not accept Fleethook's connected app (client id or secret); "
            "the operator must check FLEETHOOK_SALESFORCE_CLIENT_ID and "
            f"FLEETHOOK_SALESFORCE_CLIENT_SECRET.{said}"
        )
    if code == "redirect_uri_mismatch":
        return (
            "This portal's address is not a Callback URL of Fleethook's connected app in "
            f"Salesforce.{said}"
        )
    if renewing:
        return f"Salesforce refused to renew the access; connect with Salesforce again.{said}"
    if code in ("invalid_grant", "invalid_request") and "verifier" in description.lower():
        return (
            "Salesforce refused the sign-in: its proof key (PKCE code verifier) does not "
            f"match the one this sign-in started with. Connect with Salesforce again.{said}"
        )
    if code == "invalid_grant":
        return (
            "Salesforce refused the sign-in code: it expired or was used already. "
            f"Connect with Salesforce again.{said}"
        )
    return f"Salesforce refused the sign-in (HTTP {response.status_code}).{said}"


def _exchange_code(code: str, sign_in: SignIn) -> dict[str, str]:
    """The tokens and instance URL for an authorization code, or ProviderRejected."""
    client_id, client_secret = _client()
    response, result = _token_api(sign_in.login).call(
        "POST",
        "/services/oauth2/token",
        shown_headers={"method": "POST", "grant_type": "authorization_code"},
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": sign_in.redirect_uri,
            "code_verifier": sign_in.code_verifier,
        },
    )
    if response is None:
        raise ProviderRejected(f"Salesforce could not be reached ({result.error}); try again.")
    if response.status_code != 200:
        raise ProviderRejected(_refusal_words(response, renewing=False))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, Mapping) or not answer.get("access_token"):
        raise ProviderRejected("Salesforce answered the sign-in without an access token.")
    if not answer.get("refresh_token"):
        raise ProviderRejected(
            "Salesforce gave no refresh token: the connected app needs the scope "
            '"Perform requests at any time (refresh_token, offline_access)".'
        )
    instance_url = str(answer.get("instance_url") or "")
    if urlsplit(instance_url).scheme not in ("https", "http") or not urlsplit(instance_url).netloc:
        raise ProviderRejected("Salesforce answered the sign-in without a usable instance URL.")
    return {
        "access_token": str(answer["access_token"]),
        "refresh_token": str(answer["refresh_token"]),
        "instance_url": instance_url.rstrip("/"),
    }


def _store_tokens(integration: Integration, tokens: Mapping[str, str]) -> None:
    store_secrets(
        integration,
        {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]},
    )
    integration.options = {**(integration.options or {}), "instance_url": tokens["instance_url"]}


def _signed_in_at(integration: Integration, login: LoginHost) -> None:
    """The integration's login host is the one its tokens came from."""
    settings = {"login_host": login.choice}
    if login.my_domain:
        settings["my_domain"] = login.my_domain
    options = {k: v for k, v in (integration.options or {}).items() if k != "my_domain"}
    integration.options = {**options, **settings}
    integration.provider_state = {
        **(integration.provider_state or {}),
        "signed_in_at": login.options(),
    }


def connect(account_id: int, code: str, sign_in: SignIn) -> Integration:
    """A new ServiceMax integration from the code Salesforce sent to the callback:
    the tokens stored encrypted, checked with one call, paused until the release
    form is signed, each vehicle's current state queued. Added to the session;
    the caller commits. ValidationError, before Salesforce is asked, when the
    account has as many integrations as its quota allows."""
    check_room(account_id, "integrations", Integration)
    tokens = _exchange_code(code, sign_in)
    integration = Integration(
        account_id=account_id,
        provider=SERVICEMAX.key,
        vehicle_attribute=None,
        options={"technicians": {}},
        vehicle_map={},
        unmatched_vins=[],
        provider_state={},
    )
    hold_for_release(integration, RELEASE_REASON)
    _signed_in_at(integration, sign_in.login)
    _store_tokens(integration, tokens)
    _check_or_revoke(integration)  # not paced: no id, so no budget of its own yet
    integration.rate_limit = SERVICEMAX.requests_per_minute / 60
    db.session.add(integration)
    send_current_state(integration)
    return integration


def reconnect(integration: Integration, code: str, sign_in: SignIn) -> None:
    """New tokens for an existing integration (after Salesforce stopped accepting
    the old ones, or to sign in at another login host); one that needed attention
    resumes with its queue. The caller commits."""
    tokens = _exchange_code(code, sign_in)
    old_login = login_host_of(integration)
    old = (integration.credentials, integration.options, integration.provider_state)
    _signed_in_at(integration, sign_in.login)
    _store_tokens(integration, tokens)
    try:
        _check_or_revoke(integration)
    except ProviderRejected:
        integration.credentials, integration.options, integration.provider_state = old
        raise
    old_refresh_token = json.loads(old[0] or "{}").get("refresh_token")
    if old_refresh_token and old_refresh_token != tokens["refresh_token"]:
        _revoke_token(integration.id, old_login, old_refresh_token)
    if needs_fixing(integration):
        activate(integration)


def revoke(integration: Integration) -> None:
    """Revoke the refresh token (and with it the access tokens) at the integration's
    login host. Failures are logged, never raised: deleting must not depend on
    Salesforce."""
    stored = secrets_of(integration)
    token = stored.get("refresh_token") or stored.get("access_token")
    if not token:
        return
    try:
        login = login_host_of(integration)
    except ValidationError:
        log.warning("integration %s has no valid login host to revoke at", integration.id)
        return
    _revoke_token(integration.id, login, str(token))


def _revoke_token(integration_id: int | None, login: LoginHost, token: str) -> None:
    _, result = _token_api(login).call(
        "POST",
        "/services/oauth2/revoke",
        shown_headers={"method": "POST"},
        data={"token": token},
    )
    if not result.delivered:
        log.warning(
            "Salesforce did not revoke the token of integration %s: %s",
            integration_id,
            result.error,
        )


def _check_or_revoke(integration: Integration) -> None:
    """The one cheap call; tokens the org's API refuses are revoked, not kept."""
    try:
        SERVICEMAX.check_credentials(integration)
    except ProviderRejected:
        revoke(integration)
        raise


# --- The driver → technician mapping, and the drivers without one -------------------


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def set_technicians(integration: Integration, text: str) -> None:
    """Replace the mapping from lines "Driver Name = a0B…" (blank lines skipped);
    ValidationError lists every bad line under "technicians". Drivers it maps
    leave the list of drivers without a technician."""
    mapping: dict[str, str] = {}
    seen: dict[str, int] = {}
    problems: list[str] = []
    lines = text.splitlines()
    if len(lines) > MAX_TECHNICIANS:
        raise ValidationError({"technicians": [f"At most {MAX_TECHNICIANS} lines."]})
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, equals, record_id = line.partition("=")
        name, record_id = " ".join(name.split()), record_id.strip()
        if not equals or not name or not record_id:
            problems.append(f'Line {number}: write it as "Driver Name = Technician record Id".')
        elif len(name) > MAX_DRIVER_NAME:
            problems.append(
                f"Line {number}: a driver name has at most {MAX_DRIVER_NAME} characters."
            )
        elif not RECORD_ID.fullmatch(record_id):
            problems.append(
                f'Line {number}: "{record_id[:40]}" is not a Salesforce record Id (15 or 18 '
                "letters and digits, like a0B5e00000AbCdEFGH)."
            )
        elif _name_key(name) in seen:
            problems.append(
                f"Line {number}: {name} is already on line {seen[_name_key(name)]}; a driver "
                "is one technician."
            )
        else:
            seen[_name_key(name)] = number
            mapping[name] = record_id
    if problems:
        raise ValidationError({"technicians": problems})
    integration.options = {**(integration.options or {}), "technicians": mapping}
    still = [d for d in unmapped_drivers(integration) if _name_key(str(d["name"])) not in seen]
    if len(still) != len(unmapped_drivers(integration)):
        integration.provider_state = {
            **(integration.provider_state or {}),
            "unmapped_drivers": still,
        }


def technicians_text(integration: Integration) -> str:
    """The mapping as the form shows it, one "Driver Name = Id" a line."""
    mapping = (integration.options or {}).get("technicians") or {}
    return "\n".join(f"{name} = {record_id}" for name, record_id in mapping.items())


def technician_of(integration: Integration, driver_name: str) -> str | None:
    mapping = (integration.options or {}).get("technicians") or {}
    wanted = _name_key(driver_name)
    for name, record_id in mapping.items():
        if _name_key(name) == wanted:
            return str(record_id)
    return None


def unmapped_drivers(integration: Integration) -> list[dict[str, Any]]:
    """Drivers seen driving whose positions went nowhere because no technician is
    mapped to them: [{"id", "name", "since"}], the first seen first."""
    return list((integration.provider_state or {}).get("unmapped_drivers") or [])


def _note_unmapped(integration: Integration, driver: Mapping[str, Any], when: datetime) -> None:
    """Remember a driver without a technician (once; written only when new, so
    the fan-out that calls this rarely writes the integration's row)."""
    listed = unmapped_drivers(integration)
    name = str(driver.get("name") or "")
    if any(_name_key(str(d.get("name") or "")) == _name_key(name) for d in listed):
        return
    if len(listed) >= MAX_UNMAPPED_DRIVERS:
        return
    listed.append({"id": driver.get("id"), "name": name, "since": format_rfc3339(when)})
    integration.provider_state = {**(integration.provider_state or {}), "unmapped_drivers": listed}


# --- Calls to the org's REST API ----------------------------------------------------

# Record-level and request-level error codes that a person must act on: the words
# to add to Salesforce's. Keyed by statusCode / errorCode.
FIELDS_WRITTEN = f"{LATITUDE}, {LONGITUDE} and {CAPTURED_ON}"
NO_TECHNICIAN_OBJECT = (
    f"This org has no Technician object ({TECHNICIAN_OBJECT}) the connected user can use: "
    "check ServiceMax is installed and the user's profile has access to it."
)
NEEDS_A_PERSON = {
    "INVALID_FIELD_FOR_INSERT_UPDATE": (
        "In Salesforce Setup, give the connected user's profile or permission set Edit "
        f"access (field-level security) to the Technician fields {FIELDS_WRITTEN}."
    ),
    "INVALID_FIELD": (
        f"This org's Technician object ({TECHNICIAN_OBJECT}) lacks a field Fleethook "
        f"writes, or the connected user cannot see it: check ServiceMax is installed and "
        f"the user can read and edit {FIELDS_WRITTEN}."
    ),
    "INSUFFICIENT_ACCESS_OR_READONLY": (
        f"The connected user may not edit this technician: give them Edit on the "
        f"Technician object ({TECHNICIAN_OBJECT}) and access to its records (sharing), "
        "or connect as a user who has it."
    ),
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": (
        "The connected user lacks access to a record this technician refers to: give "
        "them access to it, or connect as a user who has it."
    ),
    # An object type the org lacks: Guess INVALID_TYPE in a Collections answer, as
    # the REST API says of an unknown type elsewhere; NOT_FOUND for a whole request.
    "INVALID_TYPE": NO_TECHNICIAN_OBJECT,
    "NOT_FOUND": NO_TECHNICIAN_OBJECT,
}
# The technician record itself cannot be written, ever: its message ends.
RECORD_GONE = frozenset(
    {
        "ENTITY_IS_DELETED",
        "NOT_FOUND",
        "MALFORMED_ID",
        "INVALID_ID_FIELD",
        "INVALID_CROSS_REFERENCE_KEY",
    }
)
# The org refuses this record's values (a validation rule, a range): its message ends.
RECORD_REFUSED = frozenset(
    {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "FIELD_INTEGRITY_EXCEPTION",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "STRING_TOO_LONG",
        "REQUIRED_FIELD_MISSING",
    }
)
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
# Seconds to wait after REQUEST_LIMIT_EXCEEDED (no Retry-After comes with it): the
# daily allocation ("TotalRequests Limit exceeded."), else the concurrent one.
DAILY_LIMIT_WAIT = 600
CONCURRENT_LIMIT_WAIT = 30


def _errors_in(data: Any) -> list[Mapping[str, Any]]:
    errors = data if isinstance(data, list) else [data]
    return [e for e in errors if isinstance(e, Mapping)]


def _code_of(error: Mapping[str, Any]) -> str:
    # Whole requests say "errorCode"; records of a Collections answer "statusCode".
    return str(error.get("errorCode") or error.get("statusCode") or "")


def _words_of(errors: Sequence[Mapping[str, Any]]) -> str:
    words = [
        ": ".join(str(part) for part in (_code_of(e), e.get("message")) if part) for e in errors
    ]
    return "; ".join(w for w in words if w)[:300] or "no reason given"


def _salesforce_reason(body: str) -> str:
    """The words of a Salesforce REST error body ([{"errorCode", "message"}])."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200] or "no reason given"
    errors = _errors_in(data)
    return _words_of(errors) if errors else json.dumps(data)[:300]


def _attention_words(errors: Sequence[Mapping[str, Any]], subject: str) -> str | None:
    """Needs-attention words when an error is one a person must fix, else None."""
    for error in errors:
        advice = NEEDS_A_PERSON.get(_code_of(error))
        if advice:
            return f"Salesforce refused {subject} ({_words_of([error])}). {advice}"[:500]
    return None


class SalesforceClient:
    """Calls to one org's REST API for one integration, paced to its request
    budget. A 401 renews the access token once at the integration's login host
    (stored encrypted on the integration, saved with the caller's commit) and
    repeats the call; a second 401, or a refused renewal, needs a person to
    connect again."""

    def __init__(self, integration: Integration):
        self.integration = integration
        stored = secrets_of(integration)
        self.access_token = str(stored.get("access_token") or "")
        self.refresh_token = str(stored.get("refresh_token") or "")
        self.api = Api(
            (integration.options or {}).get("instance_url", ""),
            {"Accept": "application/json"},
            SALESFORCE,
            integration=integration,
        )
        self.renewed = False

    def call(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[requests.Response | None, Result]:
        response, result = self._call_once(method, path, **kwargs)
        if response is None or response.status_code != 401 or self.renewed:
            return response, self._read(response, result)
        refused = self._renew()
        if refused is not None:
            return None, refused
        response, result = self._call_once(method, path, **kwargs)
        return response, self._read(response, result)

    def _call_once(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[requests.Response | None, Result]:
        shown = {"method": method, "Authorization": f"Bearer {mask(self.access_token)}"}
        headers = {"Authorization": f"Bearer {self.access_token}"}
        return self.api.call(method, path, shown_headers=shown, headers=headers, **kwargs)

    def _read(self, response: requests.Response | None, result: Result) -> Result:
        """Salesforce's own reading of a whole request's answer on top of the shared
        mapping: the org's limit is throttling; configuration and permission
        refusals need a person."""
        if response is None or result.delivered:
            return result
        status = response.status_code
        body = result.response_body or ""
        reason = _salesforce_reason(body)
        result.error = f"Salesforce answered HTTP {status}: {reason}"[:500]
        try:
            errors = _errors_in(json.loads(body))
        except ValueError:
            errors = []
        codes = [_code_of(e) for e in errors]
        if status == 401:
            result.needs_attention = (
                "Salesforce refused the access token even after renewing it (HTTP 401); "
                "connect with Salesforce again."
            )
        elif REQUEST_LIMIT_EXCEEDED in codes:
            daily = "TotalRequests" in reason
            wait = DAILY_LIMIT_WAIT if daily else CONCURRENT_LIMIT_WAIT
            result.needs_attention = None
            result.throttled = True
            result.retry_after = wait
            result.error = (
                f"Salesforce's {'daily ' if daily else ''}API request limit of this org is "
                f"used up ({reason}); retrying in {wait // 60 or wait} "
                f"{'minutes' if wait >= 60 else 'seconds'}."
            )[:500]
        elif status == 403:
            result.needs_attention = (
                f"Salesforce refused the request (HTTP 403: {reason}); check the connected "
                "user's access to ServiceMax technicians."
            )[:500]
        elif status in (400, 404):
            # A whole request refused: no one message is to blame, and sending it
            # again changes nothing until someone changes the org or Fleethook.
            result.needs_attention = (
                _attention_words(errors, "the update")
                or (f"Salesforce refused the update (HTTP {status}: {reason}).")[:500]
            )
        return result

    def _renew(self) -> Result | None:
        """Renew the access token at the integration's login host; None when
        renewed, else the failure's Result (a refusal needs attention, an outage is
        retried)."""
        self.renewed = True
        client_id, client_secret = _client()
        response, result = _token_api(login_host_of(self.integration)).call(
            "POST",
            "/services/oauth2/token",
            shown_headers={"method": "POST", "grant_type": "refresh_token"},
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        if response is None:
            result.error = f"Salesforce token renewal failed: {result.error}"[:500]
            return result
        if response.status_code in (400, 401, 403):
            words = _refusal_words(response, renewing=True)
            result.permanent = False
            result.error = words[:500]
            result.needs_attention = words[:500]
            return result
        if not result.delivered:
            result.error = f"Salesforce token renewal failed: {result.error}"[:500]
            return result
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, Mapping) or not answer.get("access_token"):
            result.delivered = False
            result.error = "Salesforce answered the token renewal without an access token."
            result.response_body = None  # never keep a token answer in an attempt record
            return result
        self.access_token = str(answer["access_token"])
        # With refresh token rotation on, Salesforce issues a new refresh token too.
        self.refresh_token = str(answer.get("refresh_token") or self.refresh_token)
        instance_url = str(answer.get("instance_url") or "").rstrip("/")
        _store_tokens(
            self.integration,
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "instance_url": instance_url or self.api.base_url,
            },
        )
        self.api.base_url = instance_url or self.api.base_url
        return None

    def update_technicians(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Result], bool]:
        """One sObject Collections update of these technicians (at most 200, one
        position each): a Result per payload, in order, from Salesforce's answer for
        its record; and whether the call failed as a whole (every payload then
        carries that failure)."""
        records = [
            {
                "attributes": {"type": TECHNICIAN_OBJECT},
                "id": payload["technician_id"],
                LATITUDE: payload["latitude"],
                LONGITUDE: payload["longitude"],
                CAPTURED_ON: payload["captured_on"],
            }
            for payload in payloads
        ]
        response, result = self.call(
            "PATCH", COLLECTIONS_PATH, json={"allOrNone": False, "records": records}
        )
        if response is None or not result.delivered:
            return [dataclasses.replace(result) for _ in payloads], True
        try:
            answers = response.json()
        except ValueError:
            answers = None
        if not isinstance(answers, list):
            answers = []
        results = [
            _record_result(
                result, answers[i] if i < len(answers) else None, str(p["technician_id"])
            )
            for i, p in enumerate(payloads)
        ]
        return results, False


def _record_result(call: Result, answer: Any, technician_id: str) -> Result:
    """The Result of one record of a Collections call (its SaveResult)."""
    body = json.dumps(answer)[:MAX_RESPONSE_BYTES]
    if isinstance(answer, Mapping) and answer.get("success") is True:
        return dataclasses.replace(call, response_body=body)
    # The call's status stays (200): the engine reads a failure without one as "no
    # answer", a failure of the provider rather than of this record.
    failed = dataclasses.replace(call, delivered=False, response_body=body)
    if not isinstance(answer, Mapping):
        failed.error = f"Salesforce answered without a result for technician {technician_id}."
        return failed
    errors = _errors_in(answer.get("errors") or [])
    codes = {_code_of(e) for e in errors}
    words = _words_of(errors)
    failed.error = f"Salesforce refused technician {technician_id}: {words}"[:500]
    attention = _attention_words(
        [e for e in errors if _code_of(e) != "NOT_FOUND"], f"technician {technician_id}"
    )
    if attention:
        failed.needs_attention = attention
    elif codes & RECORD_GONE:
        failed.permanent = True
        failed.error = (
            f"Technician {technician_id} cannot be updated: Salesforce says {words}. Map the "
            "driver to an existing technician on the integration's page."
        )[:500]
    elif codes & RECORD_REFUSED:
        failed.permanent = True
    return failed


def _fix_time(payload: Mapping[str, Any]) -> datetime:
    return parse_rfc3339(payload.get("captured_on")) or datetime.min.replace(tzinfo=UTC)


def _superseded(newest: Result, newest_message: OutboxMessage) -> Result:
    """What an older position of a technician comes to when a newer one of the
    same batch went instead: the newer one's outcome, said so."""
    if not newest.delivered:
        return dataclasses.replace(newest)
    note = {
        "superseded_by": newest_message.message_id,
        "reason": "A newer position of this technician went in the same call.",
    }
    return dataclasses.replace(newest, response_body=json.dumps(note))


# --- The provider ---------------------------------------------------------------


class ServiceMax:
    key = "servicemax"
    name = "ServiceMax"
    software_type = "Field Service Management"
    requirements = (
        "A Salesforce login with ServiceMax installed and API access; technicians' "
        "records matched to your drivers."
    )
    receives_locations = True
    # The login host is chosen before signing in (the connect page) and shown on
    # the integration's page; the integration itself is made by the sign-in only.
    fields: tuple[Field, ...] = (
        Field(
            "login_host",
            "Salesforce login",
            "select",
            "Where your org signs in: production, a sandbox, or your own My Domain.",
            required=False,
            choices=LOGIN_HOSTS,
        ),
        Field(
            "my_domain",
            "My Domain address",
            "text",
            f"My Domain only: your org's address, like {MY_DOMAIN_EXAMPLE}.",
            required=False,
        ),
    )
    secret_fields: frozenset[str] = frozenset()
    requests_per_minute: int = 10
    budget_source: str = (
        'Salesforce Developer Limits and Allocations Quick Reference, "API Request '
        "Limits and Allocations\": an org's API requests are counted over a rolling 24 "
        "hours (Enterprise and Professional 100,000 + 1,000 per license, Developer "
        "Edition 15,000), with no per-minute limit. Chosen: 10 a minute = 14,400 a day, "
        "under Developer Edition's allocation and about 14% of the smallest production "
        "one; one sObject Collections call (one request) updates up to 200 technicians."
    )
    latest_value_types: frozenset[str] = frozenset({"location"})
    setup_steps: tuple[str, ...] = (
        "Once per Fleethook, its operator registers a connected app (or External Client "
        "App) in Salesforce: Callback URL = this Fleethook's public address "
        "(FLEETHOOK_PUBLIC_URL) followed by /integrations/servicemax/callback, as shown "
        'below; OAuth scopes "Manage user data via APIs (api)" and "Perform requests '
        'at any time (refresh_token, offline_access)"; "Require Proof Key for Code '
        'Exchange (PKCE)" on. Its Consumer Key and Secret go in '
        "FLEETHOOK_SALESFORCE_CLIENT_ID and FLEETHOOK_SALESFORCE_CLIENT_SECRET.",
        "In your org, a Salesforce admin installs that connected app (Setup → Connected "
        "Apps OAuth Usage → Install; it is listed there once an admin has signed in with "
        "it) and lets the connecting user use it (Manage Connected Apps → Edit Policies, "
        "and their profile or permission set). Since September 2025 Salesforce blocks "
        'uninstalled connected apps for anyone without the "Approve Uninstalled '
        'Connected Apps" permission (Salesforce Help: "Prepare for Connected App Usage '
        'Restrictions Change").',
        f"The Salesforce user who connects needs API Enabled, Edit on ServiceMax's "
        f"Technician object ({TECHNICIAN_OBJECT}) and its records, and Edit access to "
        f"the fields {FIELDS_WRITTEN}; without them the integration stops with Needs "
        "attention and says which is missing.",
        "Choose where your org signs in — Production (login.salesforce.com), Sandbox "
        "(test.salesforce.com) or your My Domain (https://yourname.my.salesforce.com) — "
        "then Connect with Salesforce and allow access.",
        "On the integration's page, map each driver to a technician, one line each: "
        '"Driver name = Technician record Id" (the 15- or 18-character Id in the '
        "technician record's address). Drivers seen without a technician are listed "
        "there; their positions are not sent.",
        "Sign the release form: it records who (name and title), when and from which "
        "address allowed Fleethook to send your vehicles' positions to Salesforce — "
        "each mapped technician's latitude, longitude and fix time, replacing the last "
        "one. Nothing is sent before it is signed.",
    )

    def check_credentials(self, integration: Integration) -> None:
        """GET the API's version resource with the access token (renewed once on a
        401); an integration made without the Salesforce sign-in is refused. A bad
        login host raises ValidationError naming its field; a login host other than
        the one the tokens came from is refused (sign in again there)."""
        stored = secrets_of(integration)
        if not stored.get("access_token") or not (integration.options or {}).get("instance_url"):
            raise ProviderRejected(CONNECT_ONLY)
        login = login_host_of(integration)
        signed_in_at = (integration.provider_state or {}).get("signed_in_at")
        if signed_in_at and login_host_from(signed_in_at) != login:
            raise ProviderRejected(
                f"This integration signed in at {login_host_from(signed_in_at).url}; to use "
                f"{login.url} instead, use Sign in to Salesforce again and choose it there. "
                "Nothing was changed."
            )
        _, result = SalesforceClient(integration).call("GET", f"/services/data/{API_VERSION}/")
        if not result.delivered:
            reason = result.needs_attention or result.error or "no answer"
            raise ProviderRejected(f"Salesforce did not accept the connection: {reason}")

    def payload_for(self, integration: Integration, event: Any) -> dict[str, Any] | None:
        """Positions (and, when connected, each vehicle's current one) of vehicles
        whose driver is mapped to a technician; a driver without one is listed on
        the integration's page instead. A late position is not sent."""
        if event.event_type.key not in ("location", CURRENT_STATE):
            return None
        vehicle = event.vehicle
        driver = vehicle.driver
        if not driver or vehicle.latitude is None or vehicle.longitude is None:
            return None
        previous = (event.report or {}).get("previous_fix_time")
        if previous is not None and vehicle.fix_time is not None and vehicle.fix_time < previous:
            return None
        technician_id = technician_of(integration, str(driver.get("name") or ""))
        if technician_id is None:
            _note_unmapped(integration, driver, event.occurred_at or utcnow())
            return None
        return {
            "type": "location",
            "technician_id": technician_id,
            "driver": driver.get("name"),
            "vin": vehicle.vin,
            "latitude": vehicle.latitude,
            "longitude": vehicle.longitude,
            "captured_on": format_rfc3339(vehicle.fix_time or event.occurred_at),
        }

    def send(
        self, integration: Integration, messages: Sequence[OutboxMessage], stop_at: float
    ) -> list[Result]:
        """In order, one sObject Collections call per run of messages naming at most
        200 technicians, the newest position of each technician sent; no call
        starts after `stop_at` (the first always does), and none after one that
        failed as a whole (the rest wait)."""
        client = SalesforceClient(integration)
        results: list[Result] = []
        start = 0
        while start < len(messages):
            if results and time.monotonic() > stop_at:
                break
            run = _next_run(messages, start)
            run_results, call_failed = _send_run(client, run)
            results += run_results
            start += len(run)
            if call_failed:
                break  # later runs wait behind it
        return results

    def unmapped_drivers(self, integration: Integration) -> list[dict[str, Any]]:
        """For the integration's page: drivers without a technician
        ([{"id", "name", "since"}])."""
        return unmapped_drivers(integration)

    def callback_url_for_setup(self) -> str:
        """For the connect form (in a request): the Callback URL the connected app
        must list, or what the operator must set first."""
        public = str(current_app.config.get("FLEETHOOK_PUBLIC_URL") or "").rstrip("/")
        if not public:
            return "(set FLEETHOOK_PUBLIC_URL first: the Callback URL starts with it)"
        return public + url_for("integrations.salesforce_callback")

    def revoke(self, integration: Integration) -> None:
        revoke(integration)


def _next_run(messages: Sequence[OutboxMessage], start: int) -> Sequence[OutboxMessage]:
    """The messages from `start` that name at most RECORDS_PER_CALL technicians."""
    technicians: set[str] = set()
    end = start
    while end < len(messages):
        technician = str(messages[end].payload.get("technician_id"))
        if technician not in technicians and len(technicians) == RECORDS_PER_CALL:
            break
        technicians.add(technician)
        end += 1
    return messages[start:end]


def _send_run(client: SalesforceClient, run: Sequence[OutboxMessage]) -> tuple[list[Result], bool]:
    """One call for the newest position of each technician in `run`: a Result per
    message of `run`, in order, and whether the call failed as a whole."""
    newest: dict[str, int] = {}  # technician → index in run of its newest position
    unsendable: dict[int, Result] = {}
    for index, message in enumerate(run):
        payload = message.payload
        if payload.get("type") != "location" or not payload.get("technician_id"):
            unsendable[index] = Result(
                delivered=False,
                permanent=True,
                error=f"Not a ServiceMax message ({payload.get('type')!r}).",
            )
            continue
        technician = str(payload["technician_id"])
        kept = newest.get(technician)
        # Ties go to the later message: it was queued after.
        if kept is None or _fix_time(payload) >= _fix_time(run[kept].payload):
            newest[technician] = index
    sent = sorted(newest.values())
    answered: dict[int, Result] = {}
    call_failed = False
    if sent:
        answers, call_failed = client.update_technicians([run[i].payload for i in sent])
        answered = dict(zip(sent, answers, strict=True))
    results = []
    for index, message in enumerate(run):
        if index in unsendable:
            results.append(unsendable[index])
        elif index in answered:
            results.append(answered[index])
        else:
            kept = newest[str(message.payload["technician_id"])]
            results.append(_superseded(answered[kept], run[kept]))
    return results, call_failed


SERVICEMAX = ServiceMax()
register(SERVICEMAX)
