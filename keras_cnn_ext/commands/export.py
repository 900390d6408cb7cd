"""`keras-cnn-ext export`: a `.keras` model to a verified TFLite or ONNX file.

keras-cnn-ext export digits.keras --format tflite --output digits.tflite
keras-cnn-ext export digits.keras --format tflite --quantization int8 --data digits.npz
keras-cnn-ext export digits.keras --format onnx --output digits.onnx
"""

from __future__ import annotations

import os

from keras_cnn_ext.cli import CLIError, load_model_file, positive_int
from keras_cnn_ext.commands import _common

QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_FILE", help="the .keras model to export")
    parser.add_argument(
        "--format", choices=("tflite", "onnx"), default="tflite", help="default tflite"
    )
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="none",
        help="TFLite only: none (float32), dynamic (int8 weights), float16, or int8 "
        "(post-training, calibrated on --data). A QAT model is always written int8 "
        "(default none)",
    )
    _common.add_data_argument(parser, what="calibration and verification")
    parser.add_argument(
        "--calibration-samples",
        type=positive_int("--calibration-samples"),
        default=200,
        help="images used to calibrate int8 (default 200)",
    )
    parser.add_argument(
        "--opset", type=positive_int("--opset"), default=17, help="ONNX opset (default 17)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="do not run the file in its runtime"
    )
    parser.add_argument(
        "--allow-select-ops",
        action="store_true",
        help="TFLite: allow Select TF (Flex) ops; the file then needs the Flex delegate",
    )
    parser.add_argument(
        "--output", default=None, help="the file to write (default: <model>.tflite / .onnx)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _common.add_force_argument(parser)
    _common.add_unsafe_argument(parser)


def run(args):
    from keras_cnn_ext.export import UnsupportedOpsError, VerificationError, to_onnx, to_tflite

    if args.format == "onnx" and args.quantization != "none":
        raise CLIError("--quantization applies to --format tflite only.")
    output = args.output or os.path.splitext(args.model)[0] + "." + args.format
    _common.check_output_file(output, args.force)
    model = load_model_file(args.model, unsafe=args.unsafe)
    sample = None
    if args.data is not None or args.quantization == "int8":
        size, channels = _common.model_image_size(model)
        (x_train, _), (x_test, _), _ = _common.load_data(
            args.data, args.image_size or size, channels
        )
        x_train = _common.fit_images_to_model(x_train, model)
        sample = _common.fit_images_to_model(x_test, model)[:64]
    try:
        if args.format == "onnx":
            report = to_onnx(
                model, output, opset=args.opset, verify=not args.no_verify, sample_data=sample
            )
        else:
            quantization = None if args.quantization == "none" else args.quantization
            calibration = x_train[: args.calibration_samples] if quantization == "int8" else None
            report = to_tflite(
                model,
                output,
                quantization=quantization,
                representative_data=calibration,
                verify=not args.no_verify,
                allow_select_ops=args.allow_select_ops,
                sample_data=sample,
            )
    except (UnsupportedOpsError, VerificationError, ValueError, TypeError) as e:
        raise CLIError(f"cannot export {args.model!r}: {' '.join(str(e).split())}") from None
    print(report.to_json() if args.json else report.to_markdown())
    return 0
