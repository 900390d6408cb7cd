"""`profile()` against published figures, tf.profiler, keras.applications and hand computations."""

import collections
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn_ext.analysis import (
    Geometry,
    LayerCost,
    get_counter,
    profile,
    register_counter,
)
from keras_cnn_ext.analysis.counters import unregister_counter

L = keras.layers


# ---------------------------------------------------------------------------------------------
# Published MAC counts (224x224, batch 1, conv + dense multiply-accumulates)


@pytest.fixture(scope="module")
def resnet50():
    return keras.applications.ResNet50(weights=None)


@pytest.fixture(scope="module")
def vgg16():
    return keras.applications.VGG16(weights=None)


@pytest.fixture(scope="module")
def mobilenet():
    return keras.applications.MobileNet(weights=None)


@pytest.fixture(scope="module")
def densenet121():
    # Built small: profile() re-infers the shapes for 224x224 without rebuilding.
    return keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3))


def _within(value, published, rel=0.01):
    assert abs(value - published) <= rel * published, (value, published)


def test_resnet50_v1_keras_applications(resnet50):
    result = profile(resnet50)
    # keras.applications' v1 layout (stride in the first 1x1): about 3.86 GMACs; tf.profiler / 2
    # gives 3.878 G on this machine because it also counts BN, bias and adds (1 FLOP per element).
    _within(result.macs, 3.86e9)
    _within(result.macs, 3.878e9)
    assert result.flops == 2 * result.macs
    assert result.params == resnet50.count_params() == 25_636_712
    assert result.trainable_params == sum(int(np.prod(w.shape)) for w in resnet50.trainable_weights)
    assert result.unknown_layers == [] and result.unknown_geometry == []
    assert result.output_receptive_field == ["global"]
    records = {r.name: r for r in result.records}
    # ResNet-50's last feature map sees 483 pixels (Araujo et al., Distill 2019), jump 32.
    assert records["conv5_block3_out"].receptive_field == "483"
    assert records["conv5_block3_out"].jump == "32"
    conv1 = records["conv1_conv"]
    # The common form N*H_out*W_out*C_out*(K_h*K_w*C_in + 1) for the 7x7 stem with bias.
    assert conv1.macs_with_bias == 112 * 112 * 64 * (7 * 7 * 3 + 1)
    assert conv1.activation_bytes == 112 * 112 * 64 * 4


def test_vgg16(vgg16):
    result = profile(vgg16)
    _within(result.macs, 15.5e9)  # Simonyan & Zisserman's VGG-16: 15.5 G MACs (Sze et al. 2017)
    _within(result.macs, 15.480e9)  # tf.profiler / 2, measured on TF 2.21
    assert result.params == vgg16.count_params() == 138_357_544
    records = {r.name: r for r in result.records}
    # Hand computation: block b adds its convs' 2*J each, pooling adds J; J doubles per block.
    expected = {
        "block1_conv1": 3, "block1_conv2": 5, "block1_pool": 6,
        "block2_conv1": 10, "block2_conv2": 14, "block2_pool": 16,
        "block3_conv3": 40, "block3_pool": 44, "block4_pool": 100, "block5_conv3": 196,
        "block5_pool": 212,
    }  # fmt: skip
    for name, rf in expected.items():
        assert records[name].receptive_field == str(rf), name
    assert records["block5_pool"].jump == "32"
    assert records["flatten"].receptive_field == "212"  # flattening keeps each element's field
    assert records["fc1"].receptive_field == "global"


def test_mobilenet_v1(mobilenet):
    result = profile(mobilenet)
    _within(result.macs, 569e6)  # Howard et al. 2017, Table 8: 569 M mult-adds
    _within(result.macs, 574e6)  # tf.profiler / 2, measured on TF 2.21
    assert result.params == mobilenet.count_params()


