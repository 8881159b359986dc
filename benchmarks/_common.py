"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """CPU model, cores, Python and platform of this machine."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def limit_threads(threads):
    """Run TensorFlow's CPU kernels on `threads` threads (None: all cores)."""
    import keras

    if threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def recipe_parser(description, name, recipes, steps, filters):
    """The arguments of the recipe benchmarks (stability, isbi2012)."""
    import argparse
    import pathlib

    here = pathlib.Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--data", default=str(here.parent.parent / "shared" / "data" / name)
    )
    p.add_argument("--recipes", nargs="+", default=recipes)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--filters", type=int, default=filters)
    p.add_argument("--input-size", type=int, default=572)
    p.add_argument("--cache", default=str(here / "results" / "weight_cache"))
    p.add_argument(
        "--threads", type=int, help="TensorFlow CPU threads (default: all)"
    )
    return p


def report_header(args, **extra):
    """The common head of a benchmark's JSON: machine, backend, settings."""
    import keras

    limit_threads(args.threads)
    return {
        "machine": machine(),
        "backend": keras.backend.backend(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **extra,
        "runs": [],
    }
