"""Delivery through the outbox to real HTTP receivers on loopback: signatures,
the receiver matrix, per-target FIFO, fencing, retention, redelivery, the cap.

Drains run in this process here (the same code an RQ worker runs); the tests with
real worker processes are in test_workers.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook as StandardWebhook

from core.extensions import db, redis_client
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.claims import acquire_drain, acquire_drains, claim_due_messages, release_drain
from outbox.drain import _follow_up as follow_up
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import DeliveryAttempt, MessageStatus, OutboxMessage, Target
from outbox.queues import DELIVERIES, RETRIES, again_key, drain_job_id, queue_for
from outbox.recording import Outcomes, record_results
from outbox.recovery import recover_since, redeliver
from outbox.registry import Result
from outbox.sweeper import close_old_messages, sweep
from tests.conftest import NAMESPACE, make_user
from webhooks.lifecycle import create_webhook, pause_webhook, resume_webhook, rotate_secret

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True,
    FLEETHOOK_CONNECT_TIMEOUT=1,
    FLEETHOOK_READ_TIMEOUT=1,
    FLEETHOOK_DELIVERY_DEADLINE=1,
)


@pytest.fixture
def account(app):
    return make_user().account_id


def location(odometer: float) -> DetectedEvent:
    vehicle = replace(EXAMPLE_VEHICLE, odometer_mi=odometer, fix_time=utcnow())
    return DetectedEvent(EVENT_TYPES["location"], utcnow(), vehicle)


def webhook_to(account_id: int, url: str, **values):
    webhook, secret = create_webhook(
        account_id, {"event_type": "location", "name": "Receiver", "url": url, **values}
    )
    db.session.commit()
    return webhook, secret


def emit(account_id: int, count: int, start: int = 1) -> None:
    targets = account_targets(account_id)
    fan_out([location(float(n)) for n in range(start, start + count)], targets)
    db.session.commit()


def messages_of(target_id: int) -> list[OutboxMessage]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.target_id == target_id)
            .order_by(OutboxMessage.sequence)
        )
    )


def odometers(requests) -> list[float]:
    return [json.loads(r.body)["data"]["odometer_mi"] for r in requests]


@pytest.mark.parametrize("content_type", ["json", "form"])
def test_deliveries_are_signed_for_standard_webhooks_libraries(account, receiver, content_type):
    webhook, secret = webhook_to(account, receiver.url("/ok"), content_type=content_type)
    emit(account, 2)
    drain_target(webhook.id)
    got = receiver.requests_to("/ok")
    assert len(got) == 2
    for request in got:
        StandardWebhook(secret).verify(request.body, dict(request.headers), json_parse=False)
        assert request.headers["Content-Type"].startswith(
            "application/json" if content_type == "json" else "application/x-www-form-urlencoded"
        )
    if content_type == "form":
        assert dict(parse_qsl(got[0].body.decode()))["odometer_mi"] == "1.0"
    assert [m.status for m in messages_of(webhook.id)] == ["delivered", "delivered"]


def test_during_a_rotation_both_secrets_verify(account, receiver):
    webhook, old = webhook_to(account, receiver.url("/ok"))
    new = rotate_secret(webhook)
    db.session.commit()
    emit(account, 1)
    drain_target(webhook.id)
    (request,) = receiver.requests_to("/ok")
    assert request.headers["webhook-signature"].count("v1,") == 2
    StandardWebhook(old).verify(request.body, dict(request.headers))
    StandardWebhook(new).verify(request.body, dict(request.headers))


def test_custom_header_is_sent_and_stored_masked(account, receiver):
    webhook, _ = webhook_to(
        account, receiver.url("/ok"), custom_header={"name": "X-Fleet-Key", "value": "k-123456789"}
    )
    emit(account, 1)
    drain_target(webhook.id)
    assert receiver.requests_to("/ok")[0].headers["X-Fleet-Key"] == "k-123456789"
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert "k-123456789" not in json.dumps(attempt.request_headers)


def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/closed"


MATRIX = [
    # path, delivered, status code, error, seconds to the next attempt (low, high), target status
    ("/ok", True, 200, None, None, "active"),
    ("/no-content", True, 204, None, None, "active"),
    ("/redirect", False, 301, "HTTP 301", (4, 6), "failing"),
    ("/status/400", False, 400, "HTTP 400", (4, 6), "failing"),
    ("/status/404", False, 404, "HTTP 404", (4, 6), "failing"),
    ("/status/410", False, 410, "HTTP 410", (4, 6), "disabled"),
    ("/status/429?retry_after=120", False, 429, "HTTP 429", (119, 121), "failing"),
    ("/status/500", False, 500, "HTTP 500", (4, 6), "failing"),
    ("/status/503?retry_after=1", False, 503, "HTTP 503", (4.9, 5.1), "failing"),
    ("/status/503?retry_after=999999", False, 503, "HTTP 503", (35999, 36001), "failing"),
    ("/hang", False, None, "Timed out after 1 s waiting for an answer", (4, 6), "failing"),
    ("refused", False, None, "Connection refused by {where}", (4, 6), "failing"),
    ("/reset", False, None, "Connection reset by 127.0.0.1", (4, 6), "failing"),
]


@pytest.mark.parametrize(("path", "delivered", "code", "error", "wait", "status"), MATRIX)
def test_receiver_matrix(account, receiver, path, delivered, code, error, wait, status):
    url = refused_url() if path == "refused" else receiver.url(path)
    if error is not None:
        error = error.format(where=urlsplit(url).netloc)
    # The retry schedule alone: a location message lives 15 minutes unless its
    # webhook says longer (a 10-hour Retry-After would end it stale: test_ttl.py).
    webhook, _ = webhook_to(account, url, ttl_minutes=72 * 60)
    emit(account, 1)
    before = utcnow()
    drain_target(webhook.id)
    (message,) = messages_of(webhook.id)
    assert message.status == ("delivered" if delivered else "pending")
    assert message.attempts == 1
    assert message.last_status_code == code
    assert message.last_error == error
    if wait is not None:
        delay = (message.next_attempt_at - before).total_seconds()
        assert wait[0] <= delay <= wait[1] + 1.5, delay
    target = db.session.get(Target, webhook.id)
    assert target.status == status
    assert target.queue_depth == (0 if delivered else 1)
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert attempt.status_code == code and attempt.error == error
    if path == "/redirect":
        assert receiver.requests_to("/ok") == []  # never followed


def test_response_bodies_are_stored_capped(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/status/500?size=100000"))
    emit(account, 1)
    drain_target(webhook.id)
    attempt = db.session.scalars(select(DeliveryAttempt)).one()
    assert len(attempt.response_body) == 4096


def test_a_failing_head_holds_back_its_target_but_no_other(account, receiver):
    failing, _ = webhook_to(account, receiver.url("/status/500"))
    healthy, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 3)
    drain_target(failing.id)
    drain_target(healthy.id)
    assert len(receiver.requests_to("/status/500")) == 1  # only the head was tried
    assert [m.status for m in messages_of(failing.id)] == ["pending"] * 3
    assert odometers(receiver.requests_to("/ok")) == [1.0, 2.0, 3.0]
    assert queue_for(db.session.get(Target, failing.id)) == RETRIES
    assert queue_for(db.session.get(Target, healthy.id)) == DELIVERIES


def test_messages_go_out_in_order_and_failing_recovers(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/status/503"))
    emit(account, 5)
    drain_target(webhook.id)
    webhook.url = receiver.url("/ok")
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    drain_target(webhook.id)
    assert odometers(receiver.requests_to("/ok")) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert db.session.get(Target, webhook.id).status == "active"
    ids = {m.message_id for m in messages_of(webhook.id)}
    assert {r.headers["webhook-id"] for r in receiver.requests_to("/")} <= ids


def test_a_worker_whose_lease_expired_cannot_mark_anything(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 1)
    (claimed,) = claim_due_messages(webhook.id, "worker-a", utcnow(), 10)
    db.session.execute(
        update(OutboxMessage).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    record_results(
        "worker-a", [Outcomes(webhook, [claimed], [Result(delivered=True, status_code=200)])]
    )
    (message,) = messages_of(webhook.id)
    assert message.status == "sending" and message.attempts == 0
    assert db.session.scalars(select(DeliveryAttempt)).all() == []
    # Another worker takes it over and delivers it.
    drain_target(webhook.id)
    assert messages_of(webhook.id)[0].status == "delivered"


def test_a_worker_whose_claim_was_taken_over_cannot_mark_it(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 1)
    (claimed,) = claim_due_messages(webhook.id, "worker-a", utcnow(), 10)
    # worker-a's lease ran out and worker-b claimed the message, with a fresh lease.
    db.session.execute(
        update(OutboxMessage).values(
            lease_owner="worker-b", lease_expires_at=utcnow() + timedelta(minutes=1)
        )
    )
    db.session.commit()
    record_results(
        "worker-a", [Outcomes(webhook, [claimed], [Result(delivered=False, error="late")])]
    )
    (message,) = messages_of(webhook.id)
    assert message.status == "sending" and message.lease_owner == "worker-b"
    assert message.attempts == 0 and message.last_error is None
    assert db.session.scalars(select(DeliveryAttempt)).all() == []


def test_retention_ends_in_dead_or_expired_and_counts_down(account, receiver):
    failing, _ = webhook_to(account, receiver.url("/status/500"))
    paused, _ = webhook_to(account, receiver.url("/ok"))
    pause_webhook(paused)
    db.session.commit()
    emit(account, 1)
    drain_target(failing.id)
    long_ago = utcnow() - timedelta(hours=73)
    db.session.execute(update(OutboxMessage).values(retain_from=long_ago))
    db.session.commit()
    assert close_old_messages(utcnow()) == 2
    assert messages_of(failing.id)[0].status == "dead"
    assert messages_of(paused.id)[0].status == "expired"
    assert db.session.get(Target, failing.id).queue_depth == 0
    assert db.session.get(Target, paused.id).queue_depth == 0


def test_redeliver_and_recover_keep_the_webhook_id(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 3)
    drain_target(webhook.id)
    first = messages_of(webhook.id)[0]
    assert redeliver(webhook, first)
    db.session.commit()
    drain_target(webhook.id)
    ids = [r.headers["webhook-id"] for r in receiver.requests_to("/ok")]
    assert ids.count(first.message_id) == 2 and len(ids) == 4
    db.session.execute(update(OutboxMessage).values(status=MessageStatus.DEAD))
    db.session.commit()
    assert recover_since(webhook, utcnow() - timedelta(hours=1)) == 3
    db.session.commit()
    assert db.session.get(Target, webhook.id).queue_depth == 3
    drain_target(webhook.id)
    assert len(receiver.requests_to("/ok")) == 7
    assert [m.status for m in messages_of(webhook.id)] == ["delivered"] * 3


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_QUEUE_DEPTH_CAP=3)
def test_the_queue_cap_pauses_and_resume_delivers_the_backlog(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 5)
    target = db.session.get(Target, webhook.id)
    assert target.status == "paused" and "Queue Depth passed 3" in target.status_reason
    assert target.queue_depth == 5
    drain_target(webhook.id)
    assert receiver.requests_to("/ok") == []
    resume_webhook(target)
    db.session.commit()
    drain_target(webhook.id)
    assert odometers(receiver.requests_to("/ok")) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert db.session.get(Target, webhook.id).queue_depth == 0


def test_counters_and_sequences(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 4)
    target = db.session.get(Target, webhook.id)
    assert (target.queue_depth, target.total_messages) == (4, 4)
    assert [m.sequence for m in messages_of(webhook.id)] == [1, 2, 3, 4]
    drain_target(webhook.id)
    db.session.refresh(target)
    assert (target.queue_depth, target.total_messages) == (0, 4)


def test_events_reach_only_the_webhooks_that_want_them(account, receiver):
    speed, _ = webhook_to(account, receiver.url("/ok"), event_type="speed", threshold_mph=70)
    landmarks, _ = webhook_to(account, receiver.url("/ok"), event_type="landmark_change")
    slow = DetectedEvent(
        EVENT_TYPES["speed"],
        utcnow(),
        replace(EXAMPLE_VEHICLE, speed_mph=65.0),
        {"threshold_mph": 0},
    )
    fast = replace(slow, vehicle=replace(EXAMPLE_VEHICLE, speed_mph=71.0))
    crossing_details = {"landmark": {"id": 1, "name": "Yard"}, "transition": "enter"}
    enter = DetectedEvent(
        EVENT_TYPES["landmark_enter"], utcnow(), EXAMPLE_VEHICLE, crossing_details
    )
    fan_out([slow, fast, enter], account_targets(account))
    db.session.commit()
    assert len(messages_of(speed.id)) == 1
    assert messages_of(speed.id)[0].payload["data"]["threshold_mph"] == 70
    (crossing,) = messages_of(landmarks.id)
    assert crossing.payload["type"] == "landmark_change"


def test_a_commit_nudges_one_drain_per_target_and_the_sweeper_renudges(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/ok"))
    emit(account, 3)
    connection = redis_client()
    job_key = f"rq:job:{drain_job_id(webhook.id)}"
    assert connection.exists(job_key)
    emit(account, 2, start=4)  # a drain is queued already: no second job
    queue_key = f"rq:queue:{NAMESPACE}:deliveries"
    assert connection.lrange(queue_key, 0, -1).count(drain_job_id(webhook.id).encode()) == 1
    # Redis forgets everything: the sweeper finds the work in the database.
    connection.delete(job_key, queue_key)
    assert sweep()["nudged"] == 1
    assert connection.exists(job_key)


def test_demo_sends_a_marked_test_event(account, receiver):
    from webhooks.lifecycle import send_demo

    webhook, secret = webhook_to(account, receiver.url("/ok"), event_type="speed", threshold_mph=80)
    send_demo(webhook)
    db.session.commit()
    drain_target(webhook.id)
    (request,) = receiver.requests_to("/ok")
    body = StandardWebhook(secret).verify(request.body, dict(request.headers))
    assert body["test"] is True and body["type"] == "speed"
    assert body["data"]["threshold_mph"] == 80 and body["data"]["speed_mph"] >= 80


def test_latency_of_a_single_delivery_is_recorded(account, receiver):
    webhook, _ = webhook_to(account, receiver.url("/slow/50"))
    emit(account, 1)
    started = time.monotonic()
    drain_target(webhook.id)
    assert time.monotonic() - started >= 0.05
    assert messages_of(webhook.id)[0].last_latency_ms >= 50


def test_a_drain_locks_many_targets_in_the_order_fan_out_does(account):
    """PostgreSQL: a fan-out locks its targets' rows in id order; a drain renewing
    its leases on many targets in one statement must too, or the two deadlock and
    the drain job dies with its claims (they wait out their lease)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no lock order to keep")
    first, _ = webhook_to(account, "https://first.example/hook")
    second, _ = webhook_to(account, "https://second.example/hook")
    first_id, second_id = sorted((first.id, second.id))
    # Make the drain's UPDATE meet the second row first: an update writes the first
    # target's row anew behind it, and a sequential scan reads in that order.
    db.session.execute(update(Target).where(Target.id == first_id).values(last_error=None))
    db.session.commit()
    locked, failures, engine = threading.Event(), [], db.engine

    def fan_out_in_id_order() -> None:
        try:
            with engine.begin() as connection:
                for target_id in (first_id, second_id):
                    connection.execute(
                        update(Target)
                        .where(Target.id == target_id)
                        .values(total_messages=Target.total_messages + 1)
                    )
                    locked.set()
                    time.sleep(0.5)  # the drain is waiting by now
        except Exception as error:
            failures.append(error)

    other = threading.Thread(target=fan_out_in_id_order)
    other.start()
    locked.wait(5)
    db.session.execute(text("SET LOCAL enable_indexscan = off"))
    db.session.execute(text("SET LOCAL enable_bitmapscan = off"))
    try:
        held = acquire_drains({second_id: 0, first_id: 0}, "worker-a", utcnow())
        db.session.commit()
    except Exception as error:
        failures.append(error)
        db.session.rollback()
        held = set()
    other.join(10)
    assert failures == []
    assert held == {first_id, second_id}


