"""Recipes compared on touching cells: the paper's weights vs a plain baseline.

The paper's border weights exist to separate touching cells. This trains
the demo-size U-Net (depth 3, 16 filters, 188 px tiles, batch 4) on the
built-in synthetic cells (10 images of 256 px: 8 train, 2 validation) with
each recipe and scores 4 further held-out images of another seed: the Cell
Tracking Challenge SEG IoU of the segmented cells (connected components of
the cell class), and pixel / Rand / warping error against the separated
target. Same steps and seeds for every recipe; the model at the end is
scored.

Run: ``python benchmarks/recipes_synthetic.py [--seeds 0 1] [--steps 1500]``;
writes ``benchmarks/results/recipes_synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

from _common import machine  # noqa: E402 (benchmarks/ is on sys.path)

HERE = pathlib.Path(__file__).resolve().parent


def run_one(recipe, seed, steps, workdir):
    import numpy as np
    from scipy import ndimage

    from keras_unet.data import synthetic
    from keras_unet.data.weight_maps import separate_instances
    from keras_unet.evaluation.isbi import isbi_scores
    from keras_unet.evaluation.seg import seg_iou
    from keras_unet.inference.tiled import predict_tiled
    from keras_unet.training import train
    from keras_unet.training.config import TrainConfig

    config = TrainConfig(
        format="synthetic",
        synthetic_count=10,
        synthetic_size=256,
        depth=3,
        filters=16,
        input_size=188,
        batch_size=4,
        preset=recipe,
        steps=100,
        epochs=steps // 100,
        seed=seed,
        tensorboard=False,
        verbose=0,
        output=str(workdir / f"{recipe}_{seed}"),
    )
    result = train.train(config)
    images, instances = synthetic.synthetic_cells(4, 256, seed=5000 + seed)
    rows = []
    for image, inst in zip(images, instances):
        prob = predict_tiled(result.model, image, verbose=0)
        scores = isbi_scores(prob[..., 0], separate_instances(inst))
        # cells where their probability reaches the calibrated threshold
        threshold = result.calibration.get("decision_threshold", 0.5)
        cells, _ = ndimage.label(prob[..., 1] >= threshold)
        rows.append(
            {
                "seg_iou": seg_iou(cells, inst),
                **{
                    k: scores[k]
                    for k in ("pixel_error", "rand_error", "warping_error")
                },
            }
        )
    return {
        "recipe": recipe,
        "seed": seed,
        "steps": steps,
        **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", default=["adam", "plain"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument(
        "--out", default=str(HERE / "results" / "recipes_synthetic.json")
    )
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for recipe in args.recipes:
                r = run_one(recipe, seed, args.steps, pathlib.Path(tmp))
                runs.append(r)
                print(
                    f"{recipe:6s} seed {seed}: SEG {r['seg_iou']:.4f} "
                    f"rand {r['rand_error']:.4f} pixel {r['pixel_error']:.4f} "
                    f"warping {r['warping_error']:.5f}",
                    flush=True,
                )
    summary = {
        recipe: {
            k: float(np.mean([r[k] for r in runs if r["recipe"] == recipe]))
            for k in ("seg_iou", "rand_error", "pixel_error", "warping_error")
        }
        for recipe in args.recipes
    }
    print(json.dumps(summary, indent=2))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "settings": vars(args),
                "runs": runs,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
