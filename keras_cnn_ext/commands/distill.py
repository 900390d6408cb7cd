"""`keras-cnn-ext distill`: a smaller student trained from a `.keras` teacher.

keras-cnn-ext distill digits.keras --student lenet5 --epochs 5 --output student.keras
"""

from __future__ import annotations

import os

from keras_cnn_ext.cli import CLIError, load_model_file, positive_int
from keras_cnn_ext.commands import _common


def _unit_interval(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise CLIError(f"--alpha must be a number in [0, 1]. Received: {text}")
    return value


def _temperature(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise CLIError(f"--temperature must be a positive number. Received: {text}")
    return value


def add_arguments(parser):
    parser.add_argument("teacher", metavar="TEACHER_FILE", help="the trained .keras teacher")
    parser.add_argument(
        "--student",
        default="student",
        help="the student: `student` (a small net of this package's layers, the default), "
        "another architecture name, or a .keras file",
    )
    _common.add_data_argument(parser)
    parser.add_argument(
        "--epochs", type=positive_int("--epochs"), default=5, help="epochs (default 5)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=64, help="default 64"
    )
    parser.add_argument(
        "--alpha", type=_unit_interval, default=0.5, help="weight of the label loss (0.5)"
    )
    parser.add_argument(
        "--temperature", type=_temperature, default=4.0, help="softmax temperature (4)"
    )
    parser.add_argument(
        "--learning-rate",
        type=_common.positive_float("--learning-rate"),
        default=2e-3,
        help="peak learning rate (0.002)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--output", default=None, help="the student .keras file (default: <teacher>_student.keras)"
    )
    _common.add_force_argument(parser)
    _common.add_unsafe_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_student(name, input_shape, classes, seed=0, unsafe=False):
    if name == "student":
        from keras_cnn_ext.demo import build_student_model

        return build_student_model(input_shape=input_shape, num_classes=classes, seed=seed)
    if name.endswith((".keras", ".h5")) or os.path.isfile(name):
        return load_model_file(name, unsafe=unsafe)
    return _common.build_architecture(name, input_shape, classes, seed=seed)


def run(args):
    import keras
    import numpy as np

    from keras_cnn_ext.distillation import distill

    output = args.output or os.path.splitext(args.teacher)[0] + "_student.keras"
    _common.check_output_file(output, args.force)
    keras.utils.set_random_seed(args.seed)
    teacher = load_model_file(args.teacher, unsafe=args.unsafe)
    size, channels = _common.model_image_size(teacher)
    (x_train, y_train), (x_test, y_test), _ = _common.load_data(
        args.data, args.image_size or size, channels, seed=args.seed
    )
    x_train = _common.fit_images_to_model(x_train, teacher)
    x_test = _common.fit_images_to_model(x_test, teacher)
    classes = teacher.outputs[0].shape[-1]
    student = build_student(args.student, x_train.shape[1:], classes, args.seed, args.unsafe)
    steps = int(np.ceil(len(x_train) / args.batch_size)) * args.epochs
    _common.compile_classifier(student, args.learning_rate, steps)
    try:
        distill(
            _common.logits_model(teacher),
            student,
            x_train,
            y_train,
            alpha=args.alpha,
            temperature=args.temperature,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            verbose=0 if args.quiet else 1,
        )
    except (ValueError, TypeError) as e:
        raise CLIError(f"cannot distill: {' '.join(str(e).split())}") from None
    teacher_acc = _accuracy(teacher, x_test, y_test)
    student_acc = _accuracy(student, x_test, y_test)
    print(
        f"test accuracy: teacher {teacher_acc:.4f} ({teacher.count_params():,} params), "
        f"student {student_acc:.4f} ({student.count_params():,} params)"
    )
    _common.save_model(student, output)
    print(f"saved {output}")
    return 0


def _accuracy(model, x, y):
    import numpy as np

    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))
