"""One named `Plan` per adaptive pooling case: which forward formulation, which gradient.

`choose_plan` is the only place that picks formulations; `apply_plan` runs the chosen one.
Every formulation is exact (torch's bins and, for the max, torch's first-maximum gradient);
they differ only in speed, under TF's CPU kernels (`tf.function`, Keras' default on CPU) or
under XLA (`jit_compile=True`). Timings in the comments are 32 x 64 x 64 x 64 float32 on 2 CPU
cores.
"""

from __future__ import annotations

import dataclasses

from keras_cnn_ext.ops.adaptive_pool import bins, forward
from keras_cnn_ext.ops.adaptive_pool.gradients import GRADIENTS, with_gradient

# Max pooling pools an axis with one strided `max_pool2d` per run of equal bins (`bins.runs`)
# when it has at most this many runs, and gathers the axis' windows otherwise.
MAX_RUNS = 4
# The same for average pooling: several `avg_pool2d` runs were slow on CPU (63 -> 32: 17 s on
# the first call, then 4x the averaging matmul).
AVERAGE_MAX_RUNS = 1
# Longest bin, every axis shrinking, for which the max's gradient is routed to first maxima by
# gathers (`first_max_routed`; longer bins take TF's MaxPoolGrad) and XLA's average is
# `sliced_sums` (longer bins take a pooling op).
ROUTED_MAX_LENGTH = 16
# Longest side of a 1 x 1 max whose first maximum is found by select chains
# (`first_max_chains`), else by a `reduce_min` over a full-size select (`first_max_search`),
# which XLA writes out first: the 64 x 64 gradient takes 14 ms against 20 ms; the chains'
# compile time grows with the side.
ROUTED_GLOBAL_LENGTH = 64

FORWARDS = ("mean", "mean_matmul", "reduce_max", "window", "sliced_sums", "per_axis")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one case is computed.

    Attributes:
        forward: one of `FORWARDS` (functions of `forward`).
        gradient: a key of `gradients.GRADIENTS`, or `"autodiff"` for TF's gradient of the
            forward ops.
        window: `(ksize, strides, padding)` for the `"window"` forward.
        max_runs: for `"per_axis"`, the most runs of an axis pooled with strided pooling ops.
    """

    forward: str
    gradient: str
    window: tuple | None = None
    max_runs: int = 0


def _short_bins(sizes, output_size):
    """Whether every axis shrinks (or keeps its size) with bins of at most `ROUTED_MAX_LENGTH`."""
    return all(
        m <= n and bins.max_bin_length(n, m) <= ROUTED_MAX_LENGTH
        for n, m in zip(sizes, output_size, strict=True)
    )


def choose_plan(sizes, output_size, mode, dtype, xla):
    """The `Plan` for pooling spatial `sizes` to `output_size` (no `None` in it).

    Args:
        sizes: static `(height, width)`; either may be `None` (known only at run time).
        output_size: `(out_h, out_w)` ints.
        mode: `"avg"` or `"max"`.
        dtype: the name of the dtype the pooling runs in (e.g. `"float32"`).
        xla: whether the op is being compiled by XLA.

    Static sizes are pooled as NHWC (the caller transposes channels_first); unknown sizes
    per axis, in the input's layout, with TF's gradients.
    """
    runs = MAX_RUNS if mode == "max" else AVERAGE_MAX_RUNS
    if None in sizes:
        return Plan("per_axis", "autodiff", max_runs=runs)
    global_pool = tuple(output_size) == (1, 1)
    window = bins.single_window(sizes, output_size)
    short = _short_bins(sizes, output_size)
    if mode == "avg":
        if global_pool:
            matmul = dtype == "float32" and not xla
            return Plan("mean_matmul" if matmul else "mean", "broadcast")
        if xla and short:
            return Plan("sliced_sums", "spread")
        if window is not None:
            return Plan("window", "spread", window=window)
        return Plan("per_axis", "spread", max_runs=runs)
    if global_pool:
        chains = max(sizes) <= ROUTED_GLOBAL_LENGTH
        gradient = "first_max_chains" if chains else "first_max_search"
        if xla:
            return Plan("reduce_max", gradient)
        return Plan("window", gradient, window=window)
    gradient = "first_max_routed" if short else "autodiff"
    if window is not None:
        return Plan("window", gradient, window=window)
    return Plan("per_axis", gradient, max_runs=runs)


def apply_plan(plan, x, axes, sizes, output_size, mode):
    """Pools `x` (spatial `axes`, static `sizes` unless the plan is per-axis) as `plan` says."""
    if plan.forward == "window":

        def pool(t):
            return forward.window(t, mode, *plan.window)

    elif plan.forward == "per_axis":

        def pool(t):
            return forward.per_axis(t, axes, sizes, output_size, mode, plan.max_runs)

    else:
        formulation = getattr(forward, plan.forward)

        def pool(t):
            return formulation(t, sizes, output_size)

    if plan.gradient != "autodiff":
        pool = with_gradient(pool, GRADIENTS[plan.gradient](*sizes, *output_size))
    return pool(x)