def test_densenet121_params_and_macs_at_another_size(densenet121):
    small = profile(densenet121)
    assert small.params == densenet121.count_params()
    big = profile(densenet121, input_shape=(224, 224, 3))
    assert big.params == small.params
    assert big.input_shapes == [(1, 224, 224, 3)]
    _within(big.macs, 2.851e9, rel=0.02)  # tf.profiler / 2 includes BN, so ours is a bit lower
    assert big.macs < 2.851e9
    records = {r.name: r for r in big.records}
    assert records["conv5_block16_concat"].output_shape == (1, 7, 7, 1024)


def _resnet50_v15():
    """torchvision's ResNet-50 (v1.5: the stride in the 3x3 convolution, no conv biases)."""
    inputs = keras.Input((224, 224, 3))
    x = L.ZeroPadding2D(3)(inputs)
    x = L.Conv2D(64, 7, strides=2, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.MaxPooling2D(3, 2)(L.ZeroPadding2D(1)(x))
    for blocks, width, stride in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            y = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 1, use_bias=False)(x)))
            y = L.Conv2D(width, 3, strides=s, padding="same", use_bias=False)(y)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(4 * width, 1, use_bias=False)(y))
            if b == 0:
                x = L.BatchNormalization()(L.Conv2D(4 * width, 1, strides=s, use_bias=False)(x))
            x = L.ReLU()(L.Add()([y, x]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(1000)(x))


def test_resnet50_v15():
    model = _resnet50_v15()
    result = profile(model)
    _within(result.macs, 4.09e9)  # torchvision's resnet50 docs: 4.09 GFLOPS (i.e. GMACs)
    # torchvision's resnet50 holds 25,557,032 parameters (BN running stats not included).
    assert result.trainable_params == 25_557_032


def test_resnet50_builders_if_available():
    import keras_cnn_ext.models as models

    if not hasattr(models, "ResNet"):
        pytest.skip("keras_cnn_ext.models.ResNet is not written yet")
    v1 = profile(models.ResNet(50, input_shape=(224, 224, 3)))
    _within(v1.macs, 3.86e9)
    v15 = profile(models.ResNet(50, version="v1.5", input_shape=(224, 224, 3)))
    _within(v15.macs, 4.09e9)
    assert v15.unknown_layers == []


def test_alexnet_paper():
    # Krizhevsky et al. 2012 with its two-GPU grouping, at 227x227: 724 M MACs and 61 M weights
    # (Sze et al., "Efficient Processing of Deep Neural Networks", Proc. IEEE 2017, Table III).
    inputs = keras.Input((227, 227, 3))
    x = L.Conv2D(96, 11, strides=4, activation="relu")(inputs)
    x = L.MaxPooling2D(3, 2)(x)
    x = L.Conv2D(256, 5, padding="same", groups=2, activation="relu")(x)
    x = L.MaxPooling2D(3, 2)(x)
    x = L.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(384, 3, padding="same", groups=2, activation="relu")(x)
    x = L.Conv2D(256, 3, padding="same", groups=2, activation="relu")(x)
    x = L.Flatten()(L.MaxPooling2D(3, 2)(x))
    x = L.Dense(4096, activation="relu")(x)
    x = L.Dense(4096, activation="relu")(x)
    model = keras.Model(inputs, L.Dense(1000)(x))
    result = profile(model)
    _within(result.macs, 724e6)
    assert result.params == model.count_params() == 60_965_224
    records = [r for r in result.records if r.class_name == "Conv2D"]
    assert [r.receptive_field for r in records] == ["11", "51", "99", "131", "163"]


# ---------------------------------------------------------------------------------------------
# tf.profiler float-op counts / 2, layer by layer


def _tf_profiler_macs(model, shape):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    fn = tf.function(lambda t: model(t, training=False))
    graph = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec(shape))).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = model_analyzer.profile(graph, cmd="scope", options=options)
    per_type = collections.Counter()
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.float_ops and node.name != "_TFProfRoot":
            per_type[graph.get_operation_by_name(node.name).type] += node.float_ops
    linear = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul")
    return sum(per_type[t] for t in linear) / 2


