import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.ops import group_conv as gc

RNG = np.random.default_rng(0)


def _np_action(x, g, h=1, w=2):
    m, r = divmod(g, 4)
    x = np.rot90(x, r, axes=(h, w))
    return np.flip(x, w) if m else x


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_cayley_table_is_a_group_and_matches_the_image_action(group):
    n = gc.group_order(group)
    table = gc.group_multiplication_table(group)
    inverse = gc.group_inverse(group)
    for a, b, c in itertools.product(range(n), repeat=3):
        assert table[table[a, b], c] == table[a, table[b, c]]
    assert all(table[a, inverse[a]] == 0 for a in range(n))
    assert sorted(map(tuple, np.sort(table, axis=1))) == [tuple(range(n))] * n
    x = RNG.normal(size=(1, 5, 5, 2)).astype("float32")
    for a, b in itertools.product(range(n), repeat=2):
        ab = gc.transform_image(gc.transform_image(x, b, group), a, group)
        np.testing.assert_array_equal(ab, gc.transform_image(x, table[a, b], group))
        np.testing.assert_array_equal(gc.transform_image(x, a, group), _np_action(x, a))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_group_map_action_is_a_group_action(data_format):
    group = "p4m"
    table = gc.group_multiplication_table(group)
    x = RNG.normal(size=(2, 5, 5, 3 * 8)).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    for a, b in itertools.product(range(8), repeat=2):
        ab = gc.transform_group_map(
            gc.transform_group_map(x, b, group, data_format), a, group, data_format
        )
        np.testing.assert_array_equal(
            ab, gc.transform_group_map(x, table[a, b], group, data_format)
        )


def test_rotate_and_flip_match_numpy():
    x = RNG.normal(size=(1, 3, 4, 4)).astype("float32")
    for r in range(4):
        np.testing.assert_array_equal(
            gc.rotate90(x, r, "channels_first"), np.rot90(x, r, axes=(2, 3))
        )
    np.testing.assert_array_equal(gc.flip_width(x, "channels_first"), x[..., ::-1])


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_bank_rows_are_transformed_filters(group):
    n = gc.group_order(group)
    base = RNG.normal(size=(3, 3, 2, 5)).astype("float32")
    bank = np.asarray(gc.expand_filter_bank(base, group, lifting=True))
    assert bank.shape == (3, 3, 2, 5 * n)
    for g in range(n):
        np.testing.assert_array_equal(bank[..., g::n], _np_action(base, g, 0, 1))
    # group-to-group: the filter for element g is g acting on (space, input group axis)
    base = RNG.normal(size=(3, 3, 2 * n, 5)).astype("float32")
    bank = np.asarray(gc.expand_filter_bank(base, group, lifting=False))
    fields = base.reshape(3, 3, 2, n, 5)
    for g in range(n):
        expected = _np_action(fields, g, 0, 1)[:, :, :, gc.group_permutation(group, g)]
        np.testing.assert_array_equal(bank[..., g::n], expected.reshape(3, 3, 2 * n, 5))


CASES = [
    # group, lifting, kernel, strides, padding, dilation, size
    ("p4", True, 3, 1, "same", 1, 7),
    ("p4", False, 3, 2, "valid", 1, 9),
    ("p4", False, 5, 2, "same", 1, 9),
    ("p4", True, 4, 1, "valid", 1, 8),
    ("p4m", True, 3, 2, "same", 1, 9),
    ("p4m", False, 3, 1, "valid", 2, 9),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("group, lifting, k, s, padding, d, size", CASES)
def test_exact_equivariance_for_every_element(group, lifting, k, s, padding, d, size, data_format):
    n = gc.group_order(group)
    c_in = 3 * (1 if lifting else n)
    x = RNG.normal(size=(2, size, size, c_in)).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    kernel = (RNG.normal(size=(k, k, c_in, 4)) / np.sqrt(k * k * c_in)).astype("float32")

    def conv(t):
        return gc.group_conv2d(t, kernel, group, lifting, s, padding, d, data_format)

    y = conv(x)
    act_in = gc.transform_image if lifting else gc.transform_group_map
    for g in range(n):
        np.testing.assert_allclose(
            conv(act_in(x, g, group, data_format)),
            gc.transform_group_map(y, g, group, data_format),
            atol=1e-5,
        )


def test_one_conv_with_expanded_bank_and_xla():
    x = tf.constant(RNG.normal(size=(1, 7, 7, 8)).astype("float32"))
    kernel = tf.constant(RNG.normal(size=(3, 3, 8, 2)).astype("float32"))

    @tf.function(jit_compile=True)
    def f(t):
        return gc.group_conv2d(t, kernel, "p4", False, padding="same")

    np.testing.assert_allclose(
        f(x), gc.group_conv2d(x, kernel, "p4", False, padding="same"), atol=1e-5
    )
    graph = (
        tf.function(lambda t: gc.group_conv2d(t, kernel, "p4", False))
        .get_concrete_function(tf.TensorSpec((None, None, None, 8)))
        .graph
    )
    assert [op.type for op in graph.get_operations()].count("Conv2D") == 1


def test_group_pool_and_bias():
    x = RNG.normal(size=(1, 2, 2, 12)).astype("float32")
    np.testing.assert_allclose(gc.group_pool(x, "p4", "max"), x.reshape(1, 2, 2, 3, 4).max(-1))
    np.testing.assert_allclose(
        gc.group_pool(x, "p4", "avg"), x.reshape(1, 2, 2, 3, 4).mean(-1), atol=1e-6
    )
    y = gc.add_group_bias(np.zeros((1, 1, 1, 8), "float32"), np.array([1.0, 2.0], "float32"), "p4")
    np.testing.assert_array_equal(np.asarray(y).ravel(), [1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: gc.group_order("p6"), "group"),
        (lambda: gc.transform_image(np.ones((1, 3, 3, 1)), 4, "p4"), "g"),
        (lambda: gc.expand_filter_bank(np.ones((3, 3, 6, 2)), "p4", lifting=False), "kernel"),
        (lambda: gc.expand_filter_bank(np.ones((3, 2, 4, 2)), "p4"), "kernel"),
        (lambda: gc.group_pool(np.ones((1, 2, 2, 4)), "p4", "sum"), "reduction"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("lifting", [True, False])
def test_flat_gather_and_transposed_expansions_give_the_same_bank(group, lifting, monkeypatch):
    # Small banks use one gather from a flat index, large ones a gather and a transpose.
    from keras_cnn_ext.ops import group_conv

    n = group_conv.GROUP_ORDERS[group]
    kernel = np.random.default_rng(3).normal(size=(3, 3, 2 * (1 if lifting else n), 5))
    small = group_conv.expand_filter_bank(kernel.astype("float32"), group, lifting).numpy()
    monkeypatch.setattr(group_conv, "FLAT_GATHER_MAX_WEIGHTS", 0)
    large = group_conv.expand_filter_bank(kernel.astype("float32"), group, lifting).numpy()
    np.testing.assert_array_equal(small, large)
