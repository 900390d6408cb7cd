"""Attribution methods on a MobileNet at 96x96, batch 16: time per image, with and without XLA.

Every method of `keras_cnn_ext.interpret` runs on `keras.applications.MobileNet` (alpha 1.0,
random weights, linear 1000-class head) as a flat Functional model, and Grad-CAM also on the same
MobileNet nested as a base inside a Functional model (the transfer-learning shape, where our
two-stage path is used). Each is timed in a plain `tf.function` and with `jit_compile=True`; the
first calls (tracing, XLA compilation) are warm-up and not timed. The table gives the median time
of one batch divided by the batch size.

tf-keras-vis (0.8.7, the last release, tf.keras only) is timed on the flat model where it runs:
it needs `TF_USE_LEGACY_KERAS=1`, which changes `tf.keras` for the whole process, so it runs in a
subprocess of this script on a tf_keras copy of the same architecture. It is not a dependency:
install it where the subprocess can import it (e.g. `pip install --target DIR --no-deps
tf-keras-vis deprecated` and `--tf-keras-vis-path DIR`); without it the column says so.

Writes `benchmarks/results/interpret.md`.

Usage: python benchmarks/interpret.py [--quick] [--repeats N] [--methods a,b] [--xla-methods a,b]
       [--tf-keras-vis-path DIR] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from _results import write_result

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "interpret.md")
BATCH, SIZE = 16, 96
# Method settings (the defaults of IG, SmoothGrad and occlusion are heavier; these are noted).
OPTIONS = {
    "saliency": {},
    "smoothgrad": {"samples": 10},
    "integrated_gradients": {"steps": 20},
    "guided_backprop": {},
    "grad_cam": {},
    "grad_cam_plus_plus": {},
    "guided_grad_cam": {},
    "occlusion": {"window": 24, "strides": 12},
}


def images(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype("float32")


def build_models(keras):
    keras.utils.set_random_seed(0)
    flat = keras.applications.MobileNet(
        input_shape=(SIZE, SIZE, 3), weights=None, classifier_activation=None
    )
    base = keras.applications.MobileNet(
        input_shape=(SIZE, SIZE, 3), weights=None, include_top=False, name="base"
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    nested = keras.Model(inputs, keras.layers.Dense(1000)(x), name="nested")
    return flat, nested


NESTED = "grad_cam (nested base)"


def ours(plan, repeats, progress):
    """Times each `(method, jit)` of `plan` in turn; `progress(rows)` after each (partial tables)."""
    import keras
    from _timing import interleaved_medians

    from keras_cnn_ext import interpret

    flat, nested = build_models(keras)
    x = images()
    classes = np.arange(BATCH) % 1000
    rows = {name: {} for name, _ in plan}
    for name, jit in plan:
        if name == NESTED:
            method = interpret.GradCAM(nested, jit_compile=jit, batch_size=BATCH)
        elif name == "smoothgrad":
            base = interpret.Saliency(flat, jit_compile=jit, batch_size=BATCH)
            method = interpret.SmoothGrad(base, samples=OPTIONS[name]["samples"], seed=0)
        else:
            options = {**OPTIONS[name], "jit_compile": jit, "batch_size": BATCH}
            method = interpret.get_method(name)(flat, **options)
        timers = {name: lambda m=method: m.attribute(x, classes)}
        value = interleaved_medians(timers, repeats, rounds=1, warmup=1, settle=False)[name]
        rows[name]["xla" if jit else "tf.function"] = value
        progress(rows)
    return rows


PEER_SCRIPT = r"""
import json, os, sys, time, statistics
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tf_keras as keras
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.scores import CategoricalScore
batch, size, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
flat = keras.applications.MobileNet(input_shape=(size, size, 3), weights=None,
                                    classifier_activation=None)
