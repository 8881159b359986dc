"""The decision threshold of a two-class model, chosen on validation images.

A model trained with class-balanced weights (the paper's maps) predicts the
rare class more often than its frequency: read at probability 0.5 it draws
thick membranes. `calibrate_threshold` finds, on the validation images of
the run, the threshold of the class-of-interest probability with the
lowest pixel error; `keras_unet.training.train.train` stores the result in
the run's ``config.json`` under ``"calibration"``, and
`keras_unet.training.run.Run.threshold` reads it back for ``keras-unet
predict``, ``evaluate``, the overlays and the exports.
"""

from __future__ import annotations

import numpy as np

from keras_unet.inference.tiled import predict_tiled

__all__ = ["THRESHOLDS", "calibrate_threshold", "pixel_error_curve"]

#: Thresholds tried: 0.05, 0.10, ..., 0.95.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def pixel_error_curve(
    probabilities, targets, masks=None, thresholds=THRESHOLDS
):
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


def calibrate_threshold(
    model,
    images,
    labels,
    class_of_interest,
    weights=None,
    thresholds=THRESHOLDS,
):
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
