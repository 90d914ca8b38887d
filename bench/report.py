"""BENCHMARKS.md from a full run's JSON: the machine, the ceiling, and one table per
scenario for each engine, beside the targets of issues 7 and 14.

    .venv/bin/python bench/report.py bench/results/full.json > BENCHMARKS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = """# Benchmarks

Produced by `bench/run.py --full --postgresql-url …` then `bench/report.py` (one run;
every figure is a ratio to the ceiling or to a limit measured in the same run, or a
percentile; rates are for context). Receivers are ours (bench/receiver.py, an asyncio server in
its own process, checking signatures on every 10th request per endpoint, and the
`fleethook-sequence` of every message's first arrival in its lane); the run fails if
an event is lost, a signature fails, a lane's messages arrive out of sequence or an
attempt outlasts its deadline. Workers are real `rq worker` processes; the ingest
runs in the harness process through the Flask test client.
"""


NOTES = """
## What bounds each figure (profile notes)

Profiles: py-spy (`py-spy record --format raw --threads`, 100 Hz) attached to the
`rq worker` of a scenario, in a separate run of that scenario on this machine in the
session of this run; the engine is the concurrent drain of issue 14
(outbox/drain.py, outbox/transport.py). Other engineers' test suites ran on the
same two cores during much of the run (see Conditions): figures moved between runs
of the same code in this session by up to 2× (many slow webhooks on SQLite: 10.3,
12.8, 17.0 and 18.5 s in four runs), so read the ratios as a range, not a decimal.

### Latency at real round-trip times (issue 14)

- **Many slow webhooks: one thread of one worker bounds it, not the receivers and
  not the database.** One drain job serves every webhook from the worker's main
  thread — claim, build, record, hand back, target after target — while the
  transport's thread keeps the requests in flight, in the same process and under
  the same GIL. In a 200 × 20 run on SQLite (engine of 1582110; the lane-claim
  changes since leave this part alone) that thread was busy about 86 % of the
  time, and 42 % of its time went to SQLAlchemy expiring instances at commit
  (`SessionTransaction._remove_snapshot` → `InstanceState._expire`): the drain
  keeps every in-flight message as an ORM instance of its one session and commits
  several times per target (drain lease, claim, hand-backs, record), and each
  commit expires every instance the session holds. A commit costs in proportion
  to the messages in flight, and there are more commits the more targets: the cost
  grows with their product. Another 10 % was one SELECT per message in
  `record_results`, reading `id`, `attempts` and `retain_from` off instances those
  commits had expired. So lanes start late: the receivers never held more than
  81–174 of the 200 lanes' requests at once in this session's runs (mean 35–43 in
  this one). On PostgreSQL each of those SELECTs is a round trip to the server
  (5.7× against SQLite's 4.6×). Reported as an engine issue; not changed here.
- **1,000 webhooks × 20** is the same bound, five times the targets and instances:
  20–38× the limit in this session's runs. (With one worker,
  FLEETHOOK_WORKER_IN_FLIGHT, 512 by default, would by itself allow two rounds of
  lanes, ≈ 8 s; the peak in flight never came near it.)
- **One busy webhook meets its target**: its window bounds it, as it should — the
  receiver never held more than max_in_flight = 16 requests. A lane goes out as a
  run (its messages one after another in one slot), so 200 lanes of 10 in 16 slots
  take ⌈200 / 16⌉ = 13 rounds of 10 round trips, ≈ 26 s against the formula's
  25 s; the claim between one run and the next is most of the rest.
- **The trickling receiver costs one slot until the deadline**: every recorded
  attempt at it took 2,000–2,010 ms for a 2 s deadline, although the receiver was
  still sending its answer, and the healthy webhooks beside it got everything.
  Their p95 is within 1.2× of the same run without it in this run, but the ratio
  hides that one main worker did not keep up with these 200 deliveries/s at
  50–500 ms: healthy p95 was 1.0 s on SQLite and 4.0 s (alone) on PostgreSQL, the
  drain-thread bound above. And the ratio is not always met (next points).
- **A drain job lost its own target's nudges while it served others** (the engine
  of this run; bc6741a since serves the target again while the job still claims,
  not after — next point): a job that has finished its first target keeps running for the other
  targets it took (a trickle or a black hole holds one until its deadline). A new
  message for that first target nudges it under the job's own id, which RQ still
  calls started, so the nudge only sets the target's drain-again flag; nothing
  reads that flag until the job ends, and then only the next nudge or a sweep (which
  waits for the same busy main worker) picks the target up. Measured: a healthy
  webhook beside a black hole (deadline 10 s) got its next message 9.6 s after its
  commit. With 20 healthy webhooks that is one target in 20 per main worker, at
  p95's edge: runs of the isolation and trickle scenarios in this session ranged
  from 0.6× to 4.5×, and the quick run (5 webhooks: one in five) showed 12×.
