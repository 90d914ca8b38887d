"""The client of one org's REST API: the Technician fields it writes, up to 200
technicians in one sObject Collections call, the access token renewed once on a
401, and Salesforce's errors read as outcomes the outbox understands.

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
Reference): requests are counted per org over a rolling 24 hours, and "When an
org exceeds a limit, all users in the org can be temporarily blocked … until usage
for the preceding 24 hours drops below the limit" (System Overview: API Usage).

From ServiceMax's managed package (its field names; no public API guide found):
the Technician object `SVMXC__Service_Group_Members__c` and its fields
`SVMXC__Latitude__c`, `SVMXC__Longitude__c` and `SVMXC__Latlong_Captured_On__c`
(assumed a DateTime, sent as RFC 3339 UTC).

Our decisions: records are answered one by one: a configuration or permission
refusal (INVALID_FIELD, INVALID_FIELD_FOR_INSERT_UPDATE, INSUFFICIENT_ACCESS_*, an
unknown object type) needs attention with Salesforce's words and what to do; a
technician record that is gone (ENTITY_IS_DELETED, NOT_FOUND, a malformed Id) ends
that message dead with the reason; a record a validation rule refuses ends dead
too; anything else is retried. So the messages after a failed record in the same
call may be delivered: Salesforce wrote them. REQUEST_LIMIT_EXCEEDED is
throttling, not attention: the daily allocation waits 10 minutes (Salesforce
sends no Retry-After; the rolling window frees requests as the day's first ones
age out), the limit on long-running concurrent requests 30 seconds. The access
token is renewed at most once per drain.

Assumed (no document settles it): the Technician fields' types; what Collections
answers for an Id that never existed (ENTITY_IS_DELETED or NOT_FOUND, both read as
"gone") and for an object type the org lacks (INVALID_TYPE or NOT_FOUND, both
"needs attention"); how long to wait after REQUEST_LIMIT_EXCEEDED."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from integrations.base import Api, secrets_of
from integrations.models import Integration
from integrations.servicemax.signin import (
    SALESFORCE,
    client_credentials,
    login_host_of,
    refusal_words,
    store_tokens,
    token_api,
)
from outbox.answers import MAX_RESPONSE_BODY_BYTES
from outbox.registry import Result

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
        headers = {"Authorization": f"Bearer {self.access_token}"}
        return self.api.call(method, path, headers=headers, **kwargs)

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
        client_id, client_secret = client_credentials()
        response, result = token_api(login_host_of(self.integration)).call(
            "POST",
            "/services/oauth2/token",
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
            words = refusal_words(response, renewing=True)
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
        store_tokens(
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
    body = json.dumps(answer)[:MAX_RESPONSE_BODY_BYTES]
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
