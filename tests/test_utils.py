"""The shared argument helpers, the replica-aware seed and the XLA-context probe."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_cnn_ext import utils


def test_normalize_tuple_accepts_int_and_pairs():
    assert utils.normalize_tuple(3, 2, "pool_size") == (3, 3)
    assert utils.normalize_tuple([2, 5], 2, "pool_size") == (2, 5)
    assert utils.normalize_tuple((None, 4), 2, "output_size", allow_none=True) == (None, 4)


@pytest.mark.parametrize(
    "value, error, message",
    [
        ("3", TypeError, "`pool_size` must be an integer or a tuple of 2 integers"),
        (True, TypeError, "`pool_size` must be"),
        ((1, 2, 3), ValueError, "Received: \\(1, 2, 3\\)"),
        ((1.5, 2), TypeError, "entry 1.5"),
        ((0, 2), ValueError, "entries must be >= 1"),
        ((None, 2), TypeError, "entry None"),
    ],
)
def test_normalize_tuple_names_the_argument(value, error, message):
    with pytest.raises(error, match=message):
        utils.normalize_tuple(value, 2, "pool_size", minimum=1)


def test_normalize_data_format():
    assert utils.normalize_data_format("channels_first") == "channels_first"
    assert utils.normalize_data_format(None) == keras.config.image_data_format()
    with pytest.raises(ValueError, match="`data_format` must be one of"):
        utils.normalize_data_format("NHWC")


@given(st.floats(1, 4096, allow_nan=False), st.sampled_from([1, 4, 8, 16]))
@settings(max_examples=200, deadline=None)
def test_make_divisible_is_a_close_multiple(value, divisor):
    result = utils.make_divisible(value, divisor)
    assert result % divisor == 0
    assert result >= divisor
    assert result >= 0.9 * value  # never rounds down by more than 10%
    assert result <= value + divisor


def test_make_divisible_matches_timm_examples():
    # timm: make_divisible(64 * 0.25) = 16, make_divisible(24 * 0.25) = 8 (min value).
    assert utils.make_divisible(64 * 0.25) == 16
    assert utils.make_divisible(24 * 0.25) == 8
    assert utils.make_divisible(25, 8) == 24  # rounds down by 4%: accepted
    assert utils.make_divisible(9, 8) == 16  # 8 would lose more than 10% of 9: one divisor added
    with pytest.raises(ValueError, match="`divisor`"):
        utils.make_divisible(10, 0)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_check_seed_rejects(bad):
    with pytest.raises((TypeError, ValueError), match="`seed`"):
        utils.check_seed(bad)


@pytest.mark.parametrize("rate", [-0.1, 1.0, float("nan")])
def test_check_rate_rejects(rate):
    with pytest.raises(ValueError, match="`rate` must be a float in \\[0, 1\\)"):
        utils.check_rate(rate)


def test_check_float_dtype_and_rank():
    assert utils.check_float_dtype("bfloat16") == tf.bfloat16
    with pytest.raises(TypeError, match="floating-point"):
        utils.check_float_dtype("int32")
    with pytest.raises(ValueError, match="rank-4"):
        utils.check_input_rank((2, 3, 4), 4)


def test_replica_seed_differs_between_replicas_and_is_reproducible():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    seed = tf.constant([7, 0], tf.int64)

    @tf.function
    def seeds():
        return strategy.run(lambda: utils.replica_seed(seed))

    first = [r.numpy() for r in strategy.experimental_local_results(seeds())]
    again = [r.numpy() for r in strategy.experimental_local_results(seeds())]
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first, again)
    # Outside a strategy the seed is that of replica 0.
    np.testing.assert_array_equal(utils.replica_seed(seed).numpy(), first[0])


def test_in_xla_context():
    seen = []

    def probe():
        seen.append(utils.in_xla_context())
        return tf.constant(0)

    probe()
    tf.function(probe)()
    tf.function(probe, jit_compile=True)()
    assert seen == [False, False, True]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: utils.check_int("3", "filters"), TypeError, "`filters` must be an integer"),
        (lambda: utils.check_int(True, "filters"), TypeError, "of type bool"),
        (lambda: utils.check_int(0, "filters", minimum=1), ValueError, "integer >= 1"),
        (lambda: utils.check_positive_int(2.0, "groups"), TypeError, "Received: groups=2.0"),
        (lambda: utils.check_number("x", "alpha"), TypeError, "`alpha` must be a number"),
        (lambda: utils.check_number(-1, "alpha", minimum=0), ValueError, r"in \[0, inf\)"),
        (
            lambda: utils.check_number(0, "bias", minimum=0, min_inclusive=False),
            ValueError,
            r"\(0, inf\)",
        ),
        (lambda: utils.check_number(float("nan"), "beta"), ValueError, "`beta`"),
        (lambda: utils.check_rate("0.1"), TypeError, r"`rate` must be a float in \[0, 1\)"),
        (
            lambda: utils.check_rate(1.5, "p", upper_inclusive=True),
            ValueError,
            r"`p` must be a float in \[0, 1\]",
        ),
        (lambda: utils.check_choice("x", "mode", ("a", "b")), ValueError, "one of \\('a', 'b'\\)"),
        (lambda: utils.check_choice([], "mode", {"a"}), ValueError, "`mode`"),
        (lambda: utils.check_bool(1, "use_bias"), TypeError, "`use_bias` must be a bool"),
        (lambda: utils.check_channels((1, 4, 4, None), "channels_last", "SE"), ValueError, "SE"),
    ],
)
def test_validation_vocabulary_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_validation_vocabulary_returns_plain_python_values():
    assert utils.check_int(np.int64(3), "n") == 3 and type(utils.check_int(np.int64(3), "n")) is int
    assert utils.check_int(None, "n", allow_none=True) is None
    assert utils.check_number(np.float32(0.5), "x", maximum=1) == 0.5
    assert utils.check_rate(1.0, upper_inclusive=True) == 1.0
    assert utils.check_bool(np.bool_(True), "b") is True
    assert utils.check_channels((1, 3, 4, 4), "channels_first", "SE") == 3
    assert utils.check_seed(None) is None and utils.check_seed(5) == 5
