"""keras_unet's training metrics against Keras' own, on U-Net batches.

Layout issue 20 asked whether Keras' ``IoU(target_class_ids=[1])`` and
``SparseCategoricalAccuracy`` can replace `ForegroundIoU` and `PixelError`.
This compares, on the same batches of valid-padding logits with per-pixel
weights (weight 0 = ignored, as the training stream gives them):

- the values (weighted, as compiled in ``weighted_metrics``);
- the time of ``update_state`` on a 4 x 388 x 388 batch (median of 20,
  ratio in one run);
- what each accepts: a one-channel sigmoid model, labels as (B, H, W, 1).

Run: ``python benchmarks/keras_metrics.py`` (about 1 minute on 2 CPU cores);
it prints a table and writes ``benchmarks/results/keras_metrics.json``.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
import time

import keras
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from keras_unet.model.metrics import ForegroundIoU, PixelError  # noqa: E402


def batch(seed, k=2, shape=(4, 388, 388)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (*shape, k)).astype("float32")
    labels = rng.integers(0, max(k, 2), shape).astype("int32")
    weights = (rng.random(shape) > 0.1).astype("float32") * rng.uniform(
        0.5, 10, shape
    ).astype("float32")
    return labels, logits, weights


def value(metric, labels, logits, weights):
    metric.reset_state()
    metric.update_state(labels, logits, sample_weight=weights)
    return float(keras.ops.convert_to_numpy(metric.result()))


def seconds(metric, labels, logits, weights, repeats=20):
    times = []
    args = [keras.ops.convert_to_tensor(a) for a in (labels, logits, weights)]
    metric.update_state(*args[:2], sample_weight=args[2])  # warm up
    for _ in range(repeats):
        t = time.perf_counter()
        metric.update_state(*args[:2], sample_weight=args[2])
        keras.ops.convert_to_numpy(metric.result())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def accepts(metric, labels, logits):
    try:
        metric.update_state(labels, logits)
        return True
    except Exception as err:  # noqa: BLE001 - what it refuses, by name
        return f"{type(err).__name__}: {str(err)[:80]}"


def main():
    labels, logits, weights = batch(0)
    makers = {
        "foreground IoU": (
            ForegroundIoU,
            lambda: keras.metrics.IoU(2, [1], sparse_y_pred=False),
        ),
        "pixel error": (PixelError, keras.metrics.SparseCategoricalAccuracy),
    }
    rows = {}
    for name, (make_ours, make_theirs) in makers.items():
        ours, theirs = make_ours(), make_theirs()
        a = value(ours, labels, logits, weights)
        b = value(theirs, labels, logits, weights)
        if name == "pixel error":
            b = 1.0 - b  # accuracy -> error
        t_ours = seconds(ours, labels, logits, weights)
        t_keras = seconds(theirs, labels, logits, weights)
        one, sig = batch(1, k=1)[:2]
        rows[name] = {
            "keras_unet": a,
            "keras": b,
            "abs_difference": abs(a - b),
            "seconds_keras_unet": t_ours,
            "seconds_keras": t_keras,
            "time_ratio_keras_unet_over_keras": t_ours / t_keras,
            "one_channel_sigmoid_model": {
                "keras_unet": accepts(make_ours(), one, sig),
                "keras": accepts(make_theirs(), one, sig),
            },
        }
        print(
            f"{name:15s} keras_unet {a:.6f}  keras {b:.6f}  "
            f"time ratio {t_ours / t_keras:.2f}"
        )
        print(
            "   one sigmoid channel:", rows[name]["one_channel_sigmoid_model"]
        )
    out = HERE / "results" / "keras_metrics.json"
    out.write_text(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "batch": [4, 388, 388, 2],
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