@pytest.mark.parametrize(
    "layer",
    [
        lambda: L.Conv2D(8, 3, strides=2, padding="same"),
        lambda: L.Conv2D(6, 5, use_bias=False),
        lambda: L.Conv2D(8, 3, dilation_rate=2, padding="same"),
        lambda: L.DepthwiseConv2D(3, depth_multiplier=2, strides=2),
        lambda: L.SeparableConv2D(6, 3, padding="same"),
        lambda: L.Conv2DTranspose(5, 3, strides=2, padding="same"),
        lambda: L.Conv2DTranspose(5, 4, strides=4),
        lambda: L.Dense(7),
    ],
    ids=["conv", "conv_nobias", "dilated", "depthwise", "separable", "transposed_same",
         "transposed_valid_k_eq_s", "dense_on_image"],
)  # fmt: skip
def test_macs_agree_with_tf_profiler(layer):
    inputs = keras.Input((12, 12, 4))
    model = keras.Model(inputs, layer()(inputs))
    ours = profile(model, batch_size=2).macs
    assert ours > 0
    assert ours == _tf_profiler_macs(model, (2, 12, 12, 4))


def test_transposed_conv_counts_the_scatter_exactly():
    # Each input pixel scatters a K*K*C_out patch per input channel. tf.profiler instead
    # estimates N*H_out*W_out*K*K*C_in*C_out / s^2, exact only when the output is s times the
    # input (padding "same", or "valid" with K == s): here 26*26/4 = 169 != 12*12 positions.
    inputs = keras.Input((12, 12, 4))
    model = keras.Model(inputs, L.Conv2DTranspose(5, 4, strides=2)(inputs))
    ours = profile(model, batch_size=2).macs
    assert ours == 2 * 12 * 12 * 4 * 4 * 4 * 5
    assert _tf_profiler_macs(model, (2, 12, 12, 4)) == 2 * 26 * 26 * 4 * 4 * 4 * 5 / 4


def test_macs_agree_with_tf_profiler_whole_model():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = L.MaxPooling2D()(x)
    x = L.SeparableConv2D(16, 3)(x)
    x = L.GlobalAveragePooling2D()(L.BatchNormalization()(x))
    model = keras.Model(inputs, L.Dense(10)(x))
    assert profile(model, batch_size=3).macs == _tf_profiler_macs(model, (3, 16, 16, 3))


