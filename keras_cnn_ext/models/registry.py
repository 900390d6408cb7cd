"""Name -> builder registry, used by the CLI and by `keras_cnn_ext.models.get_builder`.

A builder registers itself with one line::

    @register_builder("resnet50")
    def ResNet50(...): ...

Names are case-insensitive and ignore `-` and `_` (`"ResNet-50"`, `"resnet_50"` and
`"resnet50"` are the same name).
"""

from __future__ import annotations

_BUILDERS = {}


def _normalize(name):
    if not isinstance(name, str):
        raise TypeError(f"A builder name must be a string. Received: {name!r} of type {type(name)}")
    return name.lower().replace("-", "").replace("_", "")


def register_builder(*names):
    """Decorator registering a builder under `names` (default: the function's name)."""

    def decorator(fn):
        for name in names or (fn.__name__,):
            key = _normalize(name)
            if key in _BUILDERS and _BUILDERS[key] is not fn:
                raise ValueError(
                    f"The builder name {name!r} is already registered for "
                    f"{_BUILDERS[key].__module__}.{_BUILDERS[key].__name__}."
                )
            _BUILDERS[key] = fn
        return fn

    return decorator


def list_builders():
    """The registered (normalised) builder names, sorted."""
    return sorted(_BUILDERS)


def get_builder(name):
    """Returns the builder registered under `name` (case-insensitive).

    Raises:
        ValueError: if no builder has that name; the message lists the known names.
    """
    key = _normalize(name)
    if key not in _BUILDERS:
        raise ValueError(
            f"Unknown architecture name: {name!r}. Known names: {', '.join(list_builders())}"
        )
    return _BUILDERS[key]
