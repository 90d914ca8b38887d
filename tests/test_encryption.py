"""Secrets at rest: only ciphertext in the database, and `flask keys rotate`
re-encrypting every secret under the first key so the old key can go."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text

from core.extensions import db
from integrations.base import secrets_of, store_secrets
from integrations.models import Integration
from tests.conftest import make_user, reset_database
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
API_KEY = "fl-api-key-rotate-me-0042"


def raw(sql: str) -> list[str]:
    return [row[0] for row in db.session.execute(text(sql))]


def test_rotation_re_encrypts_every_secret_under_the_first_key(make_app):
    first = make_app(FLEETHOOK_ENCRYPTION_KEYS=[OLD])
    with first.app_context():
        user = make_user()
        header = {"name": "Authorization", "value": "Bearer header-secret"}
        webhook, secret = create_webhook(
            user.account_id,
            {
                "event_type": "location",
                "name": "R",
                "url": "https://hooks.example.com/r",
                "custom_header": header,
            },
        )
        integration = Integration(
            account_id=user.account_id,
            provider="fleetio",
            options={},
            vehicle_map={},
            unmatched_vins=[],
        )
        store_secrets(integration, {"api_key": API_KEY})
        db.session.add(integration)
        db.session.commit()
        before = raw("SELECT signing_secret FROM webhook") + raw(
            "SELECT credentials FROM integration"
        )
        assert not any(secret in value or API_KEY in value for value in before)
        ids = webhook.id, integration.id
        db.session.remove()

    both = make_app(FLEETHOOK_ENCRYPTION_KEYS=[NEW, OLD])
    result = both.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 3 secrets" in result.output  # signing secret, header, credentials

    only_new = make_app(FLEETHOOK_ENCRYPTION_KEYS=[NEW])
    with only_new.app_context():
        webhook = db.session.get(Webhook, ids[0])
        assert webhook.signing_secret == secret
        assert webhook.custom_header_value == "Bearer header-secret"
        assert secrets_of(db.session.get(Integration, ids[1])) == {"api_key": API_KEY}
        after = raw("SELECT signing_secret FROM webhook") + raw(
            "SELECT credentials FROM integration"
        )
        assert set(after).isdisjoint(before)
        db.session.remove()

    only_old = make_app(FLEETHOOK_ENCRYPTION_KEYS=[OLD])
    with only_old.app_context(), pytest.raises(InvalidToken):
        db.session.get(Webhook, ids[0]).signing_secret  # noqa: B018
    with only_new.app_context():
        reset_database()
