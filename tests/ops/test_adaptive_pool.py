"""Adaptive average/max pooling ops against torch's adaptive_{avg,max}_pool2d (the oracle)."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext.ops import adaptive_avg_pool2d, adaptive_max_pool2d
from keras_cnn_ext.ops.adaptive_pool import plans
from keras_cnn_ext.ops.adaptive_pool.bins import adaptive_bins, axis_window, single_window
from keras_cnn_ext.ops.adaptive_pool.forward import take
from keras_cnn_ext.ops.adaptive_pool.gradients import GRADIENTS, spread_blocks, spread_gathers

torch = pytest.importorskip("torch")

OPS = {"avg": adaptive_avg_pool2d, "max": adaptive_max_pool2d}
TORCH_OPS = {
    "avg": torch.nn.functional.adaptive_avg_pool2d,
    "max": torch.nn.functional.adaptive_max_pool2d,
}
# (height, width, output_size): out = 1, out = in, upsampling, non-divisible, h != w, None.
CASES = [
    (8, 8, (1, 1)),
    (6, 6, (6, 6)),
    (7, 9, (3, 4)),
    (5, 3, (7, 11)),
    (12, 8, (4, 2)),
    (64, 64, 1),
    (63, 10, (32, 3)),
    (5, 7, (3, 4)),  # one SAME window on both axes (like 63 -> 32)
    (20, 9, (4, 3)),  # one VALID window, overlapping bins (like 64 -> 7)
    (9, 4, (3, None)),
    (4, 6, (None, 4)),
]


def torch_reference(mode, x_nhwc, output_size, upstream=None):
    """Torch's output (NHWC) and, when `upstream` is given, the input gradient (NHWC)."""
    t = torch.tensor(np.transpose(x_nhwc, (0, 3, 1, 2)).astype(np.float64), requires_grad=True)
    y = TORCH_OPS[mode](t, output_size)
    grad = None
    if upstream is not None:
        y.backward(torch.tensor(np.transpose(upstream, (0, 3, 1, 2)).astype(np.float64)))
        grad = np.transpose(t.grad.numpy(), (0, 2, 3, 1))
    return np.transpose(y.detach().numpy(), (0, 2, 3, 1)), grad


def run(mode, x, output_size, how, upstream, data_format="channels_last"):
    """Output and input gradient of our op, run eagerly, in tf.function with None dims, or XLA."""
    op = OPS[mode]

    def forward_backward(t, dy):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = op(t, output_size, data_format=data_format)
        return y, tape.gradient(y, t, output_gradients=dy)

    if how in ("function", "xla"):  # traced with unknown batch, height and width
        spec = tf.TensorSpec([None] * 4, x.dtype)
        forward_backward = tf.function(
            forward_backward, input_signature=[spec, spec], jit_compile=how == "xla"
        )
    elif how == "xla_static":
        forward_backward = tf.function(forward_backward, jit_compile=True)
    x = tf.constant(x)
    y, g = forward_backward(x, tf.constant(upstream, x.dtype))
    return y.numpy(), g.numpy()


