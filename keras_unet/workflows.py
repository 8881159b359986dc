"""End-to-end jobs on files: segment a folder, evaluate it, the demo.

These are what the ``keras-unet predict``, ``evaluate`` and ``demo``
commands run; they are plain functions, usable from Python too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time

import numpy as np

from keras_unet.checks import check_int, check_probability
from keras_unet.io import (
    IMAGE_SUFFIXES,
    atomic_folder,
    atomic_path,
    check_output_folder,
    list_files,
    read_array,
    write_image,
)

__all__ = [
    "evaluate_predictions",
    "list_images",
    "predict_files",
    "predict_volume",
    "run_demo",
]

PREDICTION_INFO = "predictions.json"


def list_images(path):
    """Image files of a folder (sorted), or the one file `path`."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"No such file or folder: {path}")
    files = list_files(path, IMAGE_SUFFIXES + (".npy",))
    if not files:
        raise FileNotFoundError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}, .npy)."
        )
    return files


def _load_model(model_path):
    from keras_unet.model import load_model

    return load_model(model_path, compile=False)


def _input_files(inputs):
    """Image files from a file, a folder or a list; stems must differ."""
    if isinstance(inputs, list | tuple):
        files = [pathlib.Path(f) for f in inputs]
        folders = [str(f) for f in files if f.is_dir()]
        if folders:
            raise ValueError(
                f"{', '.join(folders)}: a folder among image files; give one "
                "folder alone, or image files."
            )
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"No such image file(s): {', '.join(missing)}"
            )
    else:
        files = list_images(inputs)
    if not files:
        raise ValueError(f"No images to segment in {inputs!r}.")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise ValueError(
            "Two input files share a file stem; outputs would clash."
        )
    return files


def _class_of_interest(model, info, class_of_interest):
    """The class whose map is written: given, from the run, or 1 (0)."""
    num_classes = int(model.output_shape[-1])
    if class_of_interest is None:
        default = 1 if num_classes > 1 else 0
        class_of_interest = info.get("class_of_interest", default)
    if not 0 <= class_of_interest < num_classes:
        raise ValueError(
            f"class_of_interest={class_of_interest} but the model has "
            f"{num_classes} output channel(s)."
        )
    return class_of_interest


