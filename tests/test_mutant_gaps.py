"""Guarantees of the delivery engine that `make mutants` found no test for: each test
here kills a mutant that survived the rest of the suite (see the mutant's name in
the test's docstring)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from outbox.claims import (
    Room,
    _take,
    acquire_drains,
    claim_due_messages,
    claim_lane_runs,
    has_due_messages,
    release_drains,
    release_messages,
    supersede_backlogs,
)
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import OutboxMessage, Target
from tests.conftest import make_user
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook
from webhooks.url_safety import is_plain_http, url_problems

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)


def one_claimed_message(receiver) -> OutboxMessage:
    """A webhook with one message, claimed by worker-a."""
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Receiver", "url": receiver.url("/ok")}
    )
    db.session.commit()
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)],
        account_targets(account_id),
    )
    db.session.commit()
    (claimed,) = claim_due_messages(webhook.id, "worker-a", utcnow(), 10)
    return claimed


def messages_of(target_id: int) -> list[OutboxMessage]:
    db.session.expire_all()
    query = select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    return list(db.session.scalars(query.order_by(OutboxMessage.sequence)))


def message_of(target_id: int) -> OutboxMessage:
    db.session.expire_all()
    return db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.target_id == target_id)
    ).one()


def test_a_drain_that_lost_its_claim_cannot_hand_the_message_back(app, receiver):
    """release_messages' fence (outbox.claims.x_release_messages__mutmut_11): a drain
    whose lease ran out and was taken over must not put the new owner's message back
    to pending, or a third drain would send it while the second still is."""
    claimed = one_claimed_message(receiver)
    taken_over_until = utcnow() + timedelta(minutes=1)
    db.session.execute(
        update(OutboxMessage).values(lease_owner="worker-b", lease_expires_at=taken_over_until)
    )
    db.session.commit()

    release_messages([claimed.id], "worker-a")

    message = message_of(claimed.target_id)
    assert (message.status, message.lease_owner) == ("sending", "worker-b")
    assert message.lease_expires_at == taken_over_until


def test_a_message_handed_back_holds_no_lease(app, receiver):
    """release_messages clears the lease (x_release_messages__mutmut_6 and _7): a
    message handed back is pending and nobody's, so the drain that handed it back
    could not mark it later through a lease it no longer has."""
    claimed = one_claimed_message(receiver)

    release_messages([claimed.id], "worker-a")

    message = message_of(claimed.target_id)
    assert (message.status, message.lease_owner, message.lease_expires_at) == (
        "pending",
        None,
        None,
    )


@pytest.mark.parametrize("url", ["http://[::1/hook", "http://[not-an-address]/hook"])
def test_an_unparsable_plain_http_url_gets_the_warning(url: str) -> None:
    """is_plain_http on a URL urlsplit refuses (x_is_plain_http__mutmut_11): when in
    doubt the form warns that events would cross networks unencrypted."""
    assert is_plain_http(url) is True


def test_a_claim_that_loses_part_of_a_run_keeps_its_head_and_hands_back_the_rest(app, receiver):
    """_take, the UPDATE that decides who won (x__take__mutmut_17, _26, _29, _31-33):
    a message another drain claimed between this drain's read and its UPDATE stays
    that drain's; of the run, this drain keeps the unbroken part before it and
    hands back the messages after it, which would otherwise go out of order."""
    first = one_claimed_message(receiver)
    target_id = first.target_id
    release_messages([first.id], "worker-a")
    account_id = db.session.get(Webhook, target_id).account_id
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE) for _ in range(2)],
        account_targets(account_id),
    )
    db.session.commit()
    ids = [m.id for m in messages_of(target_id)]
    # Another drain claimed the second message meanwhile, with a live lease.
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == ids[1])
        .values(
            status="sending",
            lease_owner="worker-a",
            lease_expires_at=utcnow() + timedelta(minutes=1),
        )
    )
    db.session.commit()

    taken = _take([ids], "worker-b", utcnow())

    assert [[m.id for m in run] for run in taken] == [ids[:1]]
    states = [(m.status, m.lease_owner) for m in messages_of(target_id)]
    assert states == [("sending", "worker-b"), ("sending", "worker-a"), ("pending", None)]


def test_a_delivered_message_holds_no_lease(app, receiver):
    """record_results clears the lease of what it delivers (x_record_results__mutmut_35,
    when it lived in outbox/drain.py):
    only a message being sent holds one, which is what lets a claim re-check a row
    by its lease alone."""
    claimed = one_claimed_message(receiver)
    release_messages([claimed.id], "worker-a")

    drain_target(claimed.target_id)

    message = message_of(claimed.target_id)
    assert (message.status, message.lease_owner, message.lease_expires_at) == (
        "delivered",
        None,
        None,
    )


def test_an_allowed_network_opens_only_itself() -> None:
    """may_connect with FLEETHOOK_ALLOWED_NETWORKS (x_may_connect__mutmut_9): an
    address inside an allowed network is accepted, one outside it still refused."""
    allowed = [ipaddress.ip_network("10.0.0.0/8")]
    assert url_problems("http://10.1.2.3/hook", False, allowed_networks=allowed) == []
    assert url_problems("http://192.168.1.5/hook", False, allowed_networks=allowed) == [
        "192.168.1.5 is not a public address; webhooks go to the internet."
    ]


def test_a_drain_releases_only_its_own_lease_on_the_targets_it_names(app, receiver):
    """release_drains' conditions (x_release_drains__mutmut_10, _11): releasing one
    target leaves this drain's other targets held, and a drain whose lease another
    drain took over frees nothing, or two drains would send to one target at once."""
    account_id = make_user().account_id
    first, second = (
        create_webhook(
            account_id, {"event_type": "location", "name": name, "url": receiver.url("/ok")}
        )[0]
        for name in ("First", "Second")
    )
    db.session.commit()
    now = utcnow()
    assert acquire_drains({first.id: 0, second.id: 0}, "worker-a", now) == {first.id, second.id}
    db.session.commit()
    # worker-a's lease on the second target ran out and worker-b took it over.
    db.session.execute(
        update(Target)
        .where(Target.id == second.id)
        .values(drain_owner="worker-b", drain_expires_at=now + timedelta(minutes=1))
    )
    db.session.commit()

    release_drains([second.id], "worker-a")
    release_drains([first.id], "worker-b")

    db.session.expire_all()
    owners = [db.session.get(Target, t.id).drain_owner for t in (first, second)]
    assert owners == ["worker-a", "worker-b"]


def test_a_finished_drain_leaves_nothing_in_flight(app, receiver):
    """release_drains resets the in-flight count the grid shows
    (x_release_drains__mutmut_15): after the drain, no request is in flight."""
    claimed = one_claimed_message(receiver)
    release_messages([claimed.id], "worker-a")

    drain_target(claimed.target_id)

    db.session.expire_all()
    target = db.session.get(Target, claimed.target_id)
    assert (target.drain_owner, target.in_flight) == (None, 0)


def webhook_of(event_type: str, receiver, email: str = "admin@acme.example.com") -> Webhook:
    account_id = make_user("Acme Haulage", email).account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": event_type, "name": "Receiver", "url": receiver.url("/ok")}
    )
    db.session.commit()
    return webhook


def queue(webhook: Webhook, events: list[tuple[str, int]]) -> list[int]:
    """Fan out one event of each (type, vehicle id), in this order; their message ids."""
    (messages,) = zip(
        *fan_out(
            [
                DetectedEvent(
                    EVENT_TYPES[event_type], utcnow(), replace(EXAMPLE_VEHICLE, vehicle_id=vehicle)
                )
                for event_type, vehicle in events
            ],
            [webhook],
        ),
        strict=True,
    )
    db.session.commit()
    return [message.id for message in messages]


def statuses(ids: list[int]) -> list[str]:
    db.session.expire_all()
    found = {m.id: m for m in db.session.scalars(select(OutboxMessage))}
    return [found[i].status for i in ids]


def test_latest_wins_supersedes_every_lane_but_only_what_may_go(app, receiver):
    """supersede_backlogs (outbox.claims.x_supersede_backlogs__mutmut_5, 32, 34, 47–49,
    55, 56, 58, 66, 68, 71, 76, 78–80, 84): in every lane whose head may go, all open
    messages but the newest end superseded, with their end time and no lease; the
    newest takes over the lane's retries. A lane of one, a lane whose head waits for
    its retry, a message another drain holds and a delivered message stay as they are."""
    webhook = webhook_of("location", receiver)
    now = utcnow() + timedelta(seconds=1)
    delivered, a1, a2, a3, b1, b2, c1, c2, d1, e1, e2, e3 = queue(
        webhook,
        [("location", 1)] * 4
        + [("location", 2)] * 2
        + [("location", 3)] * 2
        + [("location", 4)]
        + [("location", 5)] * 3,
    )
    later = now + timedelta(minutes=5)

    def set_(ids: list[int], **values) -> None:
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(**values))

    # Before the lane: delivered, and (whatever its columns) no part of the backlog.
    set_([delivered], status="delivered", finished_at=now, next_attempt_at=later)
    # The head of lane 1 was claimed by a drain that died, after two attempts.
    set_([a1], status="sending", lease_owner="dead", lease_expires_at=now - timedelta(seconds=1))
    set_([a1], attempts=2)
    set_([c1], next_attempt_at=later)  # lane 3 waits for its head's retry
    # Lane 5's middle message is held by a live drain.
    set_([e2], status="sending", lease_owner="live", lease_expires_at=later)
    # A lane's order is its lane_sequence, not the order its rows were written (which
    # PostgreSQL does not promise to return): b2 came first, b1 is the newest.
    lane_2 = dict(
        db.session.execute(
            select(OutboxMessage.id, OutboxMessage.lane_sequence).where(
                OutboxMessage.id.in_([b1, b2])
            )
        ).all()
    )
    set_([b1], lane_sequence=lane_2[b2])
    set_([b2], lane_sequence=lane_2[b1])
    db.session.commit()
    depth = db.session.get(Target, webhook.id).queue_depth

    assert supersede_backlogs(webhook.id, now) == 4  # a1, a2, b2, e1
    db.session.commit()

    assert statuses([delivered, a1, a2, a3]) == ["delivered", "superseded", "superseded", "pending"]
    assert statuses([b1, b2]) == ["pending", "superseded"]
    assert statuses([c1, c2, d1]) == ["pending", "pending", "pending"]
    assert statuses([e1, e2, e3]) == ["superseded", "sending", "pending"]
    ended = {m.id: m for m in db.session.scalars(select(OutboxMessage))}
    assert all(ended[i].finished_at == now for i in (a1, a2, b2, e1))
    assert (ended[a1].lease_owner, ended[a1].lease_expires_at) == (None, None)
    assert (ended[e2].lease_owner, ended[a3].attempts, ended[a2].attempts) == ("live", 2, 0)
    assert db.session.get(Target, webhook.id).queue_depth == depth - 4
    assert supersede_backlogs(webhook.id, now) == 0


@pytest.mark.parametrize(
    "event_types, superseded",
    [
        (None, ["enter 1", "leave 1", "enter 2"]),
        ({"landmark_enter", "landmark_leave"}, ["enter 1", "leave 1"]),
    ],
)
def test_latest_wins_by_type_keeps_each_types_newest(app, receiver, event_types, superseded):
    """supersede_backlogs' lanes (outbox.claims.x_supersede_backlogs__mutmut_37–39):
    without types (a webhook) a lane is its vehicle's, whatever the types; with the
    latest-value types an integration names, each type keeps its own newest."""
    webhook = webhook_of("landmark_change", receiver)
    names = ["enter 1", "leave 1", "enter 2", "leave 2"]
    ids = dict(
        zip(
            names,
            queue(webhook, [("landmark_enter", 7), ("landmark_leave", 7)] * 2),
            strict=True,
        )
    )
    # A webhook's messages all carry its own type (landmark_change); an
    # integration's carry each event's, as these are made to.
    for name, message_id in ids.items():
        kind = "landmark_enter" if name.startswith("enter") else "landmark_leave"
        db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(event_type=kind)
        )
    db.session.commit()
    supersede_backlogs(webhook.id, utcnow() + timedelta(seconds=1), event_types)
    db.session.commit()
    ended = [
        name
        for name, status in zip(names, statuses(list(ids.values())), strict=True)
        if status == "superseded"
    ]
    assert ended == superseded


def test_a_claim_leases_to_its_owner_at_most_the_limit_and_nothing_when_none_is_due(app, receiver):
    """claim_due_messages (outbox.claims.x_claim_due_messages__mutmut_3, 10, 15)."""
    webhook = webhook_of("location", receiver)
    first, second, _ = queue(webhook, [("location", 1)] * 3)
    now = utcnow() + timedelta(seconds=1)
    claimed = claim_due_messages(webhook.id, "worker-a", now, 2)
    assert [(m.id, m.lease_owner) for m in claimed] == [(first, "worker-a"), (second, "worker-a")]
    db.session.execute(update(OutboxMessage).values(next_attempt_at=now + timedelta(minutes=1)))
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "sending")
        .values(lease_expires_at=now + timedelta(minutes=1))
    )
    db.session.commit()
    assert claim_due_messages(webhook.id, "worker-b", now, 2) == []


@pytest.mark.parametrize("ordering", ["webhook", "none"])
def test_a_claim_for_more_requests_takes_its_own_oldest_due_messages_within_its_room(
    app, receiver, ordering
):
    """claim_lane_runs for a target in one lane or in none
    (outbox.claims.x_claim_lane_runs__mutmut_10, 17, 18, 22): one run of at most
    `run_length` from the head, or at most `lanes` single messages, oldest first (by
    sequence, not by row id), and never another target's."""
    webhook = webhook_of("location", receiver)
    first, second, third = queue(webhook, [("location", 1), ("location", 2), ("location", 3)])
    other = webhook_of("location", receiver, "admin@blue.example.com")
    (theirs,) = queue(other, [("location", 1)])  # another account's, due and older
    # The third is the oldest of ours: sequences say so, whatever the ids.
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == third).values(sequence=0))
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == theirs).values(sequence=-1))
    db.session.execute(update(Target).where(Target.id == webhook.id).values(ordering=ordering))
    db.session.commit()
    target = db.session.get(Target, webhook.id)

    claimed = claim_lane_runs([Room(target, 2, 2)], "worker-a", utcnow() + timedelta(seconds=1))

    runs = {target_id: [[m.id for m in run] for run in runs] for target_id, runs in claimed.items()}
    expected = [[third, first]] if ordering == "webhook" else [[third], [first]]
    assert runs == {webhook.id: expected}


