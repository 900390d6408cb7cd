"""Model surgery: rewrite a Functional or Sequential Keras 3 model layer by layer, keeping weights.

The graph of the model is replayed on new inputs, node by node (nested Functional and Sequential
models included); every layer is copied with its weights (`copy_layer`), and a callback decides
what each node becomes: the copy, a replacement, the copy followed by new layers, or any small
subgraph. The original model is never modified, and layers shared between nodes stay shared.

- `replace_layers(model, mapping)`: swap layers chosen by class, name pattern or predicate.
- `insert_after(model, match, make_layer)`: add a layer after every matching layer.
- `flatten_model(model)`: inline nested models into one flat graph.
- `transform(model, call_function)`: the general form the others (and
  `keras_cnn_ext.quantization.quantize_model`) are built on.

Example: squeeze-and-excitation after every residual block of `keras.applications.ResNet50`
and adaptive pooling for its head, without rebuilding it by hand:

```python
base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
model = insert_after(base, "conv*_block*_out", lambda layer: SqueezeExcitation(
    name=layer.name + "_se"))
model = replace_layers(model, {"avg_pool": lambda layer: keras.Sequential(
    [AdaptiveAveragePooling2D(1), keras.layers.Flatten()], name="adaptive_pool")})
```
"""

from __future__ import annotations

import fnmatch

import keras


def _is_graph_model(layer):
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
    )


def check_graph_model(model, name="model"):
    """Raises a clear error unless `model` is a built Functional or Sequential Keras model."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{name}` must be a Functional or Sequential `keras.Model`. "
            f"Received: {model!r} of type {type(model)}"
        )
    if not _is_graph_model(model):
        raise TypeError(
            f"`{name}` is a subclassed `keras.Model` ({type(model).__name__}): its layers are "
            "called from Python code in `call`, so there is no layer graph to rewrite. Build it "
            "with the Functional API (or keras.Sequential) instead. Received: "
            f"{type(model).__name__}"
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"`{name}` is a Sequential model with no input shape yet: give it a `keras.Input` "
            f"or call it once so its graph exists. Received: {model.name!r}"
        )
    return model


def layer_matcher(match, name="match"):
    """Turns `match` into a predicate on layers.

    Args:
        match: a layer class or tuple of classes (`isinstance`), a string (a `fnmatch` pattern
            on the layer name, e.g. `"conv*_block*_out"`), or a callable `layer -> bool`.
    """
    if isinstance(match, type) or (
        isinstance(match, tuple) and match and all(isinstance(m, type) for m in match)
    ):
        return lambda layer: isinstance(layer, match)
    if isinstance(match, str):
        return lambda layer: fnmatch.fnmatchcase(layer.name, match)
    if callable(match):
        return lambda layer: bool(match(layer))
    raise TypeError(
        f"`{name}` must be a layer class, a tuple of classes, a name pattern (str) or a callable "
        f"`layer -> bool`. Received: {match!r} of type {type(match)}"
    )


def copy_layer(layer):
    """Returns a new, built layer with `layer`'s config and a copy of its weights.

    The copy is built from the original's build config, so its weights exist before it is first
    called; weights are copied by value (training the copy leaves `layer` untouched).
    """
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    if build_config:
        new.build_from_config(build_config)
    weights = layer.get_weights()
    if weights:
        if not new.built:
            raise ValueError(
                f"Cannot copy the weights of layer {layer.name!r}: it has no build config. "
                "Call the model once before rewriting it."
            )
        new.set_weights(weights)
    return new


def _input_like(tensor):
    history = getattr(tensor, "_keras_history", None)
    name = history.operation.name if history is not None else None
    return keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=name)


def _nodes(model):
    """The model's call nodes in an order where every input is computed first."""
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _replay(model, inputs, visit):
    """Runs `model`'s graph on `inputs` (a flat list of tensors), `visit(layer, args, kwargs)`
    computing each node's outputs; returns the outputs in the model's output structure."""
    if isinstance(model, keras.Sequential):
        (x,) = inputs
        for layer in model.layers:
            x = visit(layer, (x,), {})
        return x
    tensors = {id(ref): new for ref, new in zip(model.inputs, inputs, strict=True)}
    for node in _nodes(model):
        if any(id(x) not in tensors for x in node.input_tensors):
            continue  # a branch that does not lead from these inputs
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = visit(node.operation, args, kwargs)
        for ref, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
            tensors[id(ref)] = new
    return keras.tree.map_structure(lambda ref: tensors[id(ref)], model._outputs_struct)


def _model_inputs(model):
    return list(model.inputs)


