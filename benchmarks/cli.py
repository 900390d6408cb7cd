"""How long the `keras-cnn-ext` command line takes to answer, and what it prints on stderr.

Each case runs the command line in a fresh Python process (`python -m keras_cnn_ext.cli ...`,
what the console script runs), `--repeats` times after one untimed warm-up, taking turns case by
case; the table gives the median wall time and the number of stderr lines of the last run.
`TF_CPP_MIN_LOG_LEVEL` is removed from the environment, as in a user's shell. Two reference
rows: an empty Python start (`python -c pass`), the floor of any command, and a bare
`import tensorflow`, the cost the fast paths avoid.

Cases: `--help`, an argument error (`summary lenet5 --batch-size 0`), and a successful
`summary lenet5`, quiet by default and with `--verbose`.

Writes `benchmarks/results/cli.md`.

`--compare-with DIR` adds a column for the package found in DIR (e.g. an older checkout
exported with `git archive`), run with `PYTHONPATH=DIR`.

Usage: python benchmarks/cli.py [--repeats N] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

from _results import write_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "cli.md")
CLI = [sys.executable, "-m", "keras_cnn_ext.cli"]
CASES = {
    "`python -c pass` (reference: interpreter start)": [sys.executable, "-c", "pass"],
    "`import tensorflow` (reference)": [sys.executable, "-c", "import tensorflow"],
    "`keras-cnn-ext --help`": [*CLI, "--help"],
    "argument error: `summary lenet5 --batch-size 0`": [
        *CLI,
        "summary",
        "lenet5",
        "--batch-size",
        "0",
    ],
    "`summary lenet5`": [*CLI, "summary", "lenet5"],
    "`summary lenet5 --verbose`": [*CLI, "summary", "lenet5", "--verbose"],
}


def _run(command, env):
    start = time.perf_counter()
    # From the folder that holds the version under test: `python -m` puts the current folder
    # first on sys.path.
    cwd = env.get("PYTHONPATH", ROOT)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--compare-with", default=None, help="a folder holding another version")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")}
    envs = {"this version": env}
    if args.compare_with:
        envs[f"`{args.compare_with}`"] = {**env, "PYTHONPATH": os.path.abspath(args.compare_with)}
    runs = [(name, label) for name in CASES for label in envs]
    times = {run: [] for run in runs}
    last = {}
    for name, label in runs:  # warm-up: page cache, .pyc files
        _run(CASES[name], envs[label])
    for _ in range(args.repeats):
        for name, label in runs:
            seconds, last[name, label] = _run(CASES[name], envs[label])
            times[name, label].append(seconds)

    def stderr_lines(result):
        return len(result.stderr.strip().splitlines()) if result.stderr.strip() else 0

    header = "".join(f" {label}: median time, exit, stderr lines |" for label in envs)
    lines = [
        "# `keras-cnn-ext` start-up",
        "",
        f"| Command |{header}",
        "|---|" + "---:|" * len(envs),
    ]
    for name in CASES:
        cells = "".join(
            f" {statistics.median(times[name, label]):.2f} s, {last[name, label].returncode}, "
            f"{stderr_lines(last[name, label])} |"
            for label in envs
        )
        lines.append(f"| {name} |{cells}")
    lines += [
        "",
        f"Medians of {args.repeats} runs each (fresh processes, cases taking turns, one warm-up "
        f"run each); {datetime.date.today().isoformat()}, {platform.python_version()}, "
        f"TF {version('tensorflow')}, Keras {version('keras')}, {os.cpu_count()} CPU cores "
        "(shared with other jobs: noisy).",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    write_result(table, RESULTS)


if __name__ == "__main__":
    main()