x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
score = CategoricalScore(list(np.arange(batch) % 1000))
calls = {
    "saliency": lambda s=Saliency(flat): s(score, x),
    "smoothgrad": lambda s=Saliency(flat): s(score, x, smooth_samples=10, smooth_noise=0.15),
    "grad_cam": lambda g=Gradcam(flat): g(score, x, penultimate_layer="conv_pw_13_relu", seek_penultimate_conv_layer=False),
    "grad_cam_plus_plus": lambda g=GradcamPlusPlus(flat): g(
        score, x, penultimate_layer="conv_pw_13_relu", seek_penultimate_conv_layer=False),
}
base = keras.applications.MobileNet(input_shape=(size, size, 3), weights=None,
                                    include_top=False)
inputs = keras.Input((size, size, 3))
nested = keras.Model(inputs, keras.layers.Dense(1000)(keras.layers.GlobalAveragePooling2D()(base(inputs))))
calls["grad_cam (nested base)"] = lambda g=Gradcam(nested): g(score, x, penultimate_layer="conv_pw_13_relu", seek_penultimate_conv_layer=False)
out = {}
for name, fn in calls.items():
    try:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
        out[name] = 1e3 * statistics.median(times)
    except Exception as e:  # a failing peer is a result
        out[name] = "error: " + type(e).__name__ + ": " + str(e).splitlines()[0][:80]
print("RESULT " + json.dumps(out))
"""


def peer(repeats, path):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    if path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    probe = subprocess.run(
        [sys.executable, "-c", "import tf_keras_vis, tf_keras"], env=env, capture_output=True
    )
    if probe.returncode:
        return None, "tf-keras-vis (or tf_keras) is not importable: not timed"
    run = subprocess.run(
        [sys.executable, "-c", PEER_SCRIPT, str(BATCH), str(SIZE), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return None, f"tf-keras-vis run failed: {run.stderr.strip().splitlines()[-1][:120]}"
    return json.loads(lines[-1][len("RESULT ") :]), None


def cell(value):
    if value is None:
        return "not timed"
    if isinstance(value, str):
        return value
    return f"{value / BATCH:.1f}"


def table(rows, peer_rows, peer_note, repeats):
    lines = [
        f"Time per image (ms) = median of {repeats} calls on a batch of {BATCH} / {BATCH}; "
        f"MobileNet alpha 1.0 at {SIZE}x{SIZE}, random weights, 1000 linear outputs.",
        "",
        "| method | ours tf.function | ours XLA | tf-keras-vis 0.8.7 |",
        "|---|---:|---:|---:|",
    ]
    for name, value in rows.items():
        theirs = cell(peer_rows.get(name)) if peer_rows is not None else None
        lines.append(
            f"| {name} | {cell(value.get('tf.function'))} | {cell(value.get('xla'))} | "
            f"{theirs or 'not timed'} |"
        )
    notes = [
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in OPTIONS.items() if v) + ".",
        "tf-keras-vis runs in a subprocess with TF_USE_LEGACY_KERAS=1 on a tf_keras MobileNet of "
        "the same architecture (its own tf.function, no XLA option).",
    ]
    if peer_note:
        notes.append(peer_note + ".")
    return "\n".join(lines + notes) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--methods",
        default=",".join([*OPTIONS, NESTED]),
        help="comma-separated methods timed without XLA (default: all)",
    )
    parser.add_argument(
        "--xla-methods", default=None, help="comma-separated methods timed with XLA (default: same)"
    )
    parser.add_argument("--quick", action="store_true", help="Grad-CAM and saliency only")
    parser.add_argument("--tf-keras-vis-path", default=None)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    methods = ["grad_cam", "saliency", NESTED] if args.quick else args.methods.split(",")
    xla = methods if args.xla_methods is None else [m for m in args.xla_methods.split(",") if m]
    unknown = sorted(set(methods + xla) - {*OPTIONS, NESTED})
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {[*OPTIONS, NESTED]}")
    peer_rows, note = None, "tf-keras-vis not run (--no-peer)"
    if not args.no_peer:
        peer_rows, note = peer(args.repeats, args.tf_keras_vis_path)

    def progress(rows):
        write_result(table(rows, peer_rows, note, args.repeats), args.out)

    plan = [(m, False) for m in methods] + [(m, True) for m in xla]
    rows = ours(plan, args.repeats, progress)
    text = table(rows, peer_rows, note, args.repeats)
    print(text)
    write_result(text, args.out)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
