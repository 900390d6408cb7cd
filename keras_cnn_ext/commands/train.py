"""`keras-cnn-ext train`: an architecture or a `.keras` model trained on a folder or `.npz`.

keras-cnn-ext train demo --epochs 5 --output digits.keras
keras-cnn-ext train lenet5 --data photos/ --image-size 32,32 --precision mixed_bfloat16
keras-cnn-ext train model.keras --data data.npz --resume-dir ckpt/ --output tuned.keras
"""

from __future__ import annotations

import os

from keras_cnn_ext.cli import CLIError, positive_int
from keras_cnn_ext.commands import _common

PRECISIONS = ("float32", "auto", "mixed_float16", "mixed_bfloat16")


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise CLIError(f"--test-fraction must be a number in (0, 1). Received: {text}")
    return value


def add_arguments(parser):
    parser.add_argument(
        "target",
        metavar="ARCH|MODEL_FILE",
        help="an architecture (`demo`, a keras_cnn_ext.models builder such as lenet5 or "
        "resnet20, or keras.applications.NAME) or a .keras model to continue training",
    )
    _common.add_data_argument(parser)
    parser.add_argument(
        "--epochs", type=positive_int("--epochs"), default=5, help="epochs (default 5)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=64, help="default 64"
    )
    parser.add_argument(
        "--learning-rate",
        type=_common.positive_float("--learning-rate"),
        default=2e-3,
        help="peak learning rate of Adam, cosine-decayed to 0 (default 0.002)",
    )
    parser.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        help="held-out fraction of a folder/.npz for the test accuracy (default 0.2)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="compute precision (keras_cnn_ext.training.apply_precision); `auto` picks what "
        "this machine runs fastest (default float32)",
    )
    parser.add_argument(
        "--resume-dir",
        default=None,
        help="checkpoint folder of ExactBackupAndRestore: a killed run started again with the "
        "same arguments continues bit-exactly, mid-epoch included",
    )
    parser.add_argument(
        "--save-every",
        type=positive_int("--save-every"),
        default=None,
        help="with --resume-dir: checkpoint every N steps too (default: each epoch end)",
    )
    parser.add_argument(
        "--multi-worker",
        action="store_true",
        help="train under MultiWorkerMirroredStrategy (workers from TF_CONFIG; run the same "
        "command in every worker) with keras_cnn_ext.training.enable_multi_worker_fit",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--output",
        default=None,
        help="the .keras file to write (default: <arch>.keras, or <model>_trained.keras)",
    )
    _common.add_force_argument(parser)
    _common.add_unsafe_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _default_output(target):
    if target.endswith((".keras", ".h5")):
        return os.path.splitext(target)[0] + "_trained.keras"
    return target.replace(".", "_").replace(os.path.sep, "_") + ".keras"


def _build(args, x_shape, classes):
    looks_like_file = os.path.sep in args.target or args.target.endswith((".keras", ".h5"))
    if looks_like_file or os.path.exists(args.target):
        from keras_cnn_ext.cli import load_model_file

        return load_model_file(args.target, unsafe=args.unsafe), True
    return _common.build_architecture(args.target, x_shape, classes, seed=args.seed), False


def run(args):
    import keras
    import numpy as np

    from keras_cnn_ext.training import build_for_fit

    output = args.output or _default_output(args.target)
    _common.check_output_file(output, args.force)
    if args.save_every is not None and args.resume_dir is None:
        raise CLIError("--save-every needs --resume-dir.")
    keras.utils.set_random_seed(args.seed)

    strategy = None
    if args.multi_worker:
        if "TF_CONFIG" not in os.environ:
            raise CLIError("--multi-worker needs TF_CONFIG describing the workers.")
        import tensorflow as tf

        from keras_cnn_ext.training import enable_multi_worker_fit

        enable_multi_worker_fit()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()

    # A model file fixes the image size; read it first when the target is a file.
    probe_size = args.image_size
    is_file = args.target.endswith((".keras", ".h5")) or os.path.isfile(args.target)
    model = None
    if is_file:
        model, _ = _build(args, None, None)
        size, channels = _common.model_image_size(model)
        probe_size = probe_size or size
    else:
        channels = None
    (x_train, y_train), (x_test, y_test), names = _common.load_data(
        args.data, probe_size, channels, test_fraction=args.test_fraction, seed=args.seed
    )
    classes = max(len(names), int(max(y_train.max(), y_test.max())) + 1)
    print(
        f"data: {len(x_train)} train / {len(x_test)} test images {x_train.shape[1:]}, "
        f"{classes} classes"
    )

    def make_model():
        built = model if model is not None else _build(args, x_train.shape[1:], classes)[0]
        if args.precision != "float32":
            from keras_cnn_ext.training import apply_precision

            try:
                built = apply_precision(built, args.precision)
            except ValueError as e:
                raise CLIError(f"--precision {args.precision}: {e}") from None
        return built

    steps = int(np.ceil(len(x_train) / args.batch_size)) * args.epochs
    if strategy is not None:
        with strategy.scope():
            net = _common.compile_classifier(make_model(), args.learning_rate, steps)
    else:
        net = _common.compile_classifier(make_model(), args.learning_rate, steps)
    x_train = _common.fit_images_to_model(x_train, net)
    x_test = _common.fit_images_to_model(x_test, net)
    out_classes = net.outputs[0].shape[-1]
    if out_classes is not None and classes > out_classes:
        raise CLIError(
            f"--data has {classes} classes but the model outputs {out_classes}; pass an "
            "architecture name to build a new head."
        )

    callbacks, fit_data = [], {"x": x_train, "y": y_train, "batch_size": args.batch_size}
    if args.resume_dir is not None:
        from keras_cnn_ext.training import ExactBackupAndRestore, ResumableDataset

        data = ResumableDataset(x_train, y_train, batch_size=args.batch_size, seed=args.seed)
        try:
            callbacks.append(
                ExactBackupAndRestore(
                    args.resume_dir, data=data, save_freq=args.save_every or "epoch"
                )
            )
        except ValueError as e:
            raise CLIError(f"--resume-dir: {e}") from None
        fit_data = {"x": data.dataset, "steps_per_epoch": data.steps_per_epoch}
    # Keras builds the optimizer and metrics inside the first trace otherwise, and traces twice.
    build_for_fit(net, fit_data["x"], fit_data.get("y"))
    try:
        net.fit(epochs=args.epochs, callbacks=callbacks, verbose=0 if args.quiet else 1, **fit_data)
    except ValueError as e:
        if args.resume_dir is not None and "backup_dir" in str(e):
            raise CLIError(f"--resume-dir: {e}") from None
        raise
    _, accuracy = net.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(f"test accuracy: {accuracy:.4f} on {len(x_test)} held-out images")
    from keras_cnn_ext.training.multi_worker import is_chief

    if strategy is None or is_chief(strategy):
        _common.save_model(net, output)
        print(f"saved {output}")
    return 0
