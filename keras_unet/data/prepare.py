"""Training targets and weight maps of an `ImageSet`, as a recipe asks.

Instance annotations become the paper's two-class targets (cells, and
background with separation lines between touching cells); the weight maps
are the paper's (`keras_unet.data.weight_maps`, cached on disk by
`keras_unet.data.weight_cache`), class balance only, or ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_unet.checks import check_choice
from keras_unet.data import weight_cache, weight_maps
from keras_unet.data.imageset import ImageSet

__all__ = ["WEIGHTS", "prepare"]

#: The loss weights a run can train with: the paper's maps, class balance
#: only, or none (ones).
WEIGHTS = ("unet", "balanced", "none")


def _targets_and_weights(imageset, weights, cache_dir, w0, sigma):
    """Class labels and weight maps as the recipe asks."""
    source = imageset.instances
    kind = "instances"
    if source is None:
        source, kind = imageset.labels, "classes"
    if weights in ("unet", "balanced") and imageset.num_classes == 2:
        pairs = weight_cache.cached_weight_maps(
            source,
            cache_dir,
            return_targets=True,
            w0=w0 if weights == "unet" else 0.0,
            sigma=sigma,
            label_type="instances" if kind == "instances" else "binary",
        )
        labels = [np.asarray(t, np.int32) for t, _ in pairs]
        return labels, [np.asarray(w, np.float32) for _, w in pairs]
    if kind == "instances":
        labels = [
            weight_maps.separate_instances(s).astype(np.int32) for s in source
        ]
    else:
        labels = [np.asarray(s, np.int32) for s in source]
    if weights == "none":
        return labels, [np.ones(lb.shape, np.float32) for lb in labels]
    balance = [
        weight_maps.class_balance_weights(lb).astype(np.float32)
        for lb in labels
    ]
    return labels, balance  # multi-class: class balance only


def prepare(imageset, weights, cache_dir, w0=10.0, sigma=5.0) -> ImageSet:
    """The `ImageSet` with training targets as `labels` and its `weights`.

    Instance annotations become binary targets with separation lines
    between touching cells (`keras_unet.data.weight_maps.separate_instances`;
    the instances are kept). Pixels marked in ``imageset.ignore`` get
    weight 0.

    Args:
        imageset: as a reader returns it.
        weights: the recipe's loss weights: "unet" (the paper's maps,
            cached in `cache_dir`), "balanced" (class balance only) or
            "none" (ones). Beyond two classes the paper's border term is
            not defined: "unet" and "balanced" give class balance only.
        cache_dir: the weight-map cache folder.
        w0: the border weight of the paper's maps.
        sigma: the border width of the paper's maps (px).
    """
    check_choice(weights, "weights", WEIGHTS, "the recipe's loss weights")
    if imageset.labels is None and imageset.instances is None:
        raise ValueError(
            f"{imageset.description} has no annotations to train on."
        )
    labels, maps = _targets_and_weights(imageset, weights, cache_dir, w0, sigma)
    if imageset.ignore is not None:
        maps = [w * (~ig) for w, ig in zip(maps, imageset.ignore)]
    return dataclasses.replace(
        imageset,
        images=list(imageset.images),
        labels=labels,
        weights=maps,
        names=list(imageset.names),
        num_classes=max(imageset.num_classes, 2),
        description=f"{imageset.description} ({len(imageset)} images)",
    )
