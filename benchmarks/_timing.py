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
    """Returns `result` once every op on every device has finished, without copying it.

    `.numpy()` copies the whole tensor into a new NumPy array (about 9 ms for a 32 MiB gradient
    on this machine), a cost a torch timer does not pay; reading one element instead runs three
    eager ops, about 0.6 ms a call here, which is 40% of a 1.5 ms torch forward. Eager
    TensorFlow on CPU already returns after the work is done; `sync_devices` makes the wait
    explicit (and correct on a GPU, whose kernels run asynchronously) for about 0.1 ms.
    """
    tf.test.experimental.sync_devices()
    return result
