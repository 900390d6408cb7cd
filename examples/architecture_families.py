"""One model of each architecture family, built from the package's tables, profiled and run.

    python examples/architecture_families.py --input-size 64

Every builder keeps `keras.applications`' signature (`input_shape`, `classes`, `weights`, ...).
For each family the script builds one member, counts parameters and MACs with
`keras_cnn_ext.analysis.profile`, runs a forward pass, and prints a table.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_cnn_ext.analysis import profile
from keras_cnn_ext.models import get_builder

# name -> extra arguments; one member per family.
FAMILIES = {
    "lenet5": {},
    "alexnet": {},
    "vgg11": {},
    "resnet20": {},
    "seresnet18": {},
    "densenetbc": {},
    "mobilenetv1": {},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated names")
    args = parser.parse_args(argv)

    rows = []
    shape = (args.input_size, args.input_size, 3)
    images = np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype("float32")
    for name in args.families.split(","):
        model = get_builder(name)(
            input_shape=shape, classes=args.classes, weights=None, **FAMILIES.get(name, {})
        )
        outputs = model.predict(images, verbose=0)
        result = profile(model)
        rows.append((name, model.name, model.count_params(), result.macs, outputs.shape))
        keras.backend.clear_session()
    print(f"| builder | model | params | MACs at {args.input_size}x{args.input_size} | output |")
    print("|---|---|---|---|---|")
    for name, model_name, params, macs, out_shape in rows:
        print(f"| {name} | {model_name} | {params:,} | {macs:,} | {out_shape} |")
    return rows


if __name__ == "__main__":
    main()
