"""The plain `rq worker` CLI with worker.FleethookWorker runs jobs inside the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rq.job import Job, JobStatus

from accounts.models import Account
from config import worker_queues
from extensions import db, queue, redis_client
from tests.conftest import NAMESPACE, ROOT, make_user


def test_a_job_runs_in_the_app_context_of_a_real_worker(app):
    account_id = make_user(account_name="Before").account_id
    queue_name = worker_queues(NAMESPACE)[0]
    job = queue("deliveries").enqueue(
        "tests.worker_jobs.rename_account", account_id, "After", job_id=f"{NAMESPACE}-rename"
    )
    rq = Path(sys.executable).parent / "rq"
    result = subprocess.run(
        [str(rq), "worker", "--burst", "--worker-class", "worker.FleethookWorker",
         "--url", app.config["REDIS_URL"], "--name", f"{NAMESPACE}-worker", queue_name],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = Job.fetch(job.id, connection=redis_client())
    assert job.get_status() == JobStatus.FINISHED, result.stderr
    assert job.return_value() == "testing"
    db.session.expire_all()
    assert db.session.get(Account, account_id).name == "After"
