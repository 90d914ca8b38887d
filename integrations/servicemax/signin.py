"""Where one ServiceMax integration's Salesforce org signs in, and the OAuth 2.0
web-server flow with PKCE at that login host: the authorize URL, `state`, the code
exchange, the stored tokens, their renewal's words and their revocation, and the
callback URL built from FLEETHOOK_PUBLIC_URL.

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

Our decisions, not the provider's:
- The code verifier lives in the user's session only as Fernet ciphertext (the
  session is a signed cookie): it is never in a URL and only the server reads it.
- The callback URL is FLEETHOOK_PUBLIC_URL + the callback's path; without it,
  development builds it from the request (and logs that it does), production
  refuses to start a sign-in.
- The login host is the integration's setting; authorize, token, refresh and
  revoke all go to it. Changing it needs a new sign-in (the tokens belong to the
  org they came from), so a settings change of the host alone is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from cryptography.fernet import InvalidToken
from flask import current_app

from core.encryption import decrypt, encrypt
from core.errors import ValidationError
from integrations.base import Api, ProviderRejected, store_secrets
from integrations.models import Integration

log = logging.getLogger(__name__)

SALESFORCE = "Salesforce"

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
    client_id, _ = client_credentials()
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


def client_credentials() -> tuple[str, str]:
    config = current_app.config
    return config["FLEETHOOK_SALESFORCE_CLIENT_ID"], config["FLEETHOOK_SALESFORCE_CLIENT_SECRET"]


def token_api(login: LoginHost) -> Api:
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


def refusal_words(response: requests.Response, renewing: bool) -> str:
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


def exchange_code(code: str, sign_in: SignIn) -> dict[str, str]:
    """The tokens and instance URL for an authorization code, or ProviderRejected."""
    client_id, client_secret = client_credentials()
    response, result = token_api(sign_in.login).call(
        "POST",
        "/services/oauth2/token",
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
        raise ProviderRejected(refusal_words(response, renewing=False))
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


def store_tokens(integration: Integration, tokens: Mapping[str, str]) -> None:
    store_secrets(
        integration,
        {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]},
    )
    integration.options = {**(integration.options or {}), "instance_url": tokens["instance_url"]}


def signed_in_at(integration: Integration, login: LoginHost) -> None:
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


def revoke_token(integration_id: int | None, login: LoginHost, token: str) -> None:
    _, result = token_api(login).call(
        "POST",
        "/services/oauth2/revoke",
        data={"token": token},
    )
    if not result.delivered:
        log.warning(
            "Salesforce did not revoke the token of integration %s: %s",
            integration_id,
            result.error,
        )
