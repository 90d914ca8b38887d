"""The chaos run: delivery under fire, with every event accounted for.

    .venv/bin/python bench/chaos.py [--postgresql-url URL]   # the full run, ~15 min
    .venv/bin/python bench/chaos.py --reduced                # ~2 min (CI runs it)

A fresh system (bench/stack.py) with 4 `rq worker` processes (three on the main
queues, one on retries), `rq cron` running the sweeper and a gunicorn portal, all as
production runs them, delivers messages from position reports posted at a steady
pace to webhooks whose receivers answer in 50–500 ms. Meanwhile the harness, acting
as the supervisor that restarts whatever dies:

- kills a random worker with SIGKILL every few seconds (20 times; 6 reduced) and
  starts a new one;
- restarts Redis once, memory only: every queued job, nudge and drain flag is gone;
- restarts PostgreSQL once (`pg_ctlcluster … restart -m fast`) when the database is
  a local cluster — skipped, saying so, on SQLite or a remote server;
- black-holes one receiver (it reads requests and never answers) for a minute, then
  brings it back (4 s reduced: shorter than the first retry step, so the short run
  does not wait for the 5-minute second retry);
- polls a portal page through gunicorn every 0.25 s.

It passes when every message reached its receiver — once, or again only with the
same webhook-id and body; no message stayed claimed longer than its lease plus
`LEASE_SLACK` (the sweep interval and the longest a sweep may wait for a main worker:
a concurrent drain's claiming budget and the lease); the portal answered only 200 pages or
503 pages (never a traceback or another error) and answered 200 again by itself
after the database came back. It prints the counts (sent, delivered, duplicates,
kills, restarts, recovery times) and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receiver import Receiver  # noqa: E402
from bench.stack import BIN, NAMESPACE, Stack, stack, wait_until  # noqa: E402
from devstack.redis_server import free_port  # noqa: E402
from outbox.drain import TIME_BUDGET_SECONDS  # noqa: E402

# Only webhooks here: every attempt ends by FLEETHOOK_DELIVERY_DEADLINE (the read
# timeouts are for integrations' serial drains; READ_TIMEOUT is set so the lease
# may be this short: core/config.py wants lease ≥ connect + read + 2 s).
SETTINGS = {
    "FLEETHOOK_CONNECT_TIMEOUT": "1",
    "FLEETHOOK_READ_TIMEOUT": "2",
    "FLEETHOOK_LEASE_SECONDS": "8",
    "FLEETHOOK_DELIVERY_DEADLINE": "2",
    "FLEETHOOK_SWEEP_SECONDS": "2",
}
# How long a claim may stay past its lease. A live drain never holds one that
# long: a lane's run starts no request later than its claim + lease − deadline − 1 s
# and each request ends by the deadline, and a late record is fenced off. A claim
# left behind (a killed worker, a drain that failed with the database away) is
# handed back by the next sweep that runs — or sooner, by a drain that claims its
# lane again. The sweep runs every FLEETHOOK_SWEEP_SECONDS on the maintenance
# queue, i.e. on a main worker between two jobs, so it may first wait for the
# longest drain job: a concurrent drain claims for TIME_BUDGET_SECONDS, then
# finishes the runs in flight, up to lease − 1 s after its last claim.
LEASE_SLACK = (
    float(SETTINGS["FLEETHOOK_SWEEP_SECONDS"])
    + TIME_BUDGET_SECONDS
    + float(SETTINGS["FLEETHOOK_LEASE_SECONDS"])
    - 1
)
ANSWER = "slow:50-500"


@dataclass
class Plan:
    webhooks: int
    events: int
    ingest_seconds: float  # reports are posted evenly over this
    kills: int
    kill_every: float
    redis_restart_at: float  # seconds after the start
    postgresql_restart_at: float
    black_hole_at: float
    black_hole_seconds: float
    deadline: float  # seconds for everything to arrive

    @property
    def messages(self) -> int:
        return self.webhooks * self.events


FULL = Plan(
    webhooks=10,
    events=1_000,
    ingest_seconds=300,
    kills=20,
    kill_every=5,
    redis_restart_at=110,
    postgresql_restart_at=150,
    black_hole_at=200,
    black_hole_seconds=60,
    deadline=1_800,
)
REDUCED = Plan(
    webhooks=5,
    events=150,
    ingest_seconds=40,
    kills=6,
    kill_every=4,
    redis_restart_at=28,
    postgresql_restart_at=34,
    black_hole_at=20,
    black_hole_seconds=4,
    deadline=150,
)


@dataclass
class Findings:
    """What the run saw; `failures` empty means it passed."""

    failures: list[str] = field(default_factory=list)
    kills: int = 0
    restarted: dict[str, int] = field(default_factory=dict)  # process kind → restarts
    redis_restart_s: float = 0.0
    postgresql_restart_s: float | None = None
    postgresql_skipped: str = ""
    portal_statuses: dict[int, int] = field(default_factory=dict)
    portal_recovery_s: float | None = None  # database back → first 200 page
    longest_overdue_claim_s: float = 0.0
    longest_stall_s: float = 0.0  # no new delivery at a healthy receiver
    ingest_retries: int = 0
    logs: Path | None = None  # the run's directory, with each process's log

    def fail(self, message: str) -> None:
        print(f"chaos: FAILED — {message}", flush=True)
        self.failures.append(message)


class Supervisor:
    """The worker, sweeper and portal processes, restarted when they die."""

    def __init__(self, system: Stack, portal_port: int):
        self.system = system
        self.env = {**system.env, "PYTHONPATH": str(ROOT)}
        self.portal_port = portal_port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.lock = threading.Lock()

    def commands(self) -> dict[str, list[str]]:
        from core.config import retry_queues, worker_queues

        url = self.env["REDIS_URL"]
        worker = [
            str(BIN / "rq"),
            "worker",
            "--worker-class",
            "worker.FleethookWorker",
            "--url",
            url,
            "--quiet",
        ]
        return {
            **{f"worker-{n}": [*worker, *worker_queues(NAMESPACE)] for n in range(3)},
            "worker-retries": [*worker, *retry_queues(NAMESPACE)],
            "sweeper": [str(BIN / "rq"), "cron", "cron", "--url", url],
            "portal": [
                str(BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.portal_port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--no-control-socket",
                "app:create_app()",
            ],
        }

    def start(self, name: str) -> None:
        # Each process's output goes to <name>.log in the run's directory (printed at
        # the end), to read the traceback behind a failure.
        with open(self.system.workdir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                self.commands()[name],
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_all(self) -> None:
        for name in self.commands():
            self.start(name)

    def workers(self) -> list[str]:
        return [name for name in self.processes if name.startswith("worker")]

    def kill(self, name: str) -> None:
        with self.lock:
            process = self.processes[name]
            process.kill()
            process.wait()
            self.start(name)

    def revive(self) -> None:
        """Start again whatever exited (as systemd's Restart=always would)."""
        with self.lock:
            for name, process in list(self.processes.items()):
                if process.poll() is not None:
                    self.restarts[name.split("-")[0]] = self.restarts.get(name.split("-")[0], 0) + 1
                    self.start(name)

    def stop(self) -> None:
        with self.lock:
            for process in self.processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in self.processes.values():
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def local_cluster(url: str) -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster serving `url`, if any."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_lsclusters"):
        return None
    port = parts.port or 5432
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        columns = line.split()
        if len(columns) >= 3 and columns[2] == str(port):
            return columns[0], columns[1]
    return None


