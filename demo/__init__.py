"""The demo: the data `make run` seeds, and a simulated fleet driving the demo
landmarks through the real ingest."""
