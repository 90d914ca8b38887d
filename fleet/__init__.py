"""Fleet data of an account — vehicles, drivers, landmarks — and the telemetry that
turns into events (ingest → detection → fan-out)."""
