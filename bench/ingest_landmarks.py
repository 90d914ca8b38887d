"""Ingest throughput with few and with many landmarks: part of `bench/run.py`
("ingest vs landmarks"), and runnable alone:

    .venv/bin/python bench/ingest_landmarks.py [--reports 5000] [--landmarks 10,10000]
        [--postgresql-url URL]

For each landmark count: a fresh system (bench/stack.py), 50 vehicles, the
landmarks (circles and polygons scattered over a 60 × 60 km area, with the
vehicles' routes running through it), a Location and a Landmark Change webhook,
then position reports posted through the ingest API (Flask's test client, in this
process) in batches of 100. The figure that matters is the ratio between the
counts' reports per second, since absolute times on a shared machine vary.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import stack  # noqa: E402

BATCH = 100
VEHICLES = 50
CENTRE = (41.88, -87.63)
SPAN_DEG = 0.27  # about 30 km either way


def _landmark(rng: random.Random, n: int) -> dict:
    lat = CENTRE[0] + rng.uniform(-SPAN_DEG, SPAN_DEG)
    lon = CENTRE[1] + rng.uniform(-SPAN_DEG, SPAN_DEG)
    if n % 2:
        return {
            "name": f"Site {n}",
            "circle": {"latitude": lat, "longitude": lon, "radius_m": rng.uniform(50, 400)},
        }
    d = rng.uniform(0.001, 0.004)
    ring = [
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d],
    ]
    return {"name": f"Site {n}", "polygon": {"type": "Polygon", "coordinates": [ring]}}


def reports_per_second(
    system: Any, landmark_count: int, report_count: int, webhooks: list[str] | list[dict]
) -> float:
    """Set up the landmarks, vehicles and webhooks in `system` (each an event type,
    or a webhook's fields beside its URL), then time the ingest."""
    from core.extensions import db
    from core.times import utcnow
    from fleet.records import create_landmark, create_vehicle
    from fleet.vin import check_digit
    from webhooks.lifecycle import create_webhook

    app = system.app
    rng = random.Random(7)
    with app.app_context():
        vins = []
        for n in range(VEHICLES):
            base = f"1FTBENCH0{n:08d}"
            vin = base[:8] + check_digit(base) + base[9:]
            create_vehicle(system.account_id, {"name": f"Truck {n}", "vin": vin})
            vins.append(vin)
        for n in range(landmark_count):
            create_landmark(system.account_id, _landmark(rng, n))
        for webhook in webhooks:
            fields = {"event_type": webhook} if isinstance(webhook, str) else dict(webhook)
            fields.setdefault("name", fields["event_type"])
            create_webhook(system.account_id, {**fields, "url": "http://127.0.0.1:9/"})
        db.session.commit()
        db.session.remove()
    headers = system.headers

    client = app.test_client()
    start = utcnow() - timedelta(seconds=report_count + 600)  # one report a second, all past
    places = {
        vin: [CENTRE[0] + rng.uniform(-0.2, 0.2), CENTRE[1] + rng.uniform(-0.2, 0.2)]
        for vin in vins
    }
    batches = []
    for b in range(report_count // BATCH):
        reports = []
        for i in range(BATCH):
            vin = vins[(b * BATCH + i) % VEHICLES]
            place = places[vin]
            place[0] += rng.uniform(-0.002, 0.002)
            place[1] += rng.uniform(-0.002, 0.002)
            moment = start + timedelta(seconds=b * BATCH + i)
            reports.append(
                {
                    "vin": vin,
                    "type": "position",
                    "time": moment.isoformat().replace("+00:00", "Z"),
                    "latitude": place[0],
                    "longitude": place[1],
                    "speed_mph": 35.0,
                    "heading": 90,
                    "ignition": True,
                }
            )
        batches.append({"reports": reports})
    client.post("/api/v1/telemetry", json=batches.pop(0), headers=headers)  # warm: index built
    began = time.perf_counter()
    messages = 0
    for batch in batches:
        response = client.post("/api/v1/telemetry", json=batch, headers=headers)
        assert response.status_code == 202, response.json
        messages += response.json["messages"]
    elapsed = time.perf_counter() - began
    reports = len(batches) * BATCH
    print(
        f"{landmark_count:>6} landmarks: {reports / elapsed:7.0f} reports/s "
        f"({reports} reports, {messages} messages queued)",
        flush=True,
    )
    return reports / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--landmarks", default="10,10000")
    parser.add_argument(
        "--webhooks",
        default="location,landmark_change",
        help="event types subscribed; without landmark_change crossings are detected, not queued",
    )
    parser.add_argument("--postgresql-url", default=os.environ.get("BENCH_POSTGRESQL_URL"))
    arguments = parser.parse_args()
    engine = "postgresql" if arguments.postgresql_url else "sqlite"
    rates = {}
    for count in (int(n) for n in arguments.landmarks.split(",")):
        with stack(engine, arguments.postgresql_url) as system:
            rates[count] = reports_per_second(
                system, count, arguments.reports, arguments.webhooks.split(",")
            )
    low, high = min(rates), max(rates)
    print(f"ratio {low} / {high} landmarks: {rates[low] / rates[high]:.2f}")


if __name__ == "__main__":
    main()
