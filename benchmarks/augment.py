"""Throughput of the augmentation pipeline against elasticdeform.

Measures, in one run on one machine:

1. samples/s of `keras_unet.data.make_training_dataset` producing the paper's
   training samples: 572x572 input tile with 388x388 label and weight tiles,
   elastic deformation (3x3 grid, sigma 10 px) + rotation + flips +
   gray-value variation, pinned to ONE CPU core and on all cores;
2. samples/s of elasticdeform's `deform_random_grid` doing the deformation
   alone (3 points, sigma 10, linear image, nearest label and weight, three
   572x572 arrays) on one core. elasticdeform's wheels need numpy<2, so it
   runs in a separate Python given by ``--elasticdeform-python`` (make one
   with ``python -m venv ed && ed/bin/pip install "numpy<2" elasticdeform``);
3. training steps/s of the paper-size model (572 tile, batch 1) fed by the
   pipeline, to tell whether the pipeline keeps up with training.

Run: ``python benchmarks/augment.py --elasticdeform-python ed/bin/python``.
Prints a table and writes ``benchmarks/results/augment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from _common import machine  # noqa: E402 (benchmarks/ is on sys.path)

HERE = pathlib.Path(__file__).resolve().parent

ELASTICDEFORM_SNIPPET = r"""
import os, sys, time, json
os.sched_setaffinity(0, {int(sys.argv[1])})
import numpy as np, elasticdeform
rng = np.random.default_rng(0)
x = rng.random((572, 572)).astype(np.float32)
y = rng.integers(0, 2, (572, 572)).astype(np.float32)
w = rng.random((572, 572)).astype(np.float32)
def deform():
    elasticdeform.deform_random_grid([x, y, w], sigma=10, points=3,
                                     order=[1, 0, 0])
for _ in range(3):
    deform()
n = int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    deform()
dt = time.perf_counter() - t
print(json.dumps({"samples_per_s": n / dt, "numpy": np.__version__,
                  "elasticdeform": getattr(elasticdeform, "__version__", "?")}))
"""


def _pipeline(n_images=4):
    from keras_unet import data
    from keras_unet.datasets import synthetic_cells

    images, instances = synthetic_cells(n_images, size=512, seed=0)
    labels = (instances > 0).astype("int32")
    weights = (1.0 + 9.0 * (instances == 0)).astype("float32")
    return data.make_training_dataset(
        images, labels, weights, input_size=572, depth=4, seed=0
    )


def child_pipeline(cores, samples):
    """Samples/s of the full pipeline, pinned to `cores` CPUs."""
    os.sched_setaffinity(0, set(range(cores)))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    it = iter(_pipeline())
    for _ in range(10):  # warm-up: tracing, XLA compilation, autotuning
        next(it)
    t = time.perf_counter()
    for _ in range(samples):
        x, y, w = next(it)
    dt = time.perf_counter() - t
    return {"samples_per_s": samples / dt, "cores": cores, "samples": samples}


def child_train(steps):
    """Training steps/s of the paper's model fed by the pipeline."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from keras_unet.model import build_unet

    model = build_unet()
    model.compile(
        keras.optimizers.SGD(1e-3, momentum=0.99),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ds = _pipeline()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # compile
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    return {"steps_per_s": steps / dt, "steps": steps, "batch": 1, "tile": 572}


def run_child(*args):
    out = subprocess.run(
        [sys.executable, __file__, "--child", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--elasticdeform-python", default=None)
    p.add_argument("--out", default=str(HERE / "results" / "augment.json"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "pipeline":
            result = child_pipeline(int(rest[0]), int(rest[1]))
        else:
            result = child_train(int(rest[0]))
        print(json.dumps(result))
        return

    cores = len(os.sched_getaffinity(0))
    results = {"machine": machine()}
    results["pipeline_1core"] = run_child("pipeline", 1, args.samples)
    results["pipeline_all_cores"] = run_child("pipeline", cores, args.samples)
    if args.elasticdeform_python:
        out = subprocess.run(
            [args.elasticdeform_python, "-c", ELASTICDEFORM_SNIPPET, "0", "50"],
            check=True,
            capture_output=True,
            text=True,
        )
        results["elasticdeform_1core"] = json.loads(out.stdout.strip())
        results["ratio_per_core"] = (
            results["pipeline_1core"]["samples_per_s"]
            / results["elasticdeform_1core"]["samples_per_s"]
        )
    if args.train_steps:
        results["train_paper_model"] = run_child("train", args.train_steps)
        results["pipeline_over_training"] = (
            results["pipeline_all_cores"]["samples_per_s"]
            / results["train_paper_model"]["steps_per_s"]
        )
    print(json.dumps(results, indent=2))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
