"""How Asana's answers are read, on top of integrations/base.py's reading: Asana's
own words in every error, and the answers a person must act on in Needs attention
with what to do.

How Asana's answers are read (`_asana_result`, on top of integrations.base):
- 402, 403, 451, and 404 of the project → Needs attention, with Asana's words and
  what to do; the queue waits;
- 400 on one task's update or on opening a DVIR task: the project's custom fields are
  read again; if they changed (a field removed, its type changed, the project gone)
  → Needs attention, else that one message is dead with Asana's reason and the next
  goes on at once;
- 404 of one task (deleted since the map was listed): the map is listed again and
  the message goes to the vehicle's task found then, or is dead when the vehicle
  has none;
- 429 → retried after Retry-After; 5xx and no answer → retried on the schedule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from integrations.base import ProviderRejected, json_of
from outbox.failures import shorten
from outbox.registry import Result


def asana_words(body: str | None) -> str:
    """Asana's own words from an error body: each error's message, and the phrase
    Asana support looks a server error up by."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return shorten((body or "").strip(), 300) or "no reason given"
    errors = data.get("errors") if isinstance(data, Mapping) else None
    if not isinstance(errors, list) or not errors:
        return shorten(json.dumps(data), 300)
    words = []
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        text = str(error.get("message") or "").strip()
        if error.get("phrase"):
            text += f" (error phrase: {error['phrase']})"
        if text:
            words.append(text)
    return shorten("; ".join(words), 300) or "no reason given"


def needs_attention(result: Result, words: str) -> Result:
    result.needs_attention = shorten(words, 480)
    result.permanent = False
    return result


def asana_result(result: Result, project: str) -> Result:
    """Asana's reading of a failed answer beside integrations.base's: its own words
    in the error, and the answers a person must act on (402, 403, 451) in Needs
    attention with what to do. 400 and a task's 404 are left to the caller, who
    knows which request it was."""
    status = result.status_code
    if result.delivered or status is None:
        return result
    words = asana_words(result.response_body)
    result.error = shorten(f"Asana answered HTTP {status}: {words}", 500)
    if status == 402:
        return needs_attention(
            result,
            f"Asana answered 402 Payment Required: “{words}”. The request needs a "
            "feature above the workspace's plan (custom fields are a premium feature): "
            "upgrade the workspace in Asana, then save the integration again.",
        )
    if status == 403:
        return needs_attention(
            result,
            f"Asana refused access (HTTP 403: “{words}”). The token's user needs edit "
            f"access to project {project} and its custom fields: give it that access in "
            "Asana (or use a project member's token), then save the integration again.",
        )
    if status == 451:
        return needs_attention(
            result,
            f"Asana refused the request for legal reasons (HTTP 451: “{words}”); ask "
            "Asana support, then save the integration again.",
        )
    return result


def project_gone(result: Result, project: str) -> Result:
    """A 404 of the project itself: no retry can mend it."""
    return needs_attention(
        result,
        f"Asana has no project {project} that this token can see (HTTP 404: "
        f"“{asana_words(result.response_body)}”): it was deleted, or the token's user "
        "left it. Choose the project again in the integration's settings, or give the "
        "user access in Asana, then save the integration again.",
    )


def raise_unless_ok(response: requests.Response | None, result: Result) -> dict[str, Any]:
    """The JSON body of a successful answer during the credential check, else
    ProviderRejected in words."""
    if response is None or not result.delivered:
        raise rejection(result)
    body = json_of(response)
    if not isinstance(body, dict):
        raise ProviderRejected("Asana answered with something other than JSON; try again later.")
    return body


def rejection(result: Result) -> ProviderRejected:
    """Why the credential check cannot go on, from a failed answer (or none)."""
    if result.status_code is None:
        return ProviderRejected(f"Asana could not be reached ({result.error}); try again.")
    if result.status_code == 402:
        return ProviderRejected(
            f"Asana answered 402 Payment Required: “{asana_words(result.response_body)}”. "
            "Custom fields are a premium feature: use a workspace on a paid plan."
        )
    return ProviderRejected(f"Asana answered HTTP {result.status_code}; try again later.")
