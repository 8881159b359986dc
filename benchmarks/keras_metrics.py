"""keras_unet's training metrics against Keras' own, on U-Net batches.

Layout issue 20 asked whether Keras' ``IoU(target_class_ids=[1])`` and
``SparseCategoricalAccuracy`` can replace `ForegroundIoU` and `PixelError`.
This compares, on the same batches of valid-padding logits with per-pixel
weights (weight 0 = ignored, as the training stream gives them):

- the values (weighted, as compiled in ``weighted_metrics``);
- the time of ``update_state`` on a 4 x 388 x 388 batch (median of 20,
  ratio in one run);
- both against a float64 numpy reference, on a two-class model and on a
  one-channel sigmoid model.

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


def reference(name, labels, logits, weights):
    """Foreground IoU or pixel error in float64 numpy over the pixels of
    weight > 0, each counted once (what the ISBI pixel error means)."""
    if logits.shape[-1] == 1:
        predicted = (logits[..., 0] > 0).astype(int)  # sigmoid >= 0.5
    else:
        predicted = logits.argmax(-1)
    w = (weights > 0).astype(np.float64)
    if name == "pixel error":
        return float((w * (predicted != labels)).sum() / w.sum())
    inter = (w * ((predicted == 1) & (labels == 1))).sum()
    union = (w * ((predicted == 1) | (labels == 1))).sum()
    return float(inter / union)


def main():
    makers = {
        "foreground IoU": (
            ForegroundIoU,
            lambda: keras.metrics.IoU(2, [1], sparse_y_pred=False),
        ),
        "pixel error": (PixelError, keras.metrics.SparseCategoricalAccuracy),
    }
    cases = {"two classes": batch(0), "one sigmoid channel": batch(1, k=1)}
    rows = {}
    for name, (make_ours, make_theirs) in makers.items():
        row = {}
        for case, (lab, lg, w) in cases.items():
            truth = reference(name, lab, lg, w)
            a = value(make_ours(), lab, lg, w)
            # Keras given the weight maps, as weighted_metrics hands them,
            # and given only the mask of weight > 0
            b = value(make_theirs(), lab, lg, w)
            c = value(make_theirs(), lab, lg, (w > 0).astype("float32"))
            if name == "pixel error":
                b, c = 1.0 - b, 1.0 - c  # accuracy -> error
            row[case] = {
                "numpy_reference": truth,
                "keras_unet": a,
                "keras_with_weight_maps": b,
                "keras_with_the_mask": c,
            }
            print(
                f"{name:15s} {case:20s} truth {truth:.6f}  keras_unet "
                f"{a:.6f}  keras (maps) {b:.6f}  keras (mask) {c:.6f}"
            )
        labels, logits, weights = cases["two classes"]
        t_ours = seconds(make_ours(), labels, logits, weights)
        t_keras = seconds(make_theirs(), labels, logits, weights)
        row["seconds_keras_unet"] = t_ours
        row["seconds_keras"] = t_keras
        row["time_ratio_keras_unet_over_keras"] = t_ours / t_keras
        print(
            f"{name:15s} time ratio keras_unet / keras {t_ours / t_keras:.2f}"
        )
        rows[name] = row
    out = HERE / "results" / "keras_metrics.json"
    result = {"backend": keras.backend.backend(), "batch": [4, 388, 388]}
    out.write_text(json.dumps({**result, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
