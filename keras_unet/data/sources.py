"""Checked random access to a training set's images, labels and weights.

This is where the training data is checked, once, before any training
starts: images are finite and of one channel count, labels are class
indices of the task, weights are finite and >= 0, and all have one height
and width per image. Items may be arrays or file paths (read lazily).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from keras_unet.checks import check_int
from keras_unet.data.imageset import ImageSet
from keras_unet.data.normalize import to_float_image
from keras_unet.io.images import read_array

__all__ = ["TrainingSource", "make_source"]


def _is_path(x):
    return isinstance(x, str | os.PathLike)


def _as_items(data, name):
    """A list of per-image items (arrays or paths) from an array or list."""
    if data is None:
        return None
    if _is_path(data):
        raise ValueError(
            f"`{name}` must be an array or a list of arrays or file paths, "
            f"not a single path. Received: {name}={data!r}"
        )
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        arr = np.asarray(data)
        if arr.ndim < 3:
            raise ValueError(
                f"`{name}` as an array must be a stack (n, H, W) or "
                f"(n, H, W, C). Received: shape={arr.shape}"
            )
        return list(arr)
    items = list(data)
    if not items:
        raise ValueError(f"`{name}` is empty: there is nothing to train on.")
    return items


def _load(item):
    return read_array(item) if _is_path(item) else np.asarray(item)


def _check_image(image, index):
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(
            f"images[{index}] must be (H, W) or (H, W, C). "
            f"Received: shape={image.shape}"
        )
    try:
        return to_float_image(image)
    except ValueError as err:
        raise ValueError(f"images[{index}]: {err}") from None


def _check_labels(labels, index, hw, num_classes):
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != hw:
        raise ValueError(
            f"labels[{index}] has shape {labels.shape} but images[{index}] "
            f"is {hw[0]}x{hw[1]}: labels must be class-index images of the "
            "same height and width as their image."
        )
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        hint = ""
        if np.issubdtype(labels.dtype, np.floating) and np.array_equal(
            labels, np.round(labels)
        ):
            hint = " Its values are whole numbers: use labels.astype(np.int32)."
        raise ValueError(
            f"labels[{index}] has dtype {labels.dtype}, but labels must be "
            "integer class indices (0 = background, 1, 2, ... = classes)."
            + hint
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        values = np.unique(labels)
        shown = ", ".join(map(str, values[:8])) + (
            ", ..." if len(values) > 8 else ""
        )
        hint = ""
        if set(values.tolist()) <= {0, 255}:
            hint = (
                " It looks like a 0/255 mask: pass"
                " (labels > 0).astype(np.int32) (ISBI 2012 labels:"
                " 255 = cell -> class 1, 0 = membrane -> class 0)."
            )
        raise ValueError(
            f"labels[{index}] has values {{{shown}}} but num_classes="
            f"{num_classes}: class indices must be in 0..{num_classes - 1}."
            + hint
        )
    return labels.astype(np.int32, copy=False)


def _check_weights(weights, index, hw):
    if weights.ndim == 3 and weights.shape[-1] == 1:
        weights = weights[..., 0]
    if weights.shape != hw:
        raise ValueError(
            f"weights[{index}] has shape {weights.shape} but images[{index}] "
            f"is {hw[0]}x{hw[1]}: a weight map must match its image."
        )
    weights = weights.astype(np.float32, copy=False)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"weights[{index}] has NaN or infinite values.")
    if weights.min() < 0:
        raise ValueError(
            f"weights[{index}] has negative values (min {weights.min():g}); "
            "weights must be >= 0 (0 = ignore the pixel)."
        )
    return weights


@dataclasses.dataclass
class TrainingSource:
    """Random access to the checked (image, labels, weights) of a dataset."""

    images: list
    labels: list
    weights: list | None
    num_classes: int
    channels: int = 0
    shapes: dict = dataclasses.field(default_factory=dict)

    def __len__(self):
        return len(self.images)

    def get(self, index):
        """Checked arrays: float32 image (H, W, C), int32 labels, weights."""
        index = int(index)
        image = _check_image(_load(self.images[index]), index)
        if image.shape[-1] != self.channels:
            raise ValueError(
                f"images[{index}] has {image.shape[-1]} channel(s), but "
                f"images[0] has {self.channels}: all images need the same "
                "number of channels."
            )
        hw = image.shape[:2]
        labels = _check_labels(
            _load(self.labels[index]), index, hw, self.num_classes
        )
        if self.weights is None:
            weights = np.ones(hw, np.float32)
        else:
            weights = _check_weights(_load(self.weights[index]), index, hw)
        self.shapes[index] = hw
        return image, labels, weights

    def raw(self, index):
        """(image (H, W, C), labels (H, W), weights (H, W) or None).

        Checked in full on the first access only; afterwards the items are
        returned as stored (cropping comes before any conversion, so a
        large image costs only the part a tile reads).
        """
        index = int(index)
        if index not in self.shapes:
            image, labels, weights = self.get(index)
            return image, labels, None if self.weights is None else weights
        image = _load(self.images[index])
        image = image[..., None] if image.ndim == 2 else image
        labels = _squeeze(_load(self.labels[index]))
        weights = None
        if self.weights is not None:
            weights = _squeeze(_load(self.weights[index]))
        return image, labels, weights

    def validate(self):
        """Read every item once: all errors surface before training."""
        for i in range(len(self)):
            self.get(i)

    def max_shape(self):
        """Largest (H, W) over the images, or None if not all were read."""
        if len(self.shapes) < len(self):
            return None
        return tuple(
            int(max(s[k] for s in self.shapes.values())) for k in (0, 1)
        )


def _squeeze(array):
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def make_source(images, labels, weights, num_classes, validate):
    """A `TrainingSource` of an `ImageSet` or of arrays or file paths.

    Args:
        images: an `ImageSet` (its images, labels and weights; `labels`
            and `weights` must then be None), or the images.
        labels: the class-index labels, one per image.
        weights: the weight maps, one per image, or None (ones).
        num_classes: the classes labels may hold (an `ImageSet` says its
            own when this is None).
        validate: read and check every item now.
    """
    if isinstance(images, ImageSet):
        images, labels, weights, num_classes = _unpack(
            images, labels, weights, num_classes
        )
    num_classes = 2 if num_classes is None else num_classes
    num_classes = check_int(num_classes, "num_classes", 1)
    images = _as_items(images, "images")
    labels = _as_items(labels, "labels")
    weights = _as_items(weights, "weights")
    if images is None or labels is None:
        raise ValueError("Both `images` and `labels` are required.")
    counts = {"images": len(images), "labels": len(labels)}
    if weights is not None:
        counts["weights"] = len(weights)
    if len(set(counts.values())) != 1:
        raise ValueError(
            "images, labels and weights must have one entry per image. "
            f"Received: {', '.join(f'{k}: {v}' for k, v in counts.items())}"
        )
    for name, items in (
        ("images", images),
        ("labels", labels),
        ("weights", weights),
    ):
        for i, item in enumerate(items or []):
            if _is_path(item) and not pathlib.Path(item).is_file():
                raise FileNotFoundError(f"{name}[{i}]: no such file: {item}")
    source = TrainingSource(images, labels, weights, int(num_classes))
    source.channels = _check_image(_load(images[0]), 0).shape[-1]
    if validate:
        source.validate()
    return source


def _unpack(imageset, labels, weights, num_classes):
    """The items of an `ImageSet`, refusing a second set of labels."""
    if labels is not None or weights is not None:
        raise ValueError(
            "Pass an ImageSet alone (it holds its labels and weights), or "
            "images, labels and weights as arrays, not both."
        )
    if imageset.labels is None:
        raise ValueError(
            f"{imageset.description} has no class labels to train on: make "
            "them with keras_unet.data.prepare.prepare(imageset, ...)."
        )
    classes = imageset.num_classes if num_classes is None else num_classes
    return imageset.images, imageset.labels, imageset.weights, classes