- **A slow receiver that answers holds make run's only main worker** (engine issue,
  reported): after its claims budget (5 s) a drain job takes no more queued targets
  but finishes its runs in flight, and a run may go on until claim + lease −
  deadline − 1 s (49 s by default). Measured: beside a webhook answering in 2 s
  with 20 messages queued (one 40 s run), a healthy webhook's new message, posted
  6.5 s in, arrived 33.6 s after its commit. With two main workers (production)
  the other one takes the queued jobs.

### The other scenarios under the lane engine

- **Throughput fell to 0.24–0.46 of the ceiling (0.54–0.68 before the concurrent
  engine).** The scenario posts one vehicle's reports, so each of its 10 webhooks is
  one lane: at most 10 requests in flight, each lane's messages one after another,
  and a claim, a record and several commits per run of at most 20 messages (the
  serial drain claimed 100 at a time); per request, aiohttp in one thread and the
  drain in another share one GIL. A second worker hardly helps on SQLite (its
  claims and records take the one write lock) and the W = 2 ceiling is twice the
  W = 1 one, hence the lower W = 2 ratio. Not profiled further in this session.
- **Latency at 200 events/s**: one webhook, one vehicle, so one lane: each batch of
  10 reports waits for the run before it to be answered and recorded. Met on
  SQLite (p99 84 ms); on PostgreSQL p50 was 62 ms (target 50 ms), p99 205 ms.
- **Isolation** (a black hole and a 500 beside 20 healthy webhooks, two main
  workers): `FLEETHOOK_MAIN_READ_TIMEOUT` no longer applies to webhooks; each
  attempt at the black hole ends at `FLEETHOOK_DELIVERY_DEADLINE` (2 s here) and
  costs one slot, not a worker. What it still costs is the lost-nudge bug above:
  0.89× on SQLite, 1.40× on PostgreSQL in this run (and 1.1 s healthy p95 alone
  there: the machine was loaded and the drain thread is the bound).
- **Grid growth** is flat by design: the grid reads each target's Queue Depth and
  Total Messages counters, kept in step in the transactions that change the outbox,
  never counting messages.
