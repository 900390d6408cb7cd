"""`keras-cnn-ext quantize`: QAT fine-tuning of a `.keras` model, written as an int8 TFLite file.

keras-cnn-ext quantize digits.keras --epochs 1 --output digits_int8.tflite
keras-cnn-ext quantize model.keras --data photos/ --keras-output model_qat.keras
"""

from __future__ import annotations

import os

from keras_cnn_ext.cli import CLIError, load_model_file, positive_int
from keras_cnn_ext.commands import _common


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_FILE", help="the float .keras model")
    _common.add_data_argument(parser, what="fine-tuning and test")
    parser.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        default=1,
        help="quantization-aware fine-tuning epochs (default 1)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=64, help="default 64"
    )
    parser.add_argument(
        "--learning-rate",
        type=_common.positive_float("--learning-rate"),
        default=1e-4,
        help="fine-tuning learning rate (1e-4)",
    )
    parser.add_argument(
        "--output", default=None, help="the int8 .tflite file (default: <model>_int8.tflite)"
    )
    parser.add_argument(
        "--keras-output", default=None, help="also save the QAT Keras model here (.keras)"
    )
    parser.add_argument("--int8-io", action="store_true", help="int8 input and output tensors too")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _common.add_force_argument(parser)
    _common.add_unsafe_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def quantize_and_export(
    model,
    x_train,
    y_train,
    x_test,
    y_test,
    path,
    epochs=1,
    batch_size=64,
    learning_rate=1e-4,
    int8_io=False,
    verbose=1,
):
    """QAT copy of `model`, fine-tuned, exported to an int8 TFLite file; returns both and the report."""
    import numpy as np

    from keras_cnn_ext.export import to_tflite
    from keras_cnn_ext.quantization import quantize_model
    from keras_cnn_ext.training import build_for_fit

    try:
        qat = quantize_model(model)
    except (ValueError, TypeError) as e:
        raise CLIError(f"cannot quantize this model: {e}") from None
    steps = int(np.ceil(len(x_train) / batch_size)) * epochs
    _common.compile_classifier(qat, learning_rate, steps)
    build_for_fit(qat, x_train, y_train)  # one trace of the first step, not two
    qat.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
    report = to_tflite(qat, path, int8_io=int8_io, sample_data=x_test[:64], on_mismatch="warn")
    return qat, report


def run(args):
    import keras

    from keras_cnn_ext.export import run_tflite

    output = args.output or os.path.splitext(args.model)[0] + "_int8.tflite"
    _common.check_output_file(output, args.force)
    if args.keras_output:
        _common.check_output_file(args.keras_output, args.force, "--keras-output")
    keras.utils.set_random_seed(args.seed)
    model = load_model_file(args.model, unsafe=args.unsafe)
    size, channels = _common.model_image_size(model)
    (x_train, y_train), (x_test, y_test), _ = _common.load_data(
        args.data, args.image_size or size, channels, seed=args.seed
    )
    x_train = _common.fit_images_to_model(x_train, model)
    x_test = _common.fit_images_to_model(x_test, model)
    qat, report = quantize_and_export(
        model,
        x_train,
        y_train,
        x_test,
        y_test,
        output,
        args.epochs,
        args.batch_size,
        args.learning_rate,
        args.int8_io,
        verbose=0 if args.quiet else 1,
    )
    if args.keras_output:
        _common.save_model(qat, args.keras_output)
        print(f"saved {args.keras_output}")
    float_acc = _accuracy(model.predict(x_test, batch_size=256, verbose=0), y_test)
    int8_acc = _accuracy(run_tflite(output, x_test), y_test)
    print(report.to_markdown())
    print(
        f"test accuracy: float Keras {float_acc:.4f}, int8 TFLite {int8_acc:.4f} "
        f"({len(x_test)} images); wrote {output} ({report.file_size:,} bytes)"
    )
    return 0


def _accuracy(outputs, labels):
    import numpy as np

    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return float(np.mean(np.argmax(np.asarray(outputs), axis=-1) == labels))
