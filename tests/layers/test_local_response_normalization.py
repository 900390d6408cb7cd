import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.layers.local_response_normalization import LocalResponseNormalization
from keras_cnn_ext.testing import CONTRACT_CHECKS, LayerSpec, run_contract_check

SPEC = LayerSpec(
    layer_cls=LocalResponseNormalization,
    # A larger alpha than the paper's so the normalisation visibly changes small inputs.
    init_kwargs={"depth_radius": 1, "bias": 1.0, "alpha": 0.5, "beta": 0.75},
    input_shape=(2, 5, 5, 6),
    expected_output_shape=(2, 5, 5, 6),
    expected_trainable_weights=0,
    expected_non_trainable_weights=0,
    gradient_input_shape=(1, 3, 3, 4),
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_contract(check):
    run_contract_check(check, SPEC)


def test_defaults_are_the_papers_and_match_tf():
    layer = LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.75)
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 8)).astype("float32") * 30
    expected = tf.nn.local_response_normalization(x, 2, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(depth_radius=-1), ValueError),
        (dict(depth_radius=1.5), TypeError),
        (dict(bias=0.0), ValueError),
        (dict(alpha=-1.0), ValueError),
        (dict(beta="x"), TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=f"`{next(iter(kwargs))}`"):
        LocalResponseNormalization(**kwargs)


def test_rank_checked_in_build():
    with pytest.raises(ValueError, match="rank-4"):
        LocalResponseNormalization()(np.ones((2, 3), "float32"))