- **Ingest vs landmarks**: the landmark index is cached per process and account
  (rebuilt when the account's landmarks change); what grows with 10,000 landmarks
  is the number of crossings, hence messages, not the lookup.
- **Worker memory** is flat: nothing per message outlives its drain (the session is
  removed after each job; caches are per target or per landmark set).

### Earlier findings (the serial drain, before issue 14)

- A fork per drain job was the largest cost: `worker.FleethookWorker` runs jobs in
  the worker process (RQ's `SimpleWorker`), so the database pool and the HTTP
  connections carry from one drain to the next.
- The ingest held SQLite's write lock for 208 ms per request (5 reports × 20
  webhooks); fan-out now writes one counter UPDATE per target and one INSERT per
  batch: 42 ms per request.
"""


def _rows(engine_rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [row for row in engine_rows if row["scenario"].startswith(prefix)]


def _met(row: dict[str, Any]) -> str:
    if row.get("target") is None and "target" in row:
        return "reported only"
    return "met" if row["target_met"] else "NOT met"


def _latency_at_round_trips(lines: list[str], rows: list[dict[str, Any]]) -> None:
    """The tables of issue 14: receivers answering in 200 ms, a trickling receiver."""
    slow = _rows(rows, "slow webhooks")
    if slow:
        lines.append(
            "\n### Many slow webhooks: receivers answering in 200 ms, make run's workers "
            "(target: ≤ 1.5× the limit at 200 webhooks)\n"
        )
        lines.append(f"Workers: {slow[0]['workers']}. Lanes: {slow[0]['lanes']}. The limit is "
                     "one lane's round trips one after another (messages × the round trip "
                     "measured in the same run); the figure runs from the ingest's commit "
                     "until the receiver answered the last message.\n")  # fmt: skip
        lines.append("| webhooks × messages | round trip | limit | commit → last answer | ratio "
                     "| in flight, peak / mean | target |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|")
        for row in slow:
            lines.append(
                f"| {row['webhooks']:,} × {row['messages']} | {row['round_trip_ms']:.0f} ms | "
                f"{row['limit_seconds']:.2f} s | {row['seconds']:.2f} s | "
                f"**{row['ratio']:.2f}×** | {row['peak_in_flight']} / "
                f"{row['mean_in_flight']:.0f} | {_met(row)} |"
            )
    for row in _rows(rows, "busy webhook"):
        lines.append(
            f"\n### One busy webhook: receiver answering in {row['delay_ms']} ms, "
            f"max_in_flight {row['max_in_flight']}, make run's workers (target: ≤ "
            f"{row['target']}× the limit)\n"
        )
        lines.append(
            f"Lanes: one per vehicle, {row['reports']} messages each, ingested in "
            f"{row['ingest_requests']} requests of up to 1,000 reports. The limit is messages × "
            f"round trip ÷ max_in_flight; the figure runs from the first request's commit (from "
            f"the last one's: {row['seconds_after_last_commit']:.2f} s).\n"
        )
        lines.append("| vehicles × reports | round trip | limit | first commit → last answer | "
                     "ratio | in flight, peak / mean | target |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|")
        lines.append(
            f"| {row['vehicles']:,} × {row['reports']} | {row['round_trip_ms']:.0f} ms | "
            f"{row['limit_seconds']:.2f} s | {row['seconds']:.2f} s | **{row['ratio']:.2f}×** | "
            f"{row['peak_in_flight']} / {row['mean_in_flight']:.0f} | {_met(row)} |"
        )
    for row in _rows(rows, "trickling receiver"):
        lines.append(
            f"\n### A trickling receiver beside {row['healthy_webhooks']} healthy webhooks, "
            f"deadline {row['deadline_ms'] / 1000:g} s, make run's workers (targets: its "
            "attempts end at the deadline; healthy p95 within 1.2×)\n"
        )
        lines.append(
            "The trickling receiver sends a 200's headers at once, then one body byte every "
            f"100 ms. Healthy receivers answer in "
            f"{row['healthy_behaviour'].split(':')[1].replace('-', '–')} ms "
            f"(random, uniform); reports come from {row['vehicles']} vehicles, so each webhook "
            f"has {row['vehicles']} lanes.\n"
        )
        lines.append("| offered | healthy p95 alone | beside the trickle | ratio | trickled "
                     "attempts | their durations | target |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|")
        lines.append(
            f"| {row['offered_per_second']:.0f} events/s × {row['healthy_webhooks']} for "
            f"{row['seconds']:.0f} s | {row['p95_ms_without']:,.0f} ms | "
            f"{row['p95_ms_with']:,.0f} ms | **{row['ratio']:.2f}×** | "
            f"{row['trickle_attempts']} | {row['attempt_ms_min']:,}–{row['attempt_ms_max']:,} ms "
            f"| {'met' if row['target_met'] else 'NOT met'} |"
        )


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    ceiling = results["ceiling_per_second"]
    lines = [HEADER]
    lines.append(f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, Python "
                 f"{machine['python']}, {machine['platform']}.\n")  # fmt: skip
    if results.get("conditions"):  # what else ran meanwhile, added by whoever ran it
        lines.append(f"Conditions: {results['conditions']}\n")
    lines.append("## Ceiling: a plain requests.Session keep-alive loop, signed bodies\n")
    lines.append("| W (processes) | POST/s |\n|---|---|")
    lines += [f"| {w} | {float(rate):,.0f} |" for w, rate in ceiling.items()]
    for engine, rows in results["engines"].items():
        lines.append(f"\n## {engine}\n")
        lines.append("### Throughput (target: ≥ 0.75 of the ceiling at the same W)\n")
        lines.append(
            "| scenario | events × webhooks | deliveries/s | ceiling/s | ratio | duplicates |"
        )
        lines.append("|---|---|---|---|---|---|")
        for row in _rows(rows, "throughput") + _rows(rows, "per-message"):
            lines.append(
                f"| {row['scenario']} | {row['events']:,} × {row['webhooks']} | "
                f"{row['per_second']:,.0f} | {row['ceiling_per_second']:,.0f} | "
                f"**{row['ratio']:.2f}** | {row['duplicates']} |"
            )
        for row in _rows(rows, "latency"):
            lines.append("\n### Latency, ingest commit → receiver (targets: p50 ≤ 50 ms, "
                         "p99 ≤ 250 ms)\n")  # fmt: skip
            lines.append("| offered | achieved | p50 | p95 | p99 | max | targets |")
            lines.append("|---|---|---|---|---|---|---|")
            lines.append(
                f"| {row['offered_per_second']:.0f}/s for {row['seconds']:.0f} s | "
                f"{row['achieved_per_second']:.0f}/s | {row['p50_ms']:.0f} ms | "
                f"{row['p95_ms']:.0f} ms | {row['p99_ms']:.0f} ms | {row['max_ms']:.0f} ms | "
                f"{'met' if row['targets_met'] else 'NOT met'} |"
            )
        for row in _rows(rows, "isolation"):
            lines.append("\n### Isolation: 20 healthy endpoints ± a black hole and a 500 "
                         "(target: healthy p95 within 1.2×)\n")  # fmt: skip
            lines.append("| offered | healthy p95 alone | with the bad ones | ratio | target |")
            lines.append("|---|---|---|---|---|")
            lines.append(
                f"| {row['offered_per_second']:.0f} events/s × {row['healthy_webhooks']} for "
                f"{row['seconds']:.0f} s | {row['p95_ms_without']:,.0f} ms | "
                f"{row['p95_ms_with']:,.0f} ms | **{row['ratio']:.2f}×** | "
                f"{'met' if row['target_met'] else 'NOT met'} |"
            )
        _latency_at_round_trips(lines, rows)
        for row in _rows(rows, "grid growth"):
            lines.append("\n### Growth: the grid's polling fragment (target: p95 ratio ≤ 1.5)\n")
            lines.append(
                "| webhooks | p95 at small outbox | p95 at large outbox | ratio | target |"
            )
            lines.append("|---|---|---|---|---|")
            lines.append(
                f"| {row['webhooks']:,} | {row['p95_ms_small']:.0f} ms at "
                f"{row['messages_small']:,} messages | {row['p95_ms_large']:.0f} ms at "
                f"{row['messages_large']:,} | **{row['ratio']:.2f}×** | "
                f"{'met' if row['target_met'] else 'NOT met'} |"
            )
        for row in _rows(rows, "ingest vs landmarks"):
            lines.append("\n### Growth: ingest with few and many landmarks (target: ratio ≤ 1.5)\n")
            lines.append("| reports | few landmarks | many landmarks | ratio | target |")
            lines.append("|---|---|---|---|---|")
            lines.append(
                f"| {row['reports']:,} in batches of 100 | {row['per_second_small']:,.0f}/s "
                f"with {row['landmarks_small']:,} | {row['per_second_large']:,.0f}/s with "
                f"{row['landmarks_large']:,} | **{row['ratio']:.2f}×** | "
                f"{'met' if row['target_met'] else 'NOT met'} |"
            )
        for row in _rows(rows, "worker memory"):
            lines.append("\n### Growth: one worker's resident memory (target: ≤ 1.1×)\n")
            lines.append("| deliveries (small → large) | RSS after small | RSS after large | "
                         "ratio | target |")  # fmt: skip
            lines.append("|---|---|---|---|---|")
            lines.append(
                f"| {row['deliveries_small']:,} → {row['deliveries_large']:,} to "
                f"{row['webhooks']} webhooks | {row['rss_mib_small']:.1f} MiB | "
                f"{row['rss_mib_large']:.1f} MiB | **{row['ratio']:.3f}×** | "
                f"{'met' if row['target_met'] else 'NOT met'} |"
            )
    return "\n".join(lines) + "\n" + NOTES


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())), end="")
