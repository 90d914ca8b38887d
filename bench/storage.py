"""Storage benchmark: does the database stop growing once the retention prunes?

    python -m bench.storage --engine sqlite --trucks 10
    python -m bench.storage --engine postgresql --postgresql-url postgresql://postgres@127.0.0.1/fh_bench
    python -m bench.storage --quick          # 3 trucks, 3 days, a 1-day window (the smoke test)

Trucks report a position every 30 s on a fast clock, sent as a gateway would:
one request every `--request-minutes` (1) with every truck's reports of those
minutes (up to 1,000 a request; 4 trucks: 8 reports), through the real ingest (fleet/ingest.py
`ingest(account_id, body, now)` with `now` advanced). The trucks drive a loop that
takes them through a landmark once an hour, so the account's Location webhook
gets every report and its Landmark Change webhook two events an hour per truck,
both delivered to the benchmark receiver (bench/receiver.py, its own process)
over loopback HTTP by the real drain (outbox/drain.py), in this process, every
`--drain-minutes` (120) of simulated time. The drain stamps messages with the wall clock; after
each drain, and before each prune, the benchmark moves wall-clock end times to
the simulated time (the one column the pruning of messages reads), so no
message is pruned by a wall-clock time.

A process of its own plays the sweeper, as `rq cron` is one in production (spawned:
no GIL or connection shared with the ingest): every FLEETHOOK_SWEEP_SECONDS of real
time (5) it runs the retention (outbox/retention.py `prune`) at the simulated time
the ingest process publishes, with the real batch size and time budget,
concurrently with the ingest. Each ingest request is timed whole and in its
database statements (where a wait for SQLite's write lock or a PostgreSQL row lock
is spent); `blocked_ms` is, for the requests that overlap a prune, their time over
the median of the requests of the same size outside prunes — what a prune costs a
request, lock waits and the CPU the pruner takes on a shared machine alike. Every window (reports,
delivered and ended messages, assignments) is `--window` days (7).

The database size is taken at day `window` (full, nothing pruned yet) and at the
last day: SQLite as its file size with the WAL, and as its used pages
((page_count - freelist_count) * page_size); PostgreSQL as pg_database_size.
On PostgreSQL the pruned tables get a plain VACUUM (not FULL) every
VACUUM_HOURS simulated hours: autovacuum's work, which on the fast clock its
own schedule (real minutes) cannot do. The migration sets their
autovacuum_vacuum_scale_factor to 0.02, which on a 7-day table is a vacuum
every ~3.4 hours of pruning.
The results go to bench/results/storage-<engine>.json (--quick: to
storage-<engine>-quick.json).

1,000 trucks for 14 days are 40 M reports, more than a session on this machine
can run: `--trucks` sets the fleet (default 1,000), the results say the scale
measured, and the bytes a day of 1,000 trucks are extrapolated from the bytes a
report and a message take."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receiver import Receiver  # noqa: E402
from bench.stack import Stack, stack  # noqa: E402
from bench.storage_sweeper import Sweeper, restamp  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REPORT_SECONDS = 30
TICKS_PER_DAY = 86400 // REPORT_SECONDS
PATHS = {"/location": "location", "/landmark": "landmark_change"}
CENTRE = (41.88, -87.63)
LOOP_DEGREES = 0.02  # ~2 km: an hour around it at REPORT_SECONDS a fix
LOOP_TICKS = 120
# The landmark sits on the top of the loop: each truck is inside it a few minutes an hour.
LANDMARK = {
    "name": "Depot",
    "circle": {"latitude": CENTRE[0] + LOOP_DEGREES, "longitude": CENTRE[1], "radius_m": 600},
}
VACUUM_HOURS = 3
PRUNED_TABLES = ("telemetry_report", "outbox_message", "delivery_attempt", "driver_assignment")


def percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(percent / 100 * len(ordered)) - 1)]


class Latency(NamedTuple):
    """One ingest request, as the ingest process timed it."""

    began: float  # time.monotonic()
    seconds: float  # the whole request: ingest() and its commit
    statement_seconds: float  # of which in the database's statements (lock waits included)
    reports: int


def _time_statements(engine: Any, total: list[float]) -> None:
    """Add every statement's time on `engine` (this process's) to total[0]: a write
    waiting on SQLite's lock or on a PostgreSQL row lock waits inside its statement."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _started(connection: Any, *_: Any) -> None:
        connection.info["bench_started"] = time.monotonic()

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(connection: Any, *_: Any) -> None:
        total[0] += time.monotonic() - connection.info.pop("bench_started", time.monotonic())


