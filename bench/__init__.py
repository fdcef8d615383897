"""The benchmark harness behind `make bench` (see BENCHMARKS.md)."""
