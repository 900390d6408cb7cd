"""Every public layer and every registered builder exports to TFLite and ONNX with Keras' outputs.

The tables below are the coverage: a new public layer or builder without an entry fails
`test_every_public_layer_has_an_entry` / `test_every_builder_has_an_entry`, listing it.

To keep the file fast, each table runs as one combined model per input shape: every entry is a
branch from a shared input, each branch's output flattened and concatenated into one output, so
one TFLite and one ONNX conversion cover the whole table and each entry's slice of the output gives
its own difference. Builders are built at 32x32 (AlexNet at its minimum, 67x67) and narrowed with
their width arguments. Every ResNet and DenseNet depth is built by its own named builder with its
depth-table row patched to one block per stage (one unit per dense block): the block code (v1, v2,
SE, bottleneck, CIFAR, dense and transition blocks) is the same at every depth, and the full
ResNet-152 or DenseNet-264 alone takes minutes to convert here. Builds that come out identical
(ResNet-50, -101 and -152 once reduced) are converted once and listed as "same network as".
VGG, AlexNet, LeNet-5, MobileNetV1 and UNet run at their full depth. `VARIANT_CASES` adds the
options that change the exported graph (ECA, a dilated last stage, drop path, max and adaptive
heads, AlexNet's torchvision layout); the builders' own tests do not export again.
"""

import inspect
import json
import time

import keras
import numpy as np

import keras_cnn_ext.layers
from keras_cnn_ext import models
from keras_cnn_ext.export import run_onnx, run_tflite, to_onnx, to_tflite

# Layer class name -> (constructor arguments, accepted max abs difference). Input: (2, 8, 8, 16).
LAYER_CASES = {
    "AdaptiveAveragePooling2D": ({"output_size": (3, 2)}, 1e-5),
    "AdaptiveMaxPooling2D": ({"output_size": 3}, 1e-5),
    "CBAM": ({"ratio": 0.25, "kernel_size": 3}, 1e-5),
    "ChannelAttention": ({"ratio": 0.25}, 1e-5),
    "Cutout": ({"num_holes": 2, "size": 3, "seed": 1}, 1e-5),
    "DenseBlock": ({"num_layers": 2, "growth_rate": 4}, 1e-5),
    "DropBlock2D": ({"rate": 0.3, "block_size": 3, "seed": 1}, 1e-5),
    "DropPath": ({"rate": 0.5, "seed": 1}, 1e-5),
    "EfficientChannelAttention": ({}, 1e-5),
    "FractionalMaxPooling2D": ({"pooling_ratio": 1.414, "overlapping": True, "seed": 3}, 1e-5),
    "GroupBatchNormalization": ({"group": "p4m"}, 1e-5),
    "GroupConv2D": (
        {"filters": 2, "kernel_size": 3, "group": "p4", "lifting": False, "padding": "same"},
        1e-5,
    ),
    "GroupPooling": ({"group": "p4m", "reduction": "avg"}, 1e-5),
    "GroupedConv2D": ({"filters": 8, "kernel_size": 3, "groups": 4, "padding": "same"}, 1e-5),
    "LocalResponseNormalization": ({"depth_radius": 2, "alpha": 0.5}, 1e-5),
    "RandomErasing": ({"probability": 1.0, "seed": 1}, 1e-5),
    "ResidualBlock": ({"filters": 4, "strides": 2, "attention": "se"}, 1e-5),
    "SeparableConvBlock": ({"filters": 8, "strides": 2}, 1e-5),
    "SpatialAttention": ({"kernel_size": 3}, 1e-5),
    "SpatialDropout2D": ({"rate": 0.5, "seed": 1}, 1e-5),
    "SqueezeExcitation": ({"ratio": 0.25}, 1e-5),
    "TransitionBlock": ({"compression": 0.5}, 1e-5),
}

_RESNET = "keras_cnn_ext.models.resnet"
_DENSENET = "keras_cnn_ext.models.densenet"
_ONE_BASIC = ("basic", (1, 1, 1, 1))
_ONE_BOTTLENECK = ("bottleneck", (1, 1, 1, 1))
_NARROW = {"width_multiplier": 0.125}


