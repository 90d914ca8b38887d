"""The RQ worker class: jobs run inside the Flask app's context, and no database
connection crosses a fork. Run it with the plain `rq worker` CLI (see README)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from rq import Queue
from rq.job import Job
from rq.worker import Worker

from app import create_app
from extensions import db


class FleethookWorker(Worker):
    """`rq worker -w worker.FleethookWorker`: forks a work horse per job, as RQ does,
    with the app's context around the job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app: Flask = create_app()

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        # A pooled connection inherited by the horse would be shared by two
        # processes; start the horse with an empty pool instead.
        with self.app.app_context():
            db.engine.dispose()
        super().fork_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        with self.app.app_context():
            return bool(super().perform_job(job, queue, *args, **kwargs))
