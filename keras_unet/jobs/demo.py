"""The demo: the README's main job.

`run_demo` trains a small U-Net on the built-in synthetic cells (or on
ISBI 2012), segments held-out images it never saw, scores them, and
writes the run, the predictions with their figures, and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import time

import numpy as np
from scipy import ndimage

from keras_unet import figures
from keras_unet.data import isbi2012, synthetic
from keras_unet.data.weight_maps import separate_instances
from keras_unet.evaluation.isbi import isbi_scores
from keras_unet.evaluation.seg import seg_iou
from keras_unet.inference.tiled import predict_tiled
from keras_unet.io.atomic import atomic_path
from keras_unet.jobs.prediction_folder import write_prediction, write_record
from keras_unet.training.config import TrainConfig
from keras_unet.training.run import Run
from keras_unet.training.train import train

__all__ = ["DEMO_MARKER", "demo_config", "run_demo"]


def demo_config(quick=False):
    """The demo's training settings (a few minutes on 2 CPU cores).

    A `keras_unet.training.config.TrainConfig`: the synthetic cells (10 images,
    8 train and 2 validate), a depth-3 net of 16 filters on 188 px tiles,
    batches of 4, 15 epochs of 100 steps. ``quick=True`` is a run of
    seconds that checks the whole pipeline.
    """
    config = TrainConfig(
        format="synthetic",
        synthetic_count=10,
        synthetic_size=256,
        val_fraction=0.2,
        depth=3,
        filters=16,
        input_size=188,
        batch_size=4,
        steps=100,
        epochs=15,
    )
    if quick:
        config = dataclasses.replace(
            config,
            steps=4,
            epochs=2,
            filters=4,
            synthetic_count=3,
            synthetic_size=128,
            batch_size=2,
            warmup_steps=2,
        )
    return config


DEMO_MARKER = ".keras_unet_demo"
_DEMO_OUTPUTS = (
    "best.keras",
    "last.keras",
    "state.json",
    "config.json",
    "log.csv",
    "training_curve.png",
    "report.json",
    "tensorboard",
    "predictions",
)


def _prepare_demo_output(out):
    """An empty demo folder; an earlier demo run in it is replaced.

    Only a folder holding the demo's marker file is cleared (its weight-map
    cache is kept); any other folder with a training run is refused, so
    nothing a user made is deleted.
    """
    out.mkdir(parents=True, exist_ok=True)
    marker = out / DEMO_MARKER
    present = [n for n in _DEMO_OUTPUTS if (out / n).exists()]
    if present and not marker.exists():
        raise FileExistsError(
            f"{out} already holds {', '.join(present)} not made by "
            "keras-unet demo; choose another --output (nothing was changed)."
        )
    for name in present:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    marker.write_text(
        "made by keras-unet demo; rerunning the demo replaces it\n"
    )


def _demo_data(config, data, seed):
    """The demo's config for the data, and its held-out images.

    Returns:
        ``(config, held_out, interest)``: held-out images as ``(name,
        image, instances or None, ISBI-style label)``; the class of
        interest (1 = cells for the synthetic data, 0 = membrane for ISBI).
    """
    if data is None:
        images, instances = synthetic.synthetic_cells(
            2, config.synthetic_size, seed=seed + 1000
        )
        held_out = [
            # ISBI-style label: cells 1; background and separation lines 0
            (f"heldout_{i}", im, ins, separate_instances(ins).astype(np.uint8))
            for i, (im, ins) in enumerate(zip(images, instances))
        ]
        return config, held_out, 1
    isbi = isbi2012.load_isbi2012(data, "train")
    if len(isbi) < 8:
        raise ValueError(f"{data}: the demo needs at least 8 labelled slices.")
    holdout = isbi.names[-4:]
    config = dataclasses.replace(
        config, data=str(data), format="isbi2012", holdout_names=holdout
    )
    held_out = [
        (n, isbi.images[i], None, isbi.labels[i])
        for i, n in enumerate(isbi.names)
        if n in set(holdout)
    ]
    return config, held_out, 0


def _score_one(run, item, decision):
    """Scores and figure panels of one held-out image."""
    name, image, instances, label = item
    prob = predict_tiled(run.model, image, verbose=0)
    scores = isbi_scores(prob[..., 0], label)
    row = {"image": name}
    for key in ("pixel_error", "rand_error", "warping_error"):
        row[key] = scores[key]
    chosen = decision.chosen(prob)
    predicted = f"predicted {decision.meaning} (p >= {decision.threshold:.2f})"
    legend = [(figures.RED, predicted)]
    if instances is not None:
        segmented, _ = ndimage.label(chosen)
        row["seg_iou"] = seg_iou(segmented, instances)
        panels = [
            image,
            figures.color_instances(instances),
            figures.overlay(image, chosen),
            figures.color_matched(segmented, instances),
        ]
        titles = [
            "held-out image",
            "true cells",
            "predicted cells",
            "segmented cells",
        ]
        matched = "segmented cells: the colour of the true cell matched; "
        legend.append((figures.UNMATCHED, matched + "grey: none"))
    else:
        panels = [
            image,
            figures.overlay(image, label == 0),
            figures.overlay(image, chosen),
        ]
        titles = ["held-out slice", "true membrane", "predicted membrane"]
    note = "  ".join(
        f"{k.replace('_', ' ')} {v:.3f}" for k, v in row.items() if k != "image"
    )
    figure = figures.with_legend(
        figures.panel_grid(panels, titles, ncols=len(panels)), legend, note
    )
    return row, prob[..., decision.class_of_interest], figure


def _demo_report(result, rows, out, pred_dir, seconds):
    keys = [k for k in rows[0] if k != "image"]
    history = result.history
    return {
        "data": result.data.train.description,
        "held_out": rows,
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "training": {
            "train_images": list(result.data.train.names),
            "val_images": list(result.data.val.names),
            "epochs": len(history.get("loss", [])),
            "final_loss": (history.get("loss") or [None])[-1],
            "final_val_loss": (history.get("val_loss") or [None])[-1],
            "decision_threshold": result.calibration.get(
                "decision_threshold", 0.5
            ),
            "seconds": round(seconds, 1),
        },
        "settings": dataclasses.asdict(result.config),
        "outputs": {
            "model": str(out / "best.keras"),
            "training_curve": str(out / "training_curve.png"),
            "predictions": str(pred_dir),
        },
    }


def run_demo(output="demo_output", data=None, seed=0, quick=False, config=None):
    """Train on the built-in data, segment held-out images, evaluate.

    With ``data=None`` the built-in synthetic cells are used: 10 images for
    training (8) and validation (2), and 2 further held-out images of a
    different seed with instance labels. With the path of an ISBI 2012
    folder, its last 4 labelled slices (20-23 of the 24 PNG slices) are
    held out, and the others train (80%) and validate (20%). Held-out
    images never influence training, the choice of ``best.keras`` or the
    decision threshold.

    Writes to `output`: the training run (``best.keras``, ``log.csv``,
    ``training_curve.png``, ...), ``predictions/`` (probability maps,
    ``predictions.json`` and ``overlays/``) and ``report.json`` (pixel,
    Rand and warping error, and for cells the SEG IoU of the segmented
    cells). Running the demo again into the same folder replaces the
    earlier demo run.

    Args:
        output: the demo folder.
        data: None (synthetic cells) or an ISBI 2012 folder.
        seed: the random seed.
        quick: a tiny run (seconds).
        config: a `keras_unet.training.config.TrainConfig` replacing
            `demo_config`.

    Returns:
        The report dict.
    """
    out = pathlib.Path(output)
    _prepare_demo_output(out)
    t_start = time.perf_counter()
    config = config or demo_config(quick)
    config, held_out, interest = _demo_data(config, data, seed)
    config = dataclasses.replace(
        config,
        output=str(out),
        seed=seed,
        tensorboard=not quick,
        verbose=0 if quick else 2,
    )
    result = train(config)
    run = Run.load(out / "best.keras")
    decision = run.decision(interest)
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    record = dict(model_name=run.name, decision=decision, tta=None)
    write_record(pred_dir, files=None, **record)
    rows, written = [], []
    for item in held_out:
        row, prob, figure = _score_one(run, item, decision)
        written.append(write_prediction(pred_dir, item[0], prob, figure))
        rows.append(row)
    write_record(pred_dir, files=written, **record)
    report = _demo_report(
        result, rows, out, pred_dir, time.perf_counter() - t_start
    )
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
