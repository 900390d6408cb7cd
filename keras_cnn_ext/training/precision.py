"""Mixed precision: pick a policy for the device, keep sensitive layers float32, scale the loss.

- `choose_policy()` picks `"mixed_bfloat16"`, `"mixed_float16"` or `"float32"` for the
  accelerator TensorFlow sees, and says why (`PrecisionChoice.reason`):
  TPUs and NVIDIA GPUs of compute capability >= 8.0 (Ampere and later) run bfloat16 natively,
  with float32's exponent range (no loss scaling); GPUs of capability 7.x have float16 tensor
  cores but no fast bfloat16, so float16 with loss scaling; older GPUs and CPUs without AMX or
  AVX512-BF16 stay float32 (there both half types are emulated and usually slower).
- `precision_policy_map(model, policy)` is a Keras `DTypePolicyMap` from layer paths to
  policies: `policy` everywhere except the numerically sensitive layers, which stay float32:
  softmax/sigmoid heads (outputs, losses and their gradients need float32's precision near 0
  and 1), `LocalResponseNormalization` (a sum of squares over channels overflows float16 at
  activations around 40), the adaptive/fractional poolings (window sums of float16
  activations and their gradient routing), and normalisation layers (Keras' BatchNormalization
  computes its statistics in float32 already; a float32 policy also keeps its outputs so).
- `apply_precision(model, policy)` rebuilds a model under that map with the same weights;
  `set_precision(policy)` sets Keras' global policy before building.
- `loss_scale_optimizer(optimizer, policy)` wraps the optimizer in Keras' own
  `LossScaleOptimizer` for float16 (dynamic loss scaling: a step whose gradients overflow is
  skipped, the weights stay as they were, and the scale halves); other policies get the
  optimizer back unchanged. `model.compile` does the same by itself for a model whose policy is
  `mixed_float16` (`auto_scale_loss=True`); the helper is for models under a policy map (the
  model's own policy is then the map's) and for custom training loops.
"""

from __future__ import annotations

import collections

import keras
import tensorflow as tf

POLICIES = ("mixed_bfloat16", "mixed_float16", "float32")

# Layer classes (by name, so that lower floors need not be imported) kept in float32.
FLOAT32_LAYERS = (
    "Softmax",
    "LocalResponseNormalization",
    "AdaptiveAveragePooling2D",
    "AdaptiveMaxPooling2D",
    "FractionalMaxPooling2D",
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
)
_SENSITIVE_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")

PrecisionChoice = collections.namedtuple("PrecisionChoice", ["policy", "reason"])


def check_policy(policy, name="policy", allow_auto=True):
    """Returns the policy name, or raises a ValueError naming what is accepted."""
    accepted = (("auto",) if allow_auto else ()) + POLICIES
    if not isinstance(policy, str) or policy not in accepted:
        raise ValueError(
            f"`{name}` must be one of {accepted}. Received: {policy!r}"
            + (f" of type {type(policy)}" if not isinstance(policy, str) else "")
        )
    return policy


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # pragma: no cover - not Linux
        pass
    return set()


