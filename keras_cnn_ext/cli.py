"""The `keras-cnn-ext` command line.

Subcommands live in `SUBCOMMANDS`, a dict of name -> (help, add_arguments, run): adding one is a
function that declares its arguments, a function that runs it and returns an exit code, and one
dict entry.

    keras-cnn-ext demo --epochs 3
    keras-cnn-ext summary keras.applications.ResNet50
    keras-cnn-ext summary vgg16 --input-shape 64,64,3 --batch-size 8
    keras-cnn-ext summary path/to/model.keras --json

Errors the user can fix (unknown architecture, unreadable file, bad shape) print one line on
stderr and exit with status 2, without a traceback.

Start-up: this module imports only the standard library, so `--help` and argument errors
answer without importing TensorFlow. A subcommand imports TensorFlow once its arguments are
parsed, with TensorFlow's C++ start-up lines (CUDA probing, CPU-feature notes) hidden unless
`--verbose` is given: `TF_CPP_MIN_LOG_LEVEL` is set before the import, and the lines TensorFlow
prints before its logging is initialised, which ignore that variable, are held back and shown
only if the import fails.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile

EXIT_USAGE = 2


class CLIError(Exception):
    """An error reported as one line on stderr with exit status 2."""


def parse_shape(text):
    """Parses `"224,224,3"` (or `"224x224x3"`) into a tuple of positive ints."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise CLIError(
            f"--input-shape must be positive integers separated by commas, e.g. 224,224,3. "
            f"Received: {text!r}"
        )
    return shape


def positive_int(option):
    """An argparse `type` for `option` that accepts integers >= 1 (checked before TF loads)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise CLIError(f"{option} must be a positive integer. Received: {text}")
        return value

    return parse


def _call_builder(builder, input_shape, label, **extra):
    """Calls `builder` with `weights=None`, `input_shape` and those of `extra` it accepts."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        params = {}
    # Table-row builders (`resnet20`, ...) forward **kwargs to their family's builder.
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {}
    if "weights" in params or takes_any:
        kwargs["weights"] = None  # never download: only the architecture is needed
    if input_shape is not None:
        if "input_shape" not in params and not takes_any:
            raise CLIError(f"{label} does not take an input shape; drop --input-shape.")
        kwargs["input_shape"] = input_shape
    kwargs.update({k: v for k, v in extra.items() if k in params or takes_any})
    try:
        return builder(**kwargs)
    except Exception as e:  # a builder's own validation error, shown without a traceback
        raise CLIError(f"could not build {label}: {type(e).__name__}: {e}") from None


def _find_builder(name):
    """Looks `name` up in keras_cnn_ext.models, then keras.applications."""
    import keras

    if name.startswith("keras.applications."):
        attr = name[len("keras.applications.") :]
        builder = getattr(keras.applications, attr, None)
        if not callable(builder):
            raise CLIError(f"unknown architecture {name!r}: keras.applications has no {attr!r}.")
        return builder, name
    try:
        import keras_cnn_ext.models as models
    except Exception:  # a broken optional floor must not hide keras.applications
        models = None
    if models is not None:
        get_builder = getattr(models, "get_builder", None)
        if get_builder is not None:
            try:
                return get_builder(name), f"keras_cnn_ext.models {name!r}"
            except (ValueError, TypeError):
                pass
        builder = getattr(models, name, None)
        if callable(builder):
            return builder, f"keras_cnn_ext.models.{name}"
    builder = getattr(keras.applications, name, None)
    if callable(builder):
        return builder, f"keras.applications.{name}"
    known = ""
    if models is not None and hasattr(models, "list_builders"):
        known = " Known keras_cnn_ext names: " + ", ".join(models.list_builders()) + "."
    raise CLIError(
        f"unknown architecture {name!r}: not a file, not a keras_cnn_ext.models builder and "
        f"not a keras.applications model (e.g. keras.applications.ResNet50).{known}"
    )


def load_model_file(path, unsafe=False):
    """Loads a `.keras`/`.h5` file with `safe_mode=True` (no Lambda code runs) unless `unsafe`.

    A missing, corrupt or truncated file, or one that needs `--unsafe`, raises a one-line
    `CLIError`.
    """
    if not os.path.isfile(path):
        raise CLIError(f"cannot read model file {path!r}: no such file.")
    import keras

    import keras_cnn_ext.layers  # noqa: F401 - registers our layers for deserialisation

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:
        message = " ".join(str(e).split())
        if len(message) > 300:
            message = message[:300] + "..."
        hint = " (pass --unsafe only if you trust the file)" if "safe_mode" in message else ""
        raise CLIError(
            f"cannot read model file {path!r}: {type(e).__name__}: {message}{hint}"
        ) from None


def load_target(target, input_shape=None, unsafe=False):
    """Returns a built Keras model from a `.keras`/`.h5` path or an architecture name.

    Files load with Keras' `safe_mode=True` unless `unsafe` (the `--unsafe` flag).
    """
    looks_like_file = os.path.sep in target or target.endswith((".keras", ".h5", ".hdf5"))
    if os.path.exists(target) or looks_like_file:
        return load_model_file(target, unsafe=unsafe)
    builder, label = _find_builder(target)
    return _call_builder(builder, input_shape, label)


