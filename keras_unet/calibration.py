"""The decision threshold of a two-class model, chosen on validation images.

A model trained with class-balanced weights (the paper's maps) predicts the
rare class more often than its frequency: read at probability 0.5 it draws
thick membranes. `calibrate_threshold` finds, on the validation images of
the run, the threshold of the class-of-interest probability with the
lowest pixel error; `keras_unet.train.train` stores the result in the
run's ``config.json`` under ``"calibration"``, and `decision_threshold`
reads it back for ``keras-unet predict``, ``evaluate``, the overlays and
the SavedModel export.
"""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = [
    "THRESHOLDS",
    "calibrate_threshold",
    "decision_threshold",
    "pixel_error_curve",
]

#: Thresholds tried: 0.05, 0.10, ..., 0.95.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def pixel_error_curve(probabilities, targets, masks=None,
                      thresholds=THRESHOLDS):  # fmt: skip
    """Pixel error at every threshold, over a list of images.

    Args:
        probabilities: list of (H, W) probabilities of the class of
            interest.
        targets: list of (H, W) bool, True where the pixel is of that
            class.
        masks: optional list of (H, W) bool, False for pixels to ignore.
        thresholds: the thresholds to try; a pixel is predicted to be of
            the class when its probability is at least the threshold.

    Returns:
        float64 array of pixel errors, one per threshold.

    Examples:
        >>> p = [np.array([[0.2, 0.4], [0.6, 0.9]])]
        >>> t = [np.array([[False, True], [True, True]])]
        >>> pixel_error_curve(p, t, thresholds=(0.3, 0.5)).tolist()
        [0.0, 0.25]
    """
    thresholds = np.asarray(thresholds, np.float64)
    wrong = np.zeros(len(thresholds))
    total = 0
    for i, (prob, target) in enumerate(zip(probabilities, targets)):
        keep = np.ones(prob.shape, bool) if masks is None else masks[i]
        p, t = np.asarray(prob)[keep], np.asarray(target, bool)[keep]
        wrong += [np.count_nonzero((p >= u) != t) for u in thresholds]
        total += p.size
    return wrong / max(total, 1)


def calibrate_threshold(model, images, labels, class_of_interest,
                        weights=None, thresholds=THRESHOLDS):  # fmt: skip
    """Choose the threshold of lowest validation pixel error.

    Args:
        model: a two-class U-Net (logits out).
        images: validation images.
        labels: their class-index labels (same sizes).
        class_of_interest: the class whose probability is thresholded.
        weights: optional weight maps; pixels of weight 0 are ignored.
        thresholds: the thresholds to try.

    Returns:
        A dict: ``decision_threshold``, ``class_of_interest``,
        ``criterion``, ``pixel_error`` (at the threshold),
        ``pixel_error_at_0.5``, and the curve (``thresholds``,
        ``pixel_errors``). Ties go to the threshold closest to 0.5.
    """
    from keras_unet.tiling import predict_tiled

    probs = [
        predict_tiled(model, image, verbose=0)[..., class_of_interest]
        for image in images
    ]
    targets = [np.asarray(lab) == class_of_interest for lab in labels]
    masks = None if weights is None else [np.asarray(w) > 0 for w in weights]
    curve = pixel_error_curve(probs, targets, masks, thresholds)
    ts = np.asarray(thresholds, np.float64)
    ties = np.flatnonzero(curve == curve.min())
    best = int(ties[np.argmin(np.abs(ts[ties] - 0.5))])
    at_half = pixel_error_curve(probs, targets, masks, (0.5,))[0]
    return {
        "decision_threshold": float(ts[best]),
        "class_of_interest": int(class_of_interest),
        "model": "best.keras",
        "criterion": "lowest pixel error on the validation images",
        "pixel_error": float(curve[best]),
        "pixel_error_at_0.5": float(at_half),
        "thresholds": [float(t) for t in ts],
        "pixel_errors": [float(e) for e in curve],
    }


def decision_threshold(model_path, class_of_interest=None, default=0.5):
    """The calibrated threshold of a model file, else `default`.

    Reads ``"calibration"`` from the run's ``config.json`` beside the model
    (written by `keras_unet.train.train` for ``best.keras``). The threshold
    is on the probability of the class it was calibrated for; for the other
    class of a two-class model it is ``1 - threshold``. Another model file
    of the run (``last.keras``) was not calibrated: it gets `default`.

    Args:
        model_path: the ``.keras`` file.
        class_of_interest: the class whose probability is thresholded
            (default: the calibrated one).
        default: the threshold without a calibration.

    Examples:
        >>> decision_threshold("no/such/run/best.keras")
        0.5
    """
    from keras_unet.config import read_run_info

    record = read_run_info(model_path).get("calibration") or {}
    if pathlib.Path(model_path).name != record.get("model", "best.keras"):
        return default
    if "decision_threshold" not in record:
        return default
    threshold = float(record["decision_threshold"])
    if class_of_interest is None or class_of_interest == record.get(
        "class_of_interest"
    ):
        return threshold
    return round(1.0 - threshold, 6)