def _patch(module, table, key, value):
    return (module, table, key, value)


def _resnet_rows(depth, row):
    return [_patch(_RESNET, "RESNET_DEPTHS", depth, row)]


def _cifar_rows(depth):
    return [_patch(_RESNET, "CIFAR_RESNET_DEPTHS", depth, ("basic", (1, 1, 1)))]


def _densenet_rows(depth):
    return [_patch(_DENSENET, "DENSENET_DEPTHS", depth, (1, 1, 1, 1))]


_VGG = {"width_multiplier": 0.0625, "fc_units": (16, 16)}

# Builder name -> (arguments, depth-table patches). Input (32, 32, 3) unless "input_shape" says.
BUILDER_CASES = {
    "alexnet": (
        {"input_shape": (67, 67, 3), "width_multiplier": 0.125, "fc_units": (16, 16)},
        [],
    ),
    "lenet": ({}, []),
    "p4cnn": ({"input_shape": (28, 28, 1), "filters": 2}, []),
    "p4mcnn": ({"input_shape": (28, 28, 1), "filters": 2}, []),
    "lenet5": ({"variant": "modern", "norm": "batch"}, []),
    "mobilenet": ({"alpha": 0.25}, []),
    "mobilenetv1": ({"alpha": 0.25}, []),
    "vgg11": (_VGG, []),
    "vgg13": (_VGG, []),
    "vgg16": (_VGG, []),
    "vgg19": (_VGG, []),
    "unet": ({"base_filters": 4, "classes": 2}, []),
    "resnet18": (_NARROW, _resnet_rows(18, _ONE_BASIC)),
    "resnet18v2": (_NARROW, _resnet_rows(18, _ONE_BASIC)),
    "seresnet18": (_NARROW, _resnet_rows(18, _ONE_BASIC)),
    "resnet26": (_NARROW, _resnet_rows(26, _ONE_BOTTLENECK)),
    "resnet26v2": (_NARROW, _resnet_rows(26, _ONE_BOTTLENECK)),
    "seresnet26": (_NARROW, _resnet_rows(26, _ONE_BOTTLENECK)),
    "resnet34": (_NARROW, _resnet_rows(34, _ONE_BASIC)),
    "resnet34v2": (_NARROW, _resnet_rows(34, _ONE_BASIC)),
    "seresnet34": (_NARROW, _resnet_rows(34, _ONE_BASIC)),
    "resnet": (_NARROW, _resnet_rows(50, _ONE_BOTTLENECK)),
    "resnet50": (_NARROW, _resnet_rows(50, _ONE_BOTTLENECK)),
    "resnet50v2": (_NARROW, _resnet_rows(50, _ONE_BOTTLENECK)),
    "seresnet50": (_NARROW, _resnet_rows(50, _ONE_BOTTLENECK)),
    "resnet101": (_NARROW, _resnet_rows(101, _ONE_BOTTLENECK)),
    "resnet101v2": (_NARROW, _resnet_rows(101, _ONE_BOTTLENECK)),
    "seresnet101": (_NARROW, _resnet_rows(101, _ONE_BOTTLENECK)),
    "resnet152": (_NARROW, _resnet_rows(152, _ONE_BOTTLENECK)),
    "resnet152v2": (_NARROW, _resnet_rows(152, _ONE_BOTTLENECK)),
    "seresnet152": (_NARROW, _resnet_rows(152, _ONE_BOTTLENECK)),
    "resnet8": ({"width_multiplier": 0.25}, []),
    "resnet20": ({"width_multiplier": 0.25}, _cifar_rows(20)),
    "resnet32": ({"width_multiplier": 0.25}, _cifar_rows(32)),
    "resnet44": ({"width_multiplier": 0.25}, _cifar_rows(44)),
    "resnet56": ({"width_multiplier": 0.25}, _cifar_rows(56)),
    "resnet110": ({"width_multiplier": 0.25}, _cifar_rows(110)),
    "densenet": ({"growth_rate": 4}, _densenet_rows(121)),
    "densenet121": ({"growth_rate": 4}, _densenet_rows(121)),
    "densenet169": ({"growth_rate": 4}, _densenet_rows(169)),
    "densenet201": ({"growth_rate": 4}, _densenet_rows(201)),
    "densenet264": ({"growth_rate": 4}, _densenet_rows(264)),
    "densenetbc": ({"depth": 10, "growth_rate": 4}, []),
}
# Options whose exported graph differs from the defaults above: entry -> (builder name,
# arguments, depth-table patches). The builders' own test files train, save and mixed-precision
# check these variants; their exports are checked here, in the same combined conversion.
VARIANT_CASES = {
    "alexnet torchvision, adaptive head": (
        "alexnet",
        {
            "variant": "torchvision",
            "input_shape": (67, 67, 3),
            "width_multiplier": 0.125,
            "fc_units": (16, 16),
            "head_pooling": "adaptive_avg",  # upsamples the 1x1 feature map to 6x6
        },
        [],
    ),
    "resnet26 eca, output stride 16": (
        "resnet26",
        {**_NARROW, "attention": "eca", "output_stride": 16},
        _resnet_rows(26, _ONE_BOTTLENECK),
    ),
    "seresnet18 drop path, max head": (
        "seresnet18",
        {**_NARROW, "drop_path_rate": 0.1, "head_pooling": "max", "seed": 0},
        _resnet_rows(18, _ONE_BASIC),
    ),
    "densenetbc22 dropout, max head": (
        "densenetbc",
        {"depth": 22, "growth_rate": 4, "dropout_rate": 0.1, "head_pooling": "max", "seed": 0},
        [],
    ),
}
BUILDER_ATOL = 1e-5


