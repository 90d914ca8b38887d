"""The summary line a worker logs each minute (fleet/summary.py), from a real
database: reports ingested, deliveries drained to a real receiver, a held webhook."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from core.extensions import db
from core.times import format_rfc3339, utcnow
from fleet.ingest import ingest
from fleet.records import create_vehicle
from fleet.summary import MinuteSummary, log_summary, minute_summary
from outbox.activity import minute_of
from outbox.drain import drain_target
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook, pause_webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)

VIN = "1FUJGLDR0NLD10001"


def location_webhook(account_id: int, url: str):
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": url.rsplit("/", 1)[-1], "url": url}
    )
    return webhook


def test_the_summary_counts_the_minute_s_reports_deliveries_failures_and_held_targets(
    app, receiver
):
    account_id = make_user().account_id
    create_vehicle(account_id, {"name": "Truck 1", "vin": VIN})
    healthy = location_webhook(account_id, receiver.url("/ok"))
    failing = location_webhook(account_id, receiver.url("/status/500"))
    paused = location_webhook(account_id, receiver.url("/ok"))
    pause_webhook(paused)
    db.session.commit()

    first_minute = minute_of(utcnow())
    now = utcnow()
    reports = [
        {
            "vin": VIN,
            "type": "position",
            "time": format_rfc3339(now - timedelta(seconds=30 - n)),
            "latitude": 41.8,
            "longitude": -87.6,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
        }
        for n in range(3)
    ]
    ingest(account_id, {"reports": reports}, now)
    db.session.commit()
    drain_target(healthy.id)
    drain_target(failing.id)
    minutes = range(first_minute, minute_of(utcnow()) + 1)

    # All of it happened within a second or two, perhaps across a minute's end.
    summaries = [minute_summary(minute) for minute in minutes]
    assert sum(s.reports for s in summaries) == 3
    assert sum(s.delivered for s in summaries) == 3  # the healthy webhook's three
    # The failing webhook's first message failed; its lane holds the other two.
    assert sum(s.failed for s in summaries) == 1
    latest = summaries[-1]
    assert latest.queued == 6  # the failing webhook's three, the paused one's three
    assert latest.held == 1  # the paused webhook
    if len(summaries) == 1:
        at = datetime.fromtimestamp(first_minute * 60).strftime("%H:%M")
        assert latest.line == (
            f"{at} · 3 reports · 3 delivered · 1 failed · 6 queued · 1 waiting for attention"
        )


def test_numbers_are_grouped_and_log_summary_logs_the_minute_that_ended(app, caplog):
    busy = MinuteSummary(minute_of(utcnow()), 12_040, 11_998, 3, 1_500, 0)
    assert "12,040 reports · 11,998 delivered · 3 failed · 1,500 queued" in busy.line
    with caplog.at_level(logging.INFO, logger="fleet.summary"):
        line = log_summary()
    ended = datetime.fromtimestamp((minute_of(utcnow()) - 1) * 60).strftime("%H:%M")
    assert line.startswith(f"{ended} · 0 reports · 0 delivered · 0 failed")
    assert [record.getMessage() for record in caplog.records] == [line]
