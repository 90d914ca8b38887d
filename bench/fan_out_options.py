"""What a webhook's area, redaction and tracks cost at fan-out: part of
`bench/run.py` ("fan-out options"), and runnable alone:

    .venv/bin/python bench/fan_out_options.py [--reports 5000] [--postgresql-url URL]

For each option: a fresh system (bench/stack.py), 50 vehicles, 5 Location webhooks
with the option, then position reports posted through the ingest API in batches of
100 (bench/ingest_landmarks.py). The figure is each option's reports per second
against plain webhooks' in the same run: a ratio, since absolute times on a shared
machine vary. Target: no option makes ingest more than twice as slow."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack  # noqa: E402

WEBHOOKS = 5
TARGET = 2.0  # plain / option


def _polygon(points: int) -> dict[str, Any]:
    """A ring of `points` positions, 30 km across, around the vehicles' routes."""
    ring = [
        [
            -87.63 + 0.35 * math.cos(2 * math.pi * n / points),
            41.88 + 0.27 * math.sin(2 * math.pi * n / points),
        ]
        for n in range(points)
    ]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "area: circle": {
        "area": {"circle": {"latitude": 41.88, "longitude": -87.63, "radius_m": 20_000}}
    },
    "area: polygon of 1,000 points": {"area": {"polygon": _polygon(1000)}},
    "redaction": {
        "drop_driver_name": True,
        "coordinate_decimals": 3,
        "drop_fields": ["data.odometer_mi", "data.heading"],
    },
    "tracks of 100": {"track": {"points": 100, "seconds": 3600}},
}


@dataclass
class FanOutOptions:
    engine: str
    reports: int
    webhooks: int
    per_second: dict[str, float]  # reports/s by option
    slowest_ratio: float  # plain / the slowest option
    target_met: bool

    def summary(self) -> str:
        met = "met" if self.target_met else "NOT met"
        plain = self.per_second["plain"]
        parts = ", ".join(
            f"{name} {rate:.0f} ({plain / rate:.2f}×)"
            for name, rate in self.per_second.items()
            if name != "plain"
        )
        return (
            f"plain {plain:.0f} reports/s; {parts}; slowest {self.slowest_ratio:.2f}× "
            f"(target ≤ {TARGET}×, {met})"
        )


def fan_out_options(engine: str, postgresql_url: str | None, reports: int) -> FanOutOptions:
    from bench.ingest_landmarks import reports_per_second

    rates = {}
    for name, fields in OPTIONS.items():
        with stack(engine, postgresql_url) as system:
            webhooks = [{"event_type": "location", **fields} for _ in range(WEBHOOKS)]
            rates[name] = round(reports_per_second(system, 0, reports, webhooks), 1)
    slowest = max(rates["plain"] / rate for rate in rates.values())
    return FanOutOptions(engine, reports, WEBHOOKS, rates, round(slowest, 3), slowest <= TARGET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    arguments = parser.parse_args()
    engine = "postgresql" if arguments.postgresql_url else "sqlite"
    print(fan_out_options(engine, arguments.postgresql_url, arguments.reports).summary())


if __name__ == "__main__":
    main()