class Portal:
    """A logged-in browser of the portal's Webhook Manager, polled in a thread."""

    def __init__(self, port: int, findings: Findings):
        self.base = f"http://127.0.0.1:{port}"
        self.findings = findings
        self.session = requests.Session()
        self.stopping = threading.Event()
        self.last_ok = 0.0
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def log_in(self) -> None:
        if not wait_until(lambda: _answers(self.base + "/healthz"), timeout=60):
            raise RuntimeError("the portal did not start")
        page = self.session.get(self.base + "/login", timeout=5).text
        self._plain_http_cookies()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        answer = self.session.post(
            self.base + "/login",
            timeout=5,
            allow_redirects=False,
            data={
                "email": "bench@example.com",
                "password": "bench-password-123",
                "csrf_token": token.group(1),
            },
        )
        assert answer.status_code == 302, f"login answered {answer.status_code}"
        self._plain_http_cookies()
        self.thread.start()

    def _plain_http_cookies(self) -> None:
        # The portal marks its cookies Secure; here it is served over plain HTTP on
        # loopback, so let this client send them back anyway.
        for cookie in self.session.cookies:
            cookie.secure = False

    def _poll(self) -> None:
        while not self.stopping.wait(0.25):
            try:
                answer = self.session.get(self.base + "/webhooks/", timeout=10)
            except requests.RequestException as error:
                self.findings.fail(f"the portal did not answer: {error}")
                continue
            status = answer.status_code
            statuses = self.findings.portal_statuses
            statuses[status] = statuses.get(status, 0) + 1
            html = answer.headers.get("Content-Type", "").startswith("text/html")
            if status == 200 and html:
                self.last_ok = time.monotonic()
            elif status != 503 or not html or "Traceback" in answer.text:
                self.findings.fail(f"the portal answered {status} ({answer.text[:200]!r})")

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(15)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _ingest(system: Stack, plan: Plan, findings: Findings, done: threading.Event) -> None:
    """Post the plan's reports in batches of 5, evenly over its ingest time; a
    refused batch (503 while the database is down) is posted again, as a gateway
    would."""
    client = system.api()
    batch = 5
    interval = plan.ingest_seconds / (plan.events / batch)
    next_at = time.monotonic()
    for first in range(0, plan.events, batch):
        seconds = range(first, min(first + batch, plan.events))
        while True:
            try:
                system.post_reports(seconds, client)
                break
            except AssertionError:  # not 202: the database or Redis is away
                findings.ingest_retries += 1
                time.sleep(0.5)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    done.set()