# ---------------------------------------------------------------------------------------------
# summary


def _add_summary_arguments(parser):
    parser.add_argument(
        "target",
        metavar="ARCH|MODEL_FILE",
        help="an architecture name (keras_cnn_ext.models builder, or keras.applications.NAME) "
        "or a saved .keras/.h5 model",
    )
    parser.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        help="input shape without the batch, e.g. 224,224,3 (default: the model's own)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        default=1,
        help="batch size N (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load a .keras file with safe_mode=False: runs the Python code of Lambda layers "
        "stored in the file. Only for files you trust",
    )


def _run_summary(args):
    from keras_cnn_ext.analysis import profile

    input_shape = args.input_shape
    model = load_target(args.target, input_shape, unsafe=args.unsafe)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same messages are part of the printed report
        try:
            result = profile(model, input_shape=input_shape, batch_size=args.batch_size)
        except (ValueError, TypeError) as e:
            hint = (
                " Use --input-shape, e.g. --input-shape 224,224,3."
                if "input_shape" in str(e)
                else ""
            )
            raise CLIError(f"cannot profile {args.target!r}: {e}{hint}") from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        print(result.table())
    return 0


def _lazy(module):
    """`(add_arguments, run)` of `keras_cnn_ext.commands.<module>`, imported on first call.

    The command modules import only the standard library at import time, so building the
    parser for `--help` never imports TensorFlow.
    """

    def command():
        import importlib

        return importlib.import_module(f"keras_cnn_ext.commands.{module}")

    def add_arguments(parser):
        return command().add_arguments(parser)

    def run(args):
        return command().run(args)

    return add_arguments, run


SUBCOMMANDS = {
    "demo": (
        "the end-to-end demo on 5,000 real MNIST digits: train a net of keras_cnn_ext layers, "
        "profile, QAT, int8/float TFLite and ONNX export, a distilled student, Grad-CAM, report",
        *_lazy("demo"),
    ),
    "summary": (
        "parameters, MACs/FLOPs, activation memory and receptive field, layer by layer",
        _add_summary_arguments,
        _run_summary,
    ),
    "train": (
        "train an architecture or a .keras model on a dataset folder or .npz",
        *_lazy("train"),
    ),
    "quantize": (
        "quantization-aware fine-tuning of a .keras model, written as an int8 TFLite file",
        *_lazy("quantize"),
    ),
    "export": (
        "export a .keras model to TFLite (float/dynamic/float16/int8) or ONNX, verified",
        *_lazy("export"),
    ),
    "explain": (
        "Grad-CAM (or another attribution) overlay of one image file, as a PNG",
        *_lazy("explain"),
    ),
    "distill": (
        "train a smaller student from a .keras teacher by knowledge distillation",
        *_lazy("distill"),
    ),
    "bench": (
        "latency and throughput of one model in Keras, TFLite float/int8 and ONNX Runtime",
        *_lazy("bench"),
    ),
}


def _add_verbose_argument(parser, default):
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="show TensorFlow's start-up and log lines (hidden by default)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-cnn-ext", description="Tools of the keras_cnn_ext package."
    )
    _add_verbose_argument(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        # Accepted after the subcommand too; SUPPRESS keeps a flag given before it.
        _add_verbose_argument(command, default=argparse.SUPPRESS)
        command.set_defaults(_run=run)
    return parser


def import_tensorflow(verbose=False):
    """Imports TensorFlow for a subcommand, quietly unless `verbose`.

    Without `verbose`: `TF_CPP_MIN_LOG_LEVEL` defaults to 3 (a value the user set is kept), the
    lines TensorFlow's C++ libraries write to file descriptor 2 during the import (before absl
    logging starts, so the variable does not reach them) go to a temporary file that is shown
    only if the import fails, and TensorFlow's Python logger is set to errors only.
    """
    if "tensorflow" in sys.modules:
        return
    if verbose:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryFile() as held:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable descriptor 2: import as is
            saved = None
        if saved is not None:
            os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            if saved is not None:
                os.dup2(saved, 2)
                held.seek(0)
                os.write(2, held.read())
            raise
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
    tf.get_logger().setLevel("ERROR")


def main(argv=None):
    """Entry point of the `keras-cnn-ext` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # Option values are checked here (argparse `type`s raising CLIError), before TF loads.
        args = build_parser().parse_args(argv)
        import_tensorflow(verbose=args.verbose)
        return args._run(args)
    except CLIError as e:
        command = next((a for a in argv if a in SUBCOMMANDS), None)
        prefix = "keras-cnn-ext" if command is None else f"keras-cnn-ext {command}"
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    # `python -m keras_cnn_ext.cli`: run the imported module's main, so that the CLIError the
    # command modules raise (keras_cnn_ext.cli.CLIError) is the class caught there.
    from keras_cnn_ext.cli import main as _main

    sys.exit(_main())
