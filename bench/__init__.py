"""The benchmark harness: `make bench` (full data) or `make bench-fast`."""

import time


def timed(action):
    """(seconds, result) of calling action()."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result