def predict_files(
    model,
    inputs,
    output_dir,
    *,
    class_of_interest=None,
    threshold=None,
    tta=None,
    tile_size=None,
    batch_size=None,
    overlays=True,
    overwrite=False,
    verbose=1,
):
    """Segment image files; write probability maps and overlays.

    For each input image ``<stem>.<ext>`` this writes ``<stem>.tif``, the
    float32 probability of the class of interest (for ISBI 2012 models:
    the membrane, class 0; otherwise the cells, class 1), and
    ``overlays/<stem>.png`` (the image with the pixels whose probability
    reaches the decision threshold in red). ``predictions.json`` records
    the model, the class and the threshold, so that
    `evaluate_predictions` knows what the maps mean. The folder is written
    whole or not at all (a temporary sibling renamed at the end), so maps
    of two models or two runs are never mixed in it.

    Args:
        model: a Keras model or the path of a ``.keras`` file.
        inputs: an image file, a folder of images, or a list of files.
        output_dir: where to write.
        class_of_interest: class whose probability is written (default: from
            the training run's ``config.json``, else 1; 0 for a one-channel
            model).
        threshold: decision threshold of the overlays (default: the one
            calibrated on the run's validation images, else 0.5; see
            `keras_unet.calibration`).
        tta: test-time augmentation, see `keras_unet.tiling.predict_tiled`.
        tile_size: passed to `predict_tiled`.
        batch_size: passed to `predict_tiled`.
        overlays: also write the overlay PNGs.
        overwrite: replace an earlier prediction folder at `output_dir`
            (one holding only this function's files); otherwise an
            existing non-empty folder is refused.
        verbose: 1 prints a line per image.

    Returns:
        A list of the written probability-map paths.

    Raises:
        FileExistsError: `output_dir` is not empty and `overwrite` is
            False, or it holds files this function does not write.
    """
    from keras_unet.calibration import decision_threshold
    from keras_unet.config import read_run_info
    from keras_unet.tiling import predict_tiled

    if threshold is not None:
        check_probability(threshold, "threshold", "a pixel belongs to the "
                          "class when its probability reaches it")  # fmt: skip
    info, name, path = {}, "<in memory>", None
    if isinstance(model, str | pathlib.Path):
        info, name, path = read_run_info(model), str(model), model
        model = _load_model(model)
    interest = _class_of_interest(model, info, class_of_interest)
    if threshold is None:  # calibrated with the run, else 0.5
        threshold = 0.5 if path is None else decision_threshold(path, interest)
    files = _input_files(inputs)
    out = pathlib.Path(output_dir)
    check_prediction_folder(out, overwrite)
    record = dict(model_name=name, class_of_interest=interest,
                  num_classes=int(model.output_shape[-1]), tta=tta,
                  threshold=threshold)  # fmt: skip
    written = []
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for f in files:
            t0 = time.perf_counter()
            image = read_array(f)
            prob = predict_tiled(
                model, image, tile_size=tile_size, batch_size=batch_size,
                tta=tta, verbose=0,
            )[..., interest].astype(np.float32)  # fmt: skip
            overlay = (
                _overlay(image, prob >= threshold, record) if overlays else None
            )
            written.append(out / _write_prediction(tmp, f.stem, prob,
                                                   overlay).name)  # fmt: skip
            if verbose:
                seconds = time.perf_counter() - t0
                print(f"{f} -> {written[-1]} ({seconds:.1f} s)")
        _write_record(tmp, files=written, **record)
    return written


def _class_name(class_of_interest, num_classes):
    """What a class means to a biologist: membrane, cells or class k."""
    if num_classes <= 2:
        return "membrane" if class_of_interest == 0 else "cells"
    return f"class {class_of_interest}"


def _overlay(image, chosen, record):
    """The image with the chosen pixels in red, and a legend saying so."""
    from keras_unet import figures

    name = _class_name(record["class_of_interest"], record["num_classes"])
    text = f"{name} (p >= {record['threshold']:.2f})"
    return figures.with_legend(
        figures.overlay(image, chosen), [(figures.RED, text)]
    )


def check_prediction_folder(out, overwrite=False):
    """Refuse an output folder that would mix or lose results.

    An empty or absent folder is fine. A folder of earlier predictions
    (``predictions.json``, ``<stem>.tif``, ``overlays/<stem>.png`` and
    nothing else) is replaced only with `overwrite`; any other content is
    the user's and is never replaced.
    """
    record = pathlib.Path(out) / PREDICTION_INFO
    model = json.loads(record.read_text()).get("model", "?") if (
        record.is_file()) else "?"  # fmt: skip
    check_output_folder(out, PREDICTION_INFO, _ours, overwrite,
                        f"predictions of {model}")  # fmt: skip


def _ours(path):
    """Whether `path` is a file `predict_files` writes."""
    if path.name == PREDICTION_INFO:
        return True
    if path.is_dir():
        return path.name == "overlays" and all(
            p.is_file() and p.suffix == ".png" for p in path.iterdir()
        )
    return path.is_file() and path.suffix == ".tif"