def position(vin: str, truck: int, trucks: int, tick: int, at: datetime) -> dict[str, Any]:
    angle = 2 * math.pi * (tick / LOOP_TICKS + truck / trucks)
    return {
        "vin": vin,
        "type": "position",
        "time": at.isoformat().replace("+00:00", "Z"),
        "latitude": round(CENTRE[0] + LOOP_DEGREES * math.sin(angle), 6),
        "longitude": round(CENTRE[1] + LOOP_DEGREES * math.cos(angle), 6),
        "speed_mph": 30.0,
        "heading": int(math.degrees(angle)) % 360,
        "ignition": True,
    }


def database_size(system: Stack) -> dict[str, Any]:
    """The database's size, and each pruned table's (with its indexes) and rows."""
    from sqlalchemy import text

    from core.extensions import db

    rows = {
        table: int(db.session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
        for table in PRUNED_TABLES
    }
    if system.engine == "postgresql":
        size = int(db.session.scalar(text("SELECT pg_database_size(current_database())")))
        tables = {
            table: int(db.session.scalar(text(f"SELECT pg_total_relation_size('{table}')")))
            for table in PRUNED_TABLES
        }
        return {"database_bytes": size, "table_bytes": tables, "rows": rows}
    path = Path(str(db.engine.url.database))
    wal = Path(f"{path}-wal")
    page_size = int(db.session.scalar(text("PRAGMA page_size")))
    pages = int(db.session.scalar(text("PRAGMA page_count")))
    free = int(db.session.scalar(text("PRAGMA freelist_count")))
    tables = {}
    try:  # dbstat is compiled into most SQLite builds; the sizes are a detail
        by_name: dict[str, int] = dict(
            db.session.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        )
        indexes: dict[str, str] = dict(
            db.session.execute(text("SELECT name, tbl_name FROM sqlite_master"))
        )
        for name, size in by_name.items():
            table = indexes.get(name, name)
            if table in PRUNED_TABLES:
                tables[table] = tables.get(table, 0) + int(size)
    except Exception:  # noqa: BLE001
        db.session.rollback()
    return {
        "database_bytes": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "used_page_bytes": (pages - free) * page_size,
        "table_bytes": tables,
        "rows": rows,
    }


def _vacuum(system: Stack) -> None:
    """PostgreSQL: what autovacuum does for the pruned tables (plain, not FULL)."""
    from core.extensions import db

    if system.engine != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM " + ", ".join(PRUNED_TABLES))


def simulate(
    engine: str,
    trucks: int,
    days: int,
    window: float,
    postgresql_url: str | None,
    sweep_seconds: float,
    request_minutes: int = 5,
    drain_minutes: int = 120,
    progress: bool = True,
) -> dict[str, Any]:
    """One run on `engine`; the figures as a dict."""
    settings = {
        f"FLEETHOOK_KEEP_{kind}_DAYS": str(window)
        for kind in ("REPORTS", "DELIVERED", "ENDED", "ASSIGNMENTS")
    }
    with (
        stack(engine, postgresql_url, settings) as system,
        Receiver(dict.fromkeys(PATHS, "ok")) as receiver,
    ):
        from sqlalchemy import func, select

        from core.extensions import db
        from core.times import utcnow
        from fleet.ingest import ingest
        from fleet.records import create_landmark
        from outbox.drain import drain_target
        from outbox.models import Target

        vins = system.add_vehicles(trucks)
        targets = [
            system.add_webhooks([receiver.url_for(path)], event_type)[0][0]
            for path, event_type in PATHS.items()
        ]
        app = system.app
        with app.app_context():
            create_landmark(system.account_id, LANDMARK)
            db.session.commit()
        real_start = utcnow() - timedelta(seconds=1)
        # The simulation starts now and runs ahead of the wall clock, so a time
        # the drain stamps is always behind every simulated one.
        start = real_start.replace(microsecond=0) + timedelta(seconds=2)
        sweeper = Sweeper(sweep_seconds, start, real_start)
        latencies: list[Latency] = []
        statement_seconds = [0.0]  # the ingest process's statements, summed
        loads: list[float] = []  # 1-minute load average, once a simulated day
        sizes: dict[str, Any] = {}
        measure_days = sorted({min(math.ceil(window), days), days})
        with app.app_context():
            _time_statements(db.engine, statement_seconds)
            sweeper.begin()
            wall = time.perf_counter()
            try:
                ticks_a_request = request_minutes * 60 // REPORT_SECONDS
                requests_a_drain = max(1, drain_minutes // request_minutes)
                requests_a_day = TICKS_PER_DAY // ticks_a_request
                for request in range(days * requests_a_day):
                    first = request * ticks_a_request
                    now = start + timedelta(seconds=(first + ticks_a_request - 1) * REPORT_SECONDS)
                    sweeper.set_clock(now)
                    reports = [
                        position(
                            vin, n, trucks, tick, start + timedelta(seconds=tick * REPORT_SECONDS)
                        )
                        for tick in range(first, first + ticks_a_request)
                        for n, vin in enumerate(vins)
                    ]
                    for chunk in range(0, len(reports), 1000):
                        sent = reports[chunk : chunk + 1000]
                        statement_seconds[0] = 0.0
                        began = time.monotonic()
                        ingest(system.account_id, {"reports": sent}, now)
                        db.session.commit()
                        took = time.monotonic() - began
                        latencies.append(Latency(began, took, statement_seconds[0], len(sent)))
                    if request % requests_a_drain == requests_a_drain - 1:
                        with sweeper.busy:
                            for target_id in targets:
                                drain_target(target_id)
                            db.session.remove()
                            restamp(real_start, now)
                    if (request + 1) % (requests_a_day * VACUUM_HOURS // 24) == 0:
                        _vacuum(system)
                    if (request + 1) % requests_a_day == 0:
                        day = (request + 1) // requests_a_day
                        loads.append(os.getloadavg()[0])
                        if day in measure_days:
                            sizes[str(day)] = database_size(system)
                            db.session.remove()
                        if progress:
                            took = time.perf_counter() - wall
                            print(
                                f"storage {engine}: day {day} after {took:.0f} s", file=sys.stderr
                            )
                        if not sweeper.process.is_alive():
                            sweeper.finish()  # raises what failed in it
            finally:
                sweeper.finish()
            elapsed = time.perf_counter() - wall
            # Total Messages: a counter on the target, so pruning does not lower it.
            messages_made = int(
                db.session.scalar(
                    select(func.sum(Target.total_messages)).where(Target.id.in_(targets))
                )
                or 0
            )
            db.session.remove()
        stats = receiver.stats(arrivals=False)
    figures = _figures(
        engine,
        trucks,
        days,
        window,
        sweep_seconds,
        elapsed,
        sizes,
        measure_days,
        latencies,
        sweeper,
        messages_made,
        stats,
    )
    figures["scale"].update(
        prune_batch=system.app.config["FLEETHOOK_PRUNE_BATCH"],
        request_minutes=request_minutes,
        drain_minutes=drain_minutes,
        reports_a_request=trucks * request_minutes * 60 // REPORT_SECONDS,
    )
    figures["load_average_1min"] = {
        "min": round(min(loads, default=0), 2),
        "max": round(max(loads, default=0), 2),
        "median": round(statistics.median(loads or [0]), 2),
    }
    return figures


def _figures(
    engine: str,
    trucks: int,
    days: int,
    window: float,
    sweep_seconds: float,
    elapsed: float,
    sizes: dict[str, Any],
    measure_days: list[int],
    latencies: list[Latency],
    sweeper: Sweeper,
    messages_made: int,
    stats: dict[str, Any],
) -> dict[str, Any]:
    pruning = [(start, end) for start, end, deleted in sweeper.runs if deleted]

    def in_prune(latency: Latency) -> bool:
        ended = latency.began + latency.seconds
        return any(start < ended and latency.began < end for start, end in pruning)

    during = [latency for latency in latencies if in_prune(latency)]
    outside = [latency for latency in latencies if not in_prune(latency)]
    # What a prune costs a request: its time over the median of the requests of its
    # size outside prunes (the same load, the same work, no prune), and the same for
    # the time in its statements, where a lock wait is.
    typical = {
        size: (
            statistics.median(x.seconds for x in outside if x.reports == size),
            statistics.median(x.statement_seconds for x in outside if x.reports == size),
        )
        for size in {x.reports for x in outside}
    }
    excess = [x.seconds - typical[x.reports][0] for x in during if x.reports in typical]
    statement_excess = [
        x.statement_seconds - typical[x.reports][1] for x in during if x.reports in typical
    ]

    def summary(values: list[float], extra: bool = True) -> dict[str, Any]:
        return {
            "requests": len(values),
            "p50": round(1000 * percentile(values, 50), 2),
            "p99": round(1000 * percentile(values, 99), 2),
            **({"max": round(1000 * max(values, default=0), 2)} if extra else {}),
        }

    first, last = (sizes[str(day)] for day in measure_days)
    reports = days * TICKS_PER_DAY * trucks
    last_rows, last_tables = last["rows"], last["table_bytes"]
    bytes_per_report = (
        last_tables.get("telemetry_report", 0) / last_rows["telemetry_report"]
        if last_rows["telemetry_report"] and last_tables
        else None
    )
    message_bytes = last_tables.get("outbox_message", 0) + last_tables.get("delivery_attempt", 0)
    bytes_per_message = (
        message_bytes / last_rows["outbox_message"]
        if last_rows["outbox_message"] and last_tables
        else None
    )
    fleet_reports_a_day = 1000 * TICKS_PER_DAY
    messages_per_report = messages_made / reports
    bytes_a_day = (
        fleet_reports_a_day * (bytes_per_report + messages_per_report * bytes_per_message)
        if bytes_per_report is not None and bytes_per_message is not None
        else fleet_reports_a_day * last["used_page_bytes"] / last_rows["telemetry_report"]
        if engine == "sqlite"
        else None
    )
    ratio_key = "used_page_bytes" if engine == "sqlite" else "database_bytes"
    return {
        "engine": engine,
        "scale": {
            "trucks": trucks,
            "days": days,
            "report_seconds": REPORT_SECONDS,
            "window_days": window,
            "reports": reports,
            "messages": messages_made,
            "sweep_seconds": sweep_seconds,
            "elapsed_seconds": round(elapsed, 1),
        },
        "sizes_by_day": sizes,
        "size_ratio": {
            "days": measure_days,
            "database_bytes": round(last["database_bytes"] / first["database_bytes"], 3),
            ratio_key: round(last[ratio_key] / first[ratio_key], 3),
            **(
                {"file_bytes": round(last["file_bytes"] / first["file_bytes"], 3)}
                if engine == "sqlite"
                else {}
            ),
        },
        # The whole database over the reports kept: a report with its share of
        # messages, attempts and indexes (SQLite has no per-table sizes without dbstat).
        "bytes_per_report_all_in": round(last[ratio_key] / last_rows["telemetry_report"], 1),
        "bytes_per_report": round(bytes_per_report, 1) if bytes_per_report else None,
        "bytes_per_message": round(bytes_per_message, 1) if bytes_per_message else None,
        "messages_per_report": round(messages_per_report, 4),
        "extrapolated_1000_trucks": {
            "reports_a_day": fleet_reports_a_day,
            "bytes_a_day": round(bytes_a_day) if bytes_a_day else None,
            "bytes_for_30_day_windows": round(30 * bytes_a_day) if bytes_a_day else None,
        },
        "ingest_ms": summary([x.seconds for x in latencies]),
        "ingest_ms_during_prunes": summary([x.seconds for x in during]),
        "ingest_ms_outside_prunes": summary([x.seconds for x in outside]),
        "ingest_statement_ms_during_prunes": summary([x.statement_seconds for x in during]),
        "ingest_statement_ms_outside_prunes": summary([x.statement_seconds for x in outside]),
        # A request during a prune over the median one of its size outside prunes.
        "blocked_ms": {
            "requests": len(excess),
            "p50": round(1000 * percentile(excess, 50), 2),
            "p99": round(1000 * percentile(excess, 99), 2),
            "max": round(1000 * max(excess, default=0), 2),
            "statements_p99": round(1000 * percentile(statement_excess, 99), 2),
            "statements_max": round(1000 * max(statement_excess, default=0), 2),
        },
        "pruned": sweeper.deleted,
        "prune_runs": {
            "runs": len(sweeper.runs),
            "deleting": len(pruning),
            "p99_ms": round(1000 * percentile([e - s for s, e in pruning], 99), 1),
            "max_ms": round(1000 * max((e - s for s, e in pruning), default=0), 1),
        },
        "delivered": {path: stats[path]["received"] for path in PATHS if path in stats},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--window", type=float, default=7, help="days every row is kept")
    parser.add_argument("--sweep-seconds", type=float, default=5)
    parser.add_argument("--request-minutes", type=int, default=1, help="reports a request")
    parser.add_argument("--drain-minutes", type=int, default=120, help="simulated, between drains")
    parser.add_argument("--quick", action="store_true", help="3 trucks, 3 days, a 1-day window")
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    parser.add_argument("--output", type=Path, help="where the results go (one engine)")
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.trucks, arguments.days, arguments.window = 3, 3, 1
        arguments.sweep_seconds = min(arguments.sweep_seconds, 0.25)
        arguments.request_minutes, arguments.drain_minutes = 30, 30
    engines = ("sqlite", "postgresql") if arguments.engine == "both" else (arguments.engine,)
    failed = False
    for engine in engines:
        figures = simulate(
            engine,
            arguments.trucks,
            arguments.days,
            arguments.window,
            arguments.postgresql_url,
            arguments.sweep_seconds,
            arguments.request_minutes,
            arguments.drain_minutes,
        )
        figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        name = f"storage-{engine}{'-quick' if arguments.quick else ''}.json"
        out = arguments.output or RESULTS / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        # SQLite: the pages in use (the WAL's size is its high-water mark, not data).
        measure = "used_page_bytes" if engine == "sqlite" else "database_bytes"
        ratio = figures["size_ratio"][measure]
        p99 = figures["ingest_ms_during_prunes"]["p99"]
        blocked = figures["blocked_ms"]["p99"]
        days = figures["size_ratio"]["days"]
        print(
            f"storage {engine}: days {days} size ratio {ratio}, ingest p99 during prunes "
            f"{p99} ms (blocked p99 {blocked} ms), pruned {figures['pruned']} "
            f"-> {out}"
        )
        failed |= ratio > 1.1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
