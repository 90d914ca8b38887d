"""PostgreSQL: pruning a day of telemetry reports by DELETE in batches versus
declarative partitioning by day (DROP of the oldest partition).

    python -m bench.partitions --postgresql-url postgresql://postgres@127.0.0.1/scratch

Builds both tables in the given scratch database (their own tables, dropped at
the end): `report_plain`, shaped like telemetry_report (bigint id, unique
(vehicle_id, type, time), indexes on time and received_at, JSONB fields), and
`report_parted`, the same partitioned by range of `time`, one partition a day
(its primary key must then include `time`: (id, time)). Loads `--days` days of
`--trucks` trucks reporting every 30 s into each, then prunes the oldest day
each way while a thread inserts one report per statement (autocommit), as the
ingest does, and measures:

- the prune's time;
- table + index size (pg_total_relation_size, over the partitions) before, and
  after the prune and a plain VACUUM (what autovacuum does; not FULL);
- the p50/p99 latency of the concurrent inserts during the prune, and without
  any prune as a baseline.

The results go to bench/results/partitions.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 2000
FIELDS = (
    '{"latitude": 41.88123, "longitude": -87.63012, "speed_mph": 31.5, "heading": 90, '
    '"ignition": true, "odometer_mi": 128463.2, "fuel_level_pct": 61}'
)
COLUMNS = """
    vehicle_id integer NOT NULL,
    type varchar(20) NOT NULL,
    time timestamptz NOT NULL,
    fields jsonb NOT NULL,
    received_at timestamptz NOT NULL"""


def percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(percent / 100 * len(ordered)) - 1)]


def create(connection: psycopg.Connection, start: datetime, days: int) -> None:
    connection.execute("DROP TABLE IF EXISTS report_plain, report_parted CASCADE")
    connection.execute(
        f"CREATE TABLE report_plain (id bigserial PRIMARY KEY, {COLUMNS},"
        " UNIQUE (vehicle_id, type, time))"
    )
    connection.execute("CREATE INDEX ON report_plain (time)")
    connection.execute("CREATE INDEX ON report_plain (received_at)")
    connection.execute(
        f"CREATE TABLE report_parted (id bigserial, {COLUMNS}, PRIMARY KEY (id, time),"
        " UNIQUE (vehicle_id, type, time)) PARTITION BY RANGE (time)"
    )
    connection.execute("CREATE INDEX ON report_parted (time)")
    connection.execute("CREATE INDEX ON report_parted (received_at)")
    for day in range(days + 1):  # and tomorrow's, as a scheduler would keep ready
        low, high = start + timedelta(days=day), start + timedelta(days=day + 1)
        connection.execute(
            f"CREATE TABLE report_parted_d{day} PARTITION OF report_parted"
            f" FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )


def load(connection: psycopg.Connection, start: datetime, days: int, trucks: int) -> int:
    """`days` days of reports every 30 s from `trucks` trucks, into both tables."""
    per_day = 86400 // 30
    for table in ("report_plain", "report_parted"):
        for day in range(days):
            load_day(connection, table, start + timedelta(days=day), trucks)
    connection.execute("VACUUM ANALYZE report_plain, report_parted")
    return per_day * trucks


def size(connection: psycopg.Connection, table: str) -> int:
    """Table + indexes (+ TOAST), over its partitions if it has any."""
    row = connection.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)"
        " WHERE isleaf",
        (table,),
    ).fetchone()
    if row and row[0]:
        return int(row[0])
    row = connection.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
    return int(row[0]) if row else 0


def load_day(connection: psycopg.Connection, table: str, day_start: datetime, trucks: int) -> None:
    connection.execute(
        f"INSERT INTO {table} (vehicle_id, type, time, fields, received_at)"
        " SELECT truck, 'position', t, %s::jsonb, t"
        " FROM generate_series(1, %s) AS truck,"
        " generate_series(%s::timestamptz, %s::timestamptz - interval '30 seconds',"
        " interval '30 seconds') AS t",
        (FIELDS, trucks, day_start, day_start + timedelta(days=1)),
    )


class Inserter(threading.Thread):
    """One report per statement into `table`, timed, until stopped."""

    def __init__(self, url: str, table: str, at: datetime) -> None:
        super().__init__(daemon=True)
        self.url, self.table, self.at = url, table, at
        self.samples: list[tuple[float, float]] = []  # perf_counter start, seconds
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            n = 0
            while not self.stop.is_set():
                n += 1
                at = self.at + timedelta(milliseconds=n)
                began = time.perf_counter()
                connection.execute(
                    f"INSERT INTO {self.table} (vehicle_id, type, time, fields, received_at)"
                    " VALUES (%s, 'position', %s, %s::jsonb, %s) ON CONFLICT DO NOTHING",
                    (100_000 + n % 1000, at, FIELDS, at),
                )
                self.samples.append((began, time.perf_counter() - began))
                time.sleep(0.002)


def prune_by_delete(connection: psycopg.Connection, cutoff: datetime) -> int:
    deleted = 0
    while True:
        with connection.transaction():
            result = connection.execute(
                "DELETE FROM report_plain WHERE id IN"
                " (SELECT id FROM report_plain WHERE time < %s LIMIT %s)",
                (cutoff, BATCH),
            )
        deleted += result.rowcount
        if result.rowcount < BATCH:
            return deleted


def prune_by_drop(connection: psycopg.Connection) -> int:
    count = connection.execute("SELECT count(*) FROM report_parted_d0").fetchone()
    with connection.transaction():
        connection.execute("ALTER TABLE report_parted DETACH PARTITION report_parted_d0")
        connection.execute("DROP TABLE report_parted_d0")
    return int(count[0]) if count else 0


def measure(
    url: str, table: str, start: datetime, days: int, trucks: int, prune: Any
) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as connection:
        before = size(connection, table)
        # Inserts at "now": the newest day, as the ingest writes.
        inserter = Inserter(url, table, start + timedelta(days=days - 1, hours=23))
        inserter.start()
        time.sleep(3)  # baseline
        began = time.perf_counter()
        deleted = prune(connection)
        ended = time.perf_counter()
        time.sleep(1)
        inserter.stop.set()
        inserter.join()
        vacuum_began = time.perf_counter()
        connection.execute(f"VACUUM {table}")
        vacuum_seconds = time.perf_counter() - vacuum_began
        after = size(connection, table)
        # The next day comes in: the space the prune freed is reused, or not.
        load_day(connection, table, start + timedelta(days=days), trucks)
        connection.execute(f"VACUUM {table}")
        after_next_day = size(connection, table)
    during = [s for b, s in inserter.samples if began <= b + s and b <= ended]
    baseline = [s for b, s in inserter.samples if b + s < began]
    return {
        "rows_pruned": deleted,
        "prune_seconds": round(ended - began, 3),
        "vacuum_seconds": round(vacuum_seconds, 3),
        "bytes_before": before,
        "bytes_after_vacuum": after,
        "bytes_after_next_day": after_next_day,
        "inserts_during_prune": len(during),
        "insert_ms_during_prune": {
            "p50": round(1000 * percentile(during, 50), 2),
            "p99": round(1000 * percentile(during, 99), 2),
            "max": round(1000 * max(during, default=0), 2),
        },
        "insert_ms_baseline": {
            "p50": round(1000 * percentile(baseline, 50), 2),
            "p99": round(1000 * percentile(baseline, 99), 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--trucks", type=int, default=100)
    parser.add_argument("--output", type=Path, default=RESULTS / "partitions.json")
    arguments = parser.parse_args(argv)
    if not arguments.postgresql_url:
        raise SystemExit("bench.partitions: give --postgresql-url (a scratch database)")
    url = arguments.postgresql_url.replace("postgresql+psycopg://", "postgresql://")
    start = (datetime.now(UTC) - timedelta(days=arguments.days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    with psycopg.connect(url, autocommit=True) as connection:
        create(connection, start, arguments.days)
        load_began = time.perf_counter()
        per_day = load(connection, start, arguments.days, arguments.trucks)
        load_seconds = time.perf_counter() - load_began
    cutoff = start + timedelta(days=1)
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": {
            "trucks": arguments.trucks,
            "days": arguments.days,
            "rows_a_day": per_day,
            "delete_batch": BATCH,
            "load_seconds_both": round(load_seconds, 1),
        },
        "delete_in_batches": measure(
            url,
            "report_plain",
            start,
            arguments.days,
            arguments.trucks,
            lambda c: prune_by_delete(c, cutoff),
        ),
        "drop_partition": measure(
            url, "report_parted", start, arguments.days, arguments.trucks, prune_by_drop
        ),
    }
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS report_plain, report_parted CASCADE")
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
