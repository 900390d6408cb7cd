"""Training at scale: precision policies, rematerialization, gradient accumulation, multi-worker
`fit`, exact resume after a kill, one trace for the first epoch, BatchNormalization
recalibration, segmentation losses and schedule recipes."""

from keras_cnn_ext.models.remat import (  # noqa: F401
    rematerialize,
    rematerialized_layers,
    unrematerialize,
)
from keras_cnn_ext.training.batch_norm import (  # noqa: F401
    batch_norm_layers,
    recalibrate_batch_norm,
)
from keras_cnn_ext.training.build import build_for_fit  # noqa: F401
from keras_cnn_ext.training.losses import DiceLoss, JaccardLoss, focal_loss  # noqa: F401
from keras_cnn_ext.training.multi_worker import (  # noqa: F401
    enable_multi_worker_fit,
    free_ports,
    global_batch_size,
    is_chief,
    make_tf_config,
    shard_options,
)
from keras_cnn_ext.training.precision import (  # noqa: F401
    POLICIES,
    PrecisionChoice,
    apply_precision,
    check_policy,
    choose_policy,
    loss_scale_optimizer,
    precision_policy_map,
    set_precision,
)
from keras_cnn_ext.training.recipes import (  # noqa: F401
    OPTIMIZERS,
    check_accumulation_steps,
    cosine_with_warmup,
    make_optimizer,
    step_decay,
    with_gradient_accumulation,
)
from keras_cnn_ext.training.resume import ExactBackupAndRestore, ResumableDataset  # noqa: F401