def _public_layer_classes():
    return {
        name: obj
        for name, obj in inspect.getmembers(keras_cnn_ext.layers, inspect.isclass)
        if issubclass(obj, keras.layers.Layer)
        and obj.__module__.startswith("keras_cnn_ext")
        and not name.startswith("_")
    }


def test_every_public_layer_has_an_entry():
    public = set(_public_layer_classes())
    missing = sorted(public - set(LAYER_CASES))
    stale = sorted(set(LAYER_CASES) - public)
    assert not missing, f"Public layers without an export coverage entry: {missing}"
    assert not stale, f"Export coverage entries for layers that are not public: {stale}"


def test_every_builder_has_an_entry():
    registered = set(models.list_builders())
    missing = sorted(registered - set(BUILDER_CASES))
    stale = sorted(set(BUILDER_CASES) - registered)
    assert not missing, f"Builders without an export coverage entry: {missing}"
    assert not stale, f"Export coverage entries for unregistered builders: {stale}"


def _combined(branches, input_shape, name):
    """One model: a shared input, each branch flattened, all concatenated; and the slice sizes."""
    inputs = keras.Input(input_shape)
    flat = [keras.layers.Flatten()(branch(inputs)) for branch in branches]
    sizes = [int(np.prod(f.shape[1:])) for f in flat]
    outputs = keras.layers.Concatenate()(flat) if len(flat) > 1 else flat[0]
    return keras.Model(inputs, outputs, name=name), sizes


def _export_both(model, tmp_path, x):
    """Exports to both formats (verified there) and returns both files' outputs on `x`."""
    tflite = to_tflite(model, tmp_path / f"{model.name}.tflite", sample_data=x, tolerance=1e-3)
    to_onnx(model, tmp_path / f"{model.name}.onnx", sample_data=x, tolerance=1e-3)
    assert not any(op.startswith("Flex") for op in tflite.ops), tflite.ops
    (tflite_out,) = run_tflite(tmp_path / f"{model.name}.tflite", [x])
    (onnx_out,) = run_onnx(tmp_path / f"{model.name}.onnx", [x])
    return tflite_out, onnx_out


