"""Retention: reports, ended messages with their attempts, and ended driver
assignments older than their window are deleted by the sweeper, in small
batches; younger rows, open messages and each vehicle's current assignment stay;
Total Messages does not move; a recovery from a pruned window says so; a report
older than the window is refused at ingest."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import event, func, select

from core.errors import ValidationError
from core.extensions import db
from core.times import utcnow
from fleet.ingest import ingest
from fleet.models import Driver, DriverAssignment, TelemetryReport
from outbox.models import DeliveryAttempt, OutboxMessage, new_message_id
from outbox.retention import prune
from outbox.sweeper import sweep
from tests.conftest import bearer, make_user
from webhooks.lifecycle import create_webhook

VIN = "1FUJGLDR3CLBP8834"
NOW = utcnow().replace(microsecond=0)
DAY = timedelta(days=1)
# A different window for each kind, so comparing one kind by another's window or
# column shows.
WINDOWS = {
    "FLEETHOOK_KEEP_REPORTS": 10 * DAY,
    "FLEETHOOK_KEEP_DELIVERED": 20 * DAY,
    "FLEETHOOK_KEEP_ENDED": 30 * DAY,
    "FLEETHOOK_KEEP_ASSIGNMENTS": 40 * DAY,
}
_sequence = count(1)


class Fleet:
    """An account with one vehicle and a location webhook."""

    def __init__(self, client: Any) -> None:
        self.client = client
        user = make_user()
        self.account_id = user.account_id
        self.headers = bearer(user)
        created = client.post(
            "/api/v1/vehicles", headers=self.headers, json={"name": "Truck 42", "vin": VIN}
        )
        self.vehicle_id = created.json["id"]
        self.webhook, _ = create_webhook(
            self.account_id,
            {
                "event_type": "location",
                "name": "Location",
                "url": "https://hooks.example.com/location",
            },
        )
        db.session.commit()

    def report(self, time: Any, received_at: Any = None) -> TelemetryReport:
        row = TelemetryReport(
            vehicle_id=self.vehicle_id,
            type="heartbeat",
            time=time,
            fields={},
            received_at=received_at or time,
        )
        db.session.add(row)
        return row

    def message(self, status: str, created: Any, finished: Any, attempts: int = 1) -> int:
        row = OutboxMessage(
            target_id=self.webhook.id,
            sequence=next(_sequence),
            message_id=new_message_id(),
            event_type="location",
            payload={},
            status=status,
            attempts=attempts,
            created_at=created,
            retain_from=created,
            finished_at=finished,
        )
        db.session.add(row)
        db.session.flush()
        for _ in range(attempts):
            db.session.add(
                DeliveryAttempt(
                    message_id=row.id,
                    attempted_at=created,
                    outcome="delivered",
                    status_code=200,
                    duration_ms=5,
                    request_headers={},
                )
            )
        return row.id

    def assignment(self, at: Any, vehicle_id: int | None = None) -> int:
        driver = Driver(account_id=self.account_id, name=f"Driver {next(_sequence)}")
        db.session.add(driver)
        db.session.flush()
        row = DriverAssignment(
            vehicle_id=vehicle_id or self.vehicle_id,
            driver_id=driver.id,
            assigned_at=at,
            source="report",
        )
        db.session.add(row)
        db.session.flush()
        return row.id

    def post(self, body: dict, expect: int) -> dict:
        response = self.client.post("/api/v1/telemetry", json=body, headers=self.headers)
        assert response.status_code == expect, response.json
        return response.json


@pytest.fixture
def fleet(client):
    return Fleet(client)


def ids(model: Any) -> set[int]:
    db.session.expire_all()
    return set(db.session.scalars(select(model.id)))


def rows(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.app_config(**WINDOWS)
def test_reports_older_than_their_window_go_younger_stay(fleet):
    old = fleet.report(NOW - 11 * DAY, received_at=NOW - DAY)  # received late: still by time
    young = fleet.report(NOW - 9 * DAY, received_at=NOW - 40 * DAY)
    db.session.commit()
    old_id, young_id = old.id, young.id
    assert prune(NOW)["reports"] == 1
    assert ids(TelemetryReport) == {young_id} and old_id != young_id


@pytest.mark.app_config(**WINDOWS)
def test_messages_go_with_their_attempts_by_when_they_ended(fleet):
    delivered_old = fleet.message("delivered", NOW - 90 * DAY, NOW - 21 * DAY, attempts=3)
    delivered_young = fleet.message("delivered", NOW - 90 * DAY, NOW - 19 * DAY)
    dead_old = fleet.message("dead", NOW - 90 * DAY, NOW - 31 * DAY, attempts=5)
    # Ended 25 days ago: past the delivered window, inside the dead/expired one.
    dead_young = fleet.message("dead", NOW - 90 * DAY, NOW - 25 * DAY)
    expired_old = fleet.message("expired", NOW - 90 * DAY, NOW - 31 * DAY, attempts=0)
    superseded_old = fleet.message("superseded", NOW - 90 * DAY, NOW - 31 * DAY, attempts=0)
    db.session.commit()
    deleted = prune(NOW)
    assert (deleted["delivered"], deleted["ended"]) == (1, 3)
    assert ids(OutboxMessage) == {delivered_young, dead_young}
    kept_attempts = set(db.session.scalars(select(DeliveryAttempt.message_id)))
    assert kept_attempts == {delivered_young, dead_young}
    assert {delivered_old, dead_old, expired_old, superseded_old}.isdisjoint(ids(OutboxMessage))


@pytest.mark.app_config(**WINDOWS)
def test_open_messages_are_never_pruned_whatever_their_age(fleet):
    pending = fleet.message("pending", NOW - 400 * DAY, None, attempts=7)
    # Reopened by a recovery with its old end time still set: open wins.
    sending = fleet.message("sending", NOW - 400 * DAY, NOW - 300 * DAY)
    db.session.commit()
    assert sum(prune(NOW).values()) == 0
    assert ids(OutboxMessage) == {pending, sending}
    assert rows(DeliveryAttempt) == 8


@pytest.mark.app_config(**WINDOWS)
def test_ended_assignments_go_forty_days_after_the_next_began_the_current_one_stays(fleet):
    truck_7 = {"name": "Truck 7", "vin": "1M8GDM9AXKP042788"}
    other = fleet.client.post("/api/v1/vehicles", headers=fleet.headers, json=truck_7).json["id"]
    first = fleet.assignment(NOW - 100 * DAY)
    second = fleet.assignment(NOW - 90 * DAY)  # ended 80 days ago: goes
    third = fleet.assignment(NOW - 80 * DAY)  # ended 39 days ago: stays
    current = fleet.assignment(NOW - 39 * DAY)
    alone = fleet.assignment(NOW - 500 * DAY, vehicle_id=other)  # the other's current one
    db.session.commit()
    assert prune(NOW)["assignments"] == 2
    assert ids(DriverAssignment) == {third, current, alone}
    assert first not in ids(DriverAssignment) and second not in ids(DriverAssignment)


def test_total_messages_survives_pruning_and_a_pruned_recovery_says_so(fleet, client):
    headers = fleet.headers
    for minutes in (50, 40, 30):
        body = {
            "vin": VIN,
            "type": "position",
            "latitude": 41.9,
            "longitude": -87.8,
            "speed_mph": 30,
            "heading": 90,
            "ignition": True,
            "time": (NOW - timedelta(minutes=minutes)).isoformat(),
        }
        fleet.post(body, expect=202)
    url = f"/api/v1/webhooks/{fleet.webhook.id}"
    assert client.get(url, headers=headers).json["total_messages"] == 3
    # Two ended 31 days ago (one delivered, one dead), one is still waiting.
    messages = list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    for message, status in zip(messages, ("delivered", "dead"), strict=False):
        message.status, message.finished_at = status, NOW - 31 * DAY
    dead_created = messages[1].created_at
    db.session.commit()
    assert sweep()["pruned"] == 2
    assert client.get(url, headers=headers).json["total_messages"] == 3
    assert len(client.get(f"{url}/messages", headers=headers).json["messages"]) == 1

    since = (NOW - DAY).isoformat().replace("+00:00", "Z")
    recovered = client.post(f"{url}/recover", json={"since": since}, headers=headers)
    assert recovered.status_code == 202
    assert recovered.json["recovered"] == 0 and "cannot be recovered" in recovered.json["detail"]
    assert datetime.fromisoformat(recovered.json["pruned_before"]) == dead_created
    # A window after the pruned messages: nothing to say. (From their creation, not
    # NOW: the module's NOW is read at collection, maybe minutes before this test.)
    later = (dead_created + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    answer = client.post(f"{url}/recover", json={"since": later}, headers=headers).json
    assert answer == {"recovered": 0}


def test_pruning_goes_in_batches_each_its_own_statement(fleet, app):
    for minute in range(35):
        fleet.report(NOW - 31 * DAY - timedelta(minutes=minute))
    young = fleet.report(NOW - 29 * DAY)
    db.session.commit()
    young_id = young.id
    deletes: list[int] = []

    def count_deletes(_conn, cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM TELEMETRY_REPORT"):
            deletes.append(cursor.rowcount)

    event.listen(db.engine, "after_cursor_execute", count_deletes)
    try:
        # No time budget left after the first batch: one batch, the rest next sweep.
        assert prune(NOW, batch=10, budget_seconds=0)["reports"] == 10
        assert prune(NOW, batch=10)["reports"] == 25
    finally:
        event.remove(db.engine, "after_cursor_execute", count_deletes)
    assert deletes == [10, 10, 10, 5]
    assert ids(TelemetryReport) == {young_id}


def test_a_report_older_than_the_window_is_refused_and_nothing_is_written(fleet):
    fresh = {"vin": VIN, "type": "heartbeat", "time": (NOW - DAY).isoformat()}
    stale = {"vin": VIN, "type": "heartbeat", "time": (NOW - 31 * DAY).isoformat()}
    answer = fleet.post({"reports": [fresh, stale]}, expect=422)
    assert answer["errors"] == {
        "reports[1].time": [
            "Older than 30 days, the reports' retention window "
            "(FLEETHOOK_KEEP_REPORTS_DAYS): too old to be taken."
        ]
    }
    assert (rows(TelemetryReport), rows(OutboxMessage)) == (0, 0)
    assert fleet.post(fresh, expect=202)["accepted"] == 1


@pytest.mark.app_config(FLEETHOOK_KEEP_REPORTS=timedelta(hours=2))
def test_a_replay_of_a_pruned_report_is_refused_not_taken_as_new(fleet):
    report = {"vin": VIN, "type": "heartbeat", "time": (NOW - timedelta(hours=1)).isoformat()}
    assert ingest(fleet.account_id, report, NOW).accepted == 1
    db.session.commit()
    later = NOW + timedelta(hours=1, minutes=1)
    assert prune(later)["reports"] == 1
    with pytest.raises(ValidationError) as refused:
        ingest(fleet.account_id, report, later)
    assert list(refused.value.errors) == ["time"]
    assert rows(TelemetryReport) == 0