def test_grouped_conv_macs_by_hand():
    inputs = keras.Input((8, 8, 6))
    model = keras.Model(inputs, L.Conv2D(4, 3, groups=2, padding="same")(inputs))
    record = profile(model).records[-1]
    assert record.macs == 8 * 8 * 4 * 3 * 3 * (6 // 2)
    assert record.bias_macs == 8 * 8 * 4
    assert record.params == model.count_params()


# ---------------------------------------------------------------------------------------------
# Receptive fields


def _lenet5():
    inputs = keras.Input((32, 32, 1))
    x = L.Conv2D(6, 5, activation="tanh", name="c1")(inputs)
    x = L.AveragePooling2D(2, name="s2")(x)
    x = L.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = L.AveragePooling2D(2, name="s4")(x)
    x = L.Conv2D(120, 5, activation="tanh", name="c5")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(84, activation="tanh", name="f6")(x)
    return keras.Model(inputs, L.Dense(10, name="out")(x), name="lenet5")


def test_lenet5_receptive_fields_by_hand():
    result = profile(_lenet5())
    records = {r.name: r for r in result.records}
    # RF_l = RF_{l-1} + (K_l - 1) * J_{l-1}, J_l = J_{l-1} * s_l:
    # c1: 1 + 4*1 = 5, J 1; s2: 5 + 1*1 = 6, J 2; c3: 6 + 4*2 = 14; s4: 14 + 1*2 = 16, J 4;
    # c5: 16 + 4*4 = 32 = the whole 32x32 input.
    expected = {"c1": ("5", "1"), "s2": ("6", "2"), "c3": ("14", "2"), "s4": ("16", "4"),
                "c5": ("32", "4"), "flat": ("32", "4"), "f6": ("global", "-")}  # fmt: skip
    for name, (rf, jump) in expected.items():
        assert (records[name].receptive_field, records[name].jump) == (rf, jump), name
    # LeNet-5: 61,706 parameters with these layer sizes.
    assert result.params == 61_706
    # c1: 28*28*6 outputs, 5*5*1 MACs each.
    assert records["c1"].macs == 28 * 28 * 6 * 25


def test_receptive_field_dilation_transposed_and_branches():
    inputs = keras.Input((32, 32, 2))
    a = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="dil")(inputs)  # 1 + 2*2 = 5
    b = L.Conv2D(4, 7, padding="same", name="k7")(inputs)  # 7
    x = L.Concatenate(name="cat")([a, b])  # largest over the paths: 7
    x = L.Conv2D(4, 3, strides=2, padding="same", name="down")(x)  # 7 + 2 = 9, J 2
    x = L.Conv2DTranspose(4, 4, strides=2, padding="same", name="up")(x)  # 9 + (2-1)*2, J 1
    x = L.Conv2D(4, (3, 1), padding="same", name="rect")(x)  # 13 x 11
    y = L.Add(name="skip")([x, L.Conv2D(4, 1, name="one")(inputs)])
    model = keras.Model(inputs, y)
    records = {r.name: r for r in profile(model).records}
    assert records["dil"].receptive_field == "5"
    assert records["k7"].receptive_field == "7"
    assert records["cat"].receptive_field == "7"
    assert (records["down"].receptive_field, records["down"].jump) == ("9", "2")
    assert (records["up"].receptive_field, records["up"].jump) == ("11", "1")
    assert records["rect"].receptive_field == "13x11"
    assert records["skip"].receptive_field == "13x11"
    assert records["skip"].rf_exact


def test_fractional_jump_after_upsampling_and_adaptive_pooling():
    inputs = keras.Input((10, 10, 1))
    x = L.AdaptiveAveragePooling2D((4, 4), name="adapt")(inputs)  # bins of 3, stride 10/4
    x = L.UpSampling2D(2, name="up")(x)  # nearest: field unchanged, jump halved
    model = keras.Model(inputs, x)
    records = {r.name: r for r in profile(model).records}
    # 10 -> 4 bins: [0, 3), [2, 5), [5, 8), [7, 10): all 3 wide.
    assert (records["adapt"].receptive_field, records["adapt"].jump) == ("3", "2.5")
    assert records["adapt"].jump_values[0] == pytest.approx(2.5)
    assert (records["up"].receptive_field, records["up"].jump) == ("3", "1.25")


# ---------------------------------------------------------------------------------------------
# Graph shapes: nested, shared, subclassed, blocks, unknown layers


def test_nested_models_are_walked_with_qualified_names():
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), L.Conv2D(4, 3, padding="same", name="conv"), L.ReLU(name="relu")],
        name="block",
    )
    inputs = keras.Input((8, 8, 4))
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, block(inner_in), name="inner")
    model = keras.Model(inputs, L.Conv2D(2, 3, name="head")(inner(inputs)), name="outer")
    result = profile(model)
    names = [r.name for r in result.records]
    assert "inner/block/conv" in names and "inner/block/relu" in names
    assert result.params == model.count_params()
    records = {r.name: r for r in result.records}
    assert records["inner/block/conv"].receptive_field == "3"
    assert records["head"].receptive_field == "5"


def test_shared_layer_counts_weights_once_and_macs_per_call():
    conv = L.Conv2D(3, 3, padding="same", name="shared")
    a, b = keras.Input((6, 6, 3)), keras.Input((6, 6, 3))
    model = keras.Model([a, b], L.Add()([conv(a), conv(b)]))
    result = profile(model)
    calls = [r for r in result.records if r.name.startswith("shared")]
    assert [r.name for r in calls] == ["shared", "shared#2"]
    assert calls[0].params == conv.count_params() and calls[1].params == 0
    assert calls[0].macs == calls[1].macs == 6 * 6 * 3 * 27
    assert result.params == model.count_params()


