"""Tenant limits: reports a second (429 with Retry-After, nothing written, other
accounts unaffected), webhooks and integrations per account (API and portal),
pending messages (paused and failing targets' events dropped and counted, active
targets served), the operator's `flask quota` commands, and the chunked ingest of
a batch larger than one transaction."""

from __future__ import annotations

import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from accounts.models import AccountQuota
from accounts.quotas import ReportQuotaExceeded, spend_reports
from core.config import ConfigError, load_config
from core.extensions import db
from core.times import utcnow
from fleet.ingest import chunk_size
from fleet.models import TelemetryReport, Vehicle
from fleet.reports import MAX_BATCH
from fleet.vin import check_digit
from integrations.models import Integration
from outbox.models import OutboxLane, OutboxMessage, Target
from tests.conftest import HTMX, bearer, make_user
from tests.test_integrations_portal import FLEETIO_FORM, fleetio  # noqa: F401 (fixture)
from tests.test_webhooks_portal import valid_form
from webhooks.models import Webhook

T0 = utcnow().replace(microsecond=0) - timedelta(hours=3)
MANAGER = "/webhooks/"
WEBHOOK_GRID = "/manager/webhook/grid"  # what the webhooks grid polls


def vin(account: int, n: int) -> str:
    base = f"1FTLMTS{account}X{n:08d}"
    return base[:8] + check_digit(base) + base[9:]


class Tenant:
    """An account with `vehicles` trucks and `webhooks` Location webhooks, made
    through the API."""

    def __init__(self, client: Any, name: str, vehicles: int = 1, webhooks: int = 1) -> None:
        self.client = client
        user = make_user(name, f"admin@{name.lower()}.example.com")
        self.account_id = user.account_id
        self.headers = bearer(user)
        self.number = self.account_id % 10
        self.vins = [vin(self.number, n) for n in range(vehicles)]
        for n, number in enumerate(self.vins):
            made = client.post(
                "/api/v1/vehicles", headers=self.headers, json={"name": f"Truck {n}", "vin": number}
            )
            assert made.status_code == 201, made.json
        self.webhooks = [self.add_webhook(n) for n in range(webhooks)]

    def add_webhook(self, n: int) -> Any:
        return self.client.post(
            "/api/v1/webhooks",
            headers=self.headers,
            json={
                "event_type": "location",
                "name": f"Feed {n}",
                "url": f"https://hooks.example.com/{n}",
            },
        )

    def reports(self, count: int, start: int = 0) -> list[dict[str, Any]]:
        """`count` position reports, one a second from `start`, round the trucks."""
        return [
            {
                "vin": self.vins[n % len(self.vins)],
                "type": "position",
                "time": (T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
                "latitude": 41.88,
                "longitude": -87.63,
                "speed_mph": 30.0,
                "heading": 90,
                "ignition": True,
            }
            for n in range(start, start + count)
        ]

    def post(self, reports: list[dict[str, Any]]) -> Any:
        return self.client.post(
            "/api/v1/telemetry", json={"reports": reports}, headers=self.headers
        )

    def stored(self) -> tuple[int, int]:
        """(telemetry reports, outbox messages) of this account."""
        db.session.expire_all()
        reports = db.session.scalar(
            select(func.count())
            .select_from(TelemetryReport)
            .join(Vehicle)
            .where(Vehicle.account_id == self.account_id)
        )
        messages = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .join(Target)
            .where(Target.account_id == self.account_id)
        )
        return reports or 0, messages or 0


def quota(app: Any, *args: str) -> Any:
    """Run `flask quota …` as an operator would."""
    result = app.test_cli_runner().invoke(args=["quota", *args])
    db.session.rollback()  # see what the command wrote
    return result


# --- reports a second -------------------------------------------------------------


