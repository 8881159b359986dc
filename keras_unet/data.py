"""tf.data pipelines that feed `model.fit` with the paper's training tiles.

`make_training_dataset` yields ``(input_tile, label_tile, weight_tile)``
batches: tiles drawn at random positions of the mirror-extended images,
augmented with `keras_unet.augment` (elastic deformation, rotation, flips,
gray values), labels and weights cropped to the output of the valid-padding
network. Training is then plain ``model.fit(dataset, steps_per_epoch=...)``:
Keras passes the weight tile to the loss as a per-pixel ``sample_weight``.

`make_validation_dataset` yields tiles that cover every pixel exactly once,
without augmentation (pixels of the last tiles that lie outside the image get
weight 0).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_unet import augment as _augment
from keras_unet import geometry
from keras_unet.checks import check_int
from keras_unet.io import read_array, to_float_image

__all__ = ["make_training_dataset", "make_validation_dataset", "tile_shapes"]

AUTOTUNE = tf.data.AUTOTUNE


def tile_shapes(input_size=572, depth=4, padding="valid", model=None):
    """Input and output tile shapes ``((in_h, in_w), (out_h, out_w))``.

    Args:
        input_size: int or ``(height, width)`` of the input tile; must be a
            valid size (see `keras_unet.geometry`). None takes the model's
            static input size.
        depth: the network's depth (ignored when `model` is given).
        padding: the network's padding (ignored when `model` is given).
        model: optional U-Net; its depth and padding are read with
            `keras_unet.model.inspect_unet`.
    """
    if model is not None:
        from keras_unet.model import inspect_unet

        spec = inspect_unet(model)
        depth, padding = spec.depth, spec.padding
        fixed = tuple(model.input_shape[1:3])
        if input_size is None:
            input_size = fixed
        elif None not in fixed:
            wanted = (
                (int(input_size),) * 2
                if isinstance(input_size, numbers.Integral)
                else tuple(input_size)
            )
            if wanted != fixed:
                raise ValueError(
                    f"The model only takes {fixed[0]}x{fixed[1]} inputs, but "
                    f"input_size={input_size!r}: pass input_size=None (or "
                    f"{fixed[0]}), or build the model with (None, None, C) "
                    "inputs to train on any valid tile size."
                )
    if input_size is None or (
        not isinstance(input_size, numbers.Integral)
        and None in tuple(input_size)
    ):
        raise ValueError(
            "`input_size` is needed: the model accepts any valid size, so say "
            "which tile size to train on, e.g. input_size=572. "
            f"Received: input_size={input_size!r}"
        )
    if isinstance(input_size, numbers.Integral):
        input_size = (int(input_size), int(input_size))
    in_hw = tuple(int(n) for n in input_size)
    if len(in_hw) != 2:
        raise ValueError(
            "`input_size` must be an int or a (height, width) pair. "
            f"Received: input_size={input_size!r}"
        )
    for n in in_hw:
        geometry.check_input_size(
            n, depth, padding, received=f"input_size={input_size!r}"
        )
    out_hw = tuple(geometry.output_size(n, depth, padding) for n in in_hw)
    return in_hw, out_hw


# --------------------------------------------------------------------------
# Sources: arrays in memory or files, checked before any training starts.


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
class _Source:
    """Random access to (image, labels, weights) of a dataset."""

    images: list
    labels: list
    weights: list | None
    num_classes: int
    channels: int = 0
    shapes: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.images)

    def get(self, index):
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
        return image, labels, weights

    def validate(self):
        """Read every item once: all errors surface before training."""
        self.shapes = [self.get(i)[0].shape[:2] for i in range(len(self))]


def _make_source(images, labels, weights, num_classes, validate):
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
    source = _Source(images, labels, weights, int(num_classes))
    first = _check_image(_load(images[0]), 0)
    source.channels = first.shape[-1]
    if validate:
        source.validate()
    return source


def _loader(source):
    """A graph function index -> (image, labels, weights) tensors."""
    channels = source.channels

    def load(index):
        image, labels, weights = tf.numpy_function(
            source.get,
            [index],
            [tf.float32, tf.int32, tf.float32],
            stateful=False,
        )
        image = tf.ensure_shape(image, [None, None, channels])
        labels = tf.ensure_shape(labels, [None, None])
        weights = tf.ensure_shape(weights, [None, None])
        return image, labels, weights

    return load


def _augment_config(augment):
    if augment is True or augment == "paper":
        return _augment.AugmentConfig()
    if augment is False or augment is None or augment == "none":
        return _augment.AugmentConfig.none()
    if augment == "flips":
        return _augment.AugmentConfig.flips_only()
    if isinstance(augment, _augment.AugmentConfig):
        return augment
    if isinstance(augment, dict):
        return _augment.AugmentConfig(**augment)
    raise ValueError(
        "`augment` must be True/'paper' (the paper's recipe), False/'none', "
        "'flips', a dict of AugmentConfig fields or an AugmentConfig. "
        f"Received: augment={augment!r}"
    )


def _base_seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**31 - 1))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an int or None. Received: {seed!r}")
    return int(seed) % (2**31 - 1)


def make_training_dataset(
    images,
    labels,
    weights=None,
    input_size=572,
    depth=4,
    seed=None,
    *,
    padding="valid",
    model=None,
    num_classes=2,
    batch_size=1,
    augment=True,
    shuffle=True,
    repeat=True,
    deterministic=True,
    mask_mirrored=False,
    jit_compile="auto",
    validate=True,
    num_parallel_calls=AUTOTUNE,
    start=0,
):
    """A tf.data pipeline of augmented training tiles, ready for `model.fit`.

    Each element is one tile of one image: an input tile of `input_size`
    (with the context margin the valid-padding network consumes), and the
    label and weight tiles of the network's output size, all transformed
    identically. Tile positions are drawn at random so that the output tile
    lies inside the image (for images smaller than the output tile, so that
    the image lies inside the tile); context beyond the image is mirrored.

    Args:
        images: array (n, H, W) or (n, H, W, C), or a list of arrays (sizes
            may differ) or of image file paths (PNG/TIFF/..., read lazily
            with `keras_unet.io.read_image`). Converted to float with
            `keras_unet.io.to_float_image` (uint8 / 255, ...).
        labels: class-index images (n, H, W) (or a list / file paths), values
            in ``0..num_classes-1``.
        weights: optional per-pixel weight maps (n, H, W) (or a list / file
            paths, .npy or TIFF), e.g. from `keras_unet.weights`. Default:
            all ones.
        input_size: int or (height, width) of the input tile; a valid size
            for the network (572 for the paper's).
        depth: the network's depth (4 in the paper).
        seed: int for a reproducible stream (same seed, same tiles), None
            for a random one.
        padding: "valid" or "same", as the network.
        model: optional U-Net to read depth and padding from (and the input
            size, if `input_size` is None and the model has a fixed one).
        num_classes: number of classes; labels are checked against it.
        batch_size: tiles per batch (the paper: 1 large tile).
        augment: True or "paper" (default: `keras_unet.augment.AugmentConfig`
            defaults), "flips", False/"none", a dict of AugmentConfig fields
            or an AugmentConfig.
        shuffle: visit the images in a new random order every epoch (an
            epoch here is one tile of every image).
        repeat: repeat forever (use ``steps_per_epoch`` in `model.fit`);
            False gives one tile per image.
        deterministic: keep the element order fixed despite the parallel
            map (reproducible); False can be a little faster.
        mask_mirrored: weight 0 for label pixels that come from the mirrored
            extension of the image.
        jit_compile: compile the geometric augmentation with XLA: True,
            False or "auto" (when all images have one size, so XLA compiles
            once). 3-6x faster sampling on the CPU.
        validate: read every image, label and weight once now, so that any
            problem is reported before training starts.
        num_parallel_calls: parallelism of the map (default AUTOTUNE).
        start: index of the first sample (tile) of the stream. Sample ``i``
            depends only on ``(seed, i)``: its image is at position
            ``i % n`` of a stateless permutation of epoch ``i // n``, its
            augmentation is drawn from ``(seed, i)``. Resuming with
            ``start = samples already drawn`` continues the exact stream.

    Returns:
        A `tf.data.Dataset` of ``(x, y, w)`` batches: x float32 (B, in_h,
        in_w, C), y int32 (B, out_h, out_w), w float32 (B, out_h, out_w).

    Examples:
        >>> from keras_unet import build_unet, synthetic_cells, data
        >>> images, instances = synthetic_cells(4, size=256)
        >>> labels = (instances > 0).astype("int32")
        >>> ds = data.make_training_dataset(images, labels, input_size=252)
        >>> model = build_unet((252, 252, 1))
        >>> # model.compile(...); model.fit(ds, steps_per_epoch=100)
    """
    in_hw, out_hw = tile_shapes(input_size, depth, padding, model)
    config = _augment_config(augment)
    batch_size = check_int(batch_size, "batch_size", 1, "tiles per batch")
    source = _make_source(images, labels, weights, num_classes, validate)
    base = _base_seed(seed)
    load = _loader(source)
    if jit_compile == "auto":
        jit_compile = validate and len(set(source.shapes)) == 1
    warp_fn = (
        tf.function(_augment.warp_tile, jit_compile=True)
        if jit_compile
        else None
    )

    def make_tile(counter, index):
        image, lab, wt = load(index)
        seed_ = tf.stack([tf.constant(base, tf.int64), counter])
        return _augment.augment_tile(
            image,
            lab,
            wt,
            tf.cast(seed_ % (2**31 - 1), tf.int32),
            config,
            in_hw,
            out_hw,
            mask_mirrored=mask_mirrored,
            warp_fn=warp_fn,
        )

    n = len(source)
    start = check_int(start, "start", 0, "samples already drawn")
    ds = tf.data.Dataset.range(start, 2**62 if repeat else max(n, start))

    def pick(i):
        position = i % n
        if shuffle:
            epoch_seed = tf.stack([tf.constant(base, tf.int64), i // n])
            position = tf.random.experimental.index_shuffle(
                position, epoch_seed, tf.constant(n - 1, tf.int64)
            )
        return i, position

    ds = ds.map(pick)
    ds = ds.map(
        make_tile,
        num_parallel_calls=num_parallel_calls,
        deterministic=deterministic,
    )
    ds = ds.batch(batch_size, drop_remainder=repeat)
    return ds.prefetch(AUTOTUNE)


def validation_tiles(image_shapes, output_shape):
    """Origins ``(image_index, row, col)`` of output tiles covering images.

    Tiles are laid out on a grid with the output tile's stride, starting at
    the top-left corner; the last row/column of tiles may extend beyond the
    image.
    """
    out_h, out_w = output_shape
    origins = []
    for index, (h, w) in enumerate(image_shapes):
        for r in range(math.ceil(h / out_h)):
            for c in range(math.ceil(w / out_w)):
                origins.append((index, r * out_h, c * out_w))
    return np.asarray(origins, np.int64).reshape(-1, 3)


def make_validation_dataset(
    images,
    labels,
    weights=None,
    input_size=572,
    depth=4,
    *,
    padding="valid",
    model=None,
    num_classes=2,
    batch_size=1,
):
    """Tiles covering every image once, without augmentation.

    Output tiles lie on a grid over each image; their context is mirrored at
    the image border, and the label pixels of the last tiles that fall
    outside the image get weight 0, so every labelled pixel lies in exactly
    one tile. (With `keras_unet.losses.WeightedCrossentropy`, normalized per
    batch, pixels of small edge tiles weigh more in the validation loss
    than pixels of full tiles; the pixel-counting metrics count every pixel
    once.) The images are always read once up front: their sizes lay out
    the tiles.

    Args: as `make_training_dataset`.

    Returns:
        A finite `tf.data.Dataset` of ``(x, y, w)`` batches.
    """
    in_hw, out_hw = tile_shapes(input_size, depth, padding, model)
    batch_size = check_int(batch_size, "batch_size", 1, "tiles per batch")
    source = _make_source(images, labels, weights, num_classes, validate=True)
    origins = validation_tiles(source.shapes, out_hw)
    load = _loader(source)

    def make_tile(element):
        image, lab, wt = load(element[0])
        params = {
            "origin": tf.cast(element[1:], tf.int32),
            "matrix": tf.eye(2),
            "grid": tf.zeros([3, 3, 2]),
        }
        return _augment.warp_tile(
            image,
            lab,
            wt,
            params,
            input_shape=in_hw,
            output_shape=out_hw,
            mask_mirrored=True,
        )

    ds = tf.data.Dataset.from_tensor_slices(origins)
    ds = ds.map(make_tile, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)
