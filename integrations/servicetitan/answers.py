"""How ServiceTitan's answer to a batch of pings becomes one result per message.

Batching and order: a drain's batch goes out as one request, so all its messages
were attempted together, and the results list has one entry per message, in
order. A whole-request failure (HTTP error, timeout) is every message's result.
Under 2xx each message gets its item's status — a retried "Fail" in the middle
does not turn the later messages, which ServiceTitan accepted, into failures:
reporting them delivered (behind one ping that will be retried) is better than
sending accepted pings again. The claim's lane rule then holds back only that
vehicle's later pings until its retry; when a backlog forms, only each
vehicle's newest position is sent (latest_value_types).

Decisions and assumptions (no documentation settles them):
- A "Fail" item is retried on the schedule, except when its message says the
  data is invalid ("invalid", "required", "must be", "out of range", "malformed"):
  that message is dead with ServiceTitan's words. A "Fail" saying the ping is a
  duplicate or already exists means an earlier attempt got through (at least
  once: the answer to it was lost), so it counts as delivered.
- Whole-request answers: 401 drops the token and tries once more with a new one;
  a second 401 needs attention (the credentials). 403 (the app is not connected
  to the tenant, or not allowed) and 404 (no such tenant or GPS provider) need
  attention, with ServiceTitan's words and what to do in ServiceTitan: nothing
  is lost, the queue waits for a person. 429, 5xx and timeouts are retried
  (Retry-After honoured).
- 400, read from its `errors`: an error naming one ping of the batch (a key like
  "[3].latitude" or "$[3].latitude") and a field that holds that position's own
  data (unitId, unitName, eventTime, latitude, longitude, speed, externalId)
  makes that ping dead with ServiceTitan's words; the batch's other pings were
  not recorded (ASP.NET-style validation refuses the request as a whole —
  assumed), so they are sent again at once without it (once per send; later,
  if there is no time left). Any other 400 — no errors, an error on the request
  itself, or on a field we fill the same way for every ping (the address
  strings, message, statusMessage, isNew) — is a refusal of our request's
  format, which no retry and no single ping can mend, and which would otherwise
  kill every position: the integration needs attention with ServiceTitan's
  words, and its positions wait (latest-wins keeps each vehicle's newest)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from integrations.servicetitan.client import Client, Settings
from outbox.failures import shorten
from outbox.models import OutboxMessage
from outbox.registry import Result

# Words in a "Fail" item's message: the ping went in earlier / the ping is bad.
ALREADY_RECORDED = re.compile(r"duplicate|already (exists|recorded|received|processed)", re.I)
INVALID_DATA = re.compile(r"invalid|required|must be|out of range|malformed|not valid", re.I)
# A 400's error key that names one ping of the batch: "[3].latitude",
# "$[3].latitude" (System.Text.Json), "pings[3].Latitude" (a parameter's name).
ITEM_ERROR = re.compile(r"[^\[\]]*\[(\d+)\](?:\.(\w+))?")
# The fields that hold a position's own data: an error on one of them is that
# ping's fault. Every other field we fill the same way for every ping.
POSITION_FIELDS = frozenset(
    {"unitid", "unitname", "eventtime", "latitude", "longitude", "speed", "externalid"}
)


def results_of(
    client: Client,
    settings: Settings,
    items: list[dict[str, Any]],
    stop_at: float,
    resend: bool = True,
) -> list[Result]:
    """Post the pings and read ServiceTitan's answer into one result per ping. A
    400 naming some pings for their own data: those are dead, and the others go
    again at once (`resend`, once) or on the schedule (see the module)."""
    response, result = client.post_pings_once_more_on_401(items, stop_at)
    if response is None or (response.status_code != 400 and not result.delivered):
        return [_whole_request(settings, response, result) for _ in items]
    if response.status_code != 400:
        return _per_item(items, response, result)
    refusal = _Refusal.of(response, len(items))
    if refusal.format_words is not None:
        return [replace(result, needs_attention=_format_problem(refusal)) for _ in items]
    by_position = {
        position: replace(
            result, permanent=True, error=shorten(f"ServiceTitan refused this ping: {words}", 500)
        )
        for position, words in refusal.dead.items()
    }
    rest = [position for position in range(len(items)) if position not in refusal.dead]
    if rest and resend and time.monotonic() <= stop_at:
        again = results_of(client, settings, [items[p] for p in rest], stop_at, resend=False)
        # Sent once already: a request the budget had no room for is still an attempt.
        by_position.update(
            (p, _not_recorded(r) if r.not_sent else r) for p, r in zip(rest, again, strict=True)
        )
    else:
        by_position.update((p, _not_recorded(result)) for p in rest)
    return [by_position[position] for position in range(len(items))]


def each_result(messages: Sequence[OutboxMessage], result: Result) -> list[Result]:
    """The one result of a whole request, for every message it carried."""
    return [replace(result) for _ in messages]


def _words(response: requests.Response) -> str:
    """ServiceTitan's own words from an error answer (an ApiErrorResponse: title,
    detail, and each error's messages), shortened for a status line."""
    try:
        body = response.json()
    except ValueError:
        return shorten(response.text.strip(), 200)
    if not isinstance(body, Mapping):
        return shorten(json.dumps(body), 200)
    parts = [str(body[key]) for key in ("title", "detail") if body.get(key)]
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        for name, messages in errors.items():
            said = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(f"{name}: {said}" if name else said)
    return shorten(" — ".join(parts), 200)


