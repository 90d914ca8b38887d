"""`GET /metrics` in the Prometheus text format: deliveries by outcome and a
delivery latency histogram (counted in Redis by every worker), drains, and from
the database the pending messages and the age of the oldest due one per queue.

Readable by a scraper with the bearer token FLEETHOOK_METRICS_TOKEN, or from a
client address in FLEETHOOK_METRICS_NETWORKS (this machine only by default);
everyone else gets 401 (a token is configured) or 403."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections import Counter
from datetime import datetime
from typing import cast

from flask import Blueprint, Response, current_app, request
from sqlalchemy import func, select

from core.extensions import db, redis_client, redis_key
from core.times import utcnow
from outbox.models import MessageStatus, OutboxMessage, Target
from outbox.registry import Result

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)


def _key() -> str:
    return redis_key("metrics")


def record_deliveries(results: list[Result], kind: str) -> None:
    """Count attempts in one round trip; metrics never stand in a delivery's way."""
    if not results:
        return
    counts: Counter[str] = Counter()
    for result in results:
        outcome = "delivered" if result.delivered else "gone" if result.gone else "failed"
        bucket = next((b for b in LATENCY_BUCKETS_MS if result.duration_ms <= b), "inf")
        counts[f"deliveries|{kind}|{outcome}"] += 1
        counts[f"latency_bucket|{bucket}"] += 1
    try:
        pipe = redis_client().pipeline(transaction=False)
        for field, count in counts.items():
            pipe.hincrby(_key(), field, count)
        pipe.hincrby(_key(), "latency_count", len(results))
        pipe.hincrbyfloat(_key(), "latency_sum", sum(r.duration_ms for r in results) / 1000)
        pipe.execute()
    except Exception:
        log.debug("metrics not recorded", exc_info=True)


def record_drain() -> None:
    try:
        redis_client().hincrby(_key(), "drains", 1)
    except Exception:
        log.debug("metrics not recorded", exc_info=True)


def record_dropped_by_quota(counts_by_kind: dict[str, int]) -> None:
    """Count events dropped by the pending messages quota, by target kind."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        for kind, count in counts_by_kind.items():
            pipe.hincrby(_key(), f"dropped_by_quota|{kind}", count)
        pipe.execute()
    except Exception:
        log.debug("metrics not recorded", exc_info=True)


def _lines_from_redis() -> list[str]:
    stored = cast(dict[bytes, bytes], redis_client().hgetall(_key()))
    raw = {k.decode(): v.decode() for k, v in stored.items()}
    lines = [
        "# HELP fleethook_deliveries_total Delivery attempts by target kind and outcome.",
        "# TYPE fleethook_deliveries_total counter",
    ]
    for name, value in sorted(raw.items()):
        if name.startswith("deliveries|"):
            _, kind, outcome = name.split("|")
            lines.append(f'fleethook_deliveries_total{{kind="{kind}",outcome="{outcome}"}} {value}')
    lines += [
        "# HELP fleethook_delivery_duration_seconds Time from request to response.",
        "# TYPE fleethook_delivery_duration_seconds histogram",
    ]
    cumulative = 0
    for bucket in (*LATENCY_BUCKETS_MS, "inf"):
        cumulative += int(raw.get(f"latency_bucket|{bucket}", 0))
        le = "+Inf" if bucket == "inf" else f"{int(bucket) / 1000:g}"
        lines.append(f'fleethook_delivery_duration_seconds_bucket{{le="{le}"}} {cumulative}')
    lines.append(f"fleethook_delivery_duration_seconds_sum {raw.get('latency_sum', 0)}")
    lines.append(f"fleethook_delivery_duration_seconds_count {raw.get('latency_count', 0)}")
    lines += [
        "# HELP fleethook_drains_total Drain jobs run.",
        "# TYPE fleethook_drains_total counter",
        f"fleethook_drains_total {raw.get('drains', 0)}",
        "# HELP fleethook_dropped_by_quota_total Events not queued for paused or failing "
        "targets because their account was over its pending messages quota.",
        "# TYPE fleethook_dropped_by_quota_total counter",
    ]
    for name, value in sorted(raw.items()):
        if name.startswith("dropped_by_quota|"):
            kind = name.split("|")[1]
            lines.append(f'fleethook_dropped_by_quota_total{{kind="{kind}"}} {value}')
    return lines


def _lines_from_database(now: datetime) -> list[str]:
    rows = db.session.execute(
        select(Target.kind, func.count(OutboxMessage.id), func.min(OutboxMessage.next_attempt_at))
        .join(Target, Target.id == OutboxMessage.target_id)
        .where(OutboxMessage.status == MessageStatus.PENDING)
        .group_by(Target.kind)
    ).all()
    lines = [
        "# HELP fleethook_pending_messages Messages waiting to be sent, by target kind.",
        "# TYPE fleethook_pending_messages gauge",
    ]
    ages = [
        "# HELP fleethook_oldest_due_seconds Age of the oldest message that is due.",
        "# TYPE fleethook_oldest_due_seconds gauge",
    ]
    for kind, count, oldest in rows:
        lines.append(f'fleethook_pending_messages{{kind="{kind}"}} {count}')
        age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        ages.append(f'fleethook_oldest_due_seconds{{kind="{kind}"}} {age:.3f}')
    return lines + ages


def _has_token() -> bool:
    expected = str(current_app.config.get("FLEETHOOK_METRICS_TOKEN") or "")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def _from_allowed_network() -> bool:
    """Whether the client's address (as ProxyFix gives it, with trusted proxies) is
    in FLEETHOOK_METRICS_NETWORKS. A forwarded request that no trusted proxy
    accounts for is a reverse proxy on this machine passing on someone else's
    request: its loopback address says nothing about the client."""
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    if forwarded and not current_app.config.get("FLEETHOOK_TRUSTED_PROXIES"):
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in current_app.config["FLEETHOOK_METRICS_NETWORKS"])


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of this installation, for its token or allowed networks."""
    if not (_has_token() or _from_allowed_network()):
        if current_app.config.get("FLEETHOOK_METRICS_TOKEN"):
            return Response(
                "A bearer token is needed to read /metrics.\n",
                401,
                {"WWW-Authenticate": 'Bearer realm="fleethook-metrics"'},
                mimetype="text/plain",
            )
        return Response("/metrics is not readable from this address.\n", 403, mimetype="text/plain")
    body = "\n".join(_lines_from_redis() + _lines_from_database(utcnow())) + "\n"
    return Response(body, mimetype="text/plain; version=0.0.4")