def predict_volume(model, source, output, *, class_of_interest=None,
                   threshold=None, labels=False, tta=None, tile_size=None,
                   batch_size=None, chunk_size=None, z_chunk=1,
                   scheduler=None, workers=None, progress=True):  # fmt: skip
    """Segment an image larger than memory into an OME-Zarr, chunk by chunk.

    Reads `source` lazily (`keras_unet.volumes.open_volume`: Zarr,
    OME-Zarr, TIFF, a folder of slices as a Z stack), predicts it with
    `keras_unet.chunked.predict_chunked` and writes the probability of the
    class of interest (one channel ``c``) to the new OME-Zarr `output`, with
    its pyramid and, with `labels`, the pixels at or above the decision
    threshold as the label image ``labels/labels`` (`write_ome_zarr`:
    nothing is left behind if the run fails).

    Args:
        model: the path of a ``.keras`` file (a Keras model works on local
            threads only).
        source: the input path.
        output: a new folder ending in ``.zarr``.
        class_of_interest: as in `predict_files`.
        threshold: as in `predict_files`, for the label image.
        labels: also write the label image.
        tta: as in `predict_files`.
        tile_size: as in `predict_files`.
        batch_size: as in `predict_files`.
        chunk_size: as in `predict_chunked`.
        z_chunk: as in `predict_chunked`.
        scheduler: the address of a running ``dask.distributed`` scheduler
            (``tcp://host:8786``); with neither it nor `workers`, Dask's
            threads in this process.
        workers: start a local cluster of this many worker processes.
        progress: show a progress bar.

    Returns:
        The output path.
    """
    from keras_unet.calibration import decision_threshold
    from keras_unet.chunked import predict_chunked
    from keras_unet.config import read_run_info
    from keras_unet.volumes import open_volume, write_ome_zarr

    if threshold is not None:
        check_probability(threshold, "threshold", "a pixel belongs to the "
                          "class when its probability reaches it")  # fmt: skip
    if workers is not None:
        check_int(workers, "workers", 1, "worker processes of a local cluster")
    path = model if isinstance(model, str | pathlib.Path) else None
    info, name = (read_run_info(path), str(path)) if path else ({}, "<model>")
    loaded = _load_model(path) if path else model
    interest = _class_of_interest(loaded, info, class_of_interest)
    if threshold is None:  # calibrated with the run, else 0.5
        threshold = 0.5 if path is None else decision_threshold(path, interest)
    image = open_volume(source)
    probs = predict_chunked(
        path or model, image, chunk_size, z_chunk=z_chunk, tta=tta,
        tile_size=tile_size, batch_size=batch_size,
    )[..., interest : interest + 1]  # fmt: skip
    label_image = (probs[..., 0] >= threshold).astype(np.uint8)
    record = dict(model=name, class_of_interest=interest, tta=tta,
                  decision_threshold=threshold, source=str(source))  # fmt: skip
    with _dask_compute(scheduler, workers, progress) as compute:
        return write_ome_zarr(
            probs, output, labels=label_image if labels else None,
            inputs=[source], compute=compute, metadata=record,
        )  # fmt: skip


@contextlib.contextmanager
def _dask_compute(scheduler, workers, progress):
    """``compute(*delayed)`` on a scheduler at `scheduler`, a local cluster
    of `workers` processes, or Dask's threads; with a progress bar."""
    from keras_unet.chunked import import_dask

    if scheduler is None and workers is None:
        dask = import_dask("dask")
        diagnostics = import_dask("dask.diagnostics")

        def compute(*delayed):
            bar = diagnostics.ProgressBar() if progress else None
            with bar or contextlib.nullcontext():
                dask.compute(*delayed, scheduler="threads")

        yield compute
        return
    if scheduler is not None and workers is not None:
        raise ValueError(
            "Give a scheduler address or a number of local workers, not "
            f"both. Received: scheduler={scheduler!r}, workers={workers!r}"
        )
    distributed = import_dask("distributed")
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None))  # fmt: skip
            scheduler = cluster
        client = stack.enter_context(distributed.Client(scheduler))

        def compute(*delayed):
            futures = client.compute(list(delayed))
            if progress:
                distributed.progress(futures)
            client.gather(futures)

        yield compute


