"""`keras-cnn-ext explain`: an attribution overlay of one image file, written as a PNG.

keras-cnn-ext explain digits.keras seven.png --out seven_cam.png
keras-cnn-ext explain model.keras cat.jpg --method grad_cam_plus_plus --resize
"""

from __future__ import annotations

from keras_cnn_ext.cli import CLIError, load_model_file

METHOD_NAMES = (
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_grad_cam",
    "saliency",
    "guided_backprop",
    "integrated_gradients",
    "occlusion",
)


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_FILE", help="the .keras model")
    parser.add_argument("image", metavar="IMAGE", help="the image file (PNG, JPEG, ...)")
    parser.add_argument(
        "--method", default="grad_cam", help=f"one of {', '.join(METHOD_NAMES)} (grad_cam)"
    )
    parser.add_argument(
        "--out", default=None, help="the PNG to write (default: <image>_<method>.png)"
    )
    parser.add_argument("--layer", default=None, help="target layer (default: automatic)")
    parser.add_argument(
        "--class-index", type=int, default=None, help="class to explain (default: the top one)"
    )
    parser.add_argument(
        "--resize", action="store_true", help="resize the image to the model's input size"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load the model with safe_mode=False: runs the Python code of Lambda layers "
        "stored in the file. Only for files you trust",
    )


def run(args):
    import os

    from keras_cnn_ext.interpret import METHODS, explain_file

    if args.method not in METHODS:
        raise CLIError(f"--method must be one of {sorted(METHODS)}. Received: {args.method!r}")
    if not os.path.isfile(args.image):
        raise CLIError(f"cannot read image {args.image!r}: no such file.")
    if args.out is not None and os.path.exists(args.out) and not args.force:
        raise CLIError(f"--out: {args.out!r} exists; pass --force to overwrite it.")
    model = load_model_file(args.model, unsafe=args.unsafe)
    try:
        result = explain_file(
            model,
            args.image,
            method=args.method,
            out=args.out,
            layer=args.layer,
            class_index=args.class_index,
            resize=args.resize,
        )
    except (ValueError, TypeError) as e:
        raise CLIError(" ".join(str(e).split())) from None
    layer = f", layer {result['layer']}" if result.get("layer") else ""
    print(
        f"{result['method']}: class {result['class_index']} (score {result['score']:.4f}"
        f"{layer}); wrote {result['out']}"
    )
    return 0
