"""The plain `rq worker` CLI with worker.FleethookWorker runs jobs inside the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rq.job import Job, JobStatus

from accounts.models import Account
from core.config import worker_queues
from core.extensions import db, queue, redis_client
from tests.conftest import NAMESPACE, ROOT, make_user


def test_a_job_runs_in_the_app_context_of_a_real_worker(app):
    account_id = make_user(account_name="Before").account_id
    queue_name = f"{NAMESPACE}:deliveries"
    job = queue("deliveries").enqueue(
        "tests.worker_jobs.rename_account", account_id, "After", job_id=f"{NAMESPACE}-rename"
    )
    rq = Path(sys.executable).parent / "rq"
    result = subprocess.run(
        [
            str(rq),
            "worker",
            "--burst",
            "--worker-class",
            "worker.FleethookWorker",
            "--url",
            app.config["REDIS_URL"],
            "--name",
            f"{NAMESPACE}-worker",
            queue_name,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    job = Job.fetch(job.id, connection=redis_client())
    assert job.get_status() == JobStatus.FINISHED, result.stderr
    assert job.return_value() == "testing"
    db.session.expire_all()
    assert db.session.get(Account, account_id).name == "After"


def test_a_worker_takes_the_sweep_before_drains_queued_ahead_of_it(app):
    # Under load the deliveries queue never empties; the sweep, which hands back the
    # claims of dead workers, must not wait for a gap.
    order = f"{NAMESPACE}-order"
    for n in range(3):
        queue("deliveries").enqueue("tests.worker_jobs.note_run", order, f"drain {n}")
    queue("maintenance").enqueue("tests.worker_jobs.note_run", order, "sweep")
    rq = Path(sys.executable).parent / "rq"
    result = subprocess.run(
        [
            str(rq),
            "worker",
            "--burst",
            "--worker-class",
            "worker.FleethookWorker",
            "--url",
            app.config["REDIS_URL"],
            "--name",
            f"{NAMESPACE}-worker",
            *worker_queues(NAMESPACE),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ran = [label.decode() for label in redis_client().lrange(order, 0, -1)]
    assert ran == ["sweep", "drain 0", "drain 1", "drain 2"]
