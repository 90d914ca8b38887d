"""How the outbox reads an HTTP answer, whichever sender made the request (the
webhook transport, outbox/transport.py, or a provider's API client,
integrations/base.py): what an attempt keeps of it (body and headers capped), which
statuses push back, and the Result of an answer or of a request that got none.
Each sender adds its own reading on top: a webhook's 410 disables it and a push-back
halves its window; a provider's 401/403 need attention and its 422 refuses the
message for good."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from outbox.registry import Result
from outbox.schedule import parse_retry_after

# What an attempt record keeps of the answer.
MAX_RESPONSE_BODY_BYTES = 4096
MAX_RESPONSE_HEADER_BYTES = 8192
# Answers that ask us to slow down; their Retry-After is honoured.
THROTTLING = frozenset({429, 502, 503, 504})


def elapsed_ms(started: float) -> int:
    """Milliseconds since `started` (a time.perf_counter() reading)."""
    return round((time.perf_counter() - started) * 1000)


def capped_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response headers as an attempt stores them: names lower-cased, at most 8 KiB
    in all."""
    kept: dict[str, str] = {}
    size = 0
    for name, value in items:
        size += len(name) + len(value) + 4
        if size > MAX_RESPONSE_HEADER_BYTES:
            kept["x-fleethook-truncated"] = "true"
            break
        kept[name.lower()] = value
    return kept


def answered(
    status: int, headers: Mapping[str, str], body: bytes, started: float, shown: Mapping[str, str]
) -> Result:
    """The Result of an answer: 2xx delivered, anything else a failure to retry
    ("HTTP <status>"); a throttling answer's Retry-After kept. `headers` is
    case-insensitive (requests' and aiohttp's both are); `shown` is what the
    attempt record shows of the request's headers."""
    delivered = 200 <= status < 300
    return Result(
        delivered=delivered,
        status_code=status,
        duration_ms=elapsed_ms(started),
        error=None if delivered else f"HTTP {status}",
        retry_after=parse_retry_after(headers.get("Retry-After")) if status in THROTTLING else None,
        request_headers=dict(shown),
        response_headers=capped_headers(headers.items()),
        response_body=body[:MAX_RESPONSE_BODY_BYTES].decode("utf-8", "replace"),
    )


def unanswered(
    started: float,
    shown: Mapping[str, str],
    error: str,
    detail: str | None = None,
    needs_attention: str | None = None,
) -> Result:
    """The Result of a request that got no answer (or was never sent): `error` in
    plain words (outbox/failures.py), `detail` the technical text."""
    return Result(
        delivered=False,
        duration_ms=elapsed_ms(started),
        error=error,
        error_detail=detail,
        needs_attention=needs_attention,
        request_headers=dict(shown),
    )
