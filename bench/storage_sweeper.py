"""The storage benchmark's sweeper (bench/storage.py): the retention's pruning at
its real cadence, at the simulated time, in a process of its own, as production's
`rq cron` is; and the restamping of messages' wall-clock end times to the
simulated clock, which both processes do."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from datetime import datetime, timedelta
from typing import Any


def restamp(real_start: datetime, now: datetime) -> None:
    """Messages the drain just ended carry the wall clock: move them to `now`."""
    from sqlalchemy import update

    from core.extensions import db
    from core.times import utcnow
    from outbox.models import OutboxMessage

    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.finished_at.between(real_start, utcnow()))
        .values(finished_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _sweep(
    every: float,
    offset: Any,
    start: datetime,
    real_start: datetime,
    busy: Any,
    stop: Any,
    ready: Any,
    results: Any,
) -> None:
    """The sweeper's process (as `rq cron` is in production): its own app, connection
    pool and interpreter, pruning every `every` real seconds at the simulated time
    (`start` + `offset` seconds, published by the ingest process)."""
    runs: list[tuple[float, float, int]] = []
    deleted: dict[str, int] = {}
    try:
        from app import create_app
        from core.extensions import db
        from outbox.retention import prune

        app = create_app()
        with app.app_context():
            ready.set()
            while not stop.wait(every):
                with busy:
                    now = start + timedelta(seconds=offset.value)
                    # Whatever ended by the wall clock since, ended now on the
                    # simulated one: never pruned by a wall-clock time.
                    restamp(real_start, now)
                    began = time.monotonic()  # CLOCK_MONOTONIC: the same in every process
                    counts = prune(now)
                    ended = time.monotonic()
                runs.append((began, ended, sum(counts.values())))
                for kind, count in counts.items():
                    deleted[kind] = deleted.get(kind, 0) + count
            db.session.remove()
            db.engine.dispose()
        results.put({"runs": runs, "deleted": deleted, "error": None})
    except BaseException:  # noqa: BLE001 — reported by the ingest process
        results.put({"runs": runs, "deleted": deleted, "error": traceback.format_exc()})


class Sweeper:
    """The sweeper's pruning at its real cadence, at the simulated time, in a process
    of its own (spawned: a fresh interpreter, no GIL or connection shared with the
    ingest), as production's `rq cron` is."""

    def __init__(self, every: float, start: datetime, real_start: datetime) -> None:
        context = multiprocessing.get_context("spawn")
        self.start = start
        # Seconds of simulated time since `start`, written by the ingest process.
        self.offset = context.Value("d", 0.0, lock=False)
        # Held while pruning; the ingest process holds it while it drains and
        # restamps, so a message is never pruned by its wall-clock end time before
        # it is restamped. Never held around an ingest request.
        self.busy = context.Lock()
        self.stop = context.Event()
        self.ready = context.Event()
        self.results = context.Queue()
        self.process = context.Process(
            target=_sweep,
            name="bench-sweeper",
            daemon=True,
            args=(
                every,
                self.offset,
                start,
                real_start,
                self.busy,
                self.stop,
                self.ready,
                self.results,
            ),
        )
        self.runs: list[tuple[float, float, int]] = []  # monotonic start, end, deleted
        self.deleted: dict[str, int] = {}
        self.finished = False

    def begin(self) -> None:
        """Start the process and wait until its app is up (its start-up is not a prune)."""
        self.process.start()
        while not self.ready.wait(0.5):
            if not self.process.is_alive():
                self.finish()

    def set_clock(self, now: datetime) -> None:
        self.offset.value = (now - self.start).total_seconds()

    def finish(self) -> None:
        """Stop the process; its runs and deletions; raise what failed in it."""
        if self.finished:
            return
        self.finished = True
        self.stop.set()
        result = self.results.get(timeout=120)
        self.process.join(30)
        self.runs, self.deleted = result["runs"], result["deleted"]
        if result["error"]:
            raise RuntimeError(f"the sweeper process failed:\n{result['error']}")
