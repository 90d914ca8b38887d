"""Ordering lanes and many requests in flight (DESIGN.md invariant 3), against real
receivers on loopback: each vehicle's messages in order with their lane headers, a
failing head holding back its own lane only, the window of requests in flight,
strict FIFO when a webhook asks for it, latest wins, and every failure — a
trickling answer, a sender exception, an unsendable header, a huge response
header — ending as a recorded attempt while everything else keeps flowing.

Drains run in this process (the code an RQ worker runs); the test with real worker
processes, random latencies and a killed worker is in test_workers.py."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.extensions import db, redis_client
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.claims import PAGE, acquire_drain
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import DeliveryAttempt, OutboxMessage, Target
from outbox.queues import again_key
from tests.conftest import make_user
from tests.receiver import Received
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)


@pytest.fixture
def account(app):
    return make_user().account_id


def event(vehicle_id: int, n: int, key: str = "location") -> DetectedEvent:
    vehicle = replace(
        EXAMPLE_VEHICLE, vehicle_id=vehicle_id, odometer_mi=float(n), fix_time=utcnow()
    )
    return DetectedEvent(EVENT_TYPES[key], utcnow(), vehicle)


def webhook_to(account_id: int, url: str, event_type: str = "location", **settings) -> Webhook:
    webhook, _ = create_webhook(
        account_id, {"event_type": event_type, "name": "Receiver", "url": url}
    )
    for name, value in settings.items():
        setattr(webhook, name, value)
    db.session.commit()
    return webhook


def emit(account_id: int, vehicles: range, per_vehicle: int, key: str = "location") -> None:
    """`per_vehicle` events of each vehicle, interleaved as a fleet reports them."""
    events = [event(v, n, key) for n in range(1, per_vehicle + 1) for v in vehicles]
    fan_out(events, account_targets(account_id))
    db.session.commit()


def lanes(received: list[Received]) -> dict[str, list[int]]:
    """Each ordering key's sequence numbers, in the order they arrived."""
    seen: dict[str, list[int]] = defaultdict(list)
    for request in received:
        seen[request.headers["fleethook-ordering-key"]].append(
            int(request.headers["fleethook-sequence"])
        )
    return dict(seen)


def statuses(target_id: int) -> dict[str, int]:
    db.session.rollback()
    return dict(
        db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.target_id == target_id)
            .group_by(OutboxMessage.status)
        ).all()
    )