def test_a_flood_gets_429_with_retry_after_writes_nothing_and_spares_other_accounts(app, client):
    flooder, neighbour = Tenant(client, "Flooder"), Tenant(client, "Neighbour")
    # One report a second, in bursts of 1,000: one 600-report batch fits, a second not.
    limit = ["--reports-per-second", "1", "--reports-burst", "1000"]
    assert quota(app, "set", str(flooder.account_id), *limit).exit_code == 0

    batches = [(flooder, flooder.reports(600, start=600 * n)) for n in range(4)]
    batches += [(neighbour, neighbour.reports(100, start=100 * n)) for n in range(3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda job: (job[0], job[0].post(job[1])), batches))

    flooded = [response for tenant, response in answers if tenant is flooder]
    assert sorted(r.status_code for r in flooded) == [202, 429, 429, 429]
    for refused in (r for r in flooded if r.status_code == 429):
        assert refused.mimetype == "application/problem+json"
        # 600 tokens needed, 400 left, one a second: 200 s (less the time passed).
        assert 190 <= int(refused.headers["Retry-After"]) <= 200
        assert "1 reports a second" in refused.json["detail"]
        assert "Nothing was stored" in refused.json["detail"]
    # Exactly the accepted batch was stored, with its one message per report.
    assert flooder.stored() == (600, 600)
    assert all(r.status_code == 202 for tenant, r in answers if tenant is neighbour)
    assert neighbour.stored() == (300, 300)

    # A refused request changes nothing, counted before and after.
    before = flooder.stored()
    again = flooder.post(flooder.reports(1000, start=5000))
    assert again.status_code == 429 and flooder.stored() == before


def test_the_bucket_refills_at_the_rate_and_a_full_batch_always_fits(app):
    user = make_user()
    db.session.add(
        AccountQuota(account_id=user.account_id, reports_per_second=10, reports_burst=1000)
    )
    db.session.commit()
    spend_reports(user.account_id, 1000)  # a full batch: the whole burst
    with pytest.raises(ReportQuotaExceeded) as refused:
        spend_reports(user.account_id, 10)
    assert refused.value.retry_after == 1  # 10 tokens at 10 a second
    time.sleep(1.1)
    spend_reports(user.account_id, 10)
    with pytest.raises(ReportQuotaExceeded) as refused:
        spend_reports(user.account_id, 20)
    assert refused.value.retry_after == 2


def test_the_report_quota_fails_open_when_redis_is_unreachable(make_app, caplog):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        user = make_user("Offline", "admin@offline.example.com")
        db.session.add(AccountQuota(account_id=user.account_id, reports_per_second=0.001))
        db.session.commit()
        with caplog.at_level(logging.WARNING, logger="accounts.quotas"):
            spend_reports(user.account_id, 1000)  # no exception: let through
            spend_reports(user.account_id, 1000)
        assert "report quota not checked" in caplog.text
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()


# --- webhooks and integrations per account ------------------------------------------


def test_creating_webhooks_past_the_limit_is_refused_in_the_api_and_portal(app, client, auth):
    tenant = Tenant(client, "Acme", webhooks=0)
    assert quota(app, "set", "Acme", "--webhooks", "2").exit_code == 0
    assert [tenant.add_webhook(n).status_code for n in range(2)] == [201, 201]

    refused = tenant.add_webhook(3)
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    assert refused.json["errors"]["webhooks"] == [
        "Your account may have 2 webhooks, and has 2: delete one first, or ask your "
        "Fleethook operator to raise the limit."
    ]
    auth.login("admin@acme.example.com")
    page = auth.post("/webhooks/new", valid_form("speed"), page=MANAGER, htmx=True)
    assert page.status_code == 422
    assert "Your account may have 2 webhooks, and has 2" in page.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 2

    # Room again after a delete.
    first = db.session.scalars(select(Webhook.id).order_by(Webhook.id)).first()
    assert client.delete(f"/api/v1/webhooks/{first}", headers=tenant.headers).status_code == 204
    assert tenant.add_webhook(4).status_code == 201


@pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_QUOTA_INTEGRATIONS=1)
def test_creating_integrations_past_the_limit_is_refused_in_the_api_and_portal(
    app,
    client,
    auth,
    admin,
    fleetio,  # noqa: F811
):
    connected = auth.post("/integrations/new", FLEETIO_FORM, page=MANAGER, htmx=True)
    assert connected.status_code == 200
    requests_before = len(fleetio.requests)

    page = auth.post("/integrations/new", FLEETIO_FORM, page=MANAGER, htmx=True)
    assert page.status_code == 422
    assert "Your account may have 1 integration, and has 1" in page.get_data(as_text=True)
    api = client.post(
        "/api/v1/integrations",
        headers=bearer(admin),
        json={
            "provider": "fleetio",
            "api_key": FLEETIO_FORM["api_key"],
            "account_id": FLEETIO_FORM["account_id"],
        },
    )
    assert api.status_code == 422 and "integrations" in api.json["errors"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Integration)) == 1
    assert len(fleetio.requests) == requests_before  # the provider was not even asked


# --- pending messages -----------------------------------------------------------------


def test_over_the_pending_quota_paused_and_failing_targets_drop_and_count(app, client, auth):
    tenant = Tenant(client, "Backlog", webhooks=3)
    active, paused, failing = (w.json["id"] for w in tenant.webhooks)
    assert client.post(f"/api/v1/webhooks/{paused}/pause", headers=tenant.headers).status_code
    db.session.execute(update(Target).where(Target.id == failing).values(status="failing"))
    db.session.commit()
    assert quota(app, "set", str(tenant.account_id), "--pending-messages", "8").exit_code == 0

    # Under the quota (0 waiting): every target gets the 3 reports' messages.
    assert tenant.post(tenant.reports(3)).status_code == 202
    # Now 9 are waiting, over 8: only the active webhook gets the next 4.
    answer = tenant.post(tenant.reports(4, start=3))
    assert answer.status_code == 202 and answer.json["messages"] == 4
    db.session.expire_all()
    depth = {t.id: (t.queue_depth, t.dropped_by_quota) for t in db.session.scalars(select(Target))}
    assert depth == {active: (7, 0), paused: (3, 4), failing: (3, 4)}

    auth.login("admin@backlog.example.com")
    grid = client.get(WEBHOOK_GRID, headers=HTMX).get_data(as_text=True)
    assert re.search(rf'id="dropped-{paused}"[^>]*>4 dropped by quota<', grid)
    assert re.search(rf'id="dropped-{failing}"[^>]*>4 dropped by quota<', grid)
    assert f'id="dropped-{active}"' not in grid
    detail = client.get(f"/webhooks/{paused}").get_data(as_text=True)
    assert "<dt>Dropped by quota</dt><dd>4 events were not queued" in detail
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'fleethook_dropped_by_quota_total{kind="webhook"} 8' in metrics

    # A raised quota lets them queue again.
    assert quota(app, "set", str(tenant.account_id), "--pending-messages", "default").exit_code == 0
    assert tenant.post(tenant.reports(1, start=7)).json["messages"] == 3


# --- the operator's command -------------------------------------------------------------


