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
