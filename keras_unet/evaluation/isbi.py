"""The ISBI 2012 measures of the U-Net paper, with numpy and scipy only.

The paper reports the ISBI 2012 EM challenge's warping, Rand and pixel
errors. Their reference implementations are Java code inside Fiji; this
module computes them with numpy/scipy (it imports neither Keras nor
TensorFlow):

- `isbi_scores`: pixel, Rand and warping error of a membrane probability map
  against an ISBI-style label, each at the best of several thresholds, as
  the challenge scored them; `pixel_error`, `rand_error`, `warping_error`
  compute one measure at one threshold; `mean_isbi_scores` combines the
  scores of several images as the challenge scored a stack.
- `check_thresholds`, `check_measures`, `check_predicted_membrane`: the
  checks of their settings (the maps and labels are checked by
  `keras_unet.evaluation.inputs`).

The Cell Tracking Challenge's SEG is `keras_unet.evaluation.seg`; folders of
maps are scored by `keras_unet.evaluation.folders`; the Keras metrics to
watch during training are `keras_unet.model.metrics`.

Conventions (the ISBI 2012 label files'): label 0 = membrane, non-zero =
cell; ``membrane_prob`` is the membrane probability in [0, 1] (for a 2-class
keras_unet model, ``softmax(logits)[..., 0]``). At threshold ``t`` a pixel is
predicted membrane when ``membrane_prob >= t`` (the challenge's Fiji code
thresholds the cell map ``1 - membrane_prob``: cell where it is above
``1 - t``). Cells are 4-connected and membranes 8-connected, as there.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import ndimage

from keras_unet.checks import check_choice, check_probability
from keras_unet.evaluation import topology
from keras_unet.evaluation.inputs import (
    check_label,
    check_membrane_prob,
    check_same_shape,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MEASURES",
    "check_measures",
    "check_predicted_membrane",
    "check_thresholds",
    "isbi_scores",
    "mean_isbi_scores",
    "pixel_error",
    "rand_error",
    "warping_error",
]

#: Thresholds applied to the membrane probability by `isbi_scores`:
#: 0.1, 0.2, ..., 0.9. (The challenge thresholded at "several levels"; 0 and
#: 1 are left out because for a soft-max output they mark (almost) every or
#: no pixel as membrane.)
DEFAULT_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: The measures `isbi_scores` can compute.
MEASURES = ("pixel", "rand", "warping")
# 4-connectivity for cells (foreground), as Fiji's connectedComponents(.., 4).
_CELL_STRUCTURE = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


# ---------------------------------------------------------------------------
# The ISBI 2012 measures at one threshold (on validated arrays)
# ---------------------------------------------------------------------------


def _cells(mask):
    """4-connected components of a cell mask: (labels int32, count)."""
    labels, n = ndimage.label(mask, structure=_CELL_STRUCTURE)
    return labels, int(n)


def _pixel_error(membrane, cells) -> float:
    # membrane predicted where the label says cell, or vice versa
    return float(np.count_nonzero(membrane == cells)) / cells.size


def _pair_counts(a, b, nb):
    """Counts of the pairs (a[i], b[i]) as a flat array (zeros dropped)."""
    idx = a.astype(np.int64) * (nb + 1) + b
    if (int(a.max(initial=0)) + 1) * (nb + 1) <= 1 << 24:
        counts = np.bincount(idx)
        return counts[counts > 0]
    return np.unique(idx, return_counts=True)[1]


def _rand_scores(gt_seg, pred_seg, n_pred):
    """Foreground-restricted Rand F-score, split and merge scores.

    Only pixels inside ground-truth cells are scored; predicted label 0
    (membrane) pixels are singletons. N^2 normalization as in Arganda-
    Carreras et al. (2015) and Fiji's ``RandError.foregroundRestrictedStatsN2``.
    """
    inside = gt_seg > 0
    g = gt_seg[inside]
    if g.size == 0:
        return math.nan, math.nan, math.nan
    p = pred_seg[inside]
    singletons = float(np.count_nonzero(p == 0))
    assigned = p > 0
    n_ij = _pair_counts(g[assigned], p[assigned], n_pred).astype(np.float64)
    t = np.bincount(g).astype(np.float64)  # ground-truth segment sizes
    s = np.bincount(p[assigned]).astype(np.float64)  # predicted sizes
    sum_p2 = float(n_ij @ n_ij) + singletons
    sum_t2 = float(t @ t)
    sum_s2 = float(s @ s) + singletons
    split = sum_p2 / sum_t2
    merge = sum_p2 / sum_s2
    fscore = 2.0 * sum_p2 / (sum_t2 + sum_s2)
    return fscore, split, merge


def _predicted_segments(membrane, predicted_membrane):
    seg, n = _cells(~membrane)
    if predicted_membrane == "nearest" and n > 0 and membrane.any():
        # every membrane pixel joins the cell of its nearest cell pixel
        iy, ix = ndimage.distance_transform_edt(
            membrane, return_distances=False, return_indices=True
        )
        seg = seg[iy, ix]
    return seg, n


def _warping_error(prob, membrane, cells, threshold, return_warped=False):
    target = ~membrane
    warped = topology.warp(cells, target, np.abs(prob - threshold))
    error = float(np.count_nonzero(warped != target)) / cells.size
    return (error, warped) if return_warped else error


# ---------------------------------------------------------------------------
# Public numpy measures
# ---------------------------------------------------------------------------


def _checked(membrane_prob, label):
    """(membrane probability, cell mask) of one image, checked."""
    prob = check_membrane_prob(membrane_prob)
    cells = check_label(label)
    check_same_shape(prob, cells)
    return prob, cells


def pixel_error(membrane_prob, label, threshold=0.5) -> float:
    """Pixel error: the fraction of pixels labelled wrongly at `threshold`.

    Args:
        membrane_prob: (H, W) membrane probability in [0, 1] (or a bool
            membrane mask).
        label: (H, W) binary label, 0 = membrane, non-zero = cell.
        threshold: a pixel is predicted membrane when its probability is
            at least this.

    Returns:
        ``1 - (correctly labelled pixels) / (all pixels)``.

    Examples:
        >>> label = np.full((8, 8), 255, np.uint8); label[:, 4] = 0
        >>> prob = np.zeros((8, 8)); prob[:, 4:6] = 0.9
        >>> pixel_error(prob, label)  # the 8 pixels of column 5 are wrong
        0.125

    Reference:
        Arganda-Carreras et al. Crowdsourcing the creation of image
        segmentation algorithms for connectomics. Front. Neuroanat. 9:142
        (2015).
    """
    prob, cells = _checked(membrane_prob, label)
    return _pixel_error(prob >= _check_threshold(threshold), cells)


def rand_error(
    membrane_prob, label, threshold=0.5, predicted_membrane="singletons"
) -> dict:
    """Foreground-restricted Rand error (1 - V_rand) at one threshold.

    Segments are the 4-connected cells: of the label (pixels != 0) and of
    the prediction (pixels with ``membrane_prob < threshold``). Pairs of
    pixels are compared only inside ground-truth cells (ground-truth
    membrane is not scored). The F-score of the Rand split and merge scores
    is V_rand of Arganda-Carreras et al. (2015), with the normalization of
    the challenge's Fiji code (``RandError.foregroundRestrictedStatsN2``).

    Predicted membrane pixels inside ground-truth cells belong to no
    predicted cell. With ``predicted_membrane="singletons"`` (the
    challenge's rule) each is a segment of its own, so thick predicted
    membranes cost split score; with ``"nearest"`` each joins the
    predicted cell nearest to it (Euclidean distance), which scores the
    cell partition independently of the membrane width (like the
    challenge's later "thinned" scores); without any predicted cell they
    stay singletons.

    Args:
        membrane_prob: (H, W) membrane probability in [0, 1].
        label: (H, W) binary label, 0 = membrane, non-zero = cell.
        threshold: a pixel is predicted membrane when its probability is
            at least this.
        predicted_membrane: ``"singletons"`` or ``"nearest"``, see above.

    Returns:
        A dict with ``rand_error`` (1 - V_rand), ``rand_split_score``
        (V_split: 1 when no ground-truth cell is split) and
        ``rand_merge_score`` (V_merge: 1 when no two cells are merged). All
        are NaN when the label has no cell pixel.

    Examples:
        >>> label = np.full((8, 8), 255, np.uint8); label[:, 4] = 0
        >>> prob = np.zeros((8, 8)); prob[:, 4] = 1.0; prob[3, 4] = 0.2
        >>> rand_error(prob, label)["rand_merge_score"] < 1  # a gap merges
        True

    Reference:
        Arganda-Carreras et al. Crowdsourcing the creation of image
        segmentation algorithms for connectomics. Front. Neuroanat. 9:142
        (2015).
    """
    prob, cells = _checked(membrane_prob, label)
    check_predicted_membrane(predicted_membrane)
    gt_seg, _ = _cells(cells)
    membrane = prob >= _check_threshold(threshold)
    seg, n = _predicted_segments(membrane, predicted_membrane)
    f, split, merge = _rand_scores(gt_seg, seg, n)
    return {
        "rand_error": 1.0 - f,
        "rand_split_score": split,
        "rand_merge_score": merge,
    }


def warping_error(membrane_prob, label, threshold=0.5, return_warped=False):
    """Warping error of Jain et al. (2010) at one threshold.

    The ground truth is warped toward the thresholded proposal by flipping,
    one after another, only *simple* pixels where the two disagree (a simple
    pixel's flip neither splits, merges, creates nor deletes a cell or a
    hole), visiting the most confident disagreements first (largest
    ``|membrane_prob - threshold|``) and repeating until nothing can flip.
    The warping error is the fraction of pixels that still disagree: only
    topological differences (splits, merges, missing or extra cells and
    holes) are left, so a boundary that is shifted by less than its
    thickness, or thickened, costs nothing.

    As in the ISBI 2012 evaluation (Fiji's "Topology preserving warping
    error", ``trainableSegmentation.metrics.WarpingError``) the ground
    truth is the image that is warped, cells are 4-connected and membranes
    8-connected, and pixels outside the image count as membrane. The
    result equals Fiji's pixel for pixel, including its visit order (ties
    in confidence, compared in float32, go in column-major scan order):
    Fiji visits the disagreements one by one, this implementation decides
    whole waves of non-adjacent pixels at once with the same outcome (see
    ``keras_unet.evaluation.topology.warp``; the tests check it against a
    line-by-line port of Fiji's loop). Only pixels that disagree are ever
    flipped, so a thin boundary moved by more than its width is counted,
    and the greedy relaxation can leave a pixel or two at a junction of a
    merely shifted boundary, as in the reference.

    Args:
        membrane_prob: (H, W) membrane probability in [0, 1].
        label: (H, W) binary label, 0 = membrane, non-zero = cell.
        threshold: a pixel is predicted membrane when its probability is
            at least this.
        return_warped: also return the warped ground truth.

    Returns:
        The warping error (a float), or ``(error, warped_cells)`` where
        ``warped_cells`` is the warped ground-truth cell mask (H, W) bool;
        ``warped_cells != (membrane_prob < threshold)`` marks the
        topological errors.

    Examples:
        >>> label = np.full((8, 8), 255, np.uint8); label[:, 4] = 0
        >>> prob = np.zeros((8, 8)); prob[:, 5] = 1.0  # the wall, shifted
        >>> warping_error(prob, label)
        0.0
        >>> prob[3, 5] = 0.0  # a gap that merges the two cells
        >>> warping_error(prob, label) > 0
        True

    Reference:
        Jain et al. Boundary learning by optimization with topological
        constraints. CVPR 2010, pp. 2488-2495.
    """
    prob, cells = _checked(membrane_prob, label)
    t = _check_threshold(threshold)
    return _warping_error(prob, prob >= t, cells, t, return_warped)


def _best(values, thresholds):
    """Minimum of a curve; ties go to the threshold closest to 0.5."""
    v = np.asarray(values, np.float64)
    if np.all(np.isnan(v)):
        return math.nan, math.nan, None
    best = np.nanmin(v)
    ties = np.flatnonzero(v == best)
    i = int(ties[np.argmin(np.abs(thresholds[ties] - 0.5))])
    return float(best), float(thresholds[i]), i


def isbi_scores(
    membrane_prob,
    label,
    thresholds=DEFAULT_THRESHOLDS,
    *,
    measures=MEASURES,
    predicted_membrane="singletons",
) -> dict:
    """Pixel, Rand and warping error of one image, as the ISBI 2012 scored.

    The membrane probability map is thresholded at each of `thresholds`
    (membrane where the probability is at least the threshold); each measure
    is computed at every threshold and its best (lowest) value is reported
    with the threshold that gave it, as the challenge did. Ties go to the
    threshold closest to 0.5.

    - Pixel error: 1 - the fraction of pixels labelled correctly.
    - Rand error: 1 - the foreground-restricted Rand F-score V_rand of
      Arganda-Carreras et al. (2015); see `rand_error`.
    - Warping error: Jain et al. (2010); see `warping_error`.

    Args:
        membrane_prob: (H, W) membrane probability in [0, 1]; for a 2-class
            keras_unet model, ``softmax(logits)[..., 0]``.
        label: (H, W) binary label in the challenge's convention: 0 =
            membrane, non-zero = cell (e.g. the 0/255 ISBI PNGs).
        thresholds: the thresholds to try (default 0.1, 0.2, ..., 0.9).
        measures: any of ``("pixel", "rand", "warping")``; the warping
            error is the slowest.
        predicted_membrane: how the Rand error treats predicted membrane
            pixels, ``"singletons"`` (the challenge) or ``"nearest"``.

    Returns:
        A dict with, for each computed measure, its best value and the
        threshold that gave it (``pixel_error``,
        ``pixel_error_threshold``, ``rand_error``, ``rand_error_threshold``,
        ``warping_error``, ``warping_error_threshold``), the Rand split and
        merge scores at the Rand threshold (``rand_split_score``,
        ``rand_merge_score``), ``thresholds``, and ``curves``: the value of
        every measure at every threshold (lists, for plotting). Rand values
        are NaN when the label has no cell pixel.

    Examples:
        >>> import scipy.ndimage
        >>> label = np.full((64, 64), 255, np.uint8); label[:, 31:33] = 0
        >>> prob = scipy.ndimage.gaussian_filter((label == 0) * 1.0, 1.0)
        >>> scores = isbi_scores(prob, label)
        >>> scores["warping_error"], scores["rand_error"]
        (0.0, 0.0)

    Reference:
        Arganda-Carreras et al. Crowdsourcing the creation of image
        segmentation algorithms for connectomics. Front. Neuroanat. 9:142
        (2015). Jain et al. Boundary learning by optimization with
        topological constraints. CVPR 2010.
    """
    prob, cells = _checked(membrane_prob, label)
    ts = check_thresholds(thresholds)
    measures = check_measures(measures)
    check_predicted_membrane(predicted_membrane)
    return _isbi_scores(prob, cells, ts, measures, predicted_membrane)


def _isbi_scores(prob, cells, ts, measures, predicted_membrane):
    curves = {}
    if "pixel" in measures:
        curves["pixel_error"] = []
    if "rand" in measures:
        gt_seg, _ = _cells(cells)
        curves.update(rand_error=[], rand_split_score=[], rand_merge_score=[])
    if "warping" in measures:
        curves["warping_error"] = []
    for t in ts:
        membrane = prob >= t
        if "pixel" in measures:
            curves["pixel_error"].append(_pixel_error(membrane, cells))
        if "rand" in measures:
            seg, n = _predicted_segments(membrane, predicted_membrane)
            f, split, merge = _rand_scores(gt_seg, seg, n)
            curves["rand_error"].append(1.0 - f)
            curves["rand_split_score"].append(split)
            curves["rand_merge_score"].append(merge)
        if "warping" in measures:
            curves["warping_error"].append(
                _warping_error(prob, membrane, cells, t)
            )
    return _summarize(curves, ts)


def mean_isbi_scores(scores):
    """Combine per-image `isbi_scores` results as the challenge scored a stack.

    The per-threshold curves are averaged over the images, and each measure
    takes its best value on the mean curve: one threshold for the whole
    set.

    Args:
        scores: a list of dicts returned by `isbi_scores` (same thresholds).

    Returns:
        A dict of the same form as `isbi_scores` returns.

    Examples:
        >>> label = np.full((8, 8), 255, np.uint8); label[:, 4] = 0
        >>> good = isbi_scores(label == 0, label, measures="pixel")
        >>> poor = isbi_scores(np.zeros((8, 8)), label, measures="pixel")
        >>> mean_isbi_scores([good, poor])["pixel_error"]  # (0 + 1/8) / 2
        0.0625
    """
    scores = list(scores)
    if not scores:
        raise ValueError("`scores` is empty: nothing to average.")
    ts = np.asarray(scores[0]["thresholds"], dtype=float)
    for s in scores[1:]:
        if not np.array_equal(np.asarray(s["thresholds"], dtype=float), ts):
            raise ValueError("All scores must use the same thresholds.")
    curves = [s["curves"] for s in scores]
    mean_curves = {k: _nanmean_rows([c[k] for c in curves]) for k in curves[0]}
    return _summarize(mean_curves, ts)


def _nanmean_rows(rows):
    """Mean over images of per-threshold values, skipping NaN (no cells)."""
    a = np.asarray(rows, np.float64)
    valid = ~np.isnan(a)
    n = valid.sum(axis=0)
    total = np.where(valid, a, 0.0).sum(axis=0)
    return [float(x) for x in np.where(n > 0, total / np.maximum(n, 1), np.nan)]


def _summarize(curves, ts):
    result = {}
    for name in ("pixel_error", "rand_error", "warping_error"):
        if name not in curves:
            continue
        value, threshold, i = _best(curves[name], ts)
        result[name] = value
        result[f"{name}_threshold"] = threshold
        if name == "rand_error":
            for part in ("rand_split_score", "rand_merge_score"):
                result[part] = math.nan if i is None else float(curves[part][i])
    result["thresholds"] = [float(t) for t in ts]
    result["curves"] = {k: [float(x) for x in v] for k, v in curves.items()}
    return result


_PREDICTED_MEMBRANE = ("singletons", "nearest")


def _check_threshold(threshold, name="threshold") -> float:
    return check_probability(
        threshold,
        name,
        "a pixel is membrane when its probability is at least that",
    )


def check_thresholds(thresholds) -> np.ndarray:
    """A number or a non-empty sequence of numbers in [0, 1], as float64.

    Examples:
        >>> check_thresholds([0.25, 0.5])
        array([0.25, 0.5 ])
    """
    if isinstance(thresholds, numbers.Real):
        thresholds = [thresholds]
    try:
        values = [
            _check_threshold(t, "thresholds[i]") for t in list(thresholds)
        ]
    except (TypeError, ValueError):
        values = None
    if not values:
        raise ValueError(
            "`thresholds` must be a non-empty sequence of numbers in [0, 1]"
            f", e.g. {DEFAULT_THRESHOLDS}. Received: thresholds={thresholds!r}"
        )
    return np.asarray(values, np.float64)


def check_measures(measures) -> tuple:
    """A non-empty subset of `MEASURES`, in the order of `MEASURES`.

    Examples:
        >>> check_measures(("warping", "pixel"))
        ('pixel', 'warping')
    """
    if isinstance(measures, str):
        measures = (measures,)
    measures = tuple(measures)
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise ValueError(
            f"`measures` must be a non-empty subset of {MEASURES}. "
            f"Received: measures={measures!r}"
        )
    return tuple(m for m in MEASURES if m in measures)


def check_predicted_membrane(predicted_membrane):
    """``"singletons"`` or ``"nearest"``: the Rand error's rule for predicted
    membrane pixels inside ground-truth cells (see `rand_error`)."""
    return check_choice(
        predicted_membrane,
        "predicted_membrane",
        _PREDICTED_MEMBRANE,
        "'singletons': the challenge's rule, every predicted membrane pixel "
        "is a segment of its own; 'nearest': it joins the nearest predicted "
        "cell",
    )
