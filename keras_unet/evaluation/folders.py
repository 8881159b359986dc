"""Score a folder of probability maps against a folder of labels.

`evaluate_folders` reads the maps and labels (`keras_unet.io`), scores each
image with `keras_unet.evaluation.isbi.isbi_scores`, combines them as the ISBI
2012 challenge scored its test stack
(`keras_unet.evaluation.isbi.mean_isbi_scores`) and writes a JSON and a CSV
report. It is what ``keras-unet evaluate`` runs; like
`keras_unet.evaluation.isbi` it imports neither Keras nor TensorFlow, so the
command starts in well under a second.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import pathlib

import numpy as np

from keras_unet.data.normalize import to_float_image
from keras_unet.evaluation import inputs, isbi
from keras_unet.io.atomic import atomic_path, check_output_folder
from keras_unet.io.files import files_by_stem, list_files
from keras_unet.io.images import ARRAY_SUFFIXES, read_array

__all__ = ["evaluate_folders"]

# The columns of metrics.csv (those of the measures computed).
_REPORT_KEYS = (
    "pixel_error",
    "pixel_error_threshold",
    "rand_error",
    "rand_error_threshold",
    "rand_split_score",
    "rand_merge_score",
    "warping_error",
    "warping_error_threshold",
    "pixel_error_at_decision",
    "rand_error_at_decision",
)
_RULE = (
    "membrane where probability >= threshold; label 0 = membrane; cells "
    "4-connected, membranes 8-connected"
)


def evaluate_folders(
    prob_dir,
    label_dir,
    output_dir=None,
    *,
    thresholds=isbi.DEFAULT_THRESHOLDS,
    measures=isbi.MEASURES,
    channel=0,
    invert=False,
    predicted_membrane="singletons",
    decision_threshold=None,
    model=None,
    on_image=None,
    overwrite=False,
) -> dict:
    """Score a folder of membrane probability maps against a folder of labels.

    Files are matched by name stem (``prob_dir/07.tif`` with
    ``label_dir/07.png``). Every probability map needs a label; labels
    without a map are listed in the report and otherwise ignored. Each
    image is scored with `keras_unet.evaluation.isbi.isbi_scores`; the ``mean``
    entry averages the per-threshold curves over the images and takes the
    best threshold of the mean curve (one threshold for the whole set, as
    the challenge scored its test stack).

    Probability maps: float TIFF or ``.npy`` in [0, 1], or 8/16-bit images
    (scaled by `keras_unet.data.normalize.to_float_image`). A (H, W, K) map
    gives its channel `channel` (0: the membrane class of a keras_unet model).
    Labels: binary PNG/TIFF/``.npy``, 0 = membrane.

    Args:
        prob_dir: folder of probability maps.
        label_dir: folder of labels.
        output_dir: if given, ``metrics.json`` (settings, per-image values
            and curves, mean) and ``metrics.csv`` (one row per image and a
            ``mean`` row) are written there atomically.
        thresholds: passed to `isbi_scores`.
        measures: passed to `isbi_scores`.
        channel: channel of multi-channel maps holding the membrane
            probability.
        invert: the maps hold the *cell* probability (use ``1 - map``).
        predicted_membrane: passed to `isbi_scores`.
        decision_threshold: optional membrane-probability threshold at
            which the model is read (see `keras_unet.training.calibration`);
            adds ``pixel_error_at_decision`` and ``rand_error_at_decision`` to
            every row and to the mean.
        model: optional name of the model that made the maps, written in
            ``settings`` and in every row.
        overwrite: replace an earlier report in `output_dir` (a folder
            holding only ``metrics.json`` and ``metrics.csv``).
        on_image: optional callable ``on_image(index, total, row)`` called
            after each image with its report row (e.g. to print progress).

    Returns:
        The report as a dict: ``settings``, ``images`` (one dict per image
        with ``name``, file names and the `isbi_scores` values), ``mean``,
        ``labels_without_map``. NaN values are written as null (JSON) or an
        empty cell (CSV).

    Examples:
        >>> import pathlib, tempfile
        >>> from keras_unet.io.images import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> label = np.full((32, 32), 255, np.uint8); label[:, 15] = 0
        >>> _ = write_image(folder / "labels" / "a.png", label)
        >>> prob = (label == 0).astype(np.float32)
        >>> _ = write_image(folder / "pred" / "a.tif", prob)
        >>> report = evaluate_folders(folder / "pred", folder / "labels")
        >>> report["mean"]["pixel_error"], report["mean"]["rand_error"]
        (0.0, 0.0)

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no maps, a map without label, two files with the same
            stem, or a bad file (its name is in the message).
    """
    settings = {
        "prob_dir": str(prob_dir),
        "label_dir": str(label_dir),
        "thresholds": [float(t) for t in isbi.check_thresholds(thresholds)],
        "measures": list(isbi.check_measures(measures)),
        "channel": _check_channel(channel),
        "invert": bool(invert),
        "predicted_membrane": isbi.check_predicted_membrane(predicted_membrane),
        "rule": _RULE,
        "decision_threshold": None
        if decision_threshold is None
        else float(isbi.check_thresholds(decision_threshold)[0]),
        "model": None if model is None else str(model),
    }
    _check_folders(prob_dir, label_dir, output_dir, overwrite)
    pairs, unpaired = _pair_files(prob_dir, label_dir)
    images = []
    for stem, (prob_path, label_path) in pairs.items():
        row = _score_pair(stem, prob_path, label_path, settings)
        images.append(row if model is None else {**row, "model": str(model)})
        if on_image is not None:
            on_image(len(images) - 1, len(pairs), row)
    mean = {"name": "mean", "n_images": len(images)}
    mean.update(isbi.mean_isbi_scores(images))
    for key in ("pixel_error_at_decision", "rand_error_at_decision"):
        if images and key in images[0]:
            mean[key] = float(np.nanmean([row[key] for row in images]))
    report = {
        "settings": settings,
        "images": images,
        "mean": mean,
        "labels_without_map": unpaired,
    }
    if output_dir is not None:
        _write_report(report, pathlib.Path(output_dir))
    return report


def _check_channel(channel) -> int:
    if not isinstance(channel, numbers.Integral) or channel < 0:
        raise ValueError(
            "`channel` must be a non-negative integer (0 = membrane for "
            f"keras_unet models). Received: channel={channel!r}"
        )
    return int(channel)


# ---------------------------------------------------------------------------
# Steps: pair the files, read and score one pair, write the report
# ---------------------------------------------------------------------------


def _check_folders(prob_dir, label_dir, output_dir, overwrite):
    """Three different folders; the report never replaces the user's files."""
    same = pathlib.Path(prob_dir).resolve() == pathlib.Path(label_dir).resolve()
    if same:
        raise ValueError(
            f"The maps and the labels are the same folder ({prob_dir}): give "
            "the predictions folder and the labels folder."
        )
    if output_dir is None:
        return
    for given, what in ((prob_dir, "maps"), (label_dir, "labels")):
        if pathlib.Path(output_dir).resolve() == pathlib.Path(given).resolve():
            raise ValueError(
                f"The report folder {output_dir} is the {what} folder; "
                "choose another --output."
            )
    check_output_folder(
        output_dir,
        "metrics.json",
        lambda p: p.name in ("metrics.json", "metrics.csv"),
        overwrite,
        "an evaluation report",
    )