def _write_prediction(out, stem, prob, overlay=None):
    """``<stem>.tif`` (float32 map) and ``overlays/<stem>.png``."""
    path = write_image(out / f"{stem}.tif", np.asarray(prob, np.float32))
    if overlay is not None:
        write_image(out / "overlays" / f"{stem}.png", overlay)
    return path


def _write_record(out, *, model_name, class_of_interest, num_classes, tta,
                  threshold, files):  # fmt: skip
    """``predictions.json``: what the maps are (for `evaluate_predictions`).

    Class 0 of a two-class model is the background/membrane class (its map
    is a membrane probability, as ISBI 2012 scores); any other class is a
    foreground probability, inverted before membrane-based scoring.
    """
    membrane = class_of_interest == 0 and num_classes == 2
    record = {
        "model": model_name,
        "class_of_interest": int(class_of_interest),
        "meaning": "membrane" if membrane else "foreground",
        "decision_threshold": float(threshold),
        "tta": tta if tta is None or isinstance(tta, str | bool) else list(tta),
        "complete": files is not None,
        "files": [pathlib.Path(p).name for p in files or []],
    }
    with atomic_path(out / PREDICTION_INFO) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def evaluate_predictions(
    predictions, labels, output_dir=None, *, invert=None, **kwargs
):
    """ISBI 2012 scores of a folder of probability maps against labels.

    Calls `keras_unet.evaluation.evaluate_folders`. What the maps mean
    comes from ``predictions.json`` (written by `predict_files`): maps of
    a cell class are turned into membrane probabilities (``1 - p``), and
    the model's decision threshold adds the scores at that threshold
    (``*_at_decision``) to the challenge's best-threshold scores. Pass
    `invert` to decide the first yourself.

    Returns:
        The report dict (per image and mean), also written to
        ``output_dir`` as JSON and CSV when given.
    """
    from keras_unet.evaluation import evaluate_folders

    record = _prediction_record(predictions)
    if invert is None:
        invert = record.get("meaning") == "foreground"
    threshold = record.get("decision_threshold")
    if threshold is not None and "decision_threshold" not in kwargs:
        # the record's threshold is on the class of interest's map
        kwargs["decision_threshold"] = 1.0 - threshold if invert else threshold
    kwargs.setdefault("model", record.get("model"))
    return evaluate_folders(
        predictions, labels, output_dir, invert=invert, **kwargs
    )


def _prediction_record(predictions):
    """``predictions.json`` of a folder ({} if none), checked against it.

    Every map must be one the record lists: maps of another model or run
    in the folder are refused rather than scored together.
    """
    from keras_unet.evaluation import PROB_SUFFIXES

    folder = pathlib.Path(predictions)
    path = folder / PREDICTION_INFO
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if "files" not in record:  # written by hand: no list to check
        return record
    listed = set(record["files"])
    maps = {p.name for p in list_files(folder, PROB_SUFFIXES)}
    if not record.get("complete", False) or maps - listed:
        other = ", ".join(sorted(maps - listed)[:3]) or "an unfinished run"
        raise ValueError(
            f"{folder} mixes maps that {record.get('model')} did not write "
            f"({other}) with its predictions; predict again into a new "
            "folder (keras-unet predict writes a folder whole)."
        )
    return record


# --------------------------------------------------------------------------
# The demo: the README's main job.


def demo_config(quick=False):
    """The demo's training settings (a few minutes on 2 CPU cores).

    A `keras_unet.config.TrainConfig`: the synthetic cells (10 images, 8
    train and 2 validate), a depth-3 net of 16 filters on 188 px tiles,
    batches of 4, 15 epochs of 100 steps. ``quick=True`` is a run of
    seconds that checks the whole pipeline.
    """
    from keras_unet.config import TrainConfig

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
            config, steps=4, epochs=2, filters=4, synthetic_count=3,
            synthetic_size=128, batch_size=2, warmup_steps=2,
        )  # fmt: skip
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
    import shutil

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
    from keras_unet import datasets
    from keras_unet.weights import separate_instances

    if data is None:
        images, instances = datasets.synthetic_cells(
            2, config.synthetic_size, seed=seed + 1000
        )
        held_out = [
            # ISBI-style label: cells 1; background and separation lines 0
            (f"heldout_{i}", im, ins, separate_instances(ins).astype(np.uint8))
            for i, (im, ins) in enumerate(zip(images, instances))
        ]
        return config, held_out, 1
    isbi = datasets.load_isbi2012(data, "train")
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


