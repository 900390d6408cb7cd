"""Finding the target layer of a layer attribution and running a model up to it.

Grad-CAM needs the activations `A` of one inner layer and the model output `y` from the same
forward pass, so that `dy/dA` can be taken under a `GradientTape`. How to get both depends on the
model:

- Sequential and Functional models: one feature model `Model(model.inputs, [A, model.output])`.
- Nested models (a `keras.applications` base called inside a Functional model, named
  `"base/conv_pw_13"`): `Model(outer.inputs, [base.get_layer(...).output, outer.output])` raises
  "Output with path `0` is not connected to `inputs`" in Keras 3 (tensorflow #44462, keras #16355),
  because the inner layer's tensor lives in the base's own graph. Instead two stages run under the
  tape: a feature model on the base's own inputs gives `[A, base output]`, and the outer graph is
  replayed node by node around it (the layers before the base, then the head layers after it).
- Subclassed models have no graph to cut: the target layer's output is captured while the model
  runs, by a hook on that layer instance that is removed again before the call returns.

Nothing here changes the user's model: the feature models share its layers and weights.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

PATH_SEPARATOR = "/"


def graph_io(model):
    """Returns `(inputs, outputs)` of a Functional/Sequential model, or `None` for subclassed ones."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return list(inputs), list(outputs)