def _files_by_stem(folder, what):
    files = list_files(folder, ARRAY_SUFFIXES, what)
    return files_by_stem(files, folder, what)


def _pair_files(prob_dir, label_dir):
    """({stem: (map, label)} sorted by stem, stems of labels without map)."""
    maps = _files_by_stem(prob_dir, "probability map")
    labels = _files_by_stem(label_dir, "label")
    if not maps:
        raise ValueError(
            f"No probability maps ({', '.join(ARRAY_SUFFIXES)}) found in "
            f"{prob_dir}. Received: prob_dir={str(prob_dir)!r}"
        )
    missing = sorted(set(maps) - set(labels))
    if missing:
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        have = ", ".join(sorted(labels)[:10]) or "none"
        raise ValueError(
            f"{len(missing)} probability map(s) have no label with the same "
            f"name stem in {label_dir}: {shown}. Labels found there: {have}."
            f" Received: prob_dir={str(prob_dir)!r}, "
            f"label_dir={str(label_dir)!r}"
        )
    pairs = {stem: (maps[stem], labels[stem]) for stem in sorted(maps)}
    return pairs, sorted(set(labels) - set(maps))


def _score_pair(stem, prob_path, label_path, settings):
    """The report row of one image; errors name its two files."""
    try:
        prob = _read_prob(prob_path, settings["channel"], settings["invert"])
        cells = inputs.check_label(read_array(label_path))
        inputs.check_same_shape(prob, cells, "probability map")
    except ValueError as e:
        raise ValueError(f"{prob_path.name} / {label_path.name}: {e}") from e
    values = isbi.isbi_scores(
        prob,
        cells,
        settings["thresholds"],
        measures=settings["measures"],
        predicted_membrane=settings["predicted_membrane"],
    )
    row = {
        "name": stem,
        "prob_file": prob_path.name,
        "label_file": label_path.name,
        **values,
    }
    t = settings["decision_threshold"]
    if t is not None:
        row["pixel_error_at_decision"] = isbi.pixel_error(prob, cells, t)
        rand = isbi.rand_error(prob, cells, t, settings["predicted_membrane"])
        row["rand_error_at_decision"] = rand["rand_error"]
    return row


def _read_prob(path, channel, invert):
    a = read_array(path)
    if a.ndim == 3 and a.shape[-1] > 1:
        if a.shape[0] < a.shape[-1] and a.shape[0] <= 8:
            raise ValueError(
                "the probability map looks channel-first (classes, height, "
                "width); save it channel-last (height, width, classes). "
                f"Received: shape={a.shape}"
            )
        if not 0 <= channel < a.shape[-1]:
            raise ValueError(
                f"`channel`={channel} is out of range for a map with "
                f"{a.shape[-1]} channels. Received: shape={a.shape}"
            )
        a = a[..., channel]
    if np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 1:
        a = to_float_image(a)  # 8/16-bit images: scaled to [0, 1]
    a = inputs.check_membrane_prob(a, "probability map")
    return 1.0 - a if invert else a


def _write_report(report, output_dir):
    """metrics.json and metrics.csv, each written atomically."""
    mean = report["mean"]
    keys = [k for k in _REPORT_KEYS if k in mean]
    with atomic_path(output_dir / "metrics.json") as tmp:
        tmp.write_text(
            json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n"
        )
    with atomic_path(output_dir / "metrics.csv") as tmp:
        tmp.write_text(_csv_text([*report["images"], mean], keys))


def _csv_text(rows, keys):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *keys])
    for row in rows:
        writer.writerow(
            [row["name"]]
            + [
                ""
                if row.get(k) is None or _isnan(row.get(k))
                else f"{row[k]:.6g}"
                for k in keys
            ]
        )
    return buf.getvalue()


def _isnan(x):
    return isinstance(x, float) and math.isnan(x)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if _isnan(obj):
        return None
    return obj
