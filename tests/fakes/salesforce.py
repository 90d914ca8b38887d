"""A fake Salesforce org with ServiceMax installed, written from Salesforce's
published documentation (not from our client): one server is both a login host
and the org's instance URL (start two for production and a sandbox).

- The authorize step (Salesforce Help, "OAuth 2.0 Web Server Flow for Web App
  Integration"): `GET /services/oauth2/authorize` checks `client_id`, that
  `redirect_uri` is a Callback URL of the connected app, `response_type=code`, and
  the PKCE `code_challenge` / `code_challenge_method` (RFC 7636, "Proof Key for
  Code Exchange"); the user signs in and allows at once, and the browser goes back
  to `redirect_uri` with `code` and `state`. With `require_pkce` (the connected
  app's "Require Proof Key for Code Exchange (PKCE)") a request without a
  challenge is refused.
- The token endpoint: `authorization_code` (the code once, for the client it was
  issued to and the `redirect_uri` it was issued for; a code issued with a
  challenge needs the `code_verifier` whose S256 hash it is) and `refresh_token`
  grants; the revoke endpoint. OAuth errors as `{"error", "error_description"}`.
- The REST API: the version resource; a Technician record
  (SVMXC__Service_Group_Members__c) updated alone (`PATCH
  /sobjects/{type}/{id}`, 204) or up to 200 at once ("Update Records Using sObject
  Collections": `PATCH /composite/sobjects`, `{"allOrNone", "records"}`, a
  SaveResult per record in order, `[{"id", "success", "errors": [{"statusCode",
  "message", "fields"}]}]`); the bearer token checked, 401 INVALID_SESSION_ID.
- Limits ("API Request Limits and Allocations"): REST requests count against the
  org's allocation over a rolling 24 hours — Developer Edition's 15,000 by
  default — and past it Salesforce answers 403 REQUEST_LIMIT_EXCEEDED (not 429);
  OAuth requests do not count.

A test can still mint a code without the browser (`issue_code`), switch a field's
field-level security off (`field_security`), delete a technician, and expire or
revoke tokens."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import Answer, FakeProvider, Request

CLIENT_ID = "3MVG9fakeConnectedAppConsumerKey"
CLIENT_SECRET = "fake-consumer-secret-1955279925675241571"
API_VERSION = "v60.0"
TECHNICIAN_OBJECT = "SVMXC__Service_Group_Members__c"
LATITUDE, LONGITUDE, CAPTURED_ON = (
    "SVMXC__Latitude__c",
    "SVMXC__Longitude__c",
    "SVMXC__Latlong_Captured_On__c",
)
TECHNICIAN_FIELDS = frozenset({"Name", LATITUDE, LONGITUDE, CAPTURED_ON})
NUMBER_FIELDS = frozenset({LATITUDE, LONGITUDE})
DATETIME_FIELDS = frozenset({CAPTURED_ON})
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
# "The list can contain up to 200 objects."
COLLECTION_LIMIT = 200
# Developer Edition's allocation: the smallest documented one.
DAILY_API_REQUESTS = 15_000
DAY_SECONDS = 24 * 60 * 60
# RFC 7636 §4.1: code_verifier = 43*128unreserved.
CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# Salesforce's record Ids: 15 or 18 letters and digits.
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def _oauth_error(error: str, description: str) -> Answer:
    return Answer(400, {"error": error, "error_description": description})


def _rest_error(status: int, code: str, message: str, fields: list[str] | None = None) -> Answer:
    error: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        error["fields"] = fields
    return Answer(status, [error])


def _record_error(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": fields}],
    }


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str | None


class FakeSalesforce(FakeProvider):
    def __init__(
        self,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        callback_urls: set[str] | None = None,
        require_pkce: bool = False,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        # The connected app's Callback URLs; None: any (tests that do not care).
        self.callback_urls = callback_urls
        self.require_pkce = require_pkce
        self.codes: dict[str, _Code] = {}  # unused code → what it was issued for
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, str] = {}  # access token → its refresh token
        self.technicians: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()  # technician Ids in the recycle bin
        self.read_only_fields: set[str] = set()  # field-level security: read only
        self._ids = itertools.count(1)
        self.throttle(DAILY_API_REQUESTS, DAY_SECONDS)
        self.route("GET", r"/services/oauth2/authorize", self._authorize)
        self.route("POST", r"/services/oauth2/token", self._token)
        self.route("POST", r"/services/oauth2/revoke", self._revoke)
        self.route("GET", rf"/services/data/{API_VERSION}/", self._versions)
        self.route("PATCH", rf"/services/data/{API_VERSION}/composite/sobjects", self._collection)
        self.route("PATCH", rf"/services/data/{API_VERSION}/sobjects/(\w+)/(\w+)", self._update_one)

    # --- what tests set up ---------------------------------------------------

    def issue_code(self, redirect_uri: str, code_challenge: str | None = None) -> str:
        """The code Salesforce would put on the callback after the user signs in."""
        code = "aPrx" + secrets.token_urlsafe(24)
        self.codes[code] = _Code(self.client_id, redirect_uri, code_challenge)
        return code

    def add_technician(self, name: str) -> str:
        """A Technician record; its 18-character Id."""
        record_id = f"a0B5e{next(self._ids):013d}"
        self.technicians[record_id] = {"Name": name}
        return record_id

    def delete_technician(self, record_id: str) -> None:
        """Into the recycle bin: updates answer ENTITY_IS_DELETED."""
        self.deleted.add(record_id)

    def field_security(self, field: str, editable: bool) -> None:
        """Switch field-level security (Edit) of a Technician field for the user."""
        if editable:
            self.read_only_fields.discard(field)
        else:
            self.read_only_fields.add(field)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (a session timeout)."""
        self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token stops working (revoked by an admin, or expired)."""
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    def hosts(self) -> set[str]:
        """The Host headers of every request received (which login host was used)."""
        return {r.headers.get("Host", "") for r in self.received()}

    # --- limits ----------------------------------------------------------------

    def _over_limit(self, request: Request) -> Answer | None:
        # Only the REST API counts against the org's allocation.
        if not request.path.startswith("/services/data/"):
            return None
        return super()._over_limit(request)

    def throttled(self, retry_after: float, request: Request) -> Answer:
        # Documented: 403 with REQUEST_LIMIT_EXCEEDED, no Retry-After. Guess: the
        # message as seen from real orgs for the daily allocation.
        return _rest_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    # --- the OAuth endpoints ---------------------------------------------------

    def _authorize(self, request: Request) -> Answer:
        query = {k: v[0] for k, v in request.query.items()}
        redirect_uri = query.get("redirect_uri", "")
        # Guess: an unknown app or callback is an error page, not a redirect (the
        # redirect_uri cannot be trusted); its wording is Salesforce's error code.
        if query.get("client_id") != self.client_id:
            return Answer(
                400, b"error=invalid_client_id&error_description=client+identifier+invalid"
            )
        if not redirect_uri or (
            self.callback_urls is not None and redirect_uri not in self.callback_urls
        ):
            return Answer(
                400,
                b"error=redirect_uri_mismatch&error_description=redirect_uri+must+match+configuration",
            )
        state = query.get("state")

        def back(**params: str) -> Answer:
            if state is not None:
                params["state"] = state
            return Answer(302, b"", {"Location": f"{redirect_uri}?{urlencode(params)}"})

        if query.get("response_type") != "code":
            return back(
                error="unsupported_response_type", error_description="response type not supported"
            )
        challenge = query.get("code_challenge")
        # RFC 7636 §4.3: without a method the challenge is "plain".
        method = query.get("code_challenge_method", "plain")
        if challenge is None and self.require_pkce:
            # Guess: the wording users report when the app requires PKCE.
            return back(
                error="invalid_request", error_description="missing required code challenge"
            )
        if challenge is not None and (
            method != "S256" or not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge)
        ):
            # Guess: Salesforce's guide describes only the SHA256 challenge; a plain
            # or malformed one is refused as an invalid request.
            return back(error="invalid_request", error_description="invalid code challenge")
        return back(code=self.issue_code(redirect_uri, challenge))

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
            # A code is good once: gone whatever the answer (Guess for refusals).
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None or issued.client_id != form.get("client_id"):
                return _oauth_error("invalid_grant", "authentication failure")
            if issued.redirect_uri != form.get("redirect_uri"):
                return _oauth_error(
                    "redirect_uri_mismatch", "redirect_uri must match configuration"
                )
            if issued.code_challenge is not None:
                verifier = form.get("code_verifier")
                # Documented: a missing verifier fails with invalid_grant. A wrong
                # one: Salesforce's guide says invalid_request, but orgs answer
                # invalid_grant "invalid code verifier" (as here); Guess: the same
                # description for a missing one.
                if (
                    verifier is None
                    or not CODE_VERIFIER.fullmatch(verifier)
                    or s256(verifier) != issued.code_challenge
                ):
                    return _oauth_error("invalid_grant", "invalid code verifier")
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
        return Answer(
            200,
            {"sobjects": f"{base}/sobjects", "query": f"{base}/query", "limits": f"{base}/limits"},
        )

    def _fields_problem(self, sobject: str, fields: dict[str, Any]) -> Answer | None:
        """A request-level refusal of a record's fields: an unknown object type or
        field (Guess: a whole-request 400 in Collections too, as when the JSON is
        read), or a value of the wrong type (Guess: JSON_PARSER_ERROR)."""
        if sobject != TECHNICIAN_OBJECT:
            # Guess: Salesforce's usual wording for an object type the org lacks.
            return _rest_error(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        for name, value in fields.items():
            if name not in TECHNICIAN_FIELDS:
                message = f"No such column '{name}' on sobject of type {sobject}"
                return _rest_error(400, "INVALID_FIELD", message)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if name in NUMBER_FIELDS and value is not None and not number:
                return _rest_error(400, "JSON_PARSER_ERROR", f"Cannot deserialize {name}")
            if name in DATETIME_FIELDS and value is not None and not _is_datetime(value):
                return _rest_error(400, "JSON_PARSER_ERROR", f"Cannot deserialize {name}")
        return None

    def _record_outcome(self, record_id: Any, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The record-level refusal of one update (a SaveResult's errors), or None."""
        if not isinstance(record_id, str) or not RECORD_ID.fullmatch(record_id):
            return _record_error("MALFORMED_ID", f"id value of incorrect type: {record_id}", ["Id"])
        if record_id in self.deleted or record_id not in self.technicians:
            # Guess for an Id that never existed: the same as a deleted one.
            return _record_error("ENTITY_IS_DELETED", "entity is deleted", [])
        locked = sorted(set(fields) & self.read_only_fields)
        if locked:
            return _record_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                locked,
            )
        return None

    def _update_one(self, request: Request, sobject: str, record_id: str) -> Answer:
        body = request.json
        if not isinstance(body, dict):
            return _rest_error(400, "JSON_PARSER_ERROR", "The request body is not a JSON object")
        problem = self._fields_problem(sobject, body)
        if problem is not None:
            return problem
        if record_id not in self.technicians or record_id in self.deleted:
            # Documented for an unknown record; Guess: a deleted one answers the same.
            return _rest_error(404, "NOT_FOUND", "The requested resource does not exist")
        refused = self._record_outcome(record_id, body)
        if refused is not None:
            error = refused["errors"][0]
            return _rest_error(400, error["statusCode"], error["message"], error["fields"])
        self.technicians[record_id].update(body)
        return Answer(204)

    def _collection(self, request: Request) -> Answer:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return _rest_error(400, "JSON_PARSER_ERROR", "The request body needs a records list")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            return _rest_error(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        records = body["records"]
        if len(records) > COLLECTION_LIMIT:
            # Guess: the wording Salesforce answers past the documented 200.
            return _rest_error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        updates: list[tuple[str, dict[str, Any]]] = []
        results: list[dict[str, Any]] = []
        for record in records:
            if not isinstance(record, dict):
                return _rest_error(400, "JSON_PARSER_ERROR", "Each record must be an object")
            attributes = record.get("attributes")
            if not isinstance(attributes, dict) or not attributes.get("type"):
                # Documented: "Each object must contain an attributes map. The map must
                # contain a value for type." Guess: refused as unreadable JSON.
                return _rest_error(400, "JSON_PARSER_ERROR", "No attributes type on a record")
            fields = {k: v for k, v in record.items() if k not in ("attributes", "id")}
            problem = self._fields_problem(str(attributes["type"]), fields)
            if problem is not None:
                return problem
            refused = self._record_outcome(record.get("id"), fields)
            results.append(refused or {"id": record["id"], "success": True, "errors": []})
            updates.append((str(record.get("id")), fields))
        if all_or_none and any(not r["success"] for r in results):
            rolled_back = _record_error(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
                [],
            )
            return Answer(200, [r if not r["success"] else rolled_back for r in results])
        for (record_id, fields), result in zip(updates, results, strict=True):
            if result["success"]:
                self.technicians[record_id].update(fields)
        return Answer(200, results)


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
