"""The usual training recipes, mapped onto Keras' own options (nothing re-implemented).

| Recipe (paper / PyTorch name)                         | Keras 3                                               |
|-------------------------------------------------------|-------------------------------------------------------|
| Step decay: x`gamma` every `n` epochs (`StepLR`)      | `ExponentialDecay(lr, n * steps_per_epoch, gamma,       |
|                                                       | staircase=True)`: `step_decay`                        |
| Milestones (`MultiStepLR`, ResNet's /10 at 50%, 75%)  | `PiecewiseConstantDecay(boundaries, values)`:          |
|                                                       | `step_decay(..., milestones=...)`                     |
| Cosine annealing with linear warm-up (Goyal et al.    | `CosineDecay(start, decay_steps, alpha, warmup_target,  |
| 2017; Loshchilov and Hutter 2017)                     | warmup_steps)`: `cosine_with_warmup`                  |
| `torch.nn.utils.clip_grad_norm_` (one global norm)    | optimizer argument `global_clipnorm`                  |
| Per-tensor norm clipping                              | optimizer argument `clipnorm`                         |
| Decoupled weight decay (AdamW, SGDW)                  | `AdamW` / any optimizer's `weight_decay`               |
| Gradient accumulation over `k` micro-batches          | optimizer argument `gradient_accumulation_steps=k`    |

Schedules are functions of the optimizer's step counter. With gradient accumulation Keras
evaluates the learning-rate schedule at the *micro*-step count (its docstring: "learning rate
schedules will look at 'real' iterations"), so `make_optimizer` multiplies schedule lengths by
`k` for you when it builds the schedule from a recipe name.

Gradient accumulation with BatchNormalization: each micro-batch is normalised with its own
statistics (a batch `k` times smaller than the effective one) and the moving averages are
updated at every micro-step (`k` times per weight update, i.e. momentum `m**k` per update).
The accumulated update is therefore not the update of one `k`-times larger batch; use
GroupNormalization/LayerNormalization (`norm="group"` in the builders) or a larger micro-batch
when that matters.
"""

from __future__ import annotations

import numbers

import keras

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "nadam": keras.optimizers.Nadam,
    "lion": keras.optimizers.Lion,
}


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}. Received: {value!r} of type {type(value)}"
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {value!r}")
    return int(value)


def _positive_float(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number. Received: {value!r} of type {type(value)}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}. Received: {value!r}")
    return float(value)


def check_accumulation_steps(steps):
    """Validates `gradient_accumulation_steps`: `None` or an int >= 1 (1 means none)."""
    if steps is None:
        return None
    return _positive_int(steps, "gradient_accumulation_steps")


def with_gradient_accumulation(optimizer, steps):
    """A copy of `optimizer` that averages gradients over `steps` micro-batches per update.

    This is Keras' own `gradient_accumulation_steps` (the weights and the optimizer state change
    every `steps` calls, with the mean of the accumulated gradients); `steps=1` returns a copy
    without accumulation. Build it before `compile` (the optimizer must not be built yet).

    Example:

    >>> opt = with_gradient_accumulation(keras.optimizers.SGD(0.1), 4)
    >>> opt.gradient_accumulation_steps
    4
    """
    steps = check_accumulation_steps(steps)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"`optimizer` must be a keras.optimizers.Optimizer. Received: {optimizer!r}"
        )
    if getattr(optimizer, "built", False):
        raise ValueError(
            "`optimizer` is already built (it has slot variables); pass a fresh optimizer."
        )
    config = optimizer.get_config()
    config["gradient_accumulation_steps"] = None if steps in (None, 1) else steps
    return optimizer.__class__.from_config(config)