def _per_entry(names, sizes, expected, tflite_out, onnx_out, atols):
    """Per entry: both files' max abs difference, within atol * max(1, |Keras|) and 0.1% of it."""
    rows, failures, start = [], [], 0
    for name, size, atol in zip(names, sizes, atols, strict=True):
        part = slice(start, start + size)
        start += size
        scale = float(np.max(np.abs(expected[:, part])))
        d_tflite = float(np.max(np.abs(tflite_out[:, part] - expected[:, part])))
        d_onnx = float(np.max(np.abs(onnx_out[:, part] - expected[:, part])))
        rows.append(f"| {name} | {d_tflite:.1e} | {d_onnx:.1e} | {scale:.1e} |")
        # Also relative to the output's size: a deep net at initialisation can output ~1e-17,
        # where any absolute bound is met by garbage.
        bound = min(atol * max(1.0, scale), 1e-3 * scale)
        if not (d_tflite <= bound and d_onnx <= bound):
            failures.append(f"{name}: TFLite {d_tflite:.2e}, ONNX {d_onnx:.2e} > {bound:.1e}")
    print("\n| entry | TFLite max abs diff | ONNX max abs diff | max abs Keras output |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    assert not failures, failures


def test_layers_export_with_keras_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    classes = _public_layer_classes()
    names = sorted(n for n in LAYER_CASES if n in classes)
    branches = [classes[n](**LAYER_CASES[n][0], name=f"cov_{n.lower()}") for n in names]
    model, sizes = _combined(branches, (8, 8, 16), "layer_coverage")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 16)).astype("float32")
    expected = np.asarray(model(x, training=False))
    tflite_out, onnx_out = _export_both(model, tmp_path, x)
    _per_entry(names, sizes, expected, tflite_out, onnx_out, [LAYER_CASES[n][1] for n in names])


def _build(entry, monkeypatch):
    if entry in VARIANT_CASES:
        name, arguments, patches = VARIANT_CASES[entry]
    else:
        name, (arguments, patches) = entry, BUILDER_CASES[entry]
    arguments = dict(arguments)
    input_shape = arguments.pop("input_shape", (32, 32, 3))
    builder = models.get_builder(name)
    parameters = inspect.signature(builder).parameters
    cov_name = "cov_" + "".join(c if c.isalnum() else "_" for c in entry)
    defaults = {"input_shape": input_shape, "classes": 3, "name": cov_name}
    if "classifier_activation" in parameters and name != "unet":
        defaults["classifier_activation"] = None  # logits: differences are not squashed
    with monkeypatch.context() as patcher:
        for module, table, key, value in patches:
            patcher.setitem(getattr(__import__(module, fromlist=[table]), table), key, value)
        return builder(**{**defaults, **arguments}), input_shape


def _graph_key(model):
    """Two builds with equal keys are the same network (layer kinds, arguments, order, weights)."""
    layers = [
        (type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
        for layer in model._flatten_layers(include_self=False, recursive=True)
    ]
    return json.dumps([layers, model.count_params()], sort_keys=True, default=str)


def test_builders_export_with_keras_outputs(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    groups, same_as, seen = {}, {}, {}
    registered = set(models.list_builders())
    for name in sorted(n for n in BUILDER_CASES if n in registered) + sorted(VARIANT_CASES):
        model, input_shape = _build(name, monkeypatch)
        key = (input_shape, _graph_key(model))
        if key in seen:  # e.g. ResNet-101 and ResNet-152 once both rows are one block per stage
            same_as[name] = seen[key]
            continue
        seen[key] = name
        groups.setdefault(input_shape, []).append((name, model))
    for i, (input_shape, entries) in enumerate(sorted(groups.items())):
        names = [n for n, _ in entries]
        combined, sizes = _combined([m for _, m in entries], input_shape, f"builders_{i}")
        x = np.random.default_rng(0).uniform(0, 1, (2, *input_shape)).astype("float32")
        expected = np.asarray(combined(x, training=False))
        start = time.perf_counter()
        tflite_out, onnx_out = _export_both(combined, tmp_path, x)
        seconds = time.perf_counter() - start
        print(f"\n{len(names)} builders at {input_shape}: both exports took {seconds:.1f} s")
        _per_entry(names, sizes, expected, tflite_out, onnx_out, [BUILDER_ATOL] * len(names))
    print("\n".join(f"| {n} | same network as {m} | | |" for n, m in sorted(same_as.items())))
