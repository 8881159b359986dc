"""The same training and prediction on every Keras backend.

Runs, on the backend of this process (``KERAS_BACKEND``), the keras_unet
path a user runs: ISBI 2012 slices 00-19 with the paper's weight maps,
`make_training_dataset` (tf.data on TensorFlow, the accelerator warp on
JAX and PyTorch), the default recipe compiled by `compile_unet`,
``model.fit``, a ``.keras`` checkpoint saved and loaded back, and
`predict_tiled` of one 512x512 slice. It reports training steps/s (after
the first, compiling, steps), the loss, and the prediction time; the
baseline is TensorFlow in the same session (run the script once per
backend and compare the JSON files).

Run: ``for b in tensorflow jax torch; do KERAS_BACKEND=$b python
benchmarks/backends.py --out benchmarks/results/backend_$b.json; done``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine  # noqa: E402 (benchmarks/ is on sys.path)

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "isbi2012-em"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--input-size", type=int, default=572)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--cache", default=str(HERE / "results" / "weight_cache"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from keras_unet.data import stream
    from keras_unet.data.isbi2012 import load_isbi2012
    from keras_unet.data.prepare import prepare
    from keras_unet.inference.tiled import predict_tiled
    from keras_unet.model.saving import load_model
    from keras_unet.model.unet import build_unet
    from keras_unet.training import recipes

    backend = keras.backend.backend()
    isbi = load_isbi2012(args.data)
    train = isbi.subset([i for i, n in enumerate(isbi.names) if int(n) < 20])
    prepared = prepare(train, recipes.PRESETS["adam"], args.cache)
    stream = stream.make_training_dataset(
        prepared.images,
        prepared.labels,
        prepared.weights,
        input_size=args.input_size,
        seed=0,
    )
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 1), filters=args.filters, seed=0)
    total = args.warmup + args.steps
    recipes.compile_unet(model, total_steps=total, metrics=False)
    t0 = time.perf_counter()
    model.fit(
        stream, steps_per_epoch=args.warmup, epochs=1, verbose=0, shuffle=False
    )
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = model.fit(
        stream, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False
    )
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m.keras")
        loaded = load_model(f"{tmp}/m.keras")
    image = isbi.images[isbi.names.index("20")]
    predict_tiled(loaded, image, verbose=0)  # compiles
    t0 = time.perf_counter()
    probs = predict_tiled(loaded, image, verbose=0)
    predict = time.perf_counter() - t0
    result = {
        "machine": machine(),
        "backend": backend,
        "keras": keras.__version__,
        "pipeline": type(stream).__name__,
        "settings": vars(args),
        "first_steps_seconds": round(first, 1),
        "steps_per_s": args.steps / seconds,
        "loss": float(history.history["loss"][-1]),
        "predict_512_seconds": round(predict, 2),
        "probabilities_finite": bool(np.isfinite(probs).all()),
    }
    print(
        f"{backend:10s} {result['pipeline']:14s} "
        f"{result['steps_per_s']:.2f} steps/s (first {args.warmup} steps "
        f"{first:.0f} s), loss {result['loss']:.3f}, predict 512^2 "
        f"{predict:.2f} s"
    )
    out = args.out or HERE / "results" / f"backend_{backend}.json"
    pathlib.Path(out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