def _overdue_claims(system: Stack) -> float | None:
    """Seconds the most overdue claim is past its lease (0 if none); None when
    the database cannot be read just now."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from core.extensions import db
    from core.times import utcnow
    from outbox.models import MessageStatus, OutboxMessage

    with system.app.app_context():
        try:
            oldest = db.session.scalar(
                select(func.min(OutboxMessage.lease_expires_at)).where(
                    OutboxMessage.status == MessageStatus.SENDING
                )
            )
        except SQLAlchemyError:
            return None
        finally:
            db.session.remove()
    if oldest is None:
        return 0.0
    return max(0.0, (utcnow() - oldest).total_seconds())


def run(plan: Plan, postgresql_url: str | None, restart_postgresql: bool = True) -> Findings:
    findings = Findings()
    engine = "postgresql" if postgresql_url else "sqlite"
    paths = [f"/w{n}" for n in range(plan.webhooks)]
    hole = paths[-1]
    with stack(engine, postgresql_url, SETTINGS) as system:
        findings.logs = system.workdir
        secrets = system.webhooks_at(paths)
        with Receiver(dict.fromkeys(paths, ANSWER), secrets, verify_every=5) as receiver:
            system.point_webhooks(receiver.url)
            supervisor = Supervisor(system, free_port())
            portal = Portal(supervisor.portal_port, findings)
            try:
                supervisor.start_all()
                portal.log_in()
                _under_fire(
                    system,
                    plan,
                    postgresql_url if restart_postgresql else None,
                    supervisor,
                    receiver,
                    portal,
                    hole,
                    findings,
                )
            finally:
                portal.stop()
                supervisor.stop()
                findings.restarted = dict(supervisor.restarts)
            _account(system, plan, receiver, paths, findings)
    return findings


def _under_fire(
    system: Stack,
    plan: Plan,
    postgresql_url: str | None,
    supervisor: Supervisor,
    receiver: Receiver,
    portal: Portal,
    hole: str,
    findings: Findings,
) -> None:
    """Ingest, do the plan's damage on its schedule, and watch until every message
    arrived or the deadline passed."""
    cluster = local_cluster(postgresql_url) if postgresql_url else None
    if cluster is None:
        findings.postgresql_skipped = (
            "no database server to restart (SQLite), or asked to keep it (--keep-postgresql)"
            if not postgresql_url
            else "the database is not a local cluster (pg_lsclusters): not restarted"
        )
        print(f"chaos: PostgreSQL restart skipped — {findings.postgresql_skipped}", flush=True)
    ingested = threading.Event()
    threading.Thread(target=_ingest, args=(system, plan, findings, ingested), daemon=True).start()
    started = time.monotonic()
    events = sorted(
        [(plan.kill_every * (n + 1), "kill") for n in range(plan.kills)]
        + [
            (plan.redis_restart_at, "redis"),
            (plan.black_hole_at, "hole"),
            (plan.black_hole_at + plan.black_hole_seconds, "hole over"),
        ]
        + ([(plan.postgresql_restart_at, "postgresql")] if cluster else [])
    )
    healthy = [p for p in receiver.paths if p != hole]
    last_count, last_progress = 0, time.monotonic()
    while True:
        now = time.monotonic() - started
        while events and events[0][0] <= now:
            _, what = events.pop(0)
            if what == "kill":
                victim = random.choice(supervisor.workers())
                supervisor.kill(victim)
                findings.kills += 1
                print(f"chaos: {now:6.1f} s  kill -9 {victim}", flush=True)
            elif what == "redis":
                began = time.monotonic()
                system.redis.stop()
                system.redis.start()
                findings.redis_restart_s = round(time.monotonic() - began, 2)
                print(
                    f"chaos: {now:6.1f} s  Redis restarted empty ({findings.redis_restart_s} s)",
                    flush=True,
                )
            elif what == "postgresql":
                assert cluster is not None
                began = time.monotonic()
                subprocess.run(["pg_ctlcluster", *cluster, "restart", "-m", "fast"], check=True)
                back = time.monotonic()
                findings.postgresql_restart_s = round(back - began, 2)
                print(
                    f"chaos: {now:6.1f} s  PostgreSQL {' '.join(cluster)} restarted "
                    f"({findings.postgresql_restart_s} s)",
                    flush=True,
                )
                if wait_until(lambda b=back: portal.last_ok > b, timeout=60, poll=0.1):
                    findings.portal_recovery_s = round(portal.last_ok - back, 2)
                else:
                    findings.fail("no 200 from the portal within 60 s of PostgreSQL's return")
            elif what == "hole":
                receiver.behave(hole, "hang")
                print(f"chaos: {now:6.1f} s  {hole} black-holed", flush=True)
            elif what == "hole over":
                receiver.behave(hole, ANSWER)
                print(f"chaos: {now:6.1f} s  {hole} answers again", flush=True)
        supervisor.revive()
        overdue = _overdue_claims(system)
        if overdue is not None:
            findings.longest_overdue_claim_s = max(findings.longest_overdue_claim_s, overdue)
        counts = receiver.stats(arrivals=False)
        healthy_count = sum(counts[p]["unique"] for p in healthy)
        if healthy_count != last_count:
            last_count, last_progress = healthy_count, time.monotonic()
        elif healthy_count < plan.events * len(healthy):
            stall = time.monotonic() - last_progress
            findings.longest_stall_s = max(findings.longest_stall_s, round(stall, 1))
        everything = sum(record["unique"] for record in counts.values())
        if ingested.is_set() and not events and everything >= plan.messages:
            return
        if now > plan.deadline:
            findings.fail(
                f"only {everything} of {plan.messages} messages arrived in {plan.deadline:.0f} s"
            )
            return
        time.sleep(0.5)


def _account(
    system: Stack, plan: Plan, receiver: Receiver, paths: list[str], findings: Findings
) -> None:
    """Every message at its receiver: once, or again with the same body."""
    from sqlalchemy import func, select

    from core.extensions import db
    from outbox.models import OutboxMessage

    stats = receiver.stats(arrivals=False)
    with system.app.app_context():
        sent = db.session.scalar(select(func.count()).select_from(OutboxMessage))
        db.session.remove()
    delivered = sum(stats[p]["unique"] for p in paths)
    duplicates = sum(stats[p]["duplicates"] for p in paths)
    print(
        f"chaos: sent {sent}, delivered {delivered} distinct, duplicates {duplicates} "
        f"(all with their first body: {not any(stats[p]['body_mismatches'] for p in paths)})",
        flush=True,
    )
    if sent != plan.messages:
        findings.fail(f"{sent} messages in the outbox, {plan.messages} expected")
    for path in paths:
        record = stats[path]
        if record["unique"] != plan.events:
            findings.fail(f"{path}: {record['unique']} of {plan.events} events arrived")
        if record["body_mismatches"]:
            findings.fail(f"{path}: {record['body_mismatches']} redeliveries with another body")
        if record["signature_failures"]:
            findings.fail(f"{path}: {record['signature_failures']} signatures failed")
    if findings.longest_overdue_claim_s > LEASE_SLACK:
        findings.fail(
            f"a claim outlived its lease by {findings.longest_overdue_claim_s:.1f} s "
            f"(allowed: {LEASE_SLACK:.0f} s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--reduced", action="store_true", help="the 2-minute run CI does")
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get("BENCH_POSTGRESQL_URL"),
        help="a database the run may empty (default: SQLite)",
    )
    # CI runs the reduced mode on PostgreSQL beside other tests that share the server.
    parser.add_argument(
        "--keep-postgresql", action="store_true", help="never restart the PostgreSQL cluster"
    )
    arguments = parser.parse_args()
    plan = REDUCED if arguments.reduced else FULL
    began = time.monotonic()
    findings = run(plan, arguments.postgresql_url, not arguments.keep_postgresql)
    postgresql = (
        f"PostgreSQL restart {findings.postgresql_restart_s} s, portal answering 200 again "
        f"{findings.portal_recovery_s} s after it"
        if findings.postgresql_restart_s is not None
        else f"PostgreSQL not restarted ({findings.postgresql_skipped})"
    )
    print(
        f"chaos: {findings.kills} workers killed, restarted after exiting on their own: "
        f"{findings.restarted or 'none'}; Redis restart {findings.redis_restart_s} s; "
        f"{postgresql}; portal answers {findings.portal_statuses}; longest claim past its "
        f"lease {findings.longest_overdue_claim_s:.1f} s; longest stall at the healthy "
        f"receivers {findings.longest_stall_s:.1f} s; ingest retries {findings.ingest_retries}; "
        f"{time.monotonic() - began:.0f} s in all",
        flush=True,
    )
    if findings.failures:
        print(
            f"chaos: FAILED ({len(findings.failures)} failures); the processes' logs are "
            f"in {findings.logs}",
            file=sys.stderr,
        )
        return 1
    print("chaos: passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