class _Block(keras.layers.Layer):
    """A composite layer without a counter: profile() traces it through its sublayers."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn = L.BatchNormalization()
        self.proj = L.Conv2D(filters, 1)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))
        self.proj.build(input_shape)

    def call(self, x):
        return tf.nn.relu(self.bn(self.conv(x)) + self.proj(x))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.stem = L.Conv2D(4, 3, strides=2, padding="same")
        self.block = _Block(4, name="block")
        self.pool = L.GlobalAveragePooling2D()
        self.head = L.Dense(3)

    def call(self, x):
        return self.head(self.pool(self.block(self.stem(x))))


def _functional_twin():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same")(inputs)
    y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(x))
    x = L.ReLU()(L.Add()([y, L.Conv2D(4, 1)(x)]))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)))


def test_composite_layer_and_subclassed_model_are_traced():
    twin = profile(_functional_twin())
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same")(inputs)
    with_block = keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(_Block(4)(x))))
    traced = profile(with_block)
    assert traced.macs == twin.macs
    assert traced.params == with_block.count_params() == twin.params
    conv_rf = [r.receptive_field for r in traced.records if r.class_name == "Conv2D"]
    assert conv_rf[:2] == ["3", "7"]  # stem, then the block's 3x3 (3 + 2*2)
    assert not traced.unknown_layers

    model = _Subclassed()
    model.build((None, 16, 16, 3))
    sub = profile(model)
    assert sub.macs == twin.macs
    assert sub.params == model.count_params()
    assert any(r.name.startswith("block/") for r in sub.records)
    with pytest.raises(ValueError, match="`input_shape` is required"):
        profile(_Subclassed())
    fresh = _Subclassed()
    assert profile(fresh, input_shape=(16, 16, 3)).macs == twin.macs
    # The model is left as it was: its layers' `call` is restored and it still runs.
    x = np.ones((2, 16, 16, 3), "float32")
    assert fresh(x).shape == (2, 3) and model(x).shape == (2, 3)
    assert not any("call" in vars(layer) for layer in fresh._flatten_layers())


class _Mystery(keras.layers.Layer):
    """A layer no counter knows, with weights of its own."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unknown_layer_is_named_and_warned_not_fatal():
    inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(2, 3, padding="same")(inputs)
    x = _Mystery(name="mystery")(x)
    model = keras.Model(inputs, L.Conv2D(2, 3, padding="same", name="after")(x))
    with pytest.warns(UserWarning, match="mystery"):
        result = profile(model)
    records = {r.name: r for r in result.records}
    assert not records["mystery"].counted
    assert records["mystery"].params == 2
    assert result.unknown_layers == ["mystery"]
    assert result.unknown_geometry == ["mystery"]
    # The spatial size is kept, so the field after it is a lower bound.
    assert records["after"].receptive_field == ">=5"
    assert result.params == model.count_params()
    assert "mystery" in result.table()


def test_register_counter_by_class_and_by_name():
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, _Mystery(name="mystery")(inputs))

    def count(layer, input_shapes, output_shapes):
        n, h, w, c = output_shapes[0]
        return LayerCost(other_ops=n * h * w * c, geometry=Geometry("identity"))

    for key in (_Mystery, "_Mystery"):
        register_counter(key, count)
        try:
            assert get_counter(model.layers[1]) is count
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                result = profile(model)
            assert result.records[-1].other_ops == 8 * 8 * 2
            assert result.unknown_layers == []
        finally:
            unregister_counter(key)
    assert get_counter(model.layers[1]) is None
    with pytest.raises(TypeError, match="`layer_cls`"):
        register_counter(3, count)