def test_a_follow_up_does_not_wait_for_a_job_that_took_the_target(account, monkeypatch):
    """Two jobs of a target finishing at once each waited for the other to end
    (0.5 s with nothing sent, twice a second at 200 events/s on PostgreSQL). A
    finishing drain leaves the ask to a running job that holds the target and
    returns at once; that job reads the ask when it lets go."""
    webhook, _ = webhook_to(account, "https://example.com/hook")
    emit(account, 1)
    queue = queue_for(webhook)
    running = Job.create(
        "outbox.drain.drain_target",
        args=(webhook.id,),
        id=drain_job_id(webhook.id),
        connection=redis_client(),
        origin=queue,
    )
    running.set_status(JobStatus.STARTED)
    running.save()
    assert acquire_drain(webhook.id, "the-running-job", utcnow())
    db.session.commit()
    # Whether it waited, not how long it took: a busy machine makes any time slow.
    waits: list[float] = []
    monkeypatch.setattr("outbox.drain.time.sleep", waits.append)
    follow_up(webhook.id, own_job=False)  # this drain served the target for another job
    monkeypatch.undo()
    assert waits == []
    assert redis_client().get(again_key(webhook.id))  # the running job is asked
    # A finishing job that does not hold the target is waited for, then replaced.
    release_drain(webhook.id, "the-running-job")
    threading.Timer(0.1, running.delete).start()
    follow_up(webhook.id, own_job=False)
    assert Job.fetch(drain_job_id(webhook.id), connection=redis_client()).get_status() == (
        JobStatus.QUEUED
    )
