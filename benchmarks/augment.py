"""Throughput of the augmentation pipeline on every backend, and the old one.

Measures, in one run on one machine, samples/s of
`keras_unet.data.stream.make_training_dataset` producing the paper's training
samples: 572x572 input tile with 388x388 label and weight tiles, elastic
deformation (3x3 grid, sigma 10 px) + rotation + flips + gray-value
variation, from four 512x512 images:

1. the TensorFlow backend's tf.data pipeline, pinned to ONE CPU core and on
   all cores;
2. the same stream as a PyDataset on JAX and torch (CPU here; on a GPU
   machine the warp runs on the GPU), one core;
3. the baseline: the previous TensorFlow-only pipeline, extracted with
   ``git archive`` from ``--baseline-ref`` and run the same way, one core;
4. optionally elasticdeform's `deform_random_grid` doing the deformation
   alone (three 572x572 arrays), one core. Its wheels need numpy<2, so it
   runs in a separate Python given by ``--elasticdeform-python`` (``python
   -m venv ed && ed/bin/pip install "numpy<2" elasticdeform``).

Every measurement runs in its own subprocess (one backend per process).
Run: ``python benchmarks/augment.py`` (about 3 minutes of CPU; on a GPU
machine without TensorFlow add ``--backends jax,torch``). Prints a table
and writes ``benchmarks/results/augment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _common import machine  # noqa: E402 (benchmarks/ is on sys.path)

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent

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


def child(cores, samples, pipeline, batch_size):
    """Samples/s of the pipeline in this process, pinned to `cores` CPUs."""
    os.sched_setaffinity(0, set(range(cores)))
    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    from keras_unet.data import stream
    from keras_unet.data.synthetic import synthetic_cells

    images, instances = synthetic_cells(4, size=512, seed=0)
    labels = (instances > 0).astype("int32")
    weights = (1.0 + 9.0 * (instances == 0)).astype("float32")
    kw = dict(input_size=572, depth=4, seed=0, batch_size=batch_size)
    if pipeline != "old":
        kw["pipeline"] = pipeline
    ds = stream.make_training_dataset(images, labels, weights, **kw)
    if pipeline == "py_dataset":
        batches = (ds[b] for b in range(10**9))
    else:
        batches = iter(ds)
    for _ in range(max(2, 10 // batch_size)):  # compile, autotune
        keras.ops.convert_to_numpy(next(batches)[0])
    n = max(1, samples // batch_size)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        x, y, w = next(batches)
    np.asarray(keras.ops.convert_to_numpy(x))  # wait for the device
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    import keras_unet

    result = {"samples_per_s": n * batch_size / dt, "cores": cores}
    # per CPU-second of this process: robust to other jobs on the machine
    result["samples_per_cpu_s"] = n * batch_size / cpu
    result["package"] = str(pathlib.Path(keras_unet.__file__).parent)
    result.update(samples=n * batch_size, batch_size=batch_size)
    if pipeline == "py_dataset":  # the host part alone (numpy)
        t = time.perf_counter()
        for i in range(20):
            ds.sampler(i)
        result["host_ms_per_sample"] = (time.perf_counter() - t) / 20 * 1e3
    return result


def run_child(backend, *args, pythonpath=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (pythonpath, str(REPO), env.get("PYTHONPATH")) if p
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository: PYTHONPATH decides
        timeout=900,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["backend"] = backend
    return result


def old_package(ref):
    """Extract keras_unet at git `ref` into a temporary folder."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="keras_unet_old_"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "keras_unet"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return str(folder)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--baseline-ref", default="8610363")
    p.add_argument(
        "--backends",
        default="tensorflow,jax,torch",
        help="comma-separated; a GPU machine without TensorFlow: jax,torch",
    )
    p.add_argument("--elasticdeform-python", default=None)
    p.add_argument("--out", default=str(HERE / "results" / "augment.json"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        cores, samples, pipeline, batch = args.child
        print(json.dumps(child(int(cores), int(samples), pipeline, int(batch))))
        return

    cores = len(os.sched_getaffinity(0))
    n = args.samples
    results = {"machine": machine(), "started": time.strftime("%F %T")}
    runs = {
        "tf_data_1core": ("tensorflow", 1, n, "tf.data", 1),
        "tf_data_all_cores": ("tensorflow", cores, n, "tf.data", 1),
        "jax_py_dataset_1core": ("jax", 1, n // 2, "py_dataset", 1),
        "jax_py_dataset_1core_batch4": ("jax", 1, n // 2, "py_dataset", 4),
        "torch_py_dataset_1core": ("torch", 1, n // 4, "py_dataset", 1),
    }
    backends = args.backends.split(",")
    runs = {k: v for k, v in runs.items() if v[0] in backends}
    if args.baseline_ref and "tensorflow" in backends:
        old = old_package(args.baseline_ref)
        results["baseline_ref"] = args.baseline_ref
        results["old_tf_data_1core"] = run_child(
            "tensorflow", 1, n, "old", 1, pythonpath=old
        )
    for name, (backend, *rest) in runs.items():
        results[name] = run_child(backend, *rest)
    if "old_tf_data_1core" in results:
        new, old = results["tf_data_1core"], results["old_tf_data_1core"]
        results["ratio_new_over_old_1core"] = (
            new["samples_per_s"] / old["samples_per_s"]
        )
        results["ratio_new_over_old_per_cpu_s"] = (
            new["samples_per_cpu_s"] / old["samples_per_cpu_s"]
        )
    if args.elasticdeform_python:
        out = subprocess.run(
            [args.elasticdeform_python, "-c", ELASTICDEFORM_SNIPPET, "0", "50"],
            check=True,
            capture_output=True,
            text=True,
        )
        results["elasticdeform_1core"] = json.loads(out.stdout.strip())
    print(f"{'pipeline':30s} {'samples/s':>10s} {'per CPU-s':>10s}")
    for name, value in results.items():
        if isinstance(value, dict) and "samples_per_s" in value:
            per_cpu = value.get("samples_per_cpu_s", float("nan"))
            print(f"{name:30s} {value['samples_per_s']:10.1f} {per_cpu:10.1f}")
    if "ratio_new_over_old_1core" in results:
        print(
            f"new / old, 1 core: {results['ratio_new_over_old_1core']:.2f} "
            f"(per CPU-s {results['ratio_new_over_old_per_cpu_s']:.2f})"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
