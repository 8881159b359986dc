"""The Cell Tracking Challenge SEG measure of instance segmentations.

numpy only (it imports neither Keras nor TensorFlow).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["seg_iou"]


def _instances(a, name) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(
            f"`{name}` must be a 2D or 3D instance label image (0 = "
            f"background, one id per object). Received: shape={a.shape}"
        )
    if a.dtype == bool:
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(
                f"`{name}` must hold integer object ids (0 = background); "
                "it has non-integer or non-finite values. "
                f"Received: dtype={a.dtype}"
            )
    elif a.dtype.kind not in "iu":
        raise ValueError(
            f"`{name}` must be an integer instance label image. "
            f"Received: dtype={a.dtype}"
        )
    if a.size and a.min() < 0:
        raise ValueError(
            f"`{name}` has negative ids; use 0 for background and positive "
            f"ids for objects. Received: min={a.min()}"
        )
    return a


def _compact(ids):
    """Relabel to 0 (background) and 1..n, keeping 0 as background."""
    values, inverse = np.unique(ids, return_inverse=True)
    if values[0] != 0:
        inverse = inverse + 1
        return inverse, values.size
    return inverse, values.size - 1


def seg_iou(pred_instances, gt_instances) -> float:
    """Cell Tracking Challenge SEG: mean Jaccard index of ground-truth objects.

    A predicted object matches a ground-truth object when it covers more
    than half of its pixels (so at most one can); the object scores the
    Jaccard index ``|P & G| / |P | G|`` of the pair, or 0 without a match.
    SEG is the mean over the ground-truth objects. Object ids are arbitrary
    (only equality matters); 0 is background in both images.

    Args:
        pred_instances: predicted instance labels, (H, W) or (D, H, W),
            integer (or bool for a single object).
        gt_instances: ground-truth instance labels of the same shape.

    Returns:
        SEG in [0, 1]; NaN when `gt_instances` has no object (SEG is
        undefined there; the challenge skips such frames).

    Examples:
        >>> gt = np.zeros((6, 6), int); gt[:3, :3] = 1; gt[3:, 3:] = 2
        >>> pred = np.zeros((6, 6), int); pred[:3, :2] = 7  # 6 of 9 pixels
        >>> float(seg_iou(pred, gt))  # object 1: 6/9, object 2: no match
        0.3333333333333333

    Reference:
        Maska et al. A benchmark for comparison of cell tracking algorithms.
        Bioinformatics 30(11):1609-1617 (2014); Ulman et al. An objective
        comparison of cell-tracking algorithms. Nat. Methods 14:1141 (2017).
    """
    pred = _instances(pred_instances, "pred_instances")
    gt = _instances(gt_instances, "gt_instances")
    if pred.shape != gt.shape:
        raise ValueError(
            "`pred_instances` and `gt_instances` must have the same shape. "
            f"Received: pred_instances.shape={pred.shape}, "
            f"gt_instances.shape={gt.shape}"
        )
    g, n_gt = _compact(gt.ravel())
    if n_gt == 0:
        return math.nan
    p, n_pred = _compact(pred.ravel())
    gt_size = np.bincount(g, minlength=n_gt + 1)
    pred_size = np.bincount(p, minlength=n_pred + 1)
    both = (g > 0) & (p > 0)
    pairs, overlap = np.unique(
        g[both].astype(np.int64) * (n_pred + 1) + p[both], return_counts=True
    )
    gi, pi = pairs // (n_pred + 1), pairs % (n_pred + 1)
    matched = 2 * overlap > gt_size[gi]  # at most one per gt object
    ov = overlap[matched]
    jaccard = ov / (gt_size[gi[matched]] + pred_size[pi[matched]] - ov)
    return float(jaccard.sum() / n_gt)
