"""Timing shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import statistics
import time

import tensorflow as tf


def interleaved_medians(timers, repeats, rounds=3, warmup=2, settle=True):
    """`{name: median ms}` over `repeats` calls of each of `timers` (`name -> fn`), in rounds.

    Timing each implementation in one block would give each a different machine state (the
    allocator's free lists, page cache, other jobs on the shared cores), so the blocks take
    turns over `rounds` rounds. Within a round the calls are consecutive, after one untimed
    call when `settle`: right after a torch call its OpenMP threads still spin on the second
    core, which slowed the next TF call here by 70% when every call took turns. Among TF
    callables only, `rounds=repeats, settle=False` makes every call take turns. A callable that
    raises while warming up is reported as `"error: <exception type>"`: a failing peer is a
    result.
    """
    results, live = {}, {}
    for name, fn in timers.items():
        try:
            for _ in range(warmup):
                fn()
            live[name] = []
        except Exception as e:  # noqa: BLE001 - reported in the table
            results[name] = f"error: {type(e).__name__}"
    for r in range(rounds):
        calls = repeats // rounds + (r < repeats % rounds)
        for name, times in live.items():
            if settle:
                timers[name]()
            for _ in range(calls):
                start = time.perf_counter()
                timers[name]()
                times.append(time.perf_counter() - start)
    results.update({name: 1e3 * statistics.median(times) for name, times in live.items()})
    return {name: results[name] for name in timers}


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
