"""Knowledge distillation that plugs into the student's own `compile`/`fit`.

- `Distillation(teacher, alpha, temperature, feature_losses)`: `attach(student)` makes
  `student.fit` minimise `alpha * label loss + (1 - alpha) * tau^2 * KL + feature terms`, with
  one student forward per step; `detach(student)` restores it.
- `TeacherCache` (`Distillation.cache(x, y)`): the teacher's outputs computed once per
  dataset, in memory or memory-mapped on disk, never paired with another image.
- Losses (Keras' `keras.distillation` interface): `LogitsDistillation` (stable, log-softmax),
  `FeatureDistillation` (automatic 1x1 projector, resizing), `AttentionTransfer` (Zagoruyko and
  Komodakis, 2017), and the functions `knowledge_distillation_loss`,
  `distillation_kl_divergence`, `attention_map`.
- Callbacks: `TemperatureScheduler`, `AlphaScheduler`.
- `distill(teacher, student, x, y, ...)`: attach, fit (cached by default), detach, in one call.
"""

from keras_cnn_ext.distillation.cache import TeacherCache, is_random_augmentation  # noqa: F401
from keras_cnn_ext.distillation.callbacks import AlphaScheduler, TemperatureScheduler  # noqa: F401
from keras_cnn_ext.distillation.losses import (  # noqa: F401
    AttentionTransfer,
    FeatureDistillation,
    LogitsDistillation,
    attention_map,
    distillation_kl_divergence,
    knowledge_distillation_loss,
    reduce_per_sample,
)
from keras_cnn_ext.distillation.trainer import (  # noqa: F401
    Distillation,
    attached_distillation,
    distill,
    split_packed_targets,
)