def test_counter_failure_is_reported_not_raised():
    def broken(layer, input_shapes, output_shapes):
        raise RuntimeError("boom")

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, _Mystery(name="m")(inputs))
    register_counter(_Mystery, broken)
    try:
        with pytest.warns(UserWarning, match="boom"):
            result = profile(model)
    finally:
        unregister_counter(_Mystery)
    assert not result.records[-1].counted


# ---------------------------------------------------------------------------------------------
# Memory, dtype, totals, output forms


def test_activation_memory_total_and_peak_by_hand():
    inputs = keras.Input((4, 4, 2))
    a = L.Conv2D(8, 1, name="a")(inputs)  # 4*4*8 floats
    b = L.ReLU(name="b")(a)
    c = L.Conv2D(1, 1, name="c")(b)
    model = keras.Model(inputs, c)
    result = profile(model, batch_size=2)
    sizes = {"input": 2 * 16 * 2 * 4, "a": 2 * 16 * 8 * 4, "b": 2 * 16 * 8 * 4, "c": 2 * 16 * 4}
    assert result.activation_bytes == sum(sizes.values())
    # Live while "b" runs: a (its input) and b; the input was freed after "a".
    assert result.peak_activation_bytes == sizes["a"] + sizes["b"]
    assert result.peak_layer == "b"
    assert result.model_size_bytes == {
        "float32": 4 * result.params, "float16": 2 * result.params, "int8": result.params,
    }  # fmt: skip


def test_mixed_precision_halves_activation_bytes():
    inputs = keras.Input((8, 8, 3))
    conv = L.Conv2D(4, 3, dtype="mixed_float16", name="conv")
    model = keras.Model(inputs, conv(inputs))
    record = profile(model).records[-1]
    assert record.dtype == "float16"
    assert record.activation_bytes == 6 * 6 * 4 * 2


def test_input_shape_forms_and_errors():
    model = _lenet5()
    base = profile(model)
    assert profile(model, input_shape=(32, 32, 1)).macs == base.macs
    with_batch = profile(model, input_shape=(4, 32, 32, 1))
    assert with_batch.batch_size == 4 and with_batch.macs == 4 * base.macs
    assert profile(model, batch_size=3).macs == 3 * base.macs
    with pytest.raises(ValueError, match="`input_shape`"):
        profile(model, input_shape=(32, 32))
    with pytest.raises(ValueError, match="`batch_size`"):
        profile(model, batch_size=0)
    with pytest.raises(TypeError, match="`model`"):
        profile("resnet")
    free = keras.Model(*(lambda i: (i, L.Conv2D(2, 3)(i)))(keras.Input((None, None, 3))))
    with pytest.raises(ValueError, match="`input_shape` is required"):
        profile(free)
    assert profile(free, input_shape=(10, 10, 3)).records[-1].output_shape == (1, 8, 8, 2)
    with pytest.raises(ValueError, match="must be built"):
        profile(keras.Sequential([L.Dense(2)]))


def test_table_and_dict_forms():
    result = profile(_lenet5())
    text = result.table()
    assert "c1" in text and "FLOPs = 2 x MACs" in text and "peak" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["totals"]["params"] == result.params
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert data["totals"]["backward_macs"] == 2 * data["totals"]["macs"]
    assert len(data["records"]) == len(result.records)
    assert data["records"][1]["macs_with_bias"] == 28 * 28 * 6 * 26
    assert str(result) == text


