"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import statistics
import time


def median_ms(fn, repeats, warmup=2):
    """Median wall-clock milliseconds of `fn()` over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