def step_decay(
    initial_learning_rate, *, steps_per_epoch, every_epochs=None, gamma=0.1, milestones=None
):
    """Step decay as a Keras schedule: x`gamma` every `every_epochs`, or at `milestones`.

    Args:
        initial_learning_rate: the starting rate.
        steps_per_epoch: optimizer updates per epoch (the schedule counts steps).
        every_epochs: decay period in epochs (PyTorch's `StepLR(step_size)`); gives
            `keras.optimizers.schedules.ExponentialDecay(..., staircase=True)`.
        gamma: the factor at each decay. Default 0.1.
        milestones: epochs at which to decay (PyTorch's `MultiStepLR`); gives
            `keras.optimizers.schedules.PiecewiseConstantDecay`. Exactly one of
            `every_epochs` and `milestones` is required.

    Example:

    >>> s = step_decay(0.1, steps_per_epoch=100, milestones=[30, 60])
    >>> [round(float(s(step)), 6) for step in (0, 2999, 3000, 6000)]
    [0.1, 0.1, 0.01, 0.001]
    """
    lr = _positive_float(initial_learning_rate, "initial_learning_rate")
    spe = _positive_int(steps_per_epoch, "steps_per_epoch")
    gamma = _positive_float(gamma, "gamma")
    if (every_epochs is None) == (milestones is None):
        raise ValueError(
            "Pass exactly one of `every_epochs` and `milestones`. "
            f"Received: every_epochs={every_epochs!r}, milestones={milestones!r}"
        )
    if every_epochs is not None:
        every = _positive_int(every_epochs, "every_epochs")
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=every * spe, decay_rate=gamma, staircase=True
        )
    epochs = [_positive_int(m, "milestones") for m in milestones]
    if not epochs or epochs != sorted(set(epochs)):
        raise ValueError(
            f"`milestones` must be a non-empty increasing list of epochs. Received: {milestones!r}"
        )
    # PiecewiseConstantDecay switches *after* a boundary: step b still gets the old value.
    boundaries = [m * spe - 1 for m in epochs]
    values = [lr * gamma**i for i in range(len(epochs) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def cosine_with_warmup(
    peak_learning_rate, *, total_steps, warmup_steps=0, final_learning_rate=0.0, start=0.0
):
    """Linear warm-up from `start` to `peak_learning_rate`, then cosine to `final_learning_rate`.

    Keras' own `CosineDecay` with `warmup_target`/`warmup_steps`; `total_steps` includes the
    warm-up.

    Example:

    >>> s = cosine_with_warmup(0.4, total_steps=100, warmup_steps=10)
    >>> [round(float(s(step)), 4) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.2, 0.4, 0.2, 0.0]
    """
    peak = _positive_float(peak_learning_rate, "peak_learning_rate")
    total = _positive_int(total_steps, "total_steps")
    warmup = _positive_int(warmup_steps, "warmup_steps", minimum=0)
    if warmup >= total:
        raise ValueError(f"`warmup_steps` must be < `total_steps`. Received: {warmup} and {total}")
    final = _positive_float(final_learning_rate, "final_learning_rate", allow_zero=True)
    start = _positive_float(start, "start", allow_zero=True)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(peak, total, alpha=final / peak)
    return keras.optimizers.schedules.CosineDecay(
        start,
        decay_steps=total - warmup,
        alpha=final / peak,
        warmup_target=peak,
        warmup_steps=warmup,
    )


def make_optimizer(
    name="sgd",
    learning_rate=0.1,
    *,
    schedule=None,
    total_steps=None,
    warmup_steps=0,
    steps_per_epoch=None,
    every_epochs=None,
    milestones=None,
    gamma=0.1,
    clip_norm=None,
    weight_decay=None,
    momentum=None,
    gradient_accumulation_steps=None,
):
    """A Keras optimizer for a recipe: name, schedule, global-norm clipping, accumulation.

    Args:
        name: a key of `OPTIMIZERS` (`"sgd"`, `"adam"`, `"adamw"`, ...). Default `"sgd"`.
        learning_rate: the (peak) learning rate. Default 0.1.
        schedule: `None` (constant), `"cosine"` (`cosine_with_warmup`; needs `total_steps`) or
            `"step"` (`step_decay`; needs `steps_per_epoch` and `every_epochs` or `milestones`).
            Lengths are in weight updates and multiplied by `gradient_accumulation_steps`,
            because Keras evaluates schedules at micro-steps.
        clip_norm: clip the global gradient norm (`global_clipnorm`, as PyTorch's
            `clip_grad_norm_`). Default None.
        weight_decay: decoupled weight decay. Default None.
        momentum: SGD/RMSprop momentum. Default None (the optimizer's default; 0.9 for SGD
            recipes is common).
        gradient_accumulation_steps: average gradients over this many micro-batches (int >= 1;
            1 or None: none).

    Example:

    >>> opt = make_optimizer("sgd", 0.1, schedule="cosine", total_steps=1000, warmup_steps=50,
    ...                      clip_norm=1.0, momentum=0.9, gradient_accumulation_steps=2)
    >>> opt.global_clipnorm, opt.gradient_accumulation_steps
    (1.0, 2)
    >>> opt.get_config()["learning_rate"]["config"]["decay_steps"]  # (1000 - 50) * 2
    1900
    """
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"`name` must be one of {sorted(OPTIMIZERS)}. Received: {name!r}")
    steps = check_accumulation_steps(gradient_accumulation_steps) or 1
    if schedule is None:
        lr = _positive_float(learning_rate, "learning_rate")
    elif schedule == "cosine":
        if total_steps is None:
            raise ValueError("`schedule='cosine'` needs `total_steps` (weight updates).")
        lr = cosine_with_warmup(
            learning_rate,
            total_steps=_positive_int(total_steps, "total_steps") * steps,
            warmup_steps=_positive_int(warmup_steps, "warmup_steps", minimum=0) * steps,
        )
    elif schedule == "step":
        if steps_per_epoch is None:
            raise ValueError("`schedule='step'` needs `steps_per_epoch` (weight updates).")
        lr = step_decay(
            learning_rate,
            steps_per_epoch=_positive_int(steps_per_epoch, "steps_per_epoch") * steps,
            every_epochs=every_epochs,
            milestones=milestones,
            gamma=gamma,
        )
    else:
        raise ValueError(f"`schedule` must be None, 'cosine' or 'step'. Received: {schedule!r}")
    kwargs = {"learning_rate": lr}
    if clip_norm is not None:
        kwargs["global_clipnorm"] = _positive_float(clip_norm, "clip_norm")
    if weight_decay is not None:
        kwargs["weight_decay"] = _positive_float(weight_decay, "weight_decay", allow_zero=True)
    if momentum is not None:
        if name.lower() not in ("sgd", "rmsprop"):
            raise ValueError(
                f"`momentum` applies to 'sgd' and 'rmsprop' only. Received: name={name!r}"
            )
        kwargs["momentum"] = _positive_float(momentum, "momentum", allow_zero=True)
    if steps > 1:
        kwargs["gradient_accumulation_steps"] = steps
    return OPTIMIZERS[name.lower()](**kwargs)
