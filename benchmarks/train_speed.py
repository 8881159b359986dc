"""Training speed of the paper's U-Net: steps/s and achieved FLOP/s.

Runs ``model.fit`` of `keras_unet.build_unet()` (31,030,658 parameters,
572x572 input tiles, 388x388 weighted output) with
`keras_unet.model.losses.WeightedCrossentropy` and per-pixel weights as
``sample_weight``, on random in-memory data, for batch sizes and precisions
given on the command line. It imports only Keras (no TensorFlow unless it is
the backend) and no tf.data, so it also runs where only the JAX backend is
installed:

    KERAS_BACKEND=jax python benchmarks/train_speed.py --batch 1 4 \
        --precision float32 mixed_bfloat16 --out results/train_speed_gpu.json

FLOPs are counted from the layer shapes (2 x multiply-adds; a training step
is counted as 3 forward passes). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def device_name():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        kind = getattr(d, "device_kind", "")
        return f"jax {jax.__version__}: {d.platform} {kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {tf.__version__}: " + (
            ", ".join(g.name for g in gpus) if gpus else "CPU"
        )
    return backend


def measure(batch, precision, size, filters, steps, warmup):
    import keras
    import numpy as np

    from keras_unet import build_unet
    from keras_unet.model.flops import unet_flops
    from keras_unet.model.losses import WeightedCrossentropy

    keras.config.set_dtype_policy(precision)
    try:
        model = build_unet((size, size, 1), filters=filters, seed=0)
        model.compile(
            keras.optimizers.Adam(1e-4),
            WeightedCrossentropy(),
            jit_compile=True,
        )
    finally:
        keras.config.set_dtype_policy("float32")
    out = model.output_shape[1]
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    x = rng.random((batch * 2, size, size, 1), dtype=np.float32)
    y = rng.integers(0, 2, (batch * 2, out, out)).astype(np.int32)
    w = (1 + 9 * rng.random((batch * 2, out, out))).astype(np.float32)
    # repeat two distinct batches (no host-side data cost in the timing)
    reps = -(-n // (batch * 2))
    xs, ys, ws = (np.concatenate([a] * reps)[:n] for a in (x, y, w))
    model.fit(
        xs[: batch * warmup],
        ys[: batch * warmup],
        sample_weight=ws[: batch * warmup],
        batch_size=batch,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    t0 = time.perf_counter()
    hist = model.fit(
        xs[batch * warmup :],
        ys[batch * warmup :],
        sample_weight=ws[batch * warmup :],
        batch_size=batch,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    seconds = time.perf_counter() - t0
    flops = 3 * unet_flops(model, size) * batch * steps
    return {
        "batch": batch,
        "precision": precision,
        "tile": size,
        "filters": filters,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "tiles_per_s": batch * steps / seconds,
        "achieved_tflops": flops / seconds / 1e12,
        "loss_finite": bool(np.isfinite(hist.history["loss"][-1])),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", nargs="+", type=int, default=[1])
    p.add_argument("--precision", nargs="+", default=["float32"])
    p.add_argument("--size", type=int, default=572)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "train_speed.json"))
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    results = {
        "device": device_name(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "runs": [],
    }
    print(results["device"], flush=True)
    for precision in args.precision:
        for batch in args.batch:
            r = measure(
                batch,
                precision,
                args.size,
                args.filters,
                args.steps,
                args.warmup,
            )
            results["runs"].append(r)
            print(
                f"{precision:15s} batch {batch}: "
                f"{r['steps_per_s']:.2f} steps/s, "
                f"{r['tiles_per_s']:.2f} tiles/s, {r['achieved_tflops']:.2f} "
                f"TFLOP/s",
                flush=True,
            )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
