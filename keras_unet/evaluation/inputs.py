"""The checks of the maps and labels the evaluation measures score.

Conventions (the ISBI 2012 label files'): label 0 = membrane, non-zero =
cell; a membrane probability map holds values in [0, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_label", "check_membrane_prob", "check_same_shape"]

# Tolerance for float rounding in probabilities (soft-max in float32).
_PROB_TOLERANCE = 1e-5


def _squeeze_channel(a):
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def check_membrane_prob(membrane_prob, name="membrane_prob") -> np.ndarray:
    """Validate a membrane probability map; return float64 (H, W) in [0, 1].

    Accepts (H, W) or (H, W, 1) float maps in [0, 1] (float32 rounding of a
    soft-max tolerated), bool masks and 0/1 integer maps. Logits, 8-bit
    images, NaNs and multi-class outputs are refused with the fix in the
    message.

    Args:
        membrane_prob: the map.
        name: the argument's name in error messages.

    Examples:
        >>> check_membrane_prob(np.array([[0, 1]], bool))
        array([[0., 1.]])
    """
    a = _squeeze_channel(np.asarray(membrane_prob))
    if a.ndim != 2:
        hint = ""
        if a.ndim == 3:
            hint = (
                " For a (height, width, classes) soft-max output of a "
                "keras_unet model pass p[..., 0] (class 0 = membrane)."
            )
        if a.ndim == 4:
            hint = " Pass one image at a time (no batch axis)."
        raise ValueError(
            f"`{name}` must be a 2D (height, width) map of membrane "
            f"probabilities.{hint} Received: shape={a.shape}"
        )
    if a.size == 0:
        raise ValueError(f"`{name}` is empty. Received: shape={a.shape}")
    if a.dtype == bool:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"`{name}` has integer dtype {a.dtype} with values {lo}..{hi}"
                "; probabilities must lie in [0, 1]. Convert an 8- or 16-bit "
                "image with keras_unet.data.normalize.to_float_image (divides "
                "by 255 or 65535) first. "
                f"Received: dtype={a.dtype}, min={lo}, max={hi}"
            )
        return a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(
            f"`{name}` must be a float (or bool) array of probabilities. "
            f"Received: dtype={a.dtype}"
        )
    return _probabilities(a.astype(np.float64), name)


def _probabilities(a, name):
    """Float map -> the same in [0, 1], or an error that names the cause."""
    finite = np.isfinite(a)
    if not finite.all():
        raise ValueError(
            f"`{name}` has {int(a.size - finite.sum())} NaN or infinite "
            "value(s); a probability map must be finite (check the model "
            "output and the file it was read from)."
        )
    lo, hi = float(a.min()), float(a.max())
    if lo < -_PROB_TOLERANCE or hi > 1 + _PROB_TOLERANCE:
        outside = int(np.count_nonzero((a < 0) | (a > 1)))
        beyond = max(-lo, hi - 1.0)
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1], but its values "
            f"range from {lo:.4g} to {hi:.4g}: {outside} pixel(s) are "
            f"outside, by up to {beyond:.4g}. Logits? Apply the soft-max over"
            " the class axis first, e.g. keras.ops.softmax(logits, axis=-1)"
            "[..., 0] for the membrane class. Received: "
            f"min={lo:.4g}, max={hi:.4g}"
        )
    return np.clip(a, 0.0, 1.0)


def check_label(label, name="label") -> np.ndarray:
    """Validate an ISBI-style label; return the cell mask (label != 0).

    The label must be binary, 0 = membrane and one non-zero value = cell
    (the 0/255 ISBI PNGs); grey RGB(A) images and a trailing channel of 1
    are accepted.

    Args:
        label: the (H, W) label image.
        name: the argument's name in error messages.

    Examples:
        >>> check_label(np.array([[0, 255]], np.uint8))
        array([[False,  True]])
    """
    a = np.asarray(label)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3]
        if np.all(rgb == rgb[..., :1]):
            a = a[..., 0]
        else:
            raise ValueError(
                f"`{name}` is a colour image; expected a single-channel "
                "label (0 = membrane, non-zero = cell). "
                f"Received: shape={a.shape}"
            )
    a = _squeeze_channel(a)
    if a.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2D (height, width) label image (0 = "
            f"membrane, non-zero = cell). Received: shape={a.shape}"
        )
    if a.size == 0:
        raise ValueError(f"`{name}` is empty. Received: shape={a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be a numeric label image. Received: dtype={a.dtype}"
        )
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` has NaN or infinite values.")
    values = np.unique(a)
    if values.size > 2:
        shown = ", ".join(f"{v:g}" for v in values[:6])
        more = ", ..." if values.size > 6 else ""
        raise ValueError(
            f"`{name}` must be binary (0 = membrane, one non-zero value = "
            f"cell), but it has {values.size} distinct values ({shown}{more})."
            " Lossy (JPEG) files and resizing with interpolation create "
            "intermediate values: use PNG/TIFF and nearest-neighbour "
            "resizing. For instance labels (one id per cell) use "
            f"keras_unet.evaluation.seg.seg_iou. Received: {values.size} values"
        )
    if values.size == 2 and values[0] != 0:
        raise ValueError(
            f"`{name}` has the two values {values[0]:g} and {values[1]:g}, "
            "but membranes must be 0 (ISBI convention: 0 = membrane, "
            f"non-zero = cell). Received: values=({values[0]:g}, "
            f"{values[1]:g})"
        )
    return a != 0


def check_same_shape(prob, label, prob_name="membrane_prob"):
    """Raise a ValueError unless the map and the label have one (H, W).

    The error recognises the output of a valid-padding U-Net (smaller by
    the same even number of pixels in both dimensions) and names the fix.
    """
    if prob.shape == label.shape:
        return
    hint = ""
    dh = label.shape[0] - prob.shape[0]
    dw = label.shape[1] - prob.shape[1]
    if dh == dw and dh > 0 and dh % 2 == 0:
        hint = (
            f" The map is {dh} px smaller in both dimensions, as the output "
            f"of a valid-padding U-Net is ({dh // 2} px of context per side)"
            ": predict the whole image with overlap-tiling (mirrored "
            "borders) to get a full-size map, or crop the label by "
            f"{dh // 2} px per side."
        )
    raise ValueError(
        f"`{prob_name}` and `label` must have the same (height, width).{hint}"
        f" Received: {prob_name}.shape={prob.shape}, "
        f"label.shape={label.shape}"
    )
