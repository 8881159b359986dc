"""Training and validation data for `model.fit`, on every Keras backend.

`make_training_dataset` yields ``(input_tile, label_tile, weight_tile)``
batches: tiles drawn at random positions of the mirror-extended images,
augmented with `keras_unet.augment` (elastic deformation, rotation, flips,
gray values), labels and weights cropped to the output of the valid-padding
network. Training is then plain ``model.fit(dataset, steps_per_epoch=...)``:
Keras passes the weight tile to the loss as a per-pixel ``sample_weight``.

The stream is one recipe run two ways. The random parameters and the source
windows of sample ``i`` come from numpy on the host, seeded by ``(seed, i)``
(`keras_unet.augment.sample_rng`); the warp is `keras_unet.augment`'s
keras.ops function, XLA-compiled. With the TensorFlow backend it runs inside
a `tf.data` pipeline (parallel CPU workers); with JAX and torch a
`keras.utils.PyDataset` builds each batch on the host and warps it on the
default device (the GPU if there is one). Both give the same samples, so
``start=`` resumes exactly, and TensorFlow is imported only for tf.data.

`make_validation_dataset` yields tiles that cover every pixel exactly once,
without augmentation (pixels of the last tiles that lie outside the image get
weight 0): exact integer crops in numpy, the same on every backend.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import pathlib

import keras
import numpy as np

from keras_unet.augment import (
    AugmentConfig,
    WarpSpec,
    compile_warp,
    random_params,
    sample_rng,
)
from keras_unet.checks import check_choice, check_int
from keras_unet.geometry import UNetGeometry
from keras_unet.io import read_array, to_float_image
from keras_unet.mirror import mirror_index

__all__ = [
    "PIPELINES",
    "TileSampler",
    "TrainingTiles",
    "ValidationTiles",
    "cut_windows",
    "make_training_dataset",
    "make_validation_dataset",
    "stack_samples",
    "tile_shapes",
    "validation_tiles",
]

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow
PIPELINES = ("auto", "tf.data", "py_dataset")


def tile_shapes(input_size=572, depth=4, padding="valid", model=None,
                spec=None):  # fmt: skip
    """Input and output tile shapes ``((in_h, in_w), (out_h, out_w))``.

    Args:
        input_size: int or ``(height, width)`` of the input tile; must be a
            valid size (see `keras_unet.geometry`). None takes the model's
            static input size.
        depth: the network's depth (ignored when `model` is given).
        padding: the network's padding (ignored when `model` is given).
        model: optional U-Net; its depth and padding are read with
            `keras_unet.model.inspect_unet`.
        spec: optional `keras_unet.model.UNetSpec` (from `inspect_unet`,
            with overrides for a U-Net whose geometry cannot be inferred);
            replaces `depth`, `padding` and `model`.

    Examples:
        >>> tile_shapes(572, depth=4)
        ((572, 572), (388, 388))
    """
    if model is not None and spec is None:
        from keras_unet.model import inspect_unet

        spec = inspect_unet(model)
    if spec is not None:
        depth, padding = spec.depth, spec.padding
        fixed = tuple(spec.input_size)
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
    geometry = UNetGeometry(depth, padding)
    for n in in_hw:
        geometry.check(n, received=f"input_size={input_size!r}")
    return in_hw, tuple(geometry.output_size(n) for n in in_hw)


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
    source.channels = _check_image(_load(images[0]), 0).shape[-1]
    if validate:
        source.validate()
    return source


def _augment_config(augment):
    if augment is True or augment == "paper":
        return AugmentConfig()
    if augment is False or augment is None or augment == "none":
        return AugmentConfig.none()
    if augment == "flips":
        return AugmentConfig.flips_only()
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        return AugmentConfig(**augment)
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


# --------------------------------------------------------------------------
# Training: host sampling + the keras.ops warp, as tf.data or a PyDataset.


def _source_range(params, spec, rect, axis, size):
    """First and last source index (after mirroring) that tile pixels in
    `rect` can read along `axis`: an interval, as mirroring is continuous."""
    (r0, r1), (c0, c1) = rect
    centre = [(n - 1) / 2 for n in spec.input_shape]
    corners = np.array([[r, c] for r in (r0, r1) for c in (c0, c1)], float)
    a = params["matrix"].astype(np.float64)
    q = (corners - centre) @ a[axis] + (spec.output_shape[axis] - 1) / 2
    reach = float(np.abs(params["grid"]).max(initial=0.0)) * spec.field_gain
    lo = math.floor(q.min() - reach - 0.01) - 1
    hi = math.floor(q.max() + reach + 0.01) + 2
    taps = np.arange(lo, hi + 1) + int(params["origin"][axis])
    taps = mirror_index(taps, size)
    return int(taps.min()), int(taps.max())


def _crop(array, rows, cols, window, dtype, convert=None):
    """``array[rows, cols]`` into a zero array of the window's size."""
    part = array[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
    part = convert(part) if convert else part
    out = np.zeros((*window, *part.shape[2:]), dtype)
    if part.shape[0] > window[0] or part.shape[1] > window[1]:
        raise RuntimeError(
            f"internal error: a source crop of {part.shape[:2]} does not fit "
            f"the window {window}; please report this with the config."
        )
    out[: part.shape[0], : part.shape[1]] = part
    return out


def cut_windows(
    image, labels, weights, params, spec, label_dtype=np.int32
) -> dict:
    """Cut the source windows one tile needs (numpy, on the host).

    The image window holds every pixel the input tile can read (through the
    mirror, too), the label window every pixel the output tile can read, so
    `keras_unet.augment.warp_batch` of the windows equals sampling the whole
    image, and only the windows travel to the device.

    Args:
        image: (H, W) or (H, W, C) image, any size; converted with
            `keras_unet.io.to_float_image` (uint8 / 255, ...) after cropping.
        labels: (H, W) integer class indices.
        weights: (H, W) weights, or None (no weight window: all ones).
        params: from `keras_unet.augment.random_params`.
        spec: `keras_unet.augment.WarpSpec` (its window sizes).
        label_dtype: dtype of the label window (uint8 is 4x less to move).

    Returns:
        One sample: the `params` plus ``image`` float32 (*image_window, C),
        ``labels`` (*label_window), ``weights`` float32 (*label_window),
        ``image_offset`` and ``label_offset`` int32 (2,), the windows' top
        left corners in the image, and ``size`` int32 (2,), the image size.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    size = image.shape[:2]
    in_h, in_w = spec.input_shape
    (my, mx), (out_h, out_w) = spec.margin, spec.output_shape
    sample = dict(params)
    for name, rect, window in (
        ("image", ((0, in_h - 1), (0, in_w - 1)), spec.image_window),
        (
            "label",
            ((my, my + out_h - 1), (mx, mx + out_w - 1)),
            spec.label_window,
        ),
    ):
        rows = _source_range(params, spec, rect, 0, size[0])
        cols = _source_range(params, spec, rect, 1, size[1])
        sample[f"{name}_offset"] = np.array([rows[0], cols[0]], np.int32)
        if name == "image":
            sample["image"] = _crop(
                image, rows, cols, window, np.float32, to_float_image
            )
            continue
        sample["labels"] = _crop(labels, rows, cols, window, label_dtype)
        if weights is not None:
            sample["weights"] = _crop(weights, rows, cols, window, np.float32)
    sample["size"] = np.array(size, np.int32)
    return sample


def stack_samples(samples) -> dict:
    """Stack `cut_windows` samples into one batch for `warp_batch`."""
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


class TileSampler:
    """Sample ``i`` of a training stream as numpy source windows.

    Sample ``i`` depends only on ``(seed, i)``: its image is at position
    ``i % n`` of a seeded permutation of epoch ``i // n`` (the images in
    order when `shuffle` is False), its augmentation is drawn from
    ``keras_unet.augment.sample_rng(seed, i)``.

    Args:
        source: the checked images, labels and weights.
        spec: `keras_unet.augment.WarpSpec` of the tiles.
        seed: int seed of the stream.
        shuffle: visit the images in a new random order every epoch.
        label_dtype: dtype of the label windows.
    """

    def __init__(self, source, spec, seed, shuffle=True, label_dtype=np.int32):
        self.source = source
        self.spec = spec
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.label_dtype = label_dtype
        self.order = functools.lru_cache(maxsize=4)(self._permutation)

    def _permutation(self, epoch):
        sequence = np.random.SeedSequence(self.seed, spawn_key=(1, epoch))
        return np.random.default_rng(sequence).permutation(len(self.source))

    def image_index(self, i):
        """Which image sample `i` is cut from."""
        epoch, position = divmod(int(i), len(self.source))
        return int(self.order(epoch)[position]) if self.shuffle else position

    def __call__(self, i):
        """One sample: a dict of numpy arrays (see `cut_windows`)."""
        i = int(i)
        image, labels, weights = self.source.raw(self.image_index(i))
        params = random_params(sample_rng(self.seed, i), self.spec, image.shape)
        return cut_windows(
            image, labels, weights, params, self.spec, self.label_dtype
        )

    def batch(self, first, stop):
        """Samples ``first .. stop - 1`` stacked into one batch."""
        return stack_samples([self(i) for i in range(first, stop)])


class TrainingTiles(keras.utils.PyDataset):
    """Training batches for `model.fit` on any backend (a `PyDataset`).

    Batch ``b`` holds samples ``start + b * batch_size`` onwards, cut on the
    host and warped on the default device with the compiled keras.ops
    function; it returns backend tensors that `model.fit` takes as they
    are. Infinite when `stop` is None (use ``steps_per_epoch``: Keras keeps
    one iterator across epochs, so the stream continues where it stopped).

    Args:
        sampler: `TileSampler`.
        warp: ``batch -> (x, y, w)``, from `keras_unet.augment.compile_warp`.
        batch_size: samples per batch.
        start: first sample.
        stop: end of the stream (exclusive), or None for an infinite one.
        shard: ``(index, count)``, see `make_training_dataset`.
    """

    def __init__(
        self, sampler, warp, batch_size, start=0, stop=None, shard=(0, 1)
    ):
        # One worker: Keras' multi-worker enqueuer drops prefetched batches
        # between epochs, which would break the `start` <-> samples count.
        super().__init__(workers=1, use_multiprocessing=False)
        self.sampler = sampler
        self.warp = warp
        self.batch_size = int(batch_size)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)
        self.part, self.parts = shard

    @property
    def num_batches(self):
        if self.stop is None:
            return None
        total = math.ceil(max(self.stop - self.start, 0) / self.batch_size)
        return max(total - self.part + self.parts - 1, 0) // self.parts

    def __getitem__(self, index):
        batch = int(index) * self.parts + self.part  # of the whole stream
        first = self.start + batch * self.batch_size
        last = first + self.batch_size
        if self.stop is not None:
            if not 0 <= index < self.num_batches:
                raise IndexError(
                    f"batch {index} is out of range: this stream has "
                    f"{self.num_batches} batches."
                )
            last = min(last, self.stop)
        return self.warp(self.sampler.batch(first, last))


def _tf_dataset(sampler, warp, start, stop, batch_size, parallel, ordered,
                shard):  # fmt: skip
    """The same stream as a tf.data pipeline (TensorFlow backend)."""
    import tensorflow as tf

    probe = sampler(start)
    keys = sorted(probe)
    dtypes = [tf.as_dtype(probe[k].dtype) for k in keys]
    shapes = [probe[k].shape for k in keys]

    def host(i):
        sample = sampler(i)
        return [sample[k] for k in keys]

    def make(i):
        arrays = tf.numpy_function(host, [i], dtypes, stateful=False)
        batch = {
            k: tf.ensure_shape(a, s)[None]
            for k, a, s in zip(keys, arrays, shapes)
        }
        x, y, w = warp(batch)
        return x[0], y[0], w[0]

    ds = tf.data.Dataset.range(start, 2**62 if stop is None else stop)
    if shard[1] > 1:  # whole batches of sample indices, before any work
        ds = ds.batch(batch_size).shard(shard[1], shard[0]).unbatch()
    ds = ds.map(make, num_parallel_calls=parallel, deterministic=ordered)
    ds = ds.batch(batch_size, drop_remainder=stop is None)
    return ds.prefetch(tf.data.AUTOTUNE)


def _pick_pipeline(pipeline):
    check_choice(
        pipeline,
        "pipeline",
        PIPELINES,
        "'auto' is tf.data on the TensorFlow backend, else a PyDataset",
    )
    backend = keras.backend.backend()
    if pipeline == "auto":
        return "tf.data" if backend == "tensorflow" else "py_dataset"
    if pipeline == "tf.data" and backend != "tensorflow":
        raise ValueError(
            "pipeline='tf.data' runs the keras.ops warp inside tf.data, which "
            "needs the TensorFlow backend (KERAS_BACKEND=tensorflow). With "
            f"the {backend!r} backend use pipeline='py_dataset' (or 'auto'), "
            "which warps on the accelerator. Received: pipeline='tf.data'"
        )
    return pipeline


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
    spec=None,
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
    pipeline="auto",
    shard=None,
):
    """A stream of augmented training tiles, ready for `model.fit`.

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
        spec: optional `keras_unet.model.UNetSpec`, replacing `depth`,
            `padding` and `model` (see `tile_shapes`).
        num_classes: number of classes; labels are checked against it.
        batch_size: tiles per batch (the paper: 1 large tile).
        augment: True or "paper" (default: `keras_unet.augment.AugmentConfig`
            defaults), "flips", False/"none", a dict of AugmentConfig fields
            or an AugmentConfig.
        shuffle: visit the images in a new random order every epoch (an
            epoch here is one tile of every image).
        repeat: repeat forever (use ``steps_per_epoch`` in `model.fit`);
            False gives one tile per image.
        deterministic: keep the element order of the parallel tf.data map
            fixed; False can be a little faster. (The PyDataset is always
            in order.)
        mask_mirrored: weight 0 for label pixels that come from the mirrored
            extension of the image.
        jit_compile: compile the warp with XLA: True, False or "auto" (on
            TensorFlow and JAX; torch runs it eagerly).
        validate: read every image, label and weight once now, so that any
            problem is reported before training starts (it also lets the
            source windows shrink to the largest image).
        num_parallel_calls: parallelism of the tf.data map (default
            AUTOTUNE); the PyDataset builds batches in the calling thread.
        start: index of the first sample (tile) of the stream. Sample ``i``
            depends only on ``(seed, i)``, whatever the backend, pipeline
            or batch size: its image is at position ``i % n`` of a seeded
            permutation of epoch ``i // n``, its augmentation is drawn from
            ``keras_unet.augment.sample_rng(seed, i)``. Resuming with
            ``start = samples already drawn`` continues the exact stream.
        pipeline: "auto" (tf.data on the TensorFlow backend, else a
            PyDataset), "tf.data" (TensorFlow backend only) or
            "py_dataset" (any backend).
        shard: ``(index, count)``: part `index` of `count`; its batch ``k``
            is batch ``k * count + index`` of the whole stream, and only
            its samples are computed (multi-worker training).

    Returns:
        ``(x, y, w)`` batches: x float32 (B, in_h, in_w, C), y int32 (B,
        out_h, out_w), w float32 (B, out_h, out_w); a `tf.data.Dataset` or
        a `TrainingTiles` (`keras.utils.PyDataset`) of backend tensors.

    Examples:
        >>> from keras_unet import synthetic_cells
        >>> images, instances = synthetic_cells(2, size=128)
        >>> labels = (instances > 0).astype("int32")
        >>> ds = make_training_dataset(images, labels, input_size=92, depth=2,
        ...                            seed=0, pipeline="py_dataset")
        >>> x, y, w = ds[0]
        >>> tuple(x.shape), tuple(y.shape)
        ((1, 92, 92, 1), (1, 52, 52))
    """
    in_hw, out_hw = tile_shapes(input_size, depth, padding, model, spec)
    config = _augment_config(augment)
    batch_size = check_int(batch_size, "batch_size", 1, "tiles per batch")
    start = check_int(start, "start", 0, "samples already drawn")
    pipeline = _pick_pipeline(pipeline)
    shard = _check_shard(shard)
    source = _make_source(images, labels, weights, num_classes, validate)
    spec = WarpSpec.create(
        config,
        in_hw,
        out_hw,
        mask_mirrored=mask_mirrored,
        max_image_shape=source.max_shape(),
    )
    label_dtype = np.uint8 if source.num_classes <= 256 else np.int32
    sampler = TileSampler(source, spec, _base_seed(seed), shuffle, label_dtype)
    warp = compile_warp(spec, jit_compile)
    stop = None if repeat else max(len(source), start)
    if pipeline == "tf.data":
        return _tf_dataset(
            sampler,
            warp,
            start,
            stop,
            batch_size,
            num_parallel_calls,
            deterministic,
            shard,
        )
    return TrainingTiles(sampler, warp, batch_size, start, stop, shard)


def _check_shard(shard):
    """``(index, count)`` with ``0 <= index < count``; None is (0, 1)."""
    parts = (0, 1) if shard is None else tuple(shard)
    ints = all(isinstance(v, numbers.Integral) for v in parts)
    if len(parts) != 2 or not ints or not 0 <= parts[0] < parts[1]:
        raise ValueError(
            "`shard` must be (index, count) with 0 <= index < count, e.g. "
            f"(worker, workers). Received: shard={shard!r}"
        )
    return int(parts[0]), int(parts[1])


# --------------------------------------------------------------------------
# Validation: exact crops covering every image once.


def validation_tiles(image_shapes, output_shape):
    """Origins ``(image_index, row, col)`` of output tiles covering images.

    Tiles are laid out on a grid with the output tile's stride, starting at
    the top-left corner; the last row/column of tiles may extend beyond the
    image.

    Examples:
        >>> validation_tiles([(30, 20)], (20, 20)).tolist()
        [[0, 0, 0], [0, 20, 0]]
    """
    out_h, out_w = output_shape
    origins = []
    for index, (h, w) in enumerate(image_shapes):
        for r in range(math.ceil(h / out_h)):
            for c in range(math.ceil(w / out_w)):
                origins.append((index, r * out_h, c * out_w))
    return np.asarray(origins, np.int64).reshape(-1, 3)


class ValidationTiles(keras.utils.PyDataset):
    """Finite batches of exact tiles covering every image once (numpy).

    Args:
        source: the checked images, labels and weights.
        origins: from `validation_tiles`.
        input_shape: ``(h, w)`` of the input tile.
        output_shape: ``(h, w)`` of the output tile.
        batch_size: tiles per batch (the last batch may be smaller).
    """

    def __init__(self, source, origins, input_shape, output_shape, batch_size):
        super().__init__(workers=1, use_multiprocessing=False)
        self.source = source
        self.origins = np.asarray(origins, np.int64).reshape(-1, 3)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.batch_size = int(batch_size)
        self.load = functools.lru_cache(maxsize=1)(source.get)

    def __len__(self):
        return math.ceil(len(self.origins) / self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    def tile(self, index, row, col):
        """``(x, y, w)`` numpy tile with the output tile at (row, col)."""
        image, labels, weights = self.load(int(index))
        (h, w), (in_h, in_w) = image.shape[:2], self.input_shape
        out_h, out_w = self.output_shape
        top, left = row - (in_h - out_h) // 2, col - (in_w - out_w) // 2
        rows = mirror_index(np.arange(top, top + in_h), h)
        cols = mirror_index(np.arange(left, left + in_w), w)
        x = image[rows[:, None], cols[None, :]]
        out_rows, out_cols = (
            np.arange(row, row + out_h),
            np.arange(col, col + out_w),
        )
        at = (
            mirror_index(out_rows, h)[:, None],
            mirror_index(out_cols, w)[None, :],
        )
        inside = (out_rows < h)[:, None] & (out_cols < w)[None, :]
        return x, labels[at], weights[at] * inside

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"batch {index} is out of range: there are {len(self)}."
            )
        first = index * self.batch_size
        tiles = [
            self.tile(*origin)
            for origin in self.origins[first : first + self.batch_size]
        ]
        x, y, w = (np.stack(t) for t in zip(*tiles))
        return x, y.astype(np.int32), w.astype(np.float32)


def make_validation_dataset(
    images,
    labels,
    weights=None,
    input_size=572,
    depth=4,
    *,
    padding="valid",
    model=None,
    spec=None,
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
    the tiles. Tiles are exact integer crops (numpy), so they are the same
    on every backend.

    Args:
        images: as `make_training_dataset`.
        labels: as `make_training_dataset`.
        weights: as `make_training_dataset`.
        input_size: as `make_training_dataset`.
        depth: as `make_training_dataset`.
        padding: as `make_training_dataset`.
        model: as `make_training_dataset`.
        spec: as `make_training_dataset`.
        num_classes: as `make_training_dataset`.
        batch_size: as `make_training_dataset`.

    Returns:
        A finite `ValidationTiles` (`keras.utils.PyDataset`) of numpy
        ``(x, y, w)`` batches; pass it as ``validation_data`` or to
        `model.evaluate`.

    Examples:
        >>> images = np.zeros((2, 50, 70), "float32")
        >>> labels = np.zeros((2, 50, 70), "int32")
        >>> val = make_validation_dataset(images, labels, input_size=60,
        ...                               depth=2, batch_size=4)
        >>> len(val), val[0][0].shape
        (6, (4, 60, 60, 1))
    """
    in_hw, out_hw = tile_shapes(input_size, depth, padding, model, spec)
    batch_size = check_int(batch_size, "batch_size", 1, "tiles per batch")
    source = _make_source(images, labels, weights, num_classes, validate=True)
    shapes = [source.shapes[i] for i in range(len(source))]
    origins = validation_tiles(shapes, out_hw)
    return ValidationTiles(source, origins, in_hw, out_hw, batch_size)
