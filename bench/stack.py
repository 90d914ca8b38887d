"""The system under benchmark, built fresh for each scenario: a database (SQLite in
a temporary directory, or an emptied PostgreSQL database), a private Redis, the
app with one account and its vehicles, webhooks pointing at the benchmark receiver,
and real `rq worker` processes — the same commands production (or `make run`) runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.redis_server import RedisServer  # noqa: E402

BIN = Path(sys.executable).parent
NAMESPACE = "fhbench"
VIN = "1FUJGLDR3CLBP8834"  # the account's first vehicle; add_vehicles makes more


def vin_of(n: int) -> str:
    """The VIN of the account's vehicle n (0: VIN)."""
    return VIN if n == 0 else f"1FUJGLDR3CLB{n:05d}"


def _epoch() -> datetime:
    from core.times import utcnow

    return utcnow().replace(microsecond=0) - timedelta(hours=6)


@dataclass
class Stack:
    """A running system: its app (for set-up in this process), settings for worker
    processes, and the API token of its account."""

    engine: str
    env: dict[str, str]
    app: Any
    account_id: int
    token: str
    redis: Any  # its devstack.RedisServer (the chaos run restarts it)
    workdir: Path  # the processes' logs go there
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    vins: list[str] = field(default_factory=lambda: [VIN])  # the account's vehicles
    # Report n of the run is timed `epoch` + n seconds (whole seconds, six hours ago),
    # so a location event's `fix_time` names its report.
    epoch: datetime = field(default_factory=_epoch)

    def api(self) -> Any:
        """A client of the app's API in this process (the real views, no HTTP)."""
        return self.app.test_client()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add_webhooks(self, urls: list[str], event_type: str = "location") -> list[tuple[int, str]]:
        """Webhooks of the account to these URLs: (id, signing secret) each."""
        from core.extensions import db
        from webhooks.lifecycle import create_webhook

        with self.app.app_context():
            made = [
                create_webhook(
                    self.account_id, {"event_type": event_type, "name": f"Bench {n}", "url": url}
                )
                for n, url in enumerate(urls)
            ]
            db.session.commit()
            return [(webhook.id, secret) for webhook, secret in made]

    def webhooks_at(self, receiver_paths: list[str]) -> dict[str, str]:
        """One Location webhook per path (created before the receiver knows its
        secret, at a placeholder address; see point_webhooks); path → secret."""
        made = self.add_webhooks([f"http://127.0.0.1:9/{p.strip('/')}" for p in receiver_paths])
        return {path: secret for path, (_, secret) in zip(receiver_paths, made, strict=True)}

    def point_webhooks(self, base_url: str) -> None:
        """Move every webhook's address to `base_url`, keeping its path."""
        from sqlalchemy import select, update

        from core.extensions import db
        from webhooks.models import Webhook

        with self.app.app_context():
            for webhook in db.session.scalars(select(Webhook)):
                path = webhook.url.split("/", 3)[3]
                db.session.execute(
                    update(Webhook).where(Webhook.id == webhook.id).values(url=f"{base_url}/{path}")
                )
            db.session.commit()
            db.session.remove()

    def add_vehicles(self, total: int) -> list[str]:
        """Vehicles of the account until it has `total`; their VINs, in order."""
        from core.extensions import db
        from fleet.records import create_vehicle

        with self.app.app_context():
            for n in range(len(self.vins), total):
                create_vehicle(self.account_id, {"name": f"Truck {n}", "vin": vin_of(n)})
                self.vins.append(vin_of(n))
            db.session.commit()
            db.session.remove()
        return self.vins[:total]

    def ingest(self, count: int, start_second: int = 0, batch: int = 100) -> None:
        """`count` position reports of the account's vehicle, through the ingest API."""
        client = self.api()
        for first in range(start_second, start_second + count, batch):
            self.post_reports(range(first, min(first + batch, start_second + count)), client)

    def post_reports(self, seconds: Sequence[int], client: Any = None, vehicles: int = 1) -> None:
        """One ingest request: report n timed `epoch` + n seconds, from vehicle
        n % `vehicles` (add_vehicles first). The ingest commits before it answers,
        so the return is just after the commit (and the commit's nudges)."""
        reports = [
            {
                "vin": self.vins[n % vehicles],
                "type": "position",
                "time": (self.epoch + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
                "latitude": 41.88,
                "longitude": -87.63,
                "speed_mph": 30.0,
                "heading": 90,
                "ignition": True,
            }
            for n in seconds
        ]
        response = (client or self.api()).post(
            "/api/v1/telemetry", json={"reports": reports}, headers=self.headers
        )
        assert response.status_code == 202, response.get_json()

    def report_second(self, fix_time: str) -> int:
        """The n of the report an event's `fix_time` came from."""
        from core.times import parse_rfc3339

        moment = parse_rfc3339(fix_time)
        assert moment is not None, fix_time
        return round((moment - self.epoch).total_seconds())

    def start_workers(
        self,
        count: int,
        burst: bool = False,
        queues: list[str] | None = None,
        scheduler: bool = False,
    ) -> None:
        """`count` `rq worker` processes on `queues` (default: every queue, main and
        retries alike); `scheduler`: with RQ's scheduler, as `make run`'s worker."""
        from core.config import retry_queues, worker_queues

        if queues is None:
            queues = [*worker_queues(NAMESPACE), *retry_queues(NAMESPACE)]
        for n in range(len(self.workers), len(self.workers) + count):
            command = [
                str(BIN / "rq"),
                "worker",
                "--worker-class",
                "worker.FleethookWorker",
                "--url",
                self.env["REDIS_URL"],
                "--name",
                f"bench-{os.getpid()}-{n}",
                "--quiet",
                *(["--burst"] if burst else []),
                *(["--with-scheduler"] if scheduler else []),
                *queues,
            ]
            with open(self.workdir / f"worker-{n}.log", "ab") as log:  # the worker has its own copy
                self.workers.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env=self.env,
                        start_new_session=True,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def start_production_workers(self) -> None:
        """Workers as production runs them: two on the main queues (deliveries,
        integrations, maintenance), one on the retries queue (isolation), and the
        sweeper (`rq cron`)."""
        from core.config import retry_queues, worker_queues

        self.start_workers(2, queues=worker_queues(NAMESPACE))
        self.start_workers(1, queues=retry_queues(NAMESPACE))
        self.start_sweeper()  # as production runs it (README)

    def start_make_run_workers(self) -> None:
        """The workers `make run` starts (devstack.run): one on the main queues with
        RQ's scheduler, one on the retries queue, and the sweeper (`rq cron`)."""
        from core.config import retry_queues, worker_queues

        self.start_workers(1, queues=worker_queues(NAMESPACE), scheduler=True)
        self.start_workers(1, queues=retry_queues(NAMESPACE))
        self.start_sweeper()

    def start_sweeper(self) -> None:
        self.workers.append(
            subprocess.Popen(
                [str(BIN / "rq"), "cron", "cron", "--url", self.env["REDIS_URL"]],
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.workers.clear()

    def workers_ready(self) -> int:
        """`rq worker` processes registered with this stack's Redis."""
        from redis import Redis
        from rq import Worker

        connection = Redis.from_url(self.env["REDIS_URL"])
        try:
            return len(Worker.all(connection=connection))
        finally:
            connection.close()

    @contextmanager
    def commit_times(self) -> Iterator[list[float]]:
        """time.time() of every commit of this process meanwhile (the ingest's),
        taken before that commit's nudges go out: a worker may start on the
        messages while the request is still nudging."""
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        times: list[float] = []

        def committed(_session: Any) -> None:
            times.append(time.time())

        event.listen(Session, "after_commit", committed, insert=True)
        try:
            yield times
        finally:
            event.remove(Session, "after_commit", committed)

    def queued(self) -> int:
        """Messages not yet finished, from the database."""
        from sqlalchemy import func, select

        from core.extensions import db
        from outbox.models import OPEN_STATUSES, OutboxMessage

        with self.app.app_context():
            count = db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(OPEN_STATUSES))
            )
            db.session.remove()
            return int(count or 0)


def _empty_postgresql(url: str) -> None:
    """Drop every table of the benchmark database, so migrations start clean."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


@contextmanager
def stack(
    engine: str, postgresql_url: str | None = None, settings: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A fresh system on `engine` ("sqlite" or "postgresql"), torn down afterwards;
    `settings` are extra environment variables for the app and the workers (e.g.
    {"FLEETHOOK_READ_TIMEOUT": "2"}), gone again afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="fh-bench-"))
    redis = RedisServer(workdir / "redis").start()
    if engine == "postgresql":
        if not postgresql_url:
            raise SystemExit("bench: PostgreSQL needs --postgresql-url (or BENCH_POSTGRESQL_URL)")
        _empty_postgresql(postgresql_url)
        database_url = postgresql_url
    else:
        database_url = f"sqlite:///{workdir}/bench.db"
    env = {
        **os.environ,
        "FLEETHOOK_ENV": "testing",
        "SECRET_KEY": "bench-" + os.urandom(8).hex(),
        "FLEETHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "FLEETHOOK_REDIS_NAMESPACE": NAMESPACE,
        "FLEETHOOK_ALLOW_LOCAL_NETWORK": "1",
        "FLEETHOOK_QUEUE_DEPTH_CAP": "10000000",
        # The benchmarks measure the engine, not the tenant limits: hundreds of
        # webhooks in one account, and days of telemetry sent in minutes.
        **{
            f"FLEETHOOK_QUOTA_{name}": "1000000000"
            for name in (
                "REPORTS_PER_SECOND",
                "REPORTS_BURST",
                "WEBHOOKS",
                "INTEGRATIONS",
                "PENDING_MESSAGES",
            )
        },
        "PYTHONPATH": str(ROOT),
        **(settings or {}),
    }
    before = {name: os.environ.get(name) for name in settings or {}}
    os.environ.update(env)
    import flask_migrate

    from accounts.tokens import issue_token
    from accounts.users import create_account
    from app import create_app
    from core.extensions import db
    from fleet.records import create_vehicle

    app = create_app()
    with app.app_context():
        flask_migrate.upgrade()
        user = create_account("Bench Haulage", "bench@example.com", "bench-password-123")
        db.session.flush()
        create_vehicle(user.account_id, {"name": "Truck 42", "vin": VIN})
        _, token = issue_token(user, "bench")
        db.session.commit()
        system = Stack(engine, env, app, user.account_id, token, redis, workdir)
        db.session.remove()
    try:
        yield system
    finally:
        system.stop_workers()
        with app.app_context():
            db.engine.dispose()
        redis.stop()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_until(condition: Any, timeout: float, poll: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False