def test_quota_show_and_set_report_overrides_and_refuse_bad_input(app, client):
    tenant = Tenant(client, "Acme", webhooks=0)
    account = str(tenant.account_id)
    shown = quota(app, "show", account)
    assert shown.exit_code == 0
    assert re.search(r"reports-per-second\s+200\s+\(default\)", shown.output)
    assert re.search(r"pending-messages\s+250,000\s+\(default\)", shown.output)

    changed = quota(app, "set", "Acme", "--reports-per-second", "500", "--webhooks", "100")
    assert changed.exit_code == 0, changed.output
    assert re.search(r"reports-per-second\s+500\s+\(override; default 200\)", changed.output)
    assert re.search(r"webhooks\s+100\s+\(override; default 50\)", changed.output)
    saved = db.session.get(AccountQuota, tenant.account_id)
    assert (saved.reports_per_second, saved.webhooks, saved.reports_burst) == (500, 100, None)

    for args, message in [
        (["set", "Nobody"], "ACCOUNT: no account with the id or name 'Nobody'"),
        (["set", account], "Give at least one of --reports-per-second"),
        (["set", account, "--webhooks", "-1"], "--webhooks: A whole number, 0 or more."),
        (["set", account, "--webhooks", "many"], "--webhooks: 'many' is not a number."),
        (["set", account, "--reports-burst", "999"], "--reports-burst: At least 1,000"),
        (["set", account, "--reports-per-second", "0"], "--reports-per-second: A number of"),
        (["set", account, "--webhooks", "5", "--integrations", "2.5"], "--integrations: A whole"),
    ]:
        result = quota(app, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    db.session.expire_all()
    unchanged = db.session.get(AccountQuota, tenant.account_id)
    assert (unchanged.webhooks, unchanged.integrations, unchanged.reports_burst) == (
        100,
        None,
        None,
    )

    assert quota(app, "set", account, "--webhooks", "default").exit_code == 0
    assert db.session.get(AccountQuota, tenant.account_id).webhooks is None


# --- chunked ingest -------------------------------------------------------------------


@pytest.fixture
def commits() -> Any:
    """Every session commit meanwhile."""
    made: list[float] = []

    def committed(_session: Any) -> None:
        made.append(time.perf_counter())

    event.listen(Session, "after_commit", committed)
    yield made
    event.remove(Session, "after_commit", committed)


def test_a_batch_larger_than_a_chunk_is_written_whole_with_the_right_counts(app, client, commits):
    tenant = Tenant(client, "Chunky", vehicles=3, webhooks=30)
    size = chunk_size(30)
    assert size == 66  # 2,000 messages a transaction at most
    batch = tenant.reports(200)
    batch.append(dict(batch[0]))  # a repeat, in another chunk than the first copy
    commits.clear()
    answer = tenant.post(batch)
    assert answer.status_code == 202
    assert answer.json == {"accepted": 200, "duplicates": 1, "events": 200, "messages": 6000}
    assert len(commits) == math.ceil(201 / size)
    assert tenant.stored() == (200, 6000)
    for target in db.session.scalars(select(Target)):
        assert (target.queue_depth, target.total_messages) == (200, 200)
        sequences = db.session.scalars(
            select(OutboxMessage.sequence).where(OutboxMessage.target_id == target.id)
        ).all()
        assert sorted(sequences) == list(range(1, 201))
    lanes = db.session.scalars(select(OutboxLane.last_sequence)).all()
    assert len(lanes) == 90 and set(lanes) == {66, 67}  # 200 reports round 3 trucks: 67, 67, 66
    assert sorted(lanes).count(66) == 30

    # The retry of a batch cut short (its first chunks stored) stores only the rest.
    retry = tenant.post(tenant.reports(250))
    assert retry.json == {"accepted": 50, "duplicates": 200, "events": 50, "messages": 1500}
    assert tenant.stored() == (250, 7500)


def test_a_bad_report_anywhere_in_a_large_batch_writes_nothing(app, client):
    tenant = Tenant(client, "Careful", webhooks=30)
    batch = tenant.reports(300)
    batch[250]["latitude"] = 123
    answer = tenant.post(batch)
    assert answer.status_code == 422 and "reports[250].latitude" in answer.json["errors"]
    assert tenant.stored() == (0, 0)
    batch = tenant.reports(300)
    batch[250]["vin"] = vin(9, 999)  # no truck of the account
    answer = tenant.post(batch)
    assert answer.status_code == 422 and "reports[250].vin" in answer.json["errors"]
    assert tenant.stored() == (0, 0)


def test_a_burst_smaller_than_the_largest_batch_is_refused_at_start(tmp_path):
    base = {"SECRET_KEY": "s" * 40, "FLEETHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    with pytest.raises(ConfigError, match="FLEETHOOK_QUOTA_REPORTS_BURST must be at least 1,000"):
        load_config({**base, "FLEETHOOK_QUOTA_REPORTS_BURST": "999"}, str(tmp_path))
    with pytest.raises(ConfigError, match="FLEETHOOK_QUOTA_WEBHOOKS must be a number"):
        load_config({**base, "FLEETHOOK_QUOTA_WEBHOOKS": "lots"}, str(tmp_path))
    defaults = load_config(base, str(tmp_path))
    assert defaults["FLEETHOOK_QUOTA_REPORTS_BURST"] >= MAX_BATCH
