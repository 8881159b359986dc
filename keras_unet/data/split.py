"""Which images train, which validate, which are held out."""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_unet.data.imageset import ImageSet

__all__ = ["Split", "split", "split_validation"]


@dataclasses.dataclass(frozen=True)
class Split:
    """The images of a run that train (`train`) and that validate (`val`:
    they choose ``best.keras`` and the decision); both `ImageSet` s."""

    train: ImageSet
    val: ImageSet


def split(imageset, fraction, seed, val_names=None, holdout_names=None):
    """`imageset` split by `split_validation` into a `Split`."""
    train, val = split_validation(
        len(imageset), fraction, seed, imageset.names, val_names, holdout_names
    )
    return Split(imageset.subset(train), imageset.subset(val))


def split_validation(
    n, fraction, seed, names=None, val_names=None, holdout_names=None
):
    """Indices (train, val): `val_names` if given, else a seeded fraction.

    Images named in `holdout_names` are in neither list.
    """
    names = list(names or [])
    for what, chosen in (("val_names", val_names), ("holdout", holdout_names)):
        missing = sorted(map(str, set(chosen or []) - set(names)))
        if missing:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(
                f"{what} {missing} are not in the data: names are the file "
                f"stems, as strings ({shown})."
            )
    held = {
        i for i, name in enumerate(names) if name in set(holdout_names or [])
    }
    pool = [i for i in range(n) if i not in held]
    if val_names:
        val = [i for i, name in enumerate(names) if name in set(val_names)]
        if held & set(val):
            raise ValueError(
                "An image cannot be both in val_names and holdout_names."
            )
    else:
        k = int(round(len(pool) * fraction))
        if fraction > 0 and k == 0 and len(pool) > 1:
            k = 1
        rng = np.random.default_rng(seed)
        val = sorted(rng.permutation(pool)[:k].tolist()) if k else []
    train = [i for i in pool if i not in set(val)]
    if not train:
        raise ValueError(
            f"No image left for training: {n} image(s), {len(val)} for "
            "validation. Lower val_fraction."
        )
    return train, val
