"""The training stream for `model.fit`, on every Keras backend.

`make_training_dataset` yields ``(input_tile, label_tile, weight_tile)``
batches: tiles drawn at random positions of the mirror-extended images,
augmented with `keras_unet.data.augment` (elastic deformation, rotation, flips,
gray values), labels and weights cropped to the output of the valid-padding
network. Training is then plain ``model.fit(dataset, steps_per_epoch=...)``:
Keras passes the weight tile to the loss as a per-pixel ``sample_weight``.

The stream is one recipe run two ways. The random parameters and the source
windows of sample ``i`` come from numpy on the host, seeded by ``(seed, i)``
(`keras_unet.data.augment.sample_rng`); the warp is `keras_unet.data.augment`'s
keras.ops function, XLA-compiled. With the TensorFlow backend it runs inside
a `tf.data` pipeline (parallel CPU workers); with JAX and torch a
`keras.utils.PyDataset` builds each batch on the host and warps it on the
default device (the GPU if there is one). Both give the same samples, so
``start=`` resumes exactly, and TensorFlow is imported only for tf.data.

Validation tiles are `keras_unet.data.validation`.
"""

from __future__ import annotations

import functools
import math
import numbers

import keras
import numpy as np

from keras_unet.checks import check_choice, check_int
from keras_unet.data.augment import (
    AugmentConfig,
    WarpSpec,
    compile_warp,
    random_params,
    sample_rng,
)
from keras_unet.data.mirror import mirror_index
from keras_unet.data.normalize import to_float_image
from keras_unet.data.sources import make_source
from keras_unet.data.tiles import tile_shapes

__all__ = [
    "PIPELINES",
    "TileSampler",
    "TrainingTiles",
    "cut_windows",
    "make_training_dataset",
    "stack_samples",
]

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow
PIPELINES = ("auto", "tf.data", "py_dataset")


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
    `keras_unet.data.augment.warp_batch` of the windows equals sampling the
    whole image, and only the windows travel to the device.

    Args:
        image: (H, W) or (H, W, C) image, any size; converted with
            `keras_unet.data.normalize.to_float_image` (uint8 / 255, ...) after
            cropping.
        labels: (H, W) integer class indices.
        weights: (H, W) weights, or None (no weight window: all ones).
        params: from `keras_unet.data.augment.random_params`.
        spec: `keras_unet.data.augment.WarpSpec` (its window sizes).
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
    ``keras_unet.data.augment.sample_rng(seed, i)``.

    Args:
        source: the checked images, labels and weights.
        spec: `keras_unet.data.augment.WarpSpec` of the tiles.
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
        warp: ``batch -> (x, y, w)``, from
            `keras_unet.data.augment.compile_warp`.
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


def _tf_dataset(
    sampler, warp, start, stop, batch_size, parallel, ordered, shard
):
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
    labels=None,
    weights=None,
    input_size=572,
    depth=4,
    seed=None,
    *,
    padding="valid",
    model=None,
    spec=None,
    num_classes=None,
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
        images: a `keras_unet.data.imageset.ImageSet` with its labels and
            weights (then leave `labels` and `weights` None), or an array
            (n, H, W) or (n, H, W, C), or a list of arrays (sizes may
            differ) or of image file paths (PNG/TIFF/..., read lazily with
            `keras_unet.io.images.read_image`). Converted to float with
            `keras_unet.data.normalize.to_float_image` (uint8 / 255, ...).
        labels: class-index images (n, H, W) (or a list / file paths), values
            in ``0..num_classes-1``.
        weights: optional per-pixel weight maps (n, H, W) (or a list / file
            paths, .npy or TIFF), e.g. from `keras_unet.data.weight_maps`.
            Default: all ones.
        input_size: int or (height, width) of the input tile; a valid size
            for the network (572 for the paper's).
        depth: the network's depth (4 in the paper).
        seed: int for a reproducible stream (same seed, same tiles), None
            for a random one.
        padding: "valid" or "same", as the network.
        model: optional U-Net to read depth and padding from (and the input
            size, if `input_size` is None and the model has a fixed one).
        spec: optional `keras_unet.model.spec.UNetSpec`, replacing `depth`,
            `padding` and `model` (see `tile_shapes`).
        num_classes: number of classes; labels are checked against it
            (default: the ImageSet's, else 2).
        batch_size: tiles per batch (the paper: 1 large tile).
        augment: True or "paper" (default:
            `keras_unet.data.augment.AugmentConfig` defaults), "flips",
            False/"none", a dict of AugmentConfig fields or an AugmentConfig.
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
            ``keras_unet.data.augment.sample_rng(seed, i)``. Resuming with
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
    source = make_source(images, labels, weights, num_classes, validate)
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