def test_one_claim_for_many_targets_takes_each_ones_runs(app, receiver):
    """claim_lane_runs over several targets at once (the drain's one claim)
    (outbox.claims.x_claim_lane_runs__mutmut_29, 44): each target gets its runs."""
    orderings = {"none": "admin@a.example.com", "vehicle": "admin@b.example.com"}
    targets = []
    for ordering, email in [*orderings.items(), ("none", "admin@c.example.com")]:
        webhook = webhook_of("location", receiver, email)
        queue(webhook, [("location", 1), ("location", 2)])
        db.session.execute(update(Target).where(Target.id == webhook.id).values(ordering=ordering))
        targets.append(webhook.id)
    db.session.commit()
    rooms = [Room(db.session.get(Target, target_id), 2, 1) for target_id in targets]

    claimed = claim_lane_runs(rooms, "worker-a", utcnow() + timedelta(seconds=1))

    assert {target_id: len(runs) for target_id, runs in claimed.items()} == dict.fromkeys(
        targets, 2
    )


@pytest.mark.parametrize(
    "ordering, one_lane_waits, nothing_due_here",
    [("vehicle", True, False), ("webhook", False, False), ("none", True, False)],
)
def test_whether_a_claim_would_find_work_follows_the_targets_ordering(
    app, receiver, ordering, one_lane_waits, nothing_due_here
):
    """has_due_messages, which decides whether a drain goes on
    (outbox.claims.x_has_due_messages__mutmut_1–3, 15, 17–22, 24, 30, 31): with vehicle 1's head
    waiting for its retry, vehicle 2's held by a live drain and vehicle 3's due, a
    vehicle-ordered or unordered target has work and a webhook-ordered one (whose
    head waits) has none; without vehicle 3, none has work, whatever another
    account's target holds."""
    now = utcnow() + timedelta(seconds=1)
    webhook = webhook_of("location", receiver)
    waiting, held, due = queue(webhook, [("location", 1), ("location", 2), ("location", 3)])
    other = webhook_of("location", receiver, "admin@blue.example.com")
    queue(other, [("location", 1)])
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == waiting)
        .values(next_attempt_at=now + timedelta(minutes=5))
    )
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == held)
        .values(status="sending", lease_owner="live", lease_expires_at=now + timedelta(minutes=1))
    )
    db.session.execute(update(Target).where(Target.id == webhook.id).values(ordering=ordering))
    db.session.commit()
    target = db.session.get(Target, webhook.id)

    assert has_due_messages(target, now) is one_lane_waits
    # A serial kind names the order it sends in, whatever the target's.
    assert has_due_messages(target, now, "webhook") is False

    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == due)
        .values(next_attempt_at=now + timedelta(minutes=5))
    )
    db.session.commit()
    assert has_due_messages(target, now) is nothing_due_here

    # Vehicle 1's retry comes due: every ordering has work.
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == waiting).values(next_attempt_at=now)
    )
    db.session.commit()
    assert has_due_messages(target, now) is True


