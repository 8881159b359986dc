"""Mirroring at image borders: the one index rule every module uses.

The paper extrapolates the context missing at the image border by
mirroring (Fig. 2). `mirror_index` maps a position outside an axis of
``n`` pixels to the pixel it shows, however far outside:

- ``"reflect"`` mirrors about the edge pixel without repeating it
  (``numpy.pad(mode="reflect")``, OpenCV's ``BORDER_REFLECT_101``):
  ``[a b c]`` continues as ``... c b | a b c | b a ...``;
- ``"symmetric"`` repeats it: ``... b a | a b c | c b ...``.

It is written with ``%``, ``minimum`` and ``maximum`` of an array
namespace `xp`, so the same function runs on numpy arrays (tiled
prediction, training windows), on `keras.ops` tensors (the augmentation
warp on any backend) and on TensorFlow tensors (the SavedModel graph).
"""

from __future__ import annotations

import numpy as np

from keras_unet.checks import check_choice

__all__ = ["MIRROR_MODES", "check_mirror", "mirror_index", "mirror_pad"]

MIRROR_MODES = ("reflect", "symmetric")


def check_mirror(mirror):
    """`mirror` if it is one of `MIRROR_MODES`, else a ValueError."""
    hint = "'reflect' mirrors about the edge pixel, 'symmetric' repeats it"
    return check_choice(mirror, "mirror", MIRROR_MODES, hint)


def mirror_index(i, n, mode="reflect", xp=np):
    """Source pixel of position `i` of an `n` px axis extended by mirroring.

    Args:
        i: integer positions (any shape), ``0 <= i < n`` inside the axis.
        n: the axis length (an int or a scalar tensor).
        mode: "reflect" or "symmetric" (see the module docstring).
        xp: the array namespace of `i`: numpy, `keras.ops` or tensorflow.

    Returns:
        Indices in ``[0, n)`` of `i`'s shape. A 1 px axis is repeated.

    Examples:
        >>> mirror_index(np.arange(-4, 5), 3).tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
        >>> mirror_index(np.arange(-4, 5), 3, "symmetric").tolist()
        [2, 2, 1, 0, 0, 1, 2, 2, 1]
    """
    if check_mirror(mode) == "reflect":
        period = xp.maximum(2 * n - 2, 1)
        j = i % period
        return xp.minimum(j, period - j)
    j = i % (2 * n)
    return xp.minimum(j, 2 * n - 1 - j)


def mirror_pad(image, pad, mode="reflect", axes=(0, 1)) -> np.ndarray:
    """Pad the (row, column) `axes` by ``((top, bottom), (left, right))``
    pixels of mirroring (`mirror_index`), by any amount.

    Unlike ``numpy.pad``, the padding may exceed the image (it is mirrored
    again), so images smaller than the network's context margin work.

    Examples:
        >>> mirror_pad(np.arange(3)[None], ((0, 0), (4, 2)))[0].tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
    """
    image = np.asarray(image)
    for axis, (before, after) in zip(axes, pad):
        n = image.shape[axis]
        i = np.arange(-before, n + after, dtype=np.int64)
        image = np.take(image, mirror_index(i, n, mode), axis=axis)
    return image