def random_input(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def expected_shape(h, w, output_size):
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    return (oh or h, ow or w)


@pytest.mark.parametrize("how", ["eager", "function", "xla", "xla_static"])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("h, w, output_size", CASES)
def test_matches_torch_values_and_gradients(h, w, output_size, mode, how):
    x = random_input((2, h, w, 3))
    ref, _ = torch_reference(mode, x, output_size)
    upstream = random_input(ref.shape, seed=1)
    ref, ref_grad = torch_reference(mode, x, output_size, upstream)
    y, grad = run(mode, x, output_size, how, upstream=upstream)
    assert y.shape == ref.shape == (2, *expected_shape(h, w, output_size), 3)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("h, w, output_size", [(7, 9, (3, 4)), (5, 3, (7, 11)), (8, 8, 1)])
def test_channels_first_matches_channels_last(h, w, output_size, mode):
    x = random_input((2, h, w, 3))
    upstream_last = random_input((2, *expected_shape(h, w, output_size), 3), seed=1)
    y_last, g_last = run(mode, x, output_size, "function", upstream=upstream_last)
    to_first = (0, 3, 1, 2)
    y_first, g_first = run(
        mode,
        np.transpose(x, to_first),
        output_size,
        "xla",
        data_format="channels_first",
        upstream=np.transpose(upstream_last, to_first),
    )
    np.testing.assert_allclose(y_first, np.transpose(y_last, to_first), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_first, np.transpose(g_last, to_first), rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 13),
    w=st.integers(1, 13),
    oh=st.integers(1, 15),
    ow=st.integers(1, 15),
    mode=st.sampled_from(["avg", "max"]),
    static=st.booleans(),
)
def test_hypothesis_grid_against_torch(h, w, oh, ow, mode, static):
    x = random_input((1, h, w, 2), seed=h * 100 + w)
    ref, _ = torch_reference(mode, x, (oh, ow))
    upstream = random_input(ref.shape, seed=2)
    ref, ref_grad = torch_reference(mode, x, (oh, ow), upstream)
    y, grad = run(mode, x, (oh, ow), "eager" if static else "function", upstream=upstream)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(in_size=st.integers(1, 300), out_size=st.integers(1, 300))
def test_bins_have_at_most_two_lengths(in_size, out_size):
    # The claim the max path's padding and gradient tables rest on: lengths are ceil(in/out)
    # or one more, bins cover every row, and only neighbouring bins share rows when shrinking.
    starts, ends = adaptive_bins(in_size, out_size)
    lengths = ends - starts
    ceil = -(-in_size // out_size)
    assert set(lengths.tolist()) <= {ceil, ceil + 1}
    assert starts[0] == 0 and ends[-1] == in_size
    assert np.all(starts[1:] <= ends[:-1])  # no gaps
    if out_size <= in_size:
        assert np.all(starts[2:] >= ends[:-2])


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_ties_route_each_gradient_once(mode):
    # All-equal windows (e.g. ReLU zeros): the total gradient must equal the upstream total.
    x = np.zeros((1, 7, 5, 2), np.float32)
    upstream = np.ones((1, 3, 4, 2), np.float32)
    for how in ("eager", "function", "xla"):
        _, grad = run(mode, x, (3, 4), how, upstream=upstream)
        np.testing.assert_allclose(grad.sum(), upstream.sum(), rtol=1e-6)
        if mode == "max":
            # Torch gives each output's gradient to one input; so do we (static shapes).
            ref = torch_reference(mode, x, (3, 4), upstream)[1]
            if how == "eager":
                np.testing.assert_allclose(grad, ref)


# Tie cases: the pooling op, runs, 1 x 1, upsampling, the routed XLA gradient, TF's gradient.
TIE_CASES = [
    (8, 8, 1),
    (66, 3, 1),  # 1 x 1 past ROUTED_GLOBAL_LENGTH: the reduce_min search
    (20, 9, (4, 3)),
    (5, 7, (3, 4)),
    (63, 10, (32, 3)),
    (7, 5, (9, 8)),
    (6, 6, 6),
    (36, 5, (2, 1)),  # one window, bins past ROUTED_MAX_LENGTH: TF's MaxPoolGrad
]


@pytest.mark.parametrize("how", ["eager", "function", "xla", "xla_static"])
@pytest.mark.parametrize("h, w, output_size", TIE_CASES)
def test_max_gradient_ties_match_torch(h, w, output_size, how):
    # Small integers: most bins hold several equal maxima. Torch gives each output's gradient to
    # the first of them in row-major order; so must every path (pooling op, runs, 1 x 1,
    # upsampling, the routed XLA gradient).
    x = np.round(random_input((2, h, w, 3), seed=5)).astype(np.float32)
    ref, _ = torch_reference("max", x, output_size)
    upstream = random_input(ref.shape, seed=6)
    ref, ref_grad = torch_reference("max", x, output_size, upstream)
    y, grad = run("max", x, output_size, how, upstream=upstream)
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "sizes, output_size, expected",
    [
        ((64, 64), (7, 7), ((10, 10), (9, 9), "VALID")),
        ((63, 63), (32, 32), ((3, 3), (2, 2), "SAME")),
        ((64, 64), (1, 1), ((64, 64), (64, 64), "VALID")),
        ((12, 8), (4, 8), ((3, 1), (3, 1), "VALID")),
        ((5, 3), (7, 11), None),  # upsampling
        ((10, 10), (7, 7), None),  # bins of lengths 2 and 3 at uneven steps
    ],
)
def test_single_window_covers_the_benchmark_sizes(sizes, output_size, expected):
    # The fast path: one strided pooling op whose windows are exactly torch's bins.
    assert single_window(sizes, output_size) == expected
    if expected is not None:
        (kh, kw), (sh, sw), padding = expected
        x = random_input((1, *sizes, 2))
        pooled = tf.nn.max_pool2d(x, (kh, kw), (sh, sw), padding).numpy()
        np.testing.assert_array_equal(pooled, torch_reference("max", x, output_size)[0])


