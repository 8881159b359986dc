"""End-to-end jobs on files: segment a folder, evaluate it, the demo.

These are what the ``keras-unet predict``, ``evaluate`` and ``demo``
commands run; they are plain functions, usable from Python too.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from keras_unet.io import IMAGE_SUFFIXES, atomic_path, read_array, write_image

__all__ = [
    "evaluate_predictions",
    "list_images",
    "load_run_info",
    "predict_files",
    "run_demo",
]

RUN_INFO = "config.json"  # written by keras_unet.train next to the models
PREDICTION_INFO = "predictions.json"


def list_images(path):
    """Image files of a folder (sorted), or the one file `path`."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"No such file or folder: {path}")
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + (".npy",)
    )
    if not files:
        raise FileNotFoundError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}, .npy)."
        )
    return files


def load_run_info(model_path):
    """The training run's ``config.json`` next to a model file, or {}."""
    info = pathlib.Path(model_path).with_name(RUN_INFO)
    if info.is_file():
        try:
            return json.loads(info.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def _load_model(model_path):
    from keras_unet.model import load_model

    return load_model(model_path, compile=False)


def predict_files(
    model,
    inputs,
    output_dir,
    *,
    class_of_interest=None,
    tta=None,
    tile_size=None,
    batch_size=None,
    overlays=True,
    verbose=1,
):
    """Segment image files; write probability maps and overlays.

    For each input image ``<stem>.<ext>`` this writes ``<stem>.tif``, the
    float32 probability of the class of interest (for ISBI 2012 models:
    the membrane, class 0; otherwise the cells, class 1), and
    ``overlays/<stem>.png`` (the image with that class above 0.5 in red).
    ``predictions.json`` records the model and the class, so that
    `evaluate_predictions` knows what the maps mean. Files are written
    atomically.

    Args:
        model: a Keras model or the path of a ``.keras`` file.
        inputs: an image file, a folder of images, or a list of files.
        output_dir: where to write.
        class_of_interest: class whose probability is written (default: from
            the training run's ``config.json``, else 1; 0 for a one-channel
            model).
        tta: test-time augmentation, see `keras_unet.tiling.predict_tiled`.
        tile_size: passed to `predict_tiled`.
        batch_size: passed to `predict_tiled`.
        overlays: also write the overlay PNGs.
        verbose: 1 prints a line per image.

    Returns:
        A list of the written probability-map paths.
    """
    from keras_unet import figures
    from keras_unet.tiling import predict_tiled

    info = {}
    model_name = "<in memory>"
    if isinstance(model, str | pathlib.Path):
        info = load_run_info(model)
        model_name = str(model)
        model = _load_model(model)
    num_classes = int(model.output_shape[-1])
    if class_of_interest is None:
        class_of_interest = info.get(
            "class_of_interest", 1 if num_classes > 1 else 0
        )
    if not 0 <= class_of_interest < num_classes:
        raise ValueError(
            f"class_of_interest={class_of_interest} but the model has "
            f"{num_classes} output channel(s)."
        )
    files = inputs if isinstance(inputs, list | tuple) else list_images(inputs)
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = [pathlib.Path(f).stem for f in files]
    if len(set(stems)) != len(stems):
        raise ValueError(
            "Two input files share a file stem; outputs would clash."
        )
    written = []
    for f in files:
        t0 = time.perf_counter()
        image = read_array(f)
        prob = predict_tiled(
            model,
            image,
            tile_size=tile_size,
            batch_size=batch_size,
            tta=tta,
            verbose=0,
        )[..., class_of_interest].astype(np.float32)
        path = write_image(out / f"{pathlib.Path(f).stem}.tif", prob)
        written.append(path)
        if overlays:
            write_image(
                out / "overlays" / f"{pathlib.Path(f).stem}.png",
                figures.overlay(image, prob > 0.5),
            )
        if verbose:
            print(f"{f} -> {path} ({time.perf_counter() - t0:.1f} s)")
    meaning = (
        "membrane"
        if info.get("config", {}).get("format") == "isbi2012"
        else (
            "membrane"
            if class_of_interest == 0 and num_classes == 2
            else "foreground"
        )
    )
    record = {
        "model": model_name,
        "class_of_interest": int(class_of_interest),
        "meaning": meaning,
        "tta": tta if tta is None or isinstance(tta, str | bool) else list(tta),
        "files": [p.name for p in written],
    }
    with atomic_path(out / PREDICTION_INFO) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return written


def evaluate_predictions(
    predictions, labels, output_dir=None, *, invert=None, **kwargs
):
    """ISBI 2012 scores of a folder of probability maps against labels.

    Calls `keras_unet.metrics.evaluate_folders`. Maps written by
    `predict_files` for a cell class are turned into membrane
    probabilities (``1 - p``) automatically, using ``predictions.json``;
    pass `invert` to decide yourself.

    Returns:
        The report dict (per image and mean), also written to
        ``output_dir`` as JSON and CSV when given.
    """
    from keras_unet.metrics import evaluate_folders

    if invert is None:
        record = pathlib.Path(predictions) / PREDICTION_INFO
        invert = False
        if record.is_file():
            invert = (
                json.loads(record.read_text()).get("meaning") == "foreground"
            )
    return evaluate_folders(
        predictions, labels, output_dir, invert=invert, **kwargs
    )


# --------------------------------------------------------------------------
# The demo: the README's main job.


@dataclasses.dataclass
class DemoSettings:
    """Size of the demo run (the defaults take a few minutes on 2 cores)."""

    steps: int = 100
    epochs: int = 15
    filters: int = 16
    depth: int = 3
    input_size: int = 188
    batch_size: int = 4
    train_images: int = 10
    size: int = 256


def run_demo(
    output="demo_output", data=None, seed=0, quick=False, settings=None
):
    """Train on the built-in data, segment held-out images, evaluate.

    With ``data=None`` the built-in synthetic cells are used (10 training
    images and 2 held-out images with instance labels); with the path of an
    ISBI 2012 folder, slices 00-19 train and 20-23 are held out. Writes to
    `output`: the training run (``best.keras``, ``log.csv``,
    ``training_curve.png``, ...), ``predictions/`` (probability maps and
    overlays of the held-out images) and ``report.json`` (pixel, Rand and
    warping error, and for cells the SEG IoU of the segmented cells).

    Returns:
        The report dict.
    """
    from keras_unet import datasets, metrics, train
    from keras_unet.tiling import predict_tiled
    from keras_unet.weights import separate_instances

    s = settings or DemoSettings()
    if quick:
        s = dataclasses.replace(
            s,
            steps=4,
            epochs=2,
            filters=4,
            train_images=3,
            size=128,
            batch_size=2,
        )
    out = pathlib.Path(output)
    t_start = time.perf_counter()
    if data is None:
        config = train.TrainConfig(
            format="synthetic",
            synthetic_count=s.train_images,
            synthetic_size=s.size,
            val_fraction=0.2,
        )
        images, instances = datasets.synthetic_cells(
            2, s.size, seed=seed + 1000
        )
        held_out = [
            {
                "name": f"heldout_{i}",
                "image": im,
                "instances": ins,
                # ISBI-style: cells 1; background and separation lines 0
                "membrane_label": separate_instances(ins).astype(np.uint8),
            }
            for i, (im, ins) in enumerate(zip(images, instances))
        ]
        interest = 1
    else:
        isbi = datasets.load_isbi2012(data, "train")
        names = isbi.names
        if len(names) < 6:
            raise ValueError(
                f"{data}: need at least 6 labelled slices for the demo."
            )
        val_names = names[-4:]
        config = train.TrainConfig(
            data=str(data),
            format="isbi2012",
            val_names=val_names,
        )
        held_out = [
            {
                "name": n,
                "image": isbi.images[i],
                "instances": None,
                "membrane_label": isbi.labels[i],
            }
            for i, n in enumerate(names)
            if n in set(val_names)
        ]
        interest = 0
    config = dataclasses.replace(
        config,
        output=str(out),
        depth=s.depth,
        filters=s.filters,
        input_size=s.input_size,
        steps=s.steps,
        epochs=s.epochs,
        batch_size=s.batch_size,
        seed=seed,
        tensorboard=not quick,
        verbose=0 if quick else 2,
    )
    result = train.train(config)
    model = result.model
    if (out / "best.keras").is_file():
        model = _load_model(out / "best.keras")
    pred_dir = out / "predictions"
    from keras_unet import figures

    rows = []
    for item in held_out:
        prob = predict_tiled(model, item["image"], verbose=0)
        p_interest = prob[..., interest]
        write_image(
            pred_dir / f"{item['name']}.tif", p_interest.astype(np.float32)
        )
        membrane = 1.0 - prob[..., 1]
        scores = metrics.isbi_scores(membrane, item["membrane_label"])
        row = {
            "image": item["name"],
            "pixel_error": scores["pixel_error"],
            "rand_error": scores["rand_error"],
            "warping_error": scores["warping_error"],
        }
        cells = prob[..., 1] > 0.5
        if item["instances"] is not None:
            from scipy import ndimage

            pred_instances, _ = ndimage.label(cells)
            row["seg_iou"] = metrics.seg_iou(pred_instances, item["instances"])
            panels = [
                item["image"],
                figures.color_instances(item["instances"]),
                figures.overlay(item["image"], ~cells),
                figures.color_instances(pred_instances),
            ]
            titles = [
                "held-out image",
                "true cells",
                "predicted background",
                "segmented cells",
            ]
        else:
            panels = [
                item["image"],
                figures.overlay(item["image"], item["membrane_label"] == 0),
                figures.overlay(item["image"], membrane > 0.5),
            ]
            titles = ["held-out slice", "true membrane", "predicted membrane"]
        figures.save_panels(
            pred_dir / "overlays" / f"{item['name']}.png",
            panels,
            titles,
            ncols=len(panels),
        )
        rows.append(row)
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    report = {
        "data": result.data.description,
        "held_out": rows,
        "mean": mean,
        "training": {
            "epochs": len(result.history.get("loss", [])),
            "final_loss": (result.history.get("loss") or [None])[-1],
            "final_val_loss": (result.history.get("val_loss") or [None])[-1],
            "seconds": round(time.perf_counter() - t_start, 1),
        },
        "settings": dataclasses.asdict(s),
        "outputs": {
            "model": str(out / "best.keras"),
            "training_curve": str(out / "training_curve.png"),
            "predictions": str(pred_dir),
        },
    }
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
