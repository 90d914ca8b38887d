"""A fake Salesforce org with ServiceMax installed: the OAuth token endpoint
(authorization_code and refresh_token grants, checking the connected app's client
id and secret and the redirect_uri the code was issued for), the revoke endpoint,
the REST API's version resource and updates of Technician records
(SVMXC__Service_Group_Members__c), all checking the bearer token the way
Salesforce does. One server is both the login URL and the instance URL.

The browser's part of the flow (the authorize page) is not served: a test mints a
code with `issue_code(redirect_uri)` as if the user had signed in. Tokens can be
expired (`expire_access_tokens`) or revoked (`revoke_refresh_tokens`) on demand."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from tests.fakes.base import Answer, FakeProvider, Request

CLIENT_ID = "3MVG9fakeConnectedAppConsumerKey"
CLIENT_SECRET = "fake-consumer-secret-1955279925675241571"
API_VERSION = "v60.0"
TECHNICIAN_OBJECT = "SVMXC__Service_Group_Members__c"
TECHNICIAN_FIELDS = frozenset(
    {"Name", "SVMXC__Latitude__c", "SVMXC__Longitude__c", "SVMXC__Latlong_Captured_On__c"}
)
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _oauth_error(error: str, description: str) -> Answer:
    return Answer(400, {"error": error, "error_description": description})


class FakeSalesforce(FakeProvider):
    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.codes: dict[str, str] = {}  # unused code → the redirect_uri it was issued for
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, str] = {}  # access token → its refresh token
        self.technicians: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.route("POST", r"/services/oauth2/token", self._token)
        self.route("POST", r"/services/oauth2/revoke", self._revoke)
        self.route("GET", rf"/services/data/{API_VERSION}/", self._versions)
        self.route(
            "PATCH", rf"/services/data/{API_VERSION}/sobjects/{TECHNICIAN_OBJECT}/(\w+)",
            self._update_technician,
        )  # fmt: skip

    # --- what tests set up ---------------------------------------------------

    def issue_code(self, redirect_uri: str) -> str:
        """The code Salesforce would put on the callback after the user signs in."""
        code = "aPrx" + secrets.token_urlsafe(24)
        self.codes[code] = redirect_uri
        return code

    def add_technician(self, name: str) -> str:
        """A Technician record; its 18-character Id."""
        record_id = f"a0B5e{next(self._ids):013d}"
        self.technicians[record_id] = {"Name": name}
        return record_id

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (a session timeout)."""
        self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token stops working (revoked by an admin, or expired)."""
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    # --- the OAuth endpoints ---------------------------------------------------

    def _grant(self, refresh_token: str, with_refresh_token: bool) -> Answer:
        access_token = "00D5e000000Fake!AQ" + secrets.token_urlsafe(40)
        self.access_tokens[access_token] = refresh_token
        body: dict[str, Any] = {
            "access_token": access_token,
            "signature": secrets.token_urlsafe(16),
            "scope": "refresh_token api",
            "instance_url": self.url,
            "id": f"{self.url}/id/00D5e000000Fake/0055e000000Fake",
            "token_type": "Bearer",
            "issued_at": "1715701327000",
        }
        if with_refresh_token:
            body["refresh_token"] = refresh_token
        return Answer(200, body)

    def _token(self, request: Request) -> Answer:
        form = request.form
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = form.get("code", "")
            if code not in self.codes:
                return _oauth_error("invalid_grant", "authentication failure")
            if self.codes[code] != form.get("redirect_uri"):
                return _oauth_error(
                    "redirect_uri_mismatch", "redirect_uri must match configuration"
                )
            del self.codes[code]  # a code is good once
            refresh_token = "5Aep861Fake" + secrets.token_urlsafe(40)
            self.refresh_tokens.add(refresh_token)
            return self._grant(refresh_token, with_refresh_token=True)
        if grant == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            if refresh_token not in self.refresh_tokens:
                return _oauth_error("invalid_grant", "expired access/refresh token")
            return self._grant(refresh_token, with_refresh_token=False)
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _revoke(self, request: Request) -> Answer:
        token = request.form.get("token", "")
        if token in self.refresh_tokens:
            self.refresh_tokens.discard(token)
            for access_token, parent in list(self.access_tokens.items()):
                if parent == token:
                    del self.access_tokens[access_token]
            return Answer(200)
        if token in self.access_tokens:
            del self.access_tokens[token]
            return Answer(200)
        return _oauth_error("unsupported_token_type", "this token type is not supported")

    # --- the REST API ----------------------------------------------------------

    def authenticate(self, request: Request) -> Answer | None:
        if not request.path.startswith("/services/data/"):
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.access_tokens:
            return Answer(401, INVALID_SESSION)
        return None

    def _versions(self, request: Request) -> Answer:
        base = f"/services/data/{API_VERSION}"
        return Answer(200, {"sobjects": f"{base}/sobjects", "query": f"{base}/query",
                            "limits": f"{base}/limits"})  # fmt: skip

    def _update_technician(self, request: Request, record_id: str) -> Answer:
        if record_id not in self.technicians:
            return Answer(404, [{"errorCode": "NOT_FOUND",
                                 "message": "The requested resource does not exist"}])  # fmt: skip
        body = request.json
        if not isinstance(body, dict):
            return Answer(400, [{"errorCode": "JSON_PARSER_ERROR",
                                 "message": "The request body is not a JSON object"}])  # fmt: skip
        unknown = sorted(set(body) - TECHNICIAN_FIELDS)
        if unknown:
            message = f"No such column '{unknown[0]}' on sobject of type {TECHNICIAN_OBJECT}"
            return Answer(400, [{"errorCode": "INVALID_FIELD", "message": message}])
        self.technicians[record_id].update(body)
        return Answer(204)