def _plan(h, w, output_size, mode, xla):
    output_size = expected_shape(h, w, output_size)
    return plans.choose_plan((h, w), output_size, mode, "float32", xla)


@pytest.mark.parametrize(
    "mode, size, out, plain, xla",
    [
        ("avg", 64, 7, ("window", "spread"), ("sliced_sums", "spread")),
        ("avg", 64, 1, ("mean_matmul", "broadcast"), ("mean", "broadcast")),
        ("avg", 63, 32, ("window", "spread"), ("sliced_sums", "spread")),
        ("avg", 64, 32, ("window", "spread"), ("sliced_sums", "spread")),
        ("max", 64, 7, ("window", "first_max_routed"), ("window", "first_max_routed")),
        ("max", 64, 1, ("window", "first_max_chains"), ("reduce_max", "first_max_chains")),
        ("max", 63, 32, ("window", "first_max_routed"), ("window", "first_max_routed")),
        ("max", 64, 32, ("window", "first_max_routed"), ("window", "first_max_routed")),
    ],
)
def test_benchmark_cases_get_their_plans(mode, size, out, plain, xla):
    # The benchmarked cases run the formulations their timings were measured with.
    for jit, expected in ((False, plain), (True, xla)):
        plan = _plan(size, size, out, mode, jit)
        assert (plan.forward, plan.gradient) == expected


def test_every_formulation_is_checked_against_torch():
    # The torch comparisons above reach every forward formulation and every gradient.
    seen = {
        (plan.forward, plan.gradient)
        for h, w, output_size in CASES + TIE_CASES
        for mode in OPS
        for xla in (False, True)
        for plan in [_plan(h, w, output_size, mode, xla)]
    }
    assert {f for f, _ in seen} == set(plans.FORWARDS)
    assert {g for _, g in seen} == set(GRADIENTS) | {"autodiff"}
    assert plans.choose_plan((None, 5), (2, 2), "max", "float32", False).forward == "per_axis"


def test_block_spread_equals_the_gather_spread_on_every_window_axis():
    # The average gradient broadcasts blocks wherever one strided window makes an axis' bins
    # (VALID or SAME); every such axis up to 24 rows, both axes, against the gather form.
    rng = np.random.default_rng(0)
    checked = 0
    for in_size in range(1, 25):
        for out_size in range(1, in_size):
            window = axis_window(in_size, out_size)
            if window is None:
                continue
            for axis in (1, 2):
                shape = [2, 3, 3, 2]
                shape[axis] = out_size
                dy = tf.constant(rng.standard_normal(shape), tf.float32)
                blocks = spread_blocks(dy, axis, in_size, *window)
                gathers = spread_gathers(dy, axis, in_size, out_size)
                assert blocks.shape == gathers.shape
                np.testing.assert_allclose(blocks, gathers, rtol=1e-6, atol=1e-6)
            checked += 1
    assert checked > 100  # divisible, overlapping VALID and clipped SAME windows all occur
    assert axis_window(64, 7) == (10, 9, 0)
    assert axis_window(63, 32) == (3, 2, 1)
    assert axis_window(10, 7) is None


