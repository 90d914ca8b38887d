"""The auto-pause email is queued only once the pause commits: a fan-out that
passes the queue cap and is rolled back sends nothing, and a committed one queues
exactly one email, which its job can only find after the paused row is there."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.extensions import db, queue
from outbox.fanout import account_targets, fan_out
from outbox.models import Target
from tests.conftest import make_user
from tests.test_delivery import location
from webhooks.lifecycle import create_webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_QUEUE_DEPTH_CAP=3, FLEETHOOK_SMTP_URL="smtp://127.0.0.1:2525"
)
EMAIL_JOB = "outbox.alerts.send_auto_pause_email"


def email_jobs() -> list[tuple[str, tuple[object, ...]]]:
    return [(job.func_name, job.args) for job in queue("maintenance").get_jobs()]


@pytest.fixture
def webhook(app):
    account_id = make_user().account_id
    webhook, _ = create_webhook(
        account_id,
        {
            "event_type": "location",
            "name": "Dispatch",
            "url": "https://hooks.example.com/in",
            "contact_email": "ops@acme.example.com",
        },
    )
    db.session.commit()
    return webhook


def pass_the_cap(account_id: int) -> None:
    fan_out([location(float(n)) for n in range(5)], account_targets(account_id))


def committed_status(target_id: int) -> str:
    """The status as another connection (a worker) reads it now."""
    with db.engine.connect() as other:
        return other.execute(
            text("SELECT status FROM target WHERE id = :id"), {"id": target_id}
        ).scalar_one()


def test_a_rolled_back_auto_pause_sends_nothing(webhook):
    pass_the_cap(webhook.account_id)
    assert webhook.status == "paused"  # in the transaction
    db.session.rollback()
    assert email_jobs() == []
    assert db.session.get(Target, webhook.id).status == "active"


def test_a_committed_auto_pause_queues_one_email_after_the_commit(webhook):
    pass_the_cap(webhook.account_id)
    assert email_jobs() == []  # not yet: a worker would find the row still active
    assert committed_status(webhook.id) == "active"
    db.session.commit()
    assert email_jobs() == [(EMAIL_JOB, (webhook.id,))]
    assert committed_status(webhook.id) == "paused"
    # A later commit does not queue it again.
    db.session.commit()
    assert len(email_jobs()) == 1