def make_due(target_id: int) -> None:
    """Skip the retry wait: every pending message of the target is due now."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.target_id == target_id)
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def attempts_of(target_id: int) -> list[DeliveryAttempt]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(DeliveryAttempt)
            .join(OutboxMessage)
            .where(OutboxMessage.target_id == target_id)
            .order_by(DeliveryAttempt.id)
        )
    )


def test_each_vehicle_is_a_lane_numbered_in_its_headers(account, receiver):
    webhook = webhook_to(account, receiver.url("/ok"))
    emit(account, range(1, 6), 4)
    drain_target(webhook.id)
    assert lanes(receiver.received) == {f"vehicle:{v}": [1, 2, 3, 4] for v in range(1, 6)}
    for request in receiver.received:  # the key names the vehicle the body is about
        vehicle = json.loads(request.body)["data"]["vehicle"]["id"]
        assert request.headers["fleethook-ordering-key"] == f"vehicle:{vehicle}"
    assert statuses(webhook.id) == {"delivered": 20}


def test_a_failing_head_holds_back_its_own_lane_only(account, receiver):
    webhook = webhook_to(account, receiver.url("/fail-vehicle/2?times=1"))
    emit(account, range(1, 4), 3)
    drain_target(webhook.id)
    # Vehicle 2's first message failed and waits for its retry; its lane waits
    # behind it, the other two lanes are delivered whole.
    assert lanes(receiver.received) == {
        "vehicle:1": [1, 2, 3],
        "vehicle:2": [1],
        "vehicle:3": [1, 2, 3],
    }
    assert statuses(webhook.id) == {"delivered": 6, "pending": 3}
    drain_target(webhook.id)  # nothing is due yet: the lane's head waits, nothing else goes
    assert len(receiver.received) == 7
    make_due(webhook.id)
    drain_target(webhook.id)
    assert lanes(receiver.received)["vehicle:2"] == [1, 1, 2, 3]
    assert statuses(webhook.id) == {"delivered": 9}


def test_lanes_behind_a_deep_backlog_waiting_for_its_retry_are_still_sent(account, receiver):
    # Vehicle 2's messages fill more than a page of the target's oldest messages,
    # and its head fails: the claim must look past that page for the other lanes.
    webhook = webhook_to(account, receiver.url("/fail-vehicle/2?times=1"))
    emit(account, range(2, 3), PAGE + 50)
    emit(account, range(1, 4, 2), 2)
    drain_target(webhook.id)
    assert statuses(webhook.id) == {"delivered": 4, "pending": PAGE + 50}
    drain_target(webhook.id)  # vehicle 2 still waits for its retry
    emit(account, range(3, 4), 1)
    drain_target(webhook.id)
    assert lanes(receiver.received) == {
        "vehicle:1": [1, 2],
        "vehicle:2": [1],
        "vehicle:3": [1, 2, 3],
    }


def test_a_drain_stops_sending_when_its_time_is_over(account, receiver, monkeypatch):
    # One lane of 40 messages to a receiver answering in 100 ms: 4 s of sending.
    # A job claims for TIME_BUDGET_SECONDS and sends for as long again, then lets
    # its worker go: what it did not send goes back to the queue, unattempted.
    monkeypatch.setattr("outbox.drain.TIME_BUDGET_SECONDS", 0.5)
    webhook = webhook_to(account, receiver.url("/slow/100"))
    emit(account, range(1, 2), 40)
    began = time.monotonic()
    drain_target(webhook.id)
    assert time.monotonic() - began < 2.5  # budget 0.5 + 0.5, then one request's end
    counts = statuses(webhook.id)
    assert 5 <= counts["delivered"] < 40
    assert counts["pending"] == 40 - counts["delivered"]
    assert len(attempts_of(webhook.id)) == counts["delivered"]
    drain_target(webhook.id)  # the next job goes on where it stopped, in sequence
    assert lanes(receiver.received)["vehicle:1"][: counts["delivered"] + 5] == list(
        range(1, counts["delivered"] + 6)
    )


def test_a_target_another_drain_holds_is_left_to_it(account, receiver):
    webhook = webhook_to(account, receiver.url("/ok"))
    emit(account, range(1, 3), 2)
    assert acquire_drain(webhook.id, "another-host:1:drain", utcnow())
    db.session.commit()
    drain_target(webhook.id)
    # Two drains would each keep a window in flight: the holder alone sends, and
    # is asked to look again for what came meanwhile.
    assert receiver.received == []
    assert redis_client().get(again_key(webhook.id))
    assert statuses(webhook.id) == {"pending": 4}


def test_the_window_keeps_max_in_flight_requests_at_once(account, receiver):
    # 150 ms answers: long enough that four are in flight together, far enough
    # inside the 1 s deadline that a busy machine does not fail them.
    webhook = webhook_to(account, receiver.url("/slow/150"), max_in_flight=4, send_window=4)
    emit(account, range(1, 11), 2)
    drain_target(webhook.id)
    assert statuses(webhook.id) == {"delivered": 20}
    # Ten vehicles could go at once; the window lets four.
    assert receiver.most_at_once == 4
    assert all(seqs == [1, 2] for seqs in lanes(receiver.received).values())


def test_ordering_webhook_is_one_request_at_a_time_in_creation_order(account, receiver):
    webhook = webhook_to(account, receiver.url("/slow/20"), ordering="webhook")
    emit(account, range(1, 6), 4)
    drain_target(webhook.id)
    assert receiver.most_at_once == 1
    assert lanes(receiver.received) == {"webhook": list(range(1, 21))}
    bodies = [json.loads(r.body)["data"]["vehicle"]["id"] for r in receiver.received]
    assert bodies == [v for _ in range(4) for v in range(1, 6)]  # the order of the fleet


def test_ordering_webhook_holds_everything_behind_a_failed_head(account, receiver):
    webhook = webhook_to(account, receiver.url("/fail-vehicle/1?times=1"), ordering="webhook")
    emit(account, range(1, 4), 2)
    drain_target(webhook.id)
    assert len(receiver.received) == 1
    assert statuses(webhook.id) == {"pending": 6}


def test_ordering_none_lets_later_messages_pass_a_failed_one(account, receiver):
    webhook = webhook_to(account, receiver.url("/fail-vehicle/2"), ordering="none")
    emit(account, range(1, 3), 3)
    drain_target(webhook.id)
    assert statuses(webhook.id) == {"delivered": 3, "pending": 3}
    # Each of vehicle 2's messages was tried: none waited behind another.
    assert sorted(lanes(receiver.received)["vehicle:2"]) == [1, 2, 3]


def test_latest_wins_sends_the_newest_position_and_never_drops_a_dvir(account, receiver):
    down = receiver.url("/status/503")
    positions = webhook_to(account, down, latest_wins=True)
    dvirs = webhook_to(account, down, event_type="dvir")
    emit(account, range(7, 8), 1)
    emit(account, range(7, 8), 1, key="dvir")
    drain_target(positions.id)
    drain_target(dvirs.id)
    assert len(receiver.received) == 2  # the outage: both heads failed
    for n in range(2, 101):  # the backlog of the outage
        fan_out([event(7, n), event(7, n, "dvir")], account_targets(account))
    db.session.commit()
    for webhook in (positions, dvirs):
        db.session.execute(
            update(Target)
            .where(Target.id == webhook.id)
            .values(throttled_until=None, send_window=16)
        )
        db.session.execute(
            update(Webhook).where(Webhook.id == webhook.id).values(url=receiver.url("/ok"))
        )
        make_due(webhook.id)
    receiver.received.clear()
    drain_target(positions.id)
    drain_target(dvirs.id)
    assert statuses(positions.id) == {"delivered": 1, "superseded": 99}
    assert statuses(dvirs.id) == {"delivered": 100}
    (newest,) = [
        r
        for r in receiver.received
        if r.headers["fleethook-ordering-key"] == "vehicle:7"
        and json.loads(r.body)["type"] == "location"
    ]
    assert json.loads(newest.body)["data"]["odometer_mi"] == 100.0
    assert newest.headers["fleethook-sequence"] == "100"  # the gap tells what was skipped
    db.session.rollback()
    assert db.session.get(Target, positions.id).queue_depth == 0
    dvir_odometers = [
        json.loads(r.body)["data"]["odometer_mi"]
        for r in receiver.received
        if json.loads(r.body)["type"] == "dvir"
    ]
    assert dvir_odometers == [float(n) for n in range(1, 101)]


def test_a_trickling_answer_ends_at_the_deadline_as_a_recorded_attempt(account, receiver):
    trickling = webhook_to(account, receiver.url("/trickle?seconds=20"))
    emit(account, range(1, 2), 1)
    drain_target(trickling.id)
    (attempt,) = attempts_of(trickling.id)
    assert attempt.outcome == "failed"
    assert attempt.error == "Timed out after 1 s waiting for an answer"
    assert 1000 <= attempt.duration_ms < 1900
    assert statuses(trickling.id) == {"pending": 1}


def test_an_exception_in_the_sender_is_a_recorded_attempt(account, receiver, monkeypatch):
    broken = webhook_to(account, receiver.url("/ok/broken"))
    healthy = webhook_to(account, receiver.url("/ok/healthy"))
    real_encode = __import__("webhooks.sender", fromlist=["encode_body"]).encode_body

    def encode(payload, content_type):
        if payload["data"]["vehicle"]["id"] == 2:
            raise RuntimeError("a bug in the encoder")
        return real_encode(payload, content_type)

    monkeypatch.setattr("webhooks.sender.encode_body", encode)
    emit(account, range(1, 3), 2)
    for webhook in (broken, healthy):
        drain_target(webhook.id)
    # Vehicle 2's head failed with the exception, recorded; vehicle 1 went on.
    failed = [a for a in attempts_of(broken.id) if a.outcome == "failed"]
    assert [(a.error, a.error_detail) for a in failed] == [
        (
            "The attempt failed inside Fleethook (an internal error)",
            "Could not build the request: RuntimeError: a bug in the encoder",
        )
    ]
    assert statuses(broken.id) == {"delivered": 2, "pending": 2}
    assert statuses(healthy.id) == {"delivered": 2, "pending": 2}
    db.session.rollback()
    assert db.session.get(Target, broken.id).status == "failing"


def test_a_header_http_cannot_carry_asks_for_attention(account, receiver):
    unsendable = webhook_to(account, receiver.url("/ok/header"))
    # As if it were saved before the form refused such values.
    unsendable.custom_header_name = "Authorization"
    unsendable.custom_header_value = "Bearer tok€n"
    healthy = webhook_to(account, receiver.url("/ok/healthy"))
    db.session.commit()
    emit(account, range(1, 3), 2)
    for webhook in (unsendable, healthy):
        drain_target(webhook.id)
    attempts = attempts_of(unsendable.id)
    assert len(attempts) == 2  # the two lanes' heads, at once; then it held
    for attempt in attempts:
        assert attempt.outcome == "unauthorized"
        assert "cannot be sent over HTTP" in attempt.error
        assert "tok€n" not in json.dumps(attempt.request_headers)  # still masked
    db.session.rollback()
    target = db.session.get(Target, unsendable.id)
    assert target.status == "needs_attention"
    assert "custom header" in target.status_reason
    assert receiver.requests_to("/ok/header") == []
    assert statuses(healthy.id) == {"delivered": 4}


def test_a_huge_response_header_is_a_recorded_attempt_stored_small(account, receiver):
    huge = webhook_to(account, receiver.url("/big-header?bytes=5000000"))
    big = webhook_to(account, receiver.url("/big-header?bytes=6000"))
    emit(account, range(1, 2), 1)
    drain_target(huge.id)
    drain_target(big.id)
    (attempt,) = attempts_of(huge.id)
    assert attempt.outcome == "failed"
    assert attempt.error == "127.0.0.1 sent an answer that could not be read"
    assert "Got more than 8192 bytes" in attempt.error_detail  # aiohttp's own words
    assert len(json.dumps(attempt.response_headers or {})) < 9000
    (kept,) = attempts_of(big.id)
    assert kept.outcome == "delivered"
    assert len(json.dumps(kept.response_headers)) < 9000


def test_push_back_halves_the_window_and_successes_grow_it_again(account, receiver):
    webhook = webhook_to(account, receiver.url("/status/503"))
    emit(account, range(1, 3), 1)
    drain_target(webhook.id)
    db.session.rollback()
    target = db.session.get(Target, webhook.id)
    assert target.send_window == 8  # 16, halved once for the batch that pushed back
    assert target.throttled_until is None  # no Retry-After: the schedule alone
    db.session.execute(
        update(Webhook).where(Webhook.id == webhook.id).values(url=receiver.url("/ok"))
    )
    make_due(webhook.id)
    drain_target(webhook.id)
    db.session.rollback()
    # One step per batch of successes recorded: the two lanes came back in one or two.
    assert db.session.get(Target, webhook.id).send_window in (9, 10)
    emit(account, range(1, 41), 1)
    drain_target(webhook.id)
    db.session.rollback()
    grown = db.session.get(Target, webhook.id).send_window
    assert 10 <= grown <= 16  # never past max_in_flight


def test_retry_after_pauses_the_webhook_not_the_worker(account, receiver):
    throttled = webhook_to(account, receiver.url("/status/429?retry_after=120"))
    healthy = webhook_to(account, receiver.url("/ok/healthy"))
    emit(account, range(1, 3), 2)
    drain_target(throttled.id)
    db.session.rollback()
    target = db.session.get(Target, throttled.id)
    assert 115 < (target.throttled_until - utcnow()).total_seconds() <= 120
    make_due(throttled.id)  # due, but the receiver asked for two minutes
    drain_target(throttled.id)
    assert len(receiver.requests_to("/status")) == 2  # the two lanes' heads, once
    drain_target(healthy.id)
    assert statuses(healthy.id) == {"delivered": 4}


def test_a_rate_limit_spaces_the_messages(account, receiver):
    webhook = webhook_to(account, receiver.url("/ok"), rate_limit=10.0)
    emit(account, range(1, 9), 1)
    drain_target(webhook.id)
    arrivals = sorted(request.at for request in receiver.received)
    assert len(arrivals) == 8
    # At most 10 a second: each start at least 0.1 s after the one before (a slow
    # machine only spreads them further).
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.09, gaps
