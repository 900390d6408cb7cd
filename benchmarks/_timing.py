"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import statistics
import time

import tensorflow as tf


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


def wait(result):
    """Returns once every tensor in `result` (a tensor or a nest) is computed, without a copy.

    `.numpy()` copies the whole tensor into a new NumPy array (about 9 ms for a 32 MiB gradient
    on this machine), a cost a torch timer does not pay. Eager TensorFlow runs synchronously by
    default; reading one element of each output makes the wait explicit at a cost of microseconds.
    """
    for tensor in tf.nest.flatten(result):
        tf.reshape(tensor, [-1])[:1].numpy()
    return result
