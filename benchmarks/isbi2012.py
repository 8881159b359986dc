"""Recipes compared on real ISBI 2012 data, as a user runs them.

For every recipe and seed: `keras_unet.training.train.train` on slices 00-15
with slices 16-19 as validation (they pick ``best.keras`` and calibrate the
decision threshold), slices 20-23 held out; then ``best.keras`` segments
20-23 (`predict_tiled`, with and without 8-fold TTA), scored as the
challenge did (`isbi_scores`: pixel, Rand and warping error at the best
threshold of the mean curve) and at the model's own decision threshold.
Same images, steps and model for every recipe; means and spreads over
seeds.

Recipes (`keras_unet.training.recipes.PRESETS`, with ``:field=value``
overrides): ``adam`` (the default: the paper's weight maps and augmentation,
Adam with warm-up and cosine decay), ``plain`` (a typical Keras script:
unweighted cross entropy, flips only, constant Adam 1e-3), ``paper``
(SGD, momentum 0.99).

CPU budget (default): 16 base filters, 572 px tiles, batch 1, 1500 steps,
seeds 0-2: 20-24 minutes per run on one core (two runs side by side on
a 2-core Intel Xeon). The paper's numbers (U-Net
on the challenge's secret test labels): warping 0.000353, Rand 0.0382,
pixel 0.0611.

Run: ``python benchmarks/isbi2012.py [--recipes adam plain] [--seeds 0 1
2] [--steps 1500]``; writes ``benchmarks/results/isbi2012.json``.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import recipe_parser, report_header  # noqa: E402 (on sys.path)
from stability import parse_recipe  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PAPER = {
    "warping_error": 0.0003529,
    "rand_error": 0.0382,
    "pixel_error": 0.0611,
}
MEASURES = ("rand_error", "pixel_error", "warping_error")


def train_one(text, seed, args, workdir):
    from keras_unet.training.config import TrainConfig
    from keras_unet.training.train import train

    preset, overrides = parse_recipe(text)
    config = TrainConfig(
        data=str(args.data),
        format="isbi2012",
        preset=preset,
        val_names=[f"{i:02d}" for i in range(16, 20)],
        holdout_names=[f"{i:02d}" for i in range(20, 24)],
        filters=args.filters,
        input_size=args.input_size,
        steps=args.steps_per_epoch,
        epochs=args.steps // args.steps_per_epoch,
        seed=seed,
        output=str(workdir / f"{preset}_{seed}"),
        tensorboard=False,
        verbose=0,
        cache_dir=args.cache,
        **overrides,
    )
    t0 = time.perf_counter()
    result = train(config)
    return result, time.perf_counter() - t0


def score(model, test, threshold, tta):
    """Challenge scores and scores at the decision threshold (membrane)."""
    from keras_unet.evaluation.isbi import (
        isbi_scores,
        mean_isbi_scores,
        pixel_error,
        rand_error,
    )
    from keras_unet.inference.tiled import predict_tiled

    per_image, at_threshold = [], []
    for image, label in test:
        membrane = predict_tiled(model, image, tta=tta, verbose=0)[..., 0]
        per_image.append(isbi_scores(membrane, label))
        at_threshold.append(
            (
                pixel_error(membrane, label, threshold),
                rand_error(membrane, label, threshold)["rand_error"],
            )
        )
    mean = mean_isbi_scores(per_image)
    values = {m: mean[m] for m in MEASURES}
    values.update({f"{m}_threshold": mean[f"{m}_threshold"] for m in MEASURES})
    values["pixel_error_at_decision"] = float(np.mean(at_threshold, 0)[0])
    values["rand_error_at_decision"] = float(np.mean(at_threshold, 0)[1])
    values["per_image_rand"] = [s["rand_error"] for s in per_image]
    return values


def run_one(text, seed, args, workdir):
    from keras_unet.data.isbi2012 import load_isbi2012
    from keras_unet.model.saving import load_model

    result, seconds = train_one(text, seed, args, workdir)
    isbi = load_isbi2012(args.data)
    test = [
        (isbi.images[i], isbi.labels[i])
        for i, n in enumerate(isbi.names)
        if 20 <= int(n) < 24
    ]
    model = load_model(result.output / "best.keras", compile=False)
    # the decision threshold is on the class of interest, the membrane
    threshold = result.calibration.get("decision_threshold", 0.5)
    steps = (
        sum(1 for _ in result.history.get("loss", [])) * args.steps_per_epoch
    )
    return {
        "recipe": text,
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "best_epoch": json.loads((result.output / "state.json").read_text())[
            "best_epoch"
        ],
        "decision_threshold": threshold,
        "scores": {
            "plain": score(model, test, threshold, None),
            "tta": score(model, test, threshold, "d4"),
        },
    }


def summarize(runs, recipes):
    """Mean and standard deviation over seeds, per recipe and measure."""
    summary = {}
    keys = (*MEASURES, "pixel_error_at_decision", "rand_error_at_decision")
    for recipe in recipes:
        mine = [r for r in runs if r["recipe"] == recipe]
        if not mine:
            continue
        summary[recipe] = {"seeds": [r["seed"] for r in mine]}
        for mode in ("plain", "tta"):
            for key in keys:
                values = [r["scores"][mode][key] for r in mine]
                summary[recipe][f"{mode}_{key}"] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1))
                    if len(mine) > 1
                    else 0,
                    "values": values,
                }
    return summary


def main():
    p = recipe_parser(
        __doc__.split("\n")[0], "isbi2012-em", ["adam", "plain"], 1500, 16
    )
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--out", default=str(HERE / "results" / "isbi2012.json"))
    args = p.parse_args()
    results = report_header(args, paper_test_set=PAPER)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for text in args.recipes:
                run = run_one(text, seed, args, pathlib.Path(tmp))
                results["runs"].append(run)
                s, t = run["scores"]["plain"], run["scores"]["tta"]
                print(
                    f"{text:24s} seed {seed}: rand {s['rand_error']:.4f} "
                    f"pixel {s['pixel_error']:.4f} warping "
                    f"{s['warping_error']:.6f} | at threshold "
                    f"{run['decision_threshold']:.2f}: pixel "
                    f"{s['pixel_error_at_decision']:.4f} | TTA: rand "
                    f"{t['rand_error']:.4f} pixel {t['pixel_error']:.4f} "
                    f"({run['train_seconds']:.0f} s)",
                    flush=True,
                )
                results["summary"] = summarize(results["runs"], args.recipes)
                out.write_text(json.dumps(results, indent=1) + "\n")
    for recipe, values in results["summary"].items():
        shown = ", ".join(
            f"{k} {v['mean']:.4f} +- {v['std']:.4f}"
            for k, v in values.items()
            if k != "seeds" and "warping" not in k
        )
        print(f"{recipe}: {shown}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