def transform(
    model, call_function=None, *, recursive=True, inline=False, input_function=None, name=None
):
    """Rebuilds `model` node by node; `call_function` decides what each layer call becomes.

    Every layer is first copied with its weights (`copy_layer`; a layer shared by several nodes
    is copied once). `call_function(original, copy, *args, **kwargs)` then returns the node's
    outputs: `copy(*args, **kwargs)` keeps the layer, and anything else built from the
    arguments (other layers, several layers) replaces it. Nested Functional and Sequential
    models are rebuilt the same way (`recursive=True`), kept as nested models or, with
    `inline=True`, spliced into the outer graph.

    Args:
        model: a Functional or Sequential `keras.Model` (or a nested one inside it).
        call_function: `(original, copy, *args, **kwargs) -> outputs`; default keeps the copy.
        recursive: rewrite the layers of nested models too. Default True.
        inline: splice nested models into one flat graph (implies `recursive`). Default False.
        input_function: `tensor -> tensor`, applied to each new model input before the first
            layer (e.g. to quantize the inputs); default None.
        name: the new model's name; default the original's.

    Returns:
        A new Functional `keras.Model` with the same inputs and output structure.

    Raises:
        TypeError: for a subclassed model (it has no layer graph).
    """
    check_graph_model(model)
    if call_function is None:

        def call_function(original, copy, *args, **kwargs):
            return copy(*args, **kwargs)

    copies = {}

    def visit(layer, args, kwargs):
        if _is_graph_model(layer) and (recursive or inline):
            if inline:
                inputs = keras.tree.flatten((args, kwargs))
                inputs = [x for x in inputs if isinstance(x, keras.KerasTensor)]
                return _replay(layer, inputs, visit)
            if id(layer) not in copies:
                copies[id(layer)] = _transform(layer)
            return copies[id(layer)](*args, **kwargs)
        if id(layer) not in copies:
            copies[id(layer)] = copy_layer(layer)
        return call_function(layer, copies[id(layer)], *args, **kwargs)

    def _transform(sub, new_name=None):
        check_graph_model(sub)
        inputs = [_input_like(x) for x in _model_inputs(sub)]
        entry = inputs
        if input_function is not None and sub is model:
            entry = [input_function(x) for x in inputs]
        outputs = _replay(sub, entry, visit)
        structure = None if isinstance(sub, keras.Sequential) else sub._inputs_struct
        single = len(inputs) == 1 and not isinstance(structure, (list, tuple, dict))
        model_inputs = inputs[0] if single else inputs
        return keras.Model(model_inputs, outputs, name=new_name or sub.name)

    return _transform(model, name)


def replace_layers(model, mapping, *, recursive=True, name=None):
    """Returns a copy of `model` where layers matching a key of `mapping` are replaced.

    Args:
        model: a Functional or Sequential `keras.Model`.
        mapping: a dict `{match: factory}`. A `match` is a layer class (or tuple of classes), a
            `fnmatch` pattern on the layer name, or a predicate `layer -> bool` (first match
            wins, in the dict's order). `factory(layer)` returns the new layer (a fresh one,
            with new weights, unless the factory copies them; a `keras.Sequential` is a layer
            too) or `None` to remove the layer (its single input passes through).
        recursive: also replace inside nested models. Default True.
        name: the new model's name; default the original's.

    Returns:
        A new `keras.Model`; every other layer keeps a copy of its weights.

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    >>> model = keras.Model(inputs, outputs)
    >>> new = replace_layers(model, {"pool": lambda layer: keras.layers.GlobalMaxPooling2D()})
    >>> type(new.layers[-1]).__name__
    'GlobalMaxPooling2D'
    """
    if not isinstance(mapping, dict) or not mapping:
        raise TypeError(
            "`mapping` must be a non-empty dict `{match: factory}` (a layer class, name pattern "
            f"or predicate to a callable `layer -> new layer or None`). Received: {mapping!r}"
        )
    rules = []
    for match, factory in mapping.items():
        if not callable(factory) or isinstance(factory, keras.layers.Layer):
            raise TypeError(
                "Each value of `mapping` must be a callable `layer -> new layer or None` (a layer "
                f"instance cannot stand for several layers). Received: {factory!r} for {match!r}"
            )
        rules.append((layer_matcher(match, "mapping"), factory))

    def call_function(original, copy, *args, **kwargs):
        for matches, factory in rules:
            if matches(original):
                new = factory(original)
                if new is None:
                    return _passthrough(original, args)
                if not isinstance(new, keras.layers.Layer):
                    raise TypeError(
                        f"The factory for layer {original.name!r} must return a keras Layer or "
                        f"None. Received: {new!r} of type {type(new)}"
                    )
                return new(*args, **kwargs)
        return copy(*args, **kwargs)

    return transform(model, call_function, recursive=recursive, name=name)


def _passthrough(layer, args):
    tensors = [x for x in keras.tree.flatten(args) if isinstance(x, keras.KerasTensor)]
    if len(tensors) != 1:
        raise ValueError(
            f"Layer {layer.name!r} can only be removed (factory returned None) when it has one "
            f"input; it has {len(tensors)}."
        )
    return tensors[0]


def insert_after(model, match, make_layer, *, recursive=True, name=None):
    """Returns a copy of `model` with a new layer after every layer that `match` selects.

    Args:
        model: a Functional or Sequential `keras.Model`.
        match: a layer class (or tuple of classes), a `fnmatch` pattern on layer names, or a
            predicate `layer -> bool`.
        make_layer: `layer -> new layer` (called once per matching layer), applied to that
            layer's output; it must accept the output's shape.
        recursive: also insert inside nested models. Default True.
        name: the new model's name; default the original's.

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Flatten()(x))
    >>> new = insert_after(model, keras.layers.Conv2D,
    ...                    lambda layer: keras.layers.ReLU(name=layer.name + "_relu"))
    >>> [layer.name for layer in new.layers][2]
    'conv_relu'
    """
    matches = layer_matcher(match)
    if not callable(make_layer):
        raise TypeError(
            f"`make_layer` must be a callable `layer -> new layer`. Received: {make_layer!r}"
        )

    def call_function(original, copy, *args, **kwargs):
        outputs = copy(*args, **kwargs)
        if matches(original):
            outputs = make_layer(original)(outputs)
        return outputs

    return transform(model, call_function, recursive=recursive, name=name)


def flatten_model(model, *, name=None):
    """Returns a copy of `model` with every nested Functional/Sequential model inlined."""
    return transform(model, inline=True, name=name)