def _score_one(model, item, interest, threshold):
    """Scores and figure panels of one held-out image."""
    from scipy import ndimage

    from keras_unet import figures
    from keras_unet.scores import isbi_scores, seg_iou
    from keras_unet.tiling import predict_tiled

    name, image, instances, label = item
    prob = predict_tiled(model, image, verbose=0)
    scores = isbi_scores(prob[..., 0], label)
    row = {"image": name}
    row.update({k: scores[k] for k in ("pixel_error", "rand_error",
                                       "warping_error")})  # fmt: skip
    chosen = prob[..., interest] >= threshold
    legend = [(figures.RED, f"predicted {_class_name(interest, 2)} "
               f"(p >= {threshold:.2f})")]  # fmt: skip
    if instances is not None:
        segmented, _ = ndimage.label(chosen)
        row["seg_iou"] = seg_iou(segmented, instances)
        panels = [image, figures.color_instances(instances),
                  figures.overlay(image, chosen),
                  figures.color_matched(segmented, instances)]  # fmt: skip
        titles = ["held-out image", "true cells", "predicted cells",
                  "segmented cells"]  # fmt: skip
        legend.append((figures.UNMATCHED, "segmented cells: the colour of "
                       "the true cell matched; grey: none"))  # fmt: skip
    else:
        panels = [image, figures.overlay(image, label == 0),
                  figures.overlay(image, chosen)]  # fmt: skip
        titles = ["held-out slice", "true membrane", "predicted membrane"]
    note = "  ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in row.items()
                     if k != "image")  # fmt: skip
    figure = figures.with_legend(
        figures.panel_grid(panels, titles, ncols=len(panels)), legend, note
    )
    return row, prob[..., interest], figure


def _demo_report(result, rows, out, pred_dir, seconds):
    keys = [k for k in rows[0] if k != "image"]
    history = result.history
    return {
        "data": result.data.description,
        "held_out": rows,
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "training": {
            "train_images": [
                result.data.names[i] for i in result.train_indices
            ],
            "val_images": [result.data.names[i] for i in result.val_indices],
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


def run_demo(output="demo_output", data=None, seed=0, quick=False,
             config=None):  # fmt: skip
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
        config: a `keras_unet.config.TrainConfig` replacing `demo_config`.

    Returns:
        The report dict.
    """
    from keras_unet import train

    out = pathlib.Path(output)
    _prepare_demo_output(out)
    t_start = time.perf_counter()
    config = config or demo_config(quick)
    config, held_out, interest = _demo_data(config, data, seed)
    config = dataclasses.replace(
        config, output=str(out), seed=seed, tensorboard=not quick,
        verbose=0 if quick else 2,
    )  # fmt: skip
    result = train.train(config)
    model = _load_model(out / "best.keras")
    threshold = result.calibration.get("decision_threshold", 0.5)
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    record = dict(
        model_name=str(out / "best.keras"), class_of_interest=interest,
        num_classes=2, tta=None, threshold=threshold,
    )  # fmt: skip
    _write_record(pred_dir, files=None, **record)
    rows, written = [], []
    for item in held_out:
        row, prob, figure = _score_one(model, item, interest, threshold)
        written.append(_write_prediction(pred_dir, item[0], prob, figure))
        rows.append(row)
    _write_record(pred_dir, files=written, **record)
    report = _demo_report(
        result, rows, out, pred_dir, time.perf_counter() - t_start
    )
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
