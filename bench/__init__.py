"""Benchmarks: `make bench` prints one JSON report (python -m bench)."""
