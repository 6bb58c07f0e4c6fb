"""Benchmarks: `python -m bench.NAME` prints a table; `--json` adds one JSON object
on the last line. Each starts what it measures on free loopback ports and stops it."""
