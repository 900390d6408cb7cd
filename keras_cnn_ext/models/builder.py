"""Building a model from a family builder: the shared tail, and named variants of a family.

As timm's `_builder.py` builds every model of a family from one function and a config, a
family here is one builder (`ResNet`, `DenseNet`, `VGG`) and a table; its named variants
(`ResNet50`, `SEResNet50`, `DenseNet121`, `VGG16`, ...) are made by `named_variant`, which fixes
some of the family's arguments, may change some defaults, and gives the variant the family's
signature (so `inspect.signature`, `help()` and IPython show every argument) and a docstring.

Typical use inside a family builder::

    validate_builder_args(include_top=include_top, weights=weights, pooling=pooling,
                          classes=classes)
    inputs = make_inputs(input_tensor, input_shape, default_shape=(224, 224, 3),
                         stages=STAGES, include_top=include_top)
    x = ...  # the body
    return finish_model(inputs, x, name=name, weights=weights, include_top=include_top,
                        pooling=pooling, classes=classes,
                        classifier_activation=classifier_activation)
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import keras

from keras_cnn_ext.models.heads import classifier_head
from keras_cnn_ext.models.registry import register_builder
from keras_cnn_ext.models.weights import load_weights

P = ParamSpec("P")
R = TypeVar("R")


def finalize_model(inputs, outputs, name, weights=None):
    """Builds the `keras.Model` and loads `weights`.

    `inputs` may be the tensor returned by `make_inputs`, including a user's `input_tensor` that
    is an intermediate tensor of another graph: like `keras.applications`, the model then starts
    at that tensor's source inputs (`keras.utils.get_source_inputs`).

    Raises:
        ValueError: if the weights file does not fit the model.
    """
    sources = keras.utils.get_source_inputs(inputs)
    model = keras.Model(sources[0] if len(sources) == 1 else sources, outputs, name=name)
    return load_weights(model, weights)


def finish_model(inputs, features, *, name, weights=None, **head):
    """The tail every classifier builder shares: `classifier_head`, then `finalize_model`.

    Args:
        inputs: the model's input tensor (from `make_inputs`).
        features: the last feature map.
        name: the model's name.
        weights: None or a weights file to load.
        **head: `classifier_head`'s arguments (`include_top`, `pooling`, `classes`,
            `classifier_activation`, `dropout`, `head_pooling`, ...).
    """
    return finalize_model(inputs, classifier_head(features, **head), name=name, weights=weights)


# What every named variant's docstring says about keras.applications' arguments.
_APPLICATION_ARGS = {
    "include_top": "whether to include the classifier on top of the features.",
    "weights": (
        "`None` (random initialisation) or the path of a `.weights.h5`/`.keras` file of this "
        "model (for keras.applications' ImageNet weights see "
        "`keras_cnn_ext.models.load_keras_applications_weights`)."
    ),
    "input_tensor": "optional Keras tensor (e.g. the output of `keras.Input`) to build on.",
    "input_shape": (
        "the input shape without the batch axis; default {default_shape} with the "
        "classifier, unknown height and width without (keras.applications' rule)."
    ),
    "pooling": "with `include_top=False`: `None` (the 4D features), `'avg'` or `'max'`.",
    "classes": "the number of classes of the classifier.",
    "classifier_activation": "the classifier's activation (`None` for logits).",
    "name": "the model's name; `None` gives {default_name!r}.",
}


def _arg_line(name, text):
    return textwrap.fill(
        f"{name}: {text}", width=96, initial_indent="    ", subsequent_indent="        "
    )


def _variant_doc(family, builder_name, summary, fixed, signature, default_shape, default_name):
    call = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
    lines = [
        summary,
        "",
        textwrap.fill(
            f"`{family.__name__}({call}, ...)`: every other argument is `{family.__name__}`'s, "
            "with the defaults shown in the signature.",
            width=96,
        ),
        "",
        "Args:",
    ]
    options = []
    for parameter in signature.parameters.values():
        text = _APPLICATION_ARGS.get(parameter.name)
        if text is None:
            options.append(parameter.name)
            continue
        text = text.format(default_shape=tuple(default_shape), default_name=default_name)
        if "{" not in _APPLICATION_ARGS[parameter.name]:
            text += f" Default `{parameter.default!r}`."
        lines.append(_arg_line(parameter.name, text))
    if options:
        lines.append(_arg_line(", ".join(options), f"as in `{family.__name__}`."))
    # 32x32: small enough to build fast, large enough for every family's downsampling.
    size = 32
    lines += [
        "",
        "Returns:",
        "    A functional `keras.Model`.",
        "",
        "Example:",
        "",
        f">>> model = {builder_name}(input_shape=({size}, {size}, {default_shape[2]}), classes=10)",
        ">>> model.output_shape",
        "(None, 10)",
    ]
    return "\n".join(lines)


def named_variant(
    family: Callable[Concatenate[Any, P], R],
    builder_name: str,
    summary: str,
    *,
    fixed: dict,
    defaults: dict | None = None,
    default_shape=(224, 224, 3),
    default_name: str | None = None,
    aliases=(),
) -> Callable[P, R]:
    """Makes and registers a named builder for one row of a family's table.

    The builder takes the family's arguments (same order, kinds and defaults, except those in
    `fixed`, which it does not take, and those in `defaults`, whose defaults it changes) and
    calls `family(**fixed, **arguments)`. Its `__signature__` is that signature, so
    `inspect.signature`, `help()`, IPython and the CLI see real keyword parameters; unknown
    arguments raise Python's usual `TypeError`.

    Args:
        family: the family builder, e.g. `ResNet`.
        builder_name: the variant's name, e.g. `"ResNet50"`; registered (case-insensitive).
        summary: the docstring's summary line.
        fixed: the arguments the variant fixes, e.g. `{"depth": 50, "version": "v1"}`.
        defaults: arguments whose default the variant changes, e.g. `{"use_bias": False}`.
        default_shape: the network's default `(height, width, channels)`, for the docstring.
        default_name: the default model name, for the docstring; default the lower-cased
            builder name.
        aliases: further registry names.

    Returns:
        The builder function. Its static type (for editors that do not run code) is the
        family's signature without its first parameter, usually the fixed `depth`.
    """
    defaults = dict(defaults or {})
    family_signature = inspect.signature(family)
    unknown = sorted((set(fixed) | set(defaults)) - set(family_signature.parameters))
    if unknown:
        raise TypeError(f"`{family.__name__}` has no arguments {unknown}.")
    parameters = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in family_signature.parameters.values()
        if p.name not in fixed
    ]
    signature = family_signature.replace(parameters=parameters)
    fixed = dict(fixed)
    call = ", ".join(f"{k}={v!r}" for k, v in fixed.items())

    def builder(*args, **kwargs):
        clash = sorted(set(kwargs) & set(fixed))
        if clash:
            raise TypeError(
                f"`{builder_name}` fixes {clash} (`{family.__name__}({call}, ...)`); call "
                f"`{family.__name__}` to choose them."
            )
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return family(**fixed, **bound.arguments)

    builder.__name__ = builder.__qualname__ = builder_name
    builder.__module__ = family.__module__
    builder.__signature__ = signature
    builder.__doc__ = _variant_doc(
        family,
        builder_name,
        summary,
        fixed,
        signature,
        default_shape,
        builder_name.lower() if default_name is None else default_name,
    )
    return register_builder(builder_name, *aliases)(builder)
