"""The RQ worker class: jobs run inside the Flask app's context, in the worker's own
process. Run it with the plain `rq worker` CLI (see README)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from rq import Queue
from rq.job import Job
from rq.worker import SimpleWorker

from app import create_app


class FleethookWorker(SimpleWorker):
    """`rq worker -w worker.FleethookWorker`: runs each job in the worker process,
    inside the app's context.

    Not RQ's default fork per job: a drain job lasts milliseconds to a few seconds,
    and a fork per job (with new database and HTTP connections in every work horse)
    cost more than the drain itself — see BENCHMARKS.md. Run in-process, the
    database pool and the keep-alive HTTP session carry from one drain to the next.
    A worker that dies mid-job loses nothing: the messages it held come back when
    their lease expires (DESIGN.md, invariant 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app: Flask = create_app()

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        with self.app.app_context():
            return bool(super().perform_job(job, queue, *args, **kwargs))
