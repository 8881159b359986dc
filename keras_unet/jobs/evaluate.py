"""Score a folder of predictions, knowing what its maps mean.

``keras-unet evaluate`` as a Python function: the record of a
``keras-unet predict`` folder says what its maps are (membrane or
foreground) and where the model decides.
"""

from __future__ import annotations

from keras_unet.evaluation.folders import evaluate_folders
from keras_unet.jobs.prediction_folder import read_record

__all__ = ["evaluate_predictions"]


def evaluate_predictions(
    predictions, labels, output_dir=None, *, invert=None, **kwargs
):
    """ISBI 2012 scores of a folder of probability maps against labels.

    Calls `keras_unet.evaluation.folders.evaluate_folders`. What the maps mean
    comes from ``predictions.json`` (written by `predict_files`): maps of
    a cell class are turned into membrane probabilities (``1 - p``), and
    the model's decision threshold adds the scores at that threshold
    (``*_at_decision``) to the challenge's best-threshold scores. Pass
    `invert` to decide the first yourself.

    Returns:
        The report dict (per image and mean), also written to
        ``output_dir`` as JSON and CSV when given.
    """
    record = read_record(predictions)
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