def test_a_lane_run_stops_at_its_length_and_before_a_message_that_waits(app, receiver):
    """_due_lane_runs (outbox.claims.x__due_lane_runs__mutmut_29, 30, 36): a run is
    its lane's due head and the due messages right behind it, at most `run_length`;
    a message waiting for its retry ends the run, and nothing behind it joins."""
    webhook = webhook_of("location", receiver)
    m1, m2, m3, n1, n2, n3 = queue(webhook, [("location", 1)] * 3 + [("location", 2)] * 3)
    now = utcnow() + timedelta(seconds=1)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == m2)
        .values(next_attempt_at=now + timedelta(minutes=5))
    )
    db.session.commit()
    target = db.session.get(Target, webhook.id)

    claimed = claim_lane_runs([Room(target, 2, 2)], "worker-a", now)

    assert [[m.id for m in run] for run in claimed[webhook.id]] == [[m1], [n1, n2]]


def test_a_claim_touches_only_the_messages_it_wants(app, receiver):
    """_take's UPDATE (outbox.claims.x__take__mutmut_16): claiming one target's
    messages leaves every other message alone, even another target's whose drain
    died (claimable, but not wanted here)."""
    mine = webhook_of("location", receiver)
    (wanted,) = queue(mine, [("location", 1)])
    theirs = webhook_of("location", receiver, "admin@blue.example.com")
    (orphan,) = queue(theirs, [("location", 1)])
    now = utcnow() + timedelta(seconds=1)
    died_at = now - timedelta(seconds=30)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == orphan)
        .values(status="sending", lease_owner="dead", lease_expires_at=died_at)
    )
    db.session.commit()

    assert [m.id for m in claim_due_messages(mine.id, "worker-a", now, 10)] == [wanted]

    db.session.expire_all()
    left = db.session.get(OutboxMessage, orphan)
    assert (left.status, left.lease_owner, left.lease_expires_at) == ("sending", "dead", died_at)


