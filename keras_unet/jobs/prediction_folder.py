"""What a folder of predictions holds, written and read: ``predictions.json``.

``keras-unet predict`` (and the demo) write ``<stem>.tif`` maps,
``overlays/<stem>.png`` and the record ``predictions.json``: the model,
the class, what its map means and the decision threshold, and the list of
files. ``evaluate`` reads the record to know what the maps mean, and
refuses maps the record does not list.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from keras_unet.io.atomic import atomic_path, check_output_folder
from keras_unet.io.files import list_files
from keras_unet.io.images import ARRAY_SUFFIXES, write_image

__all__ = [
    "PREDICTION_INFO",
    "check_prediction_folder",
    "read_record",
    "write_prediction",
    "write_record",
]

PREDICTION_INFO = "predictions.json"


def check_prediction_folder(out, overwrite=False):
    """Refuse an output folder that would mix or lose results.

    An empty or absent folder is fine. A folder of earlier predictions
    (``predictions.json``, ``<stem>.tif``, ``overlays/<stem>.png`` and
    nothing else) is replaced only with `overwrite`; any other content is
    the user's and is never replaced.
    """
    record = pathlib.Path(out) / PREDICTION_INFO
    model = "?"
    if record.is_file():
        model = json.loads(record.read_text()).get("model", "?")
    check_output_folder(
        out, PREDICTION_INFO, _ours, overwrite, f"predictions of {model}"
    )


def _ours(path):
    """Whether `path` is a file `predict_files` writes."""
    if path.name == PREDICTION_INFO:
        return True
    if path.is_dir():
        return path.name == "overlays" and all(
            p.is_file() and p.suffix == ".png" for p in path.iterdir()
        )
    return path.is_file() and path.suffix == ".tif"


def write_prediction(out, stem, prob, overlay=None):
    """``<stem>.tif`` (float32 map) and ``overlays/<stem>.png``."""
    path = write_image(out / f"{stem}.tif", np.asarray(prob, np.float32))
    if overlay is not None:
        write_image(out / "overlays" / f"{stem}.png", overlay)
    return path


def write_record(out, *, model_name, decision, tta, files):
    """``predictions.json``: what the maps are (for `evaluate_predictions`).

    `decision` is the `keras_unet.training.run.Decision` the maps were
    read at. A membrane map (class 0 of a two-class model: background and
    borders) is what ISBI 2012 scores; any other map is a foreground
    probability, inverted before membrane-based scoring. `files` None
    marks a folder still being written.
    """
    membrane = decision.meaning == "membrane"
    record = {
        "model": model_name,
        "class_of_interest": int(decision.class_of_interest),
        "meaning": "membrane" if membrane else "foreground",
        "decision_threshold": float(decision.threshold),
        "tta": tta if tta is None or isinstance(tta, str | bool) else list(tta),
        "complete": files is not None,
        "files": [pathlib.Path(p).name for p in files or []],
    }
    with atomic_path(out / PREDICTION_INFO) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def read_record(predictions):
    """``predictions.json`` of a folder ({} if none), checked against it.

    Every map must be one the record lists: maps of another model or run
    in the folder are refused rather than scored together.
    """
    folder = pathlib.Path(predictions)
    path = folder / PREDICTION_INFO
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if "files" not in record:  # written by hand: no list to check
        return record
    listed = set(record["files"])
    maps = {p.name for p in list_files(folder, ARRAY_SUFFIXES)}
    if not record.get("complete", False) or maps - listed:
        other = ", ".join(sorted(maps - listed)[:3]) or "an unfinished run"
        raise ValueError(
            f"{folder} mixes maps that {record.get('model')} did not write "
            f"({other}) with its predictions; predict again into a new "
            "folder (keras-unet predict writes a folder whole)."
        )
    return record