def access_problem(settings: Settings, response: requests.Response) -> str:
    """What a 403 or 404 means, in ServiceTitan's words, and what to do about it."""
    said = _words(response) or "no reason given"
    if response.status_code == 404:
        return (
            f'ServiceTitan found no GPS provider "{settings.gps_provider}" for tenant '
            f"{settings.tenant} (HTTP 404: {said}). Create it in ServiceTitan under "
            "Settings → Integrations → GPS (Add, then Activate), select it for the app "
            "under API Application Access, and enter its name as the GPS Provider here."
        )
    return (
        f"ServiceTitan refused access to tenant {settings.tenant} (HTTP 403: {said}). "
        "Connect the app under Settings → Integrations → API Application Access, allow "
        f'its access and select the GPS provider "{settings.gps_provider}".'
    )


def _whole_request(
    settings: Settings, response: requests.Response | None, result: Result
) -> Result:
    """The result of a request that failed as a whole: 403 and 404 need a person
    (see _access_problem); the rest as result_of read them."""
    if response is not None and response.status_code in (403, 404):
        words = access_problem(settings, response)
        return replace(result, needs_attention=words, error=shorten(words, 500))
    return replace(result)


@dataclass
class _Refusal:
    """A 400's reading: the pings it refuses for their own data (batch position →
    ServiceTitan's words), or, when it refuses our request's format, its words."""

    dead: dict[int, str] = field(default_factory=dict)
    format_words: str | None = None

    @classmethod
    def of(cls, response: requests.Response, batch_size: int) -> _Refusal:
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if not isinstance(errors, Mapping) or not errors:
            return cls(format_words=_words(response) or "no reason given")
        refusal = cls()
        for name, messages in errors.items():
            match = ITEM_ERROR.fullmatch(str(name))
            said = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            position = int(match.group(1)) if match else -1
            of_position = match is not None and (match.group(2) or "").lower() in POSITION_FIELDS
            if not of_position or position >= batch_size:
                return cls(format_words=_words(response))
            before = refusal.dead.get(position)
            refusal.dead[position] = f"{before}; {name}: {said}" if before else f"{name}: {said}"
        return refusal


def _format_problem(refusal: _Refusal) -> str:
    return shorten(
        f"ServiceTitan refused the GPS pings' format (HTTP 400: {refusal.format_words}). "
        "Positions wait here (each vehicle's newest); if the Tenant ID and GPS Provider "
        "are right, tell Fleethook support: ServiceTitan may have changed its ping format.",
        500,
    )


def _not_recorded(result: Result) -> Result:
    """A ping refused only with its batch: retried on the schedule."""
    return replace(
        result,
        delivered=False,
        not_sent=False,
        permanent=False,
        needs_attention=None,
        retry_after=None,
        error="ServiceTitan refused the batch for another ping; this one is sent again.",
    )


def _per_item(
    items: list[dict[str, Any]], response: requests.Response, result: Result
) -> list[Result]:
    """Each ping's result from ServiceTitan's list of per-item answers: matched by
    position when the list follows the request, else by externalId."""
    try:
        answers = response.json()
    except ValueError:
        answers = None
    if not isinstance(answers, list) or not all(isinstance(a, Mapping) for a in answers):
        failed = replace(
            result,
            delivered=False,
            error=f"ServiceTitan answered HTTP {response.status_code} without a status per ping",
        )
        return [replace(failed) for _ in items]
    aligned = len(answers) == len(items) and all(
        str(answer.get("externalId")) == item["externalId"]
        for answer, item in zip(answers, items, strict=True)
    )
    by_id = {str(answer.get("externalId")): answer for answer in answers}
    results = []
    for position, item in enumerate(items):
        answer = answers[position] if aligned else by_id.get(item["externalId"])
        results.append(_item_result(result, answer))
    return results


def _item_result(result: Result, answer: Mapping[str, Any] | None) -> Result:
    if answer is None:
        return replace(
            result,
            delivered=False,
            response_body=None,
            error="ServiceTitan's answer did not mention this ping",
        )
    status = str(answer.get("status") or "")
    words = str(answer.get("message") or "").strip()
    body = json.dumps(dict(answer))[:4096]
    if status.lower() == "success" or ALREADY_RECORDED.search(words):
        return replace(result, delivered=True, response_body=body, error=None)
    reason = words or "no reason given"
    if INVALID_DATA.search(words):
        error = f"ServiceTitan refused this ping: {reason}"
        return replace(result, delivered=False, permanent=True, response_body=body, error=error)
    error = f"ServiceTitan answered {status or 'no status'} for this ping: {reason}"
    return replace(result, delivered=False, response_body=body, error=error[:500])