def test_a_disabled_target_gets_nothing_from_the_fan_out(app):
    """account_targets leaves disabled targets out (x_account_targets__mutmut_13)."""
    account_id = make_user().account_id
    webhooks = [
        create_webhook(
            account_id, {"event_type": "location", "name": name, "url": "https://example.com/"}
        )[0]
        for name in ("Live", "Gone")
    ]
    db.session.commit()
    live, gone = webhooks
    gone.status = "disabled"
    db.session.commit()
    fan_out(
        [DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)],
        account_targets(account_id),
    )
    db.session.commit()
    assert (len(messages_of(live.id)), len(messages_of(gone.id))) == (1, 0)


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_QUOTA_PENDING_MESSAGES=1)
def test_over_the_pending_quota_a_demo_event_still_goes(app):
    """Below the pending quota a paused target still queues; at it, a fleet's event is
    dropped and counted, a person's test event is not (x_fan_out__mutmut_18, _24,
    _25, _41, _51, _52, _60; x__over_pending_quota__mutmut_20, _21)."""
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Paused", "url": "https://example.com/"}
    )
    webhook.status = "paused"
    db.session.commit()
    event = DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)
    fan_out([event], account_targets(account_id))  # none waiting: it queues, and reaches 1
    db.session.commit()
    fan_out([event, replace(event, is_test=True)], account_targets(account_id))
    db.session.commit()
    assert [m.is_test for m in messages_of(webhook.id)] == [False, True]
    db.session.refresh(webhook)
    assert webhook.dropped_by_quota == 1


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_QUOTA_PENDING_MESSAGES=1)
def test_the_fan_out_leaves_each_target_s_counters_current_in_the_session(app):
    """The counters the fan-out moved by UPDATE … RETURNING are the ones its caller
    sees next, without a reload (x_fan_out__mutmut_111, _119; x__count_dropped
    __mutmut_12, _21)."""
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Hook", "url": "https://example.com/"}
    )
    db.session.commit()
    event = DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)
    fan_out([event, event], account_targets(account_id))
    assert (webhook.total_messages, webhook.queue_depth) == (2, 2)
    webhook.status = "paused"
    fan_out([event], [webhook])
    assert webhook.dropped_by_quota == 1


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_QUEUE_DEPTH_CAP=2)
def test_a_target_is_paused_only_past_its_queue_depth_cap(app):
    """Queue Depth at the cap still delivers; past it the target pauses
    (x_fan_out__mutmut_132)."""
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id, {"event_type": "location", "name": "Hook", "url": "https://example.com/"}
    )
    db.session.commit()
    event = DetectedEvent(EVENT_TYPES["location"], utcnow(), EXAMPLE_VEHICLE)
    fan_out([event, event], [webhook])
    db.session.commit()
    assert webhook.status == "active"
    fan_out([event], [webhook])
    db.session.commit()
    assert webhook.status == "paused" and webhook.status_cause == "queue_cap"


def test_a_head_claim_takes_no_more_than_its_limit_across_both_open_statuses(app, receiver):
    """_open_in_order reads pending and sending messages apart and merges them, cut at
    the limit (x__open_in_order__mutmut_31): with two messages whose drain died and
    two pending, all due, a claim of two takes the first two by sequence."""
    webhook = webhook_of("location", receiver)
    ids = queue(webhook, [("location", 1)] * 4)
    died = utcnow() - timedelta(seconds=1)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids[:2]))
        .values(status="sending", lease_owner="worker-gone", lease_expires_at=died)
    )
    db.session.commit()
    claimed = claim_due_messages(webhook.id, "worker-a", utcnow(), 2)
    assert [m.id for m in claimed] == ids[:2]
    assert statuses(ids) == ["sending", "sending", "pending", "pending"]
