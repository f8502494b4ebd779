"""The benchmark harness: `make bench` (full data) or `make bench-fast`."""
