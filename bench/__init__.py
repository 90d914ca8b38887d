"""Benchmarks: see bench/run.py and BENCHMARKS.md."""
