"""Test-time augmentation: the rotations and flips of the dihedral group D4.

The paper averaged its ISBI 2012 predictions over rotated copies of the
input (Sect. 3.1). Each transform is applied to the image, the prediction
is mapped back by the inverse transform, and the probabilities are
averaged. The transforms are written once for numpy arrays and TensorFlow
tensors (`keras_unet.inference.tiled.predict_tiled` uses the first, the graph of
`keras_unet.export` the second).

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Sect. 3.1).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TTA_PRESETS",
    "TTA_TRANSFORMS",
    "average_over_transforms",
    "dihedral_transform",
    "resolve_tta",
]

# The 8 elements of D4 acting on the (row, column) axes, each written as
# (transpose first?, then flip rows?, then flip columns?). "rot90" is
# numpy.rot90(image, 1): a counter-clockwise quarter turn as displayed (row
# 0 at the top); "transpose" mirrors about the main diagonal,
# "anti_transpose" about the other one.
TTA_TRANSFORMS = {
    "identity": (False, False, False),
    "rot90": (True, True, False),
    "rot180": (False, True, True),
    "rot270": (True, False, True),
    "flip_lr": (False, False, True),
    "flip_ud": (False, True, False),
    "transpose": (True, False, False),
    "anti_transpose": (True, True, True),
}

TTA_PRESETS = {
    "d4": tuple(TTA_TRANSFORMS),
    "rotations": ("identity", "rot90", "rot180", "rot270"),
    "flips": ("identity", "flip_lr", "flip_ud", "rot180"),
}


def resolve_tta(tta) -> tuple[str, ...]:
    """Names of the test-time transforms for a `tta` argument.

    Args:
        tta: None or False (no augmentation: ``("identity",)``), True or
            "d4" (all 8 rotations/flips of the dihedral group), a preset
            name ("rotations": the 4 rotations; "flips": identity,
            flip_lr, flip_ud, rot180), one transform name, or a list of
            transform names from `TTA_TRANSFORMS`: "identity", "rot90",
            "rot180", "rot270" (counter-clockwise as ``numpy.rot90``),
            "flip_lr" (left-right), "flip_ud" (up-down), "transpose",
            "anti_transpose".

    Returns:
        A tuple of transform names.

    Examples:
        >>> resolve_tta(["rot90", "flip_lr"])
        ('rot90', 'flip_lr')
        >>> resolve_tta("rotations")
        ('identity', 'rot90', 'rot180', 'rot270')
    """
    if tta is None or tta is False:
        return ("identity",)
    if tta is True:
        return TTA_PRESETS["d4"]
    if isinstance(tta, str):
        names = TTA_PRESETS.get(tta, (tta,))
    else:
        try:
            names = tuple(tta)
        except TypeError:
            names = ()
        if not names:
            raise ValueError(
                "`tta` must be None, True, a preset name "
                f"{sorted(TTA_PRESETS)} or a non-empty list of transform "
                f"names {list(TTA_TRANSFORMS)}. Received: tta={tta!r}"
            )
    for name in names:
        if name not in TTA_TRANSFORMS:
            raise ValueError(
                f"Unknown test-time transform {name!r}: use names from "
                f"{list(TTA_TRANSFORMS)} or a preset {sorted(TTA_PRESETS)}. "
                f"Received: tta={tta!r}"
            )
    if len(set(names)) != len(names):
        raise ValueError(
            f"`tta` lists a transform twice (it would be weighted double). "
            f"Received: tta={tta!r}"
        )
    return names


def dihedral_transform(array, name, inverse=False, axes=(0, 1), xp=np):
    """Rotate/flip an image (or probability map) by an element of D4.

    Args:
        array: a numpy array, or a TensorFlow tensor with `xp=tf`, whose
            (row, column) axes are `axes`.
        name: a key of `TTA_TRANSFORMS`.
        inverse: apply the inverse transform (maps predictions made on the
            transformed image back onto the original).
        axes: the (row, column) axes.
        xp: the array module, numpy or tensorflow (only its ``transpose``
            is used; flips are negative-step slices).

    Returns:
        The transformed array (a numpy view when possible); quarter turns
        and transposes swap the row and column sizes.

    Examples:
        >>> a = np.arange(6).reshape(2, 3)
        >>> np.array_equal(dihedral_transform(a, "rot90"), np.rot90(a))
        True
        >>> b = dihedral_transform(a, "rot90")
        >>> np.array_equal(dihedral_transform(b, "rot90", inverse=True), a)
        True
    """
    if name not in TTA_TRANSFORMS:
        raise ValueError(
            f"Unknown transform: use one of {list(TTA_TRANSFORMS)}. "
            f"Received: name={name!r}"
        )
    if xp is np:
        array = np.asarray(array)
    if inverse:  # every element is its own inverse but the quarter turns
        name = {"rot90": "rot270", "rot270": "rot90"}.get(name, name)
    transpose, flip_rows, flip_cols = TTA_TRANSFORMS[name]
    r, c = axes
    ndim = len(array.shape)
    if transpose:
        perm = list(range(ndim))
        perm[r], perm[c] = c, r
        array = xp.transpose(array, perm)
    index = [slice(None)] * ndim
    if flip_rows:
        index[r] = slice(None, None, -1)
    if flip_cols:
        index[c] = slice(None, None, -1)
    return array[tuple(index)]


def average_over_transforms(predict, image, names, axes=(0, 1), xp=np):
    """Mean of ``predict`` over transformed copies of an image, mapped back.

    Args:
        predict: a function ``(transformed image, name) -> probabilities``
            with the image's (row, column) axes.
        image: numpy array (or tensor with `xp=tf`).
        names: transform names, e.g. from `resolve_tta`.
        axes: the (row, column) axes of `image` and of the probabilities.
        xp: numpy or tensorflow (see `dihedral_transform`).

    Returns:
        The average of the back-transformed probabilities.

    Examples:
        >>> image = np.arange(6.0).reshape(2, 3)
        >>> out = average_over_transforms(lambda x, n: x * 2, image, ["rot90"])
        >>> out.tolist()
        [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]
    """
    total = None
    for name in names:
        x = dihedral_transform(image, name, axes=axes, xp=xp)
        p = predict(x, name)
        p = dihedral_transform(p, name, inverse=True, axes=axes, xp=xp)
        total = p if total is None else total + p
    return total / len(names) if len(names) > 1 else total