def check_model(model):
    """Validates the model argument shared by every attribution method."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model (Sequential, Functional or subclassed). "
            f"Received: {model!r} of type {type(model)}"
        )
    if not model.built:
        raise ValueError(
            "`model` must be built before it can be explained: call it on a batch or give it an "
            f"`Input`. Received an unbuilt model {model.name!r}"
        )
    io = graph_io(model)
    if io is not None and len(io[0]) != 1:
        raise ValueError(
            f"`model` must have a single image input. Received a model with {len(io[0])} inputs"
        )
    return model


def _tensor_rank(model, layer):
    nodes = own_nodes(model, layer)
    if len(nodes) != 1 or len(nodes[0].output_tensors) != 1:
        return None  # a layer called several times, or with several outputs
    return len(nodes[0].output_tensors[0].shape)


def spatial_layer_paths(model, prefix=""):
    """Paths of the layers with a 4-D output, in the model's topological order.

    Nested models contribute their own layers as `"outer_name/inner_name"`. For a subclassed model
    (no graph, no static output shapes) every sub-layer that has weights or is a pooling/activation
    layer is listed, since ranks are unknown until the model runs.
    """
    paths = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = prefix + layer.name
        if isinstance(layer, keras.Model) and graph_io(layer) is not None:
            inner = spatial_layer_paths(layer, name + PATH_SEPARATOR)
            if inner:
                paths.extend(inner)
                continue
        if graph_io(model) is None or _tensor_rank(model, layer) == 4:
            paths.append(name)
    return paths


def _unknown_layer(model, name):
    candidates = spatial_layer_paths(model)
    shown = ", ".join(repr(c) for c in candidates[-12:])
    more = f" (last 12 of {len(candidates)})" if len(candidates) > 12 else ""
    return ValueError(
        f"`layer` must name a layer of model {model.name!r} with a 4-D output; nested layers are "
        f"named 'outer/inner'. Received: {name!r}. Candidates{more}: {shown}"
    )


def resolve_layer_path(model, layer):
    """Turns `layer` (None, a name, an `"outer/inner"` path or a layer instance) into a path list."""
    if layer is None:
        if graph_io(model) is None:
            return None  # found by probing when the first images arrive
        paths = spatial_layer_paths(model)
        if not paths:
            raise ValueError(
                f"`layer` is None but model {model.name!r} has no layer with a 4-D output to explain."
            )
        return paths[-1].split(PATH_SEPARATOR)
    if isinstance(layer, keras.layers.Layer):
        for path in _all_layer_paths(model):
            if follow(model, path) is layer:
                return path
        raise ValueError(
            f"`layer` must be a layer of model {model.name!r}. Received layer {layer.name!r}, "
            "which the model does not contain"
        )
    if not isinstance(layer, str) or not layer:
        raise TypeError(
            "`layer` must be None, a layer name ('base/conv_pw_13' for nested models) or a "
            f"keras Layer. Received: {layer!r} of type {type(layer)}"
        )
    path = layer.split(PATH_SEPARATOR)
    try:
        follow(model, path)
    except ValueError:
        raise _unknown_layer(model, layer) from None
    return path


def _all_layer_paths(model, prefix=()):
    for layer in _sublayers(model):
        yield [*prefix, layer.name]
        if isinstance(layer, keras.Model):
            yield from _all_layer_paths(layer, (*prefix, layer.name))


def _sublayers(model):
    if graph_io(model) is not None:
        return list(model.layers)
    return list(model._flatten_layers(include_self=False, recursive=True))


def follow(model, path):
    current = model
    for name in path:
        match = [layer for layer in _sublayers(current) if layer.name == name]
        if not match:
            raise ValueError(name)
        current = match[0]
    return current


def own_nodes(model, layer):
    """The calls (Keras nodes) of `layer` that belong to `model`'s graph, not to another model's.

    A layer reused in a second model, or a `keras.applications` base that also has its own graph,
    has several inbound nodes; `layer.output` is always the first one, which may not be
    connected to this model's inputs.
    """
    graph = getattr(model, "_functional", None) or model
    keys = getattr(graph, "_nodes", None)
    nodes = list(layer._inbound_nodes)
    if keys is None:  # pragma: no cover - a Keras that renamed its node registry
        return nodes
    return [node for i, node in enumerate(nodes) if f"{id(layer)}_ib-{i}" in keys]


def _single(tensors):
    return tensors[0] if len(tensors) == 1 else tensors


class LayerForward:
    """Callable `x -> (activations, output)` for one target layer; built once, reused by traces."""

    def __init__(self, model, path):
        # Weak: forwards are cached per model, and the cache must not keep the model alive.
        self._model_ref = weakref.ref(model)
        self.path = list(path)
        self.name = PATH_SEPARATOR.join(self.path)
        if graph_io(model) is None:
            self._layer = follow(model, self.path)
            self._call = self._captured
        else:
            self._call = self._split(model, self.path)

    def __call__(self, x):
        activations, output = self._call(x)
        if isinstance(output, (list, tuple)):
            output = output[0]
        return activations, output

    def _split(self, model, path):
        inputs, outputs = graph_io(model)
        layer = follow(model, path[:1])
        nodes = own_nodes(model, layer)
        if len(path) == 1:
            if len(nodes) != 1 or len(nodes[0].output_tensors) != 1:
                raise ValueError(
                    f"`layer` {self.name!r} cannot be explained: it must be called once in the "
                    f"model and return one tensor (it has {len(nodes)} calls here)"
                )
            activation = nodes[0].output_tensors[0]
            feature = keras.Model(_single(inputs), [activation, *outputs])

            def run(x):
                activation, *output = feature(x, training=False)
                return activation, _single(output)

            return run
        if graph_io(layer) is None:
            raise _unknown_layer(self._model_ref(), self.name)
        if len(nodes) != 1:
            raise ValueError(
                f"`layer` {self.name!r} cannot be explained: the nested model {layer.name!r} must "
                f"be called exactly once in {model.name!r} (it is called {len(nodes)} times)"
            )
        inner = self._split(layer, path[1:])
        graph_ref = weakref.ref(getattr(model, "_functional", None) or model)  # Sequential's graph

        def run(x):
            # Replays the outer graph node by node, as Keras' Functional.call does, except that
            # the nested model's call runs the inner feature model. Building Functional models
            # on the outer graph's intermediate tensors instead would add nodes to the user's
            # layers (Keras clones such inputs and calls the layers after them again).
            captured = []

            def operation_fn(operation):
                if operation is layer:

                    def nested_call(inner_inputs, *args, **kwargs):
                        activation, output = inner(inner_inputs)
                        captured.append(activation)
                        return output

                    return nested_call

                def call(*args, **kwargs):
                    if "training" in getattr(operation, "_call_context_args", ()):
                        kwargs["training"] = False
                    return operation(*args, **kwargs)

                return call

            output = graph_ref()._run_through_graph(x, operation_fn=operation_fn)
            return captured[-1], output

        return run

    def _captured(self, x):
        captured = []
        layer = self._layer
        original = layer.call

        def hooked(*args, **kwargs):
            result = original(*args, **kwargs)
            captured.append(result)
            return result

        # A per-instance attribute shadows the class's `call` for this forward pass only;
        # object.__setattr__ keeps Keras' attribute tracking out of it.
        object.__setattr__(layer, "call", hooked)
        try:
            output = self._model_ref()(x, training=False)
        finally:
            object.__delattr__(layer, "call")
        if not captured:
            raise ValueError(
                f"`layer` {self.name!r} was not called when model {self._model_ref().name!r} ran."
            )
        return captured[-1], output


def probe_last_spatial_layer(model, images):
    """For a subclassed model: runs it once and returns the path of the last layer with 4-D output."""
    layers = _sublayers(model)
    ranks = {}
    originals = {}
    for layer in layers:
        if isinstance(layer, keras.Model):
            continue
        originals[id(layer)] = layer

        def hooked(*args, _layer=layer, _call=layer.call, **kwargs):
            result = _call(*args, **kwargs)
            if isinstance(result, tf.Tensor) or hasattr(result, "shape"):
                ranks[id(_layer)] = (len(ranks), len(result.shape))
            return result

        object.__setattr__(layer, "call", hooked)
    try:
        model(images[:1], training=False)
    finally:
        for layer in originals.values():
            object.__delattr__(layer, "call")
    spatial = [(order, key) for key, (order, rank) in ranks.items() if rank == 4]
    if not spatial:
        raise ValueError(
            f"`layer` is None but no layer of model {model.name!r} produced a 4-D output."
        )
    last = originals[max(spatial)[1]]
    for path in _all_layer_paths(model):
        if follow(model, path) is last:
            return path
    raise ValueError(f"Could not name the last 4-D layer of model {model.name!r}.")