def test_take_slices_even_indices_and_gathers_the_rest():
    x = tf.reshape(tf.range(2 * 10 * 3), (1, 2, 10, 3))
    for indices in ([0, 9], [1, 3, 5, 7], [0, 1, 3, 5], [4], [2, 2, 3]):
        indices = np.array(indices)
        np.testing.assert_array_equal(take(x, indices, 2), tf.gather(x, indices, axis=2))


@pytest.mark.parametrize("output_size", [(4, 3), (1, 1)])
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_dtypes(dtype, mode, output_size):
    x = random_input((2, 9, 7, 3))
    y = OPS[mode](tf.cast(x, dtype), output_size)
    assert y.dtype == dtype
    tol = {tf.float16: 2e-3, tf.bfloat16: 2e-2}.get(dtype, 1e-6)
    cast_x = tf.cast(tf.cast(x, dtype), tf.float64).numpy()
    ref = torch_reference(mode, cast_x, output_size)[0]
    np.testing.assert_allclose(tf.cast(y, tf.float64).numpy(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_average_64_to_1_and_max_1x1_in_function(mode):
    # The sizes Keras 3.15 fails on: avg 64->1 inside tf.function, max (1, 1) anywhere.
    x = random_input((2, 64, 64, 3))
    y = tf.function(lambda t: OPS[mode](t, (1, 1)))(x).numpy()
    ref = x.mean(axis=(1, 2), keepdims=True) if mode == "avg" else x.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_keras_fails_where_we_work():
    import keras

    x = random_input((1, 64, 64, 2))
    with pytest.raises(Exception, match="Negative dimension size"):
        tf.function(lambda t: keras.layers.AdaptiveAveragePooling2D((1, 1))(t))(x)
    spec = tf.TensorSpec([None, None, None, 2])
    with pytest.raises(Exception):  # noqa: B017 - any error: Keras cannot trace unknown H/W
        tf.function(
            lambda t: keras.layers.AdaptiveAveragePooling2D((3, 3))(t)
        ).get_concrete_function(spec)
    ours = tf.function(lambda t: adaptive_avg_pool2d(t, (3, 3))).get_concrete_function(spec)
    assert ours(tf.constant(x)).shape == (1, 3, 3, 2)


def test_keras_max_1x1_fails_in_a_model():
    # In a child process: Keras 3.15's AdaptiveMaxPooling2D((1, 1)) has killed the process with
    # SIGFPE on the lead's machine; here it raises "Negative dimension size" in a model. Either
    # way it fails, where ours returns the global max.
    code = (
        "import numpy as np, keras\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.AdaptiveMaxPooling2D((1, 1))])\n"
        "m.predict(np.ones((1, 8, 8, 1), 'float32'), verbose=0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGFPE or (
        proc.returncode == 1 and b"Negative dimension size" in proc.stderr
    ), proc.returncode
    x = random_input((1, 8, 8, 1))
    y = tf.function(lambda t: adaptive_max_pool2d(t, (1, 1)))(x)
    np.testing.assert_allclose(y.numpy().reshape(()), x.max())


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_bad_arguments(mode):
    op = OPS[mode]
    x = tf.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="`output_size`"):
        op(x, 0)
    with pytest.raises(ValueError, match="`output_size`"):
        op(x, (2, -1))
    with pytest.raises(ValueError, match="`output_size`"):
        op(x, (2, 2, 2))
    with pytest.raises(TypeError, match="`output_size`"):
        op(x, 2.5)
    with pytest.raises(TypeError, match="`output_size`"):
        op(x, "2")
    with pytest.raises(ValueError, match="`data_format`"):
        op(x, 2, data_format="NHWC")
    with pytest.raises(ValueError, match="rank-4"):
        op(tf.zeros((4, 4, 1)), 2)
    with pytest.raises(TypeError, match="floating-point"):
        op(tf.zeros((1, 4, 4, 1), tf.int32), 2)