def choose_policy(devices=None):
    """Picks the mixed-precision policy for this machine's accelerator and says why.

    Args:
        devices: optional list of `tf.config.PhysicalDevice`; default every device TensorFlow
            sees. The best accelerator decides (TPU, then GPU, then CPU).

    Returns:
        A `PrecisionChoice(policy, reason)`; `policy` is one of `POLICIES`.

    Example:

    >>> choice = choose_policy()
    >>> choice.policy in POLICIES and bool(choice.reason)
    True
    """
    devices = tf.config.list_physical_devices() if devices is None else list(devices)
    kinds = {d.device_type for d in devices}
    if "TPU" in kinds:
        return PrecisionChoice("mixed_bfloat16", "TPU: bfloat16 matrix units, no loss scaling")
    gpus = [d for d in devices if d.device_type == "GPU"]
    if gpus:
        capabilities = []
        for gpu in gpus:
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except (ValueError, RuntimeError):  # pragma: no cover - a device without details
                details = {}
            capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
        cc = min(capabilities)
        if cc >= (8, 0):
            return PrecisionChoice(
                "mixed_bfloat16",
                f"GPU compute capability {cc[0]}.{cc[1]} >= 8.0: native bfloat16 tensor cores, "
                "float32's exponent range, no loss scaling",
            )
        if cc >= (7, 0):
            return PrecisionChoice(
                "mixed_float16",
                f"GPU compute capability {cc[0]}.{cc[1]}: float16 tensor cores, no fast "
                "bfloat16; loss scaling needed",
            )
        return PrecisionChoice(
            "float32",
            f"GPU compute capability {cc[0]}.{cc[1]} < 7.0: no tensor cores, half precision "
            "saves memory but not time",
        )
    flags = _cpu_flags()
    if {"amx_bf16", "amx_tile"} <= flags or "avx512_bf16" in flags:
        which = "AMX" if "amx_bf16" in flags else "AVX512-BF16"
        return PrecisionChoice(
            "mixed_bfloat16", f"CPU with {which}: bfloat16 matrix multiplies in hardware"
        )
    return PrecisionChoice(
        "float32",
        "CPU without AMX or AVX512-BF16: bfloat16 and float16 are emulated (converted to float32 "
        "per operation) and usually slower than float32",
    )


def resolve_policy(policy="auto"):
    """`policy`, or `choose_policy().policy` for `"auto"`; validates the name."""
    policy = check_policy(policy)
    return choose_policy().policy if policy == "auto" else policy


def is_float32_layer(layer):
    """Whether `layer` should stay float32 under a mixed policy (see this module's docstring)."""
    if type(layer).__name__ in FLOAT32_LAYERS:
        return True
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None) or (
        activation if isinstance(activation, str) else None
    )
    return name in _SENSITIVE_ACTIVATIONS


def precision_policy_map(model, policy="auto"):
    """A `keras.dtype_policies.DTypePolicyMap`: `policy` by default, float32 where sensitive.

    Keys are the paths of `model`'s layers (`layer.path`); nested layers of a block follow the
    block's policy.

    Args:
        model: a Keras model.
        policy: one of `POLICIES` or `"auto"` (`choose_policy()`). Default `"auto"`.
    """
    policy = resolve_policy(policy)
    policy_map = keras.dtype_policies.DTypePolicyMap(
        default_policy=keras.dtype_policies.DTypePolicy(policy)
    )
    if policy == "float32":
        return policy_map
    for layer in model.layers:
        if is_float32_layer(layer):
            policy_map[layer.path] = keras.dtype_policies.DTypePolicy("float32")
    return policy_map


def apply_precision(model, policy="auto"):
    """A copy of a functional or Sequential `model` under `precision_policy_map(model, policy)`.

    Every layer is rebuilt from its config with the map as its `dtype` (Keras then looks its
    own path up in the map), and the weights are copied over. The input layers keep float32
    inputs; a float32 head (softmax) gives float32 outputs, as Keras' mixed-precision guide
    recommends.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> mixed = apply_precision(model, "mixed_float16")
    >>> [layer.compute_dtype for layer in mixed.layers]
    ['float16', 'float32']
    """
    policy_map = precision_policy_map(model, policy)

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = policy_map
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def set_precision(policy="auto"):
    """Sets Keras' global dtype policy (for models built afterwards); returns the choice."""
    check_policy(policy)
    choice = choose_policy() if policy == "auto" else PrecisionChoice(policy, "requested")
    keras.config.set_dtype_policy(choice.policy)
    return choice


def loss_scale_optimizer(optimizer, policy=None, **kwargs):
    """Keras' `LossScaleOptimizer` around `optimizer` for float16; `optimizer` otherwise.

    Args:
        optimizer: a Keras optimizer.
        policy: the policy the model trains under; default Keras' global policy.
        **kwargs: passed to `keras.optimizers.LossScaleOptimizer` (`initial_scale`,
            `dynamic_growth_steps`).
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"`optimizer` must be a keras.optimizers.Optimizer. Received: {optimizer!r}"
        )
    name = keras.config.dtype_policy().name if policy is None else check_policy(policy)
    if name == "auto":
        name = choose_policy().policy
    if name != "mixed_float16" or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer, **kwargs)