def test_many_builtin_layer_types_are_known():
    inputs = keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Normalization(mean=0.5, variance=0.25)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.LayerNormalization()(x)
    x = L.GroupNormalization(groups=2)(x)
    x = L.LeakyReLU()(x)
    x = L.SpatialDropout2D(0.1)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    x = L.MaxPooling2D(2)(x)
    y = L.Multiply()([x, L.Activation("sigmoid")(x)])
    x = L.Maximum()([x, y]) + y  # a Keras op in the graph (keras.src.ops.numpy.Add)
    x = L.Reshape((8 * 8, 8))(x)
    x = L.Flatten()(L.Dropout(0.5)(x))
    x = L.Softmax()(L.Dense(4)(x))
    model = keras.Model(inputs, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = profile(model)
    assert result.unknown_layers == []
    assert result.params == model.count_params()
    records = {r.class_name: r for r in result.records}
    assert records["Add"].other_ops == 8 * 8 * 8
    # Bilinear upsampling by 2 reads 2 inputs per axis: 4 + (ceil(2/2) - 1) * 2 = 4, jump 1.
    assert (records["UpSampling2D"].receptive_field, records["UpSampling2D"].jump) == ("4", "1")
    # Reshape to (64, 8) moves positions: geometry unknown from there, named.
    assert result.unknown_geometry == [r.name for r in result.records if r.class_name == "Reshape"]


def test_conv1d_and_conv3d_by_hand():
    inputs = keras.Input((20, 3))
    x = L.Conv1D(4, 5, strides=2, name="c1")(inputs)
    model = keras.Model(inputs, L.Conv1D(2, 3, dilation_rate=2, name="c2")(x))
    records = {r.name: r for r in profile(model).records}
    assert records["c1"].macs == 8 * 4 * 5 * 3
    assert (records["c1"].receptive_field, records["c1"].jump) == ("5", "2")
    assert records["c2"].receptive_field == str(5 + (5 - 1) * 2)
    inputs = keras.Input((6, 6, 6, 2))
    model = keras.Model(inputs, L.Conv3D(3, 3, name="c3")(inputs))
    record = profile(model).records[-1]
    assert record.macs == 4 * 4 * 4 * 3 * 27 * 2
    assert record.receptive_field == "3"


def test_squeeze_excitation_built_from_keras_layers():
    # EfficientNet's SE: global pooling, a Reshape that only adds size-1 axes, a gate.
    inputs = keras.Input((8, 8, 4))
    s = L.Reshape((1, 1, 4), name="se_reshape")(L.GlobalAveragePooling2D()(inputs))
    s = L.Conv2D(4, 1, activation="sigmoid")(L.Conv2D(2, 1, activation="relu")(s))
    x = L.Multiply(name="gate")([inputs, s])
    model = keras.Model(inputs, L.Conv2D(2, 3, name="after")(x))
    result = profile(model)
    assert result.unknown_geometry == []
    records = {r.name: r for r in result.records}
    assert records["se_reshape"].receptive_field == "global"
    assert records["gate"].receptive_field == "global"  # the gate mixes every position


def test_sequential_and_channels_first():
    layers = [
        L.Conv2D(4, 3, strides=2, data_format="channels_first", name="conv"),
        L.MaxPooling2D(2, data_format="channels_first", name="pool"),
        L.GlobalAveragePooling2D(data_format="channels_first", name="gap"),
        L.Dense(2, name="fc"),
    ]
    model = keras.Sequential([keras.Input((3, 17, 17)), *layers])
    result = profile(model)
    records = {r.name: r for r in result.records}
    assert records["conv"].output_shape == (1, 4, 8, 8)
    assert records["conv"].macs == 8 * 8 * 4 * 9 * 3
    assert (records["pool"].receptive_field, records["pool"].jump) == ("5", "4")
    assert records["gap"].receptive_field == "global"
    assert result.params == model.count_params()


class _Untraceable(keras.layers.Layer):
    """A block whose call cannot run on symbolic tensors (it needs a concrete value)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(2)

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        if float(tf.reduce_sum(x)) > 0:  # fails on graph tensors
            return self.inner(x)
        return self.inner(-x)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (2,)


def test_untraceable_block_is_reported_not_fatal():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Untraceable(name="odd")(inputs))
    with pytest.warns(UserWarning, match="could not be traced"):
        result = profile(model)
    assert result.unknown_layers == ["odd"]
    assert result.params == model.count_params()
