"""Train on real ISBI 2012 data and score the held-out slices.

Trains on slices 00-19 of ``../shared/data/isbi2012-em`` and scores slices
20-23 (pixel, Rand and warping error, as the challenge did: membrane
probability thresholded at 0.1..0.9, best of the mean curve), for several
recipes with the same model and the same number of steps, over several
seeds, in one run:

- ``adam`` (keras_unet's default): the paper's weight maps (class balance +
  borders, w0=10, sigma=5) and augmentation (elastic + rotation + flips +
  gray values), Adam 1e-3;
- ``paper``: as adam, with the paper's SGD, momentum 0.99 (lr 1e-4);
- ``plain``: a plain baseline: unweighted cross entropy, flips and 90-degree
  rotations only, Adam 1e-3.

The model is evaluated as it is at the end (no checkpoint selection on the
scored slices). Also reported: training steps/s and achieved FLOP/s.

CPU budget (default): 16 base filters, 572 px tiles, batch 1, 2000 steps:
about 10 minutes per run on 2 cores. Paper's numbers for reference (U-Net
on the challenge's secret test labels): warping 0.000353, Rand 0.0382,
pixel 0.0611.

Run: ``python benchmarks/isbi2012.py [--steps 2000] [--seeds 0 1]
[--recipes adam plain paper]``; writes ``benchmarks/results/isbi2012.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

from _common import machine  # noqa: E402 (benchmarks/ is on sys.path)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "isbi2012-em"
PAPER = {
    "warping_error": 0.0003529,
    "rand_error": 0.0382,
    "pixel_error": 0.0611,
}


def run_one(recipe, seed, args, workdir):
    import numpy as np

    from keras_unet import train as T
    from keras_unet.datasets import load_isbi2012
    from keras_unet.model import unet_flops
    from keras_unet.scores import isbi_scores, mean_isbi_scores
    from keras_unet.tiling import predict_tiled

    names = [f"{i:02d}" for i in range(20, 24)]
    config = T.TrainConfig(
        data=str(args.data),
        format="isbi2012",
        val_names=names,
        preset=recipe,
        filters=args.filters,
        depth=4,
        input_size=args.input_size,
        steps=args.steps_per_epoch,
        epochs=args.steps // args.steps_per_epoch,
        seed=seed,
        output=str(workdir / f"{recipe}_{seed}"),
        tensorboard=False,
        verbose=0,
        mixed_precision=args.mixed_precision,
        xla=args.xla,
    )
    t0 = time.perf_counter()
    result = T.train(config)
    seconds = time.perf_counter() - t0
    steps = int(result.model.optimizer.iterations.numpy())
    test = load_isbi2012(args.data).subset(result.val_indices)
    scores = {}
    for tta in (None, "d4"):
        per_image = []
        for image, label in zip(test.images, test.labels):
            prob = predict_tiled(result.model, image, tta=tta, verbose=0)
            per_image.append(isbi_scores(prob[..., 0], label))
        mean = mean_isbi_scores(per_image)
        scores["tta" if tta else "plain"] = {
            k: mean[k]
            for k in (
                "pixel_error",
                "rand_error",
                "warping_error",
                "pixel_error_threshold",
                "rand_error_threshold",
                "warping_error_threshold",
            )
        }
    flops = 3 * unet_flops(result.model, args.input_size)  # fwd + bwd
    return {
        "recipe": recipe,
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "steps_per_s": steps / seconds,
        "achieved_gflops": flops * steps / seconds / 1e9,
        "final_loss": float(np.asarray(result.history["loss"][-1])),
        "scores": scores,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--recipes", nargs="+", default=["adam", "plain", "paper"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--input-size", type=int, default=572)
    p.add_argument("--mixed-precision", default=None)
    p.add_argument("--xla", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "isbi2012.json"))
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    results = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "paper_test_set": PAPER,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for recipe in args.recipes:
                run = run_one(recipe, seed, args, pathlib.Path(tmp))
                results["runs"].append(run)
                s = run["scores"]
                print(
                    f"{recipe:6s} seed {seed}: {run['steps']} steps "
                    f"({run['steps_per_s']:.2f}/s, "
                    f"{run['achieved_gflops']:.0f} GFLOP/s) | "
                    f"rand {s['plain']['rand_error']:.4f} "
                    f"pixel {s['plain']['pixel_error']:.4f} "
                    f"warping {s['plain']['warping_error']:.6f} | with TTA: "
                    f"rand {s['tta']['rand_error']:.4f} "
                    f"pixel {s['tta']['pixel_error']:.4f}",
                    flush=True,
                )
    summary = {}
    for recipe in args.recipes:
        runs = [r for r in results["runs"] if r["recipe"] == recipe]
        summary[recipe] = {
            f"{mode}_{m}_mean": float(
                np.mean([r["scores"][mode][m] for r in runs])
            )
            for mode in ("plain", "tta")
            for m in ("rand_error", "pixel_error", "warping_error")
        }
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
