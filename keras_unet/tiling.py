"""Overlap-tile prediction of images of any size, and test-time augmentation.

The paper segments arbitrarily large images tile by tile (Fig. 2): each
output tile needs `margin` pixels of context on every side (92 for the
paper's net), and the context missing at the image border is extrapolated by
mirroring. Because the network uses unpadded ("valid") convolutions, the
tiled result is *identical* (to float round-off) to one untiled pass over
the whole mirror-padded image, provided every tile starts at a multiple of
``2**depth`` pixels, so that all 2x2 max-pools of all tiles see the same
pixel grid as the untiled pass. `predict_tiled` delivers exactly that:

- the image is mirror-padded by the margin at the top/left and by the margin
  plus whatever the last tile needs at the bottom/right, with repeated
  mirroring when the padding is larger than the image (images smaller than
  the margin, down to one pixel, work);
- tiles are cut at offsets that are multiples of ``2**depth`` (the output
  tiles overlap by ``(tile - 2 * margin) % 2**depth`` pixels, 4 for the
  paper's geometry; the overlap is computed but not used), batched through
  the model, and stitched;
- the soft-max (sigmoid for one output channel) is applied to the stitched
  logits; with test-time augmentation, the probabilities of the transformed
  images are mapped back and averaged.

Mirroring convention: ``mode="reflect"`` (the default) mirrors about the
edge pixel without repeating it (``numpy.pad(mode="reflect")``, OpenCV's
``BORDER_REFLECT_101``): ``[a b c]`` continues as ``... c b | a b c | b a
...``. ``mode="symmetric"`` repeats the edge pixel (``... b a | a b c | c b
...``). The paper (Fig. 2) mirrors without fixing the pixel convention;
`keras_unet.export` uses the same function in the SavedModel graph.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Sect. 2, Fig. 2; Sect. 3.1 for the
    averaging over rotated inputs).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import weakref
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from keras_unet import geometry
from keras_unet.checks import check_int as _check_int
from keras_unet.io import to_float_image

__all__ = [
    "DEFAULT_CPU_MEMORY_BUDGET",
    "MIRROR_MODES",
    "TTA_PRESETS",
    "TTA_TRANSFORMS",
    "Tile",
    "TileLayout",
    "choose_tile_size",
    "default_memory_budget",
    "dihedral_transform",
    "estimate_tile_memory",
    "mirror_indices",
    "mirror_pad",
    "predict_tiled",
    "predict_tiled_batch",
    "resolve_tta",
    "tile_iterator",
    "tile_layout",
]

MIRROR_MODES = ("reflect", "symmetric")

# The 8 elements of the dihedral group D4 acting on the (row, column) axes,
# each written as (transpose first?, then flip rows?, then flip columns?).
# "rot90" is numpy.rot90(image, 1): a counter-clockwise quarter turn as
# displayed (row 0 at the top); "transpose" mirrors about the main diagonal,
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
_INVERSE = {name: name for name in TTA_TRANSFORMS}
_INVERSE.update(rot90="rot270", rot270="rot90")

TTA_PRESETS = {
    "d4": tuple(TTA_TRANSFORMS),
    "rotations": ("identity", "rot90", "rot180", "rot270"),
    "flips": ("identity", "flip_lr", "flip_ud", "rot180"),
}

DEFAULT_CPU_MEMORY_BUDGET = 2 * 2**30
_GPU_FRACTION = 0.5
_TF_GPU_DEFAULT_BUDGET = 2 * 2**30
_MAX_AUTO_BATCH = 64
_MAX_TILE = 2**15
_AUTO_PROGRESS_CALLS = 8


# ---------------------------------------------------------------- mirroring


def _check_mode(mode):
    if mode not in MIRROR_MODES:
        raise ValueError(
            f"`mirror` must be one of {MIRROR_MODES} ('reflect' mirrors about "
            "the edge pixel, 'symmetric' repeats it). "
            f"Received: mirror={mode!r}"
        )


def mirror_indices(n: int, before: int, after: int, mode: str = "reflect"):
    """Source index of every pixel of an axis of length `n` padded by mirroring.

    Works for any amount of padding: past the far edge of the mirrored copy
    the image is mirrored again (the extension is periodic with period
    ``2 * (n - 1)`` for "reflect" and ``2 * n`` for "symmetric"). A 1-pixel
    axis is repeated.

    Args:
        n: length of the axis (>= 1).
        before: pixels of padding before the axis (>= 0).
        after: pixels of padding after the axis (>= 0).
        mode: "reflect" or "symmetric" (see the module docstring).

    Returns:
        int64 array of length ``before + n + after`` with values in
        ``[0, n)``.

    Examples:
        >>> mirror_indices(3, 4, 2).tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
    """
    _check_mode(mode)
    _check_int(n, "n", 1)
    _check_int(before, "before", 0)
    _check_int(after, "after", 0)
    i = np.arange(-before, n + after, dtype=np.int64)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * (n - 1)
        j = np.mod(i, period)
        return np.where(j >= n, period - j, j)
    period = 2 * n
    j = np.mod(i, period)
    return np.where(j >= n, period - 1 - j, j)


def mirror_pad(image, pad, mode: str = "reflect", axes=(0, 1)) -> np.ndarray:
    """Pad the two spatial axes of an array by mirroring, by any amount.

    The padding may exceed the image size (the image is mirrored again, as
    ``numpy.pad`` does), so images smaller than the network's context margin
    can be segmented. The index arithmetic (`mirror_indices`) is the one the
    exported TensorFlow graph uses (``tf.pad`` cannot mirror by more than the
    image size).

    Args:
        image: array with at least two axes.
        pad: ``((top, bottom), (left, right))`` in pixels.
        mode: "reflect" (default) or "symmetric".
        axes: the (row, column) axes; ``(1, 2)`` for a batch ``(N, H, W, C)``.

    Returns:
        The padded array (same dtype).

    Examples:
        >>> mirror_pad(np.arange(3)[None], ((0, 0), (4, 2)))[0].tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
    """
    image = np.asarray(image)
    (top, bottom), (left, right) = pad
    rows = mirror_indices(image.shape[axes[0]], top, bottom, mode)
    cols = mirror_indices(image.shape[axes[1]], left, right, mode)
    return np.take(np.take(image, rows, axis=axes[0]), cols, axis=axes[1])


# ------------------------------------------------------------- tile layout


class Tile(NamedTuple):
    """One tile: where to read it, what of its output to keep, where to put it.

    Attributes:
        source: ``(rows, cols)`` slices of the *padded* image (the tile fed
            to the model, of the tile size).
        crop: ``(rows, cols)`` slices of the tile's output (of size
            ``tile - 2 * margin``) to keep.
        destination: ``(rows, cols)`` slices of the output image (the size
            of the unpadded image) receiving ``output[crop]``.
    """

    source: tuple[slice, slice]
    crop: tuple[slice, slice]
    destination: tuple[slice, slice]


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """How an image is padded and cut into tiles; iterate it for the tiles.

    Attributes:
        image_shape: ``(H, W)`` of the image (and of the output).
        tile_shape: ``(th, tw)`` of every input tile.
        margin: context pixels consumed on each side by the model.
        step: tile offsets are multiples of this (``2**depth``).
        counts: tiles along rows and columns.
        strides: offset between consecutive tiles along rows and columns (a
            multiple of `step`).
        pad: ``((top, bottom), (left, right))`` padding of the image;
            top = left = margin.
    """

    image_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    margin: int
    step: int
    counts: tuple[int, int]
    strides: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Shape of the padded image the tiles are cut from."""
        return tuple(n + a + b for n, (a, b) in zip(self.image_shape, self.pad))

    @property
    def output_tile_shape(self) -> tuple[int, int]:
        """Shape of the model output of one tile."""
        return tuple(t - 2 * self.margin for t in self.tile_shape)

    @property
    def n_tiles(self) -> int:
        return self.counts[0] * self.counts[1]

    def __len__(self) -> int:
        return self.n_tiles

    def __iter__(self) -> Iterator[Tile]:
        rows = _axis_pieces(self.image_shape[0], self.tile_shape[0],
                            self.counts[0], self.strides[0])  # fmt: skip
        cols = _axis_pieces(self.image_shape[1], self.tile_shape[1],
                            self.counts[1], self.strides[1])  # fmt: skip
        for r_src, r_crop, r_dst in rows:
            for c_src, c_crop, c_dst in cols:
                yield Tile((r_src, c_src), (r_crop, c_crop), (r_dst, c_dst))


def _axis_pieces(n, tile, count, stride):
    pieces = []
    for i in range(count):
        start = i * stride
        stop = n if i == count - 1 else min(start + stride, n)
        pieces.append(
            (
                slice(start, start + tile),
                slice(0, stop - start),
                slice(start, stop),
            )
        )
    return pieces


def _pair(value, name):
    """An int or a pair of ints as (rows, cols)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool)
        for v in pair
    ):
        raise TypeError(
            f"`{name}` must be an integer or a pair of integers "
            f"(rows, columns). Received: {name}={value!r}"
        )
    return int(pair[0]), int(pair[1])


def _axis_plan(n, tile, margin, step, name="tile_size"):
    """Tile count, stride and bottom/right padding along one axis."""
    out = tile - 2 * margin
    if out < 1:
        raise ValueError(
            f"A tile of {tile} px leaves no output after removing the "
            f"{margin} px context margin on each side; use tiles larger than "
            f"{2 * margin}. Received: {name}={tile}"
        )
    stride = out - out % step
    if n <= out:
        count = 1
    else:
        if stride < 1:
            raise ValueError(
                f"A tile of {tile} px gives {out} output px, fewer than the "
                f"{step} px offset step, so it cannot tile a {n} px image "
                f"seamlessly; use tiles of at least "
                f"{2 * margin + step + out % step} px. Received: {name}={tile}"
            )
        count = 1 + -(-(n - out) // stride)
    padded = (count - 1) * stride + tile
    return count, stride, padded - n - margin


def tile_layout(image_shape, tile_size, margin: int, step: int) -> TileLayout:
    """Plan the overlap-tile prediction of an image.

    Tiles of `tile_size` are cut from the image padded by `margin` at the
    top/left, at offsets that are multiples of `step`; each tile's output
    (``tile - 2 * margin`` px) lands at the same offset in the output. The
    destinations cover the output exactly once; the bottom/right padding is
    whatever the last tile needs.

    Args:
        image_shape: ``(H, W)`` (extra trailing axes are ignored).
        tile_size: input tile size, an int or ``(rows, cols)``.
        margin: context consumed by the model on each side (92 for the
            paper's net; see `keras_unet.geometry.margin`).
        step: offset granularity, ``2**depth``.

    Returns:
        A `TileLayout`; iterate it to get `Tile` objects.

    Examples:
        >>> layout = tile_layout((1000, 700), 572, margin=92, step=16)
        >>> layout.counts, layout.strides, layout.pad
        ((3, 2), (384, 384), ((92, 248), (92, 164)))
    """
    h, w = _image_hw(image_shape)
    th, tw = _pair(tile_size, "tile_size")
    margin = _check_int(margin, "margin", 0)
    step = _check_int(step, "step", 1)
    ch, sh, bottom = _axis_plan(h, th, margin, step)
    cw, sw, right = _axis_plan(w, tw, margin, step)
    return TileLayout(
        image_shape=(h, w),
        tile_shape=(th, tw),
        margin=margin,
        step=step,
        counts=(ch, cw),
        strides=(sh, sw),
        pad=((margin, bottom), (margin, right)),
    )


def tile_iterator(image_shape, tile_size, margin: int, step: int):
    """Yield the `Tile` objects (source, crop, destination slices) of an image.

    A thin wrapper around `tile_layout`; see it for the arguments. The image
    must be padded with ``tile_layout(...).pad`` before slicing `source`.

    Examples:
        >>> for tile in tile_iterator((500, 300), 572, margin=92, step=16):
        ...     print(tile.source[0], tile.destination[0])
        slice(0, 572, None) slice(0, 384, None)
        slice(384, 956, None) slice(384, 500, None)
    """
    yield from tile_layout(image_shape, tile_size, margin, step)


# ------------------------------------------------------- model geometry


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Tiling geometry of a model.

    For valid-padded models the margin is the model's own and the output of
    a tile is ``tile - 2 * margin``. Same-padded models return a tile of the
    input size; their outputs are cropped by ``crop`` (= margin =
    ``6 * 2**depth``) on each side before stitching.
    """

    depth: int
    padding: str
    margin: int
    step: int
    n_min: int
    crop: int
    channels: int
    classes: int
    fixed: tuple[int, int] | None

    @property
    def overlap(self) -> int:
        """Output pixels computed twice between neighbouring tiles."""
        return (self.n_min - 2 * self.margin) % self.step

    def is_valid(self, n) -> bool:
        return n >= self.n_min and (n - self.n_min) % self.step == 0

    def round_up(self, n) -> int:
        """Smallest valid tile size >= n."""
        if n <= self.n_min:
            return self.n_min
        return self.n_min + -(-(n - self.n_min) // self.step) * self.step

    def round_down(self, n) -> int | None:
        if n < self.n_min:
            return None
        return self.n_min + (n - self.n_min) // self.step * self.step

    def tile_for_output(self, n) -> int:
        """Smallest valid tile whose output covers n pixels."""
        return self.round_up(n + 2 * self.margin)

    @property
    def min_tiling_size(self) -> int:
        """Smallest tile that can tile an image (stride >= step)."""
        return self.round_up(2 * self.margin + self.step + self.overlap)

    def invalid_message(self, n) -> str:
        if self.padding == "valid":
            return geometry.invalid_size_message(n, self.depth, self.padding)
        below, above = self.round_down(n), self.round_up(n)
        where = (
            f"the smallest valid size is {above}"
            if below is None
            else f"nearest valid sizes are {below} and {above}"
        )
        return (
            f"tile size {n} is not valid for this same-padded U-Net of depth "
            f"{self.depth}: tiles are multiples of {self.step} larger than "
            f"twice the {self.margin} px context kept around each tile "
            f"({self.n_min} + {self.step}k); {where}."
        )


_FLEXIBLE = weakref.WeakKeyDictionary()


def _flexible_model(model):
    """The model with free spatial input dims, sharing the same weights.

    `build_unet()` makes a 572x572 model by default; tiles of other sizes
    need a model with ``(None, None, C)`` inputs. For a functional model we
    re-wire the same layer objects to a new input (no weights are copied).
    Returns None if that is not possible.
    """
    import keras

    shape = tuple(model.input_shape)
    if shape[1] is None and shape[2] is None:
        return model
    cached = _FLEXIBLE.get(model)
    if cached is not None:
        return cached
    try:
        flexible = keras.models.clone_model(
            model,
            input_tensors=keras.Input((None, None, shape[-1])),
            clone_function=lambda layer: layer,
        )
    except Exception:  # noqa: BLE001 - any failure: use the fixed model
        return None
    _FLEXIBLE[model] = flexible
    return flexible


def _prepare(model, depth=None, padding=None):
    """(model to call, its _Geometry) for a U-Net."""
    from keras_unet.model import inspect_unet

    spec = inspect_unet(model, depth=depth, padding=padding)
    flexible = _flexible_model(model)
    fixed = None
    if flexible is None:
        flexible = model
        fixed = tuple(model.input_shape[1:3])
        if None in fixed:
            raise ValueError(
                "The model fixes one spatial input size but not the other, "
                "and could not be rebuilt with free input sizes. Build it with "
                f"input_shape=(None, None, C). Received: model.input_shape="
                f"{model.input_shape}"
            )
    step = spec.step
    if spec.padding == "valid":
        margin = spec.margin
        n_min = geometry.min_input_size(spec.depth, "valid")
        crop = 0
    else:
        # Context kept (and cropped) around every tile of a same-padded net:
        # 6 * 2**depth px, the valid margin (6 * 2**depth - 4) rounded up to
        # a multiple of the step, so that zero padding at the tile borders
        # does not reach the kept pixels and the pooling grid stays aligned.
        margin = 6 * step
        n_min = (2 * margin // step + 1) * step
        crop = margin
    geo = _Geometry(
        depth=spec.depth,
        padding=spec.padding,
        margin=margin,
        step=step,
        n_min=n_min,
        crop=crop,
        channels=spec.input_channels,
        classes=spec.num_classes,
        fixed=fixed,
    )
    if fixed is not None:
        for n in fixed:
            if not geo.is_valid(n):
                raise ValueError(
                    f"The model's fixed input size {fixed} cannot be used as a "
                    f"tile: {geo.invalid_message(n)} Build the model with "
                    "input_shape=(None, None, C). Received: "
                    f"model.input_shape={model.input_shape}"
                )
    return flexible, geo


# ---------------------------------------------------------------- memory


def _itemsize(model) -> int:
    try:
        name = str(model.dtype_policy.compute_dtype)
    except AttributeError:
        name = "float32"
    if "16" in name:
        return 2
    if "64" in name:
        return 8
    return 4


def _layer_elements(model, channels, h, w):
    """Elements of every operation output of a functional model at (h, w)."""
    import keras

    sizes = []

    def call_fn(op, *args, **kwargs):
        out = op.compute_output_spec(*args, **kwargs)
        for t in keras.tree.flatten(out):
            sizes.append(tuple(t.shape))
        return out

    model._run_through_graph(
        [keras.KerasTensor((1, h, w, channels))], call_fn=call_fn
    )
    return sizes


class _ActivationModel:
    """Elements of all layer outputs for one tile, as a function of its size.

    Every layer output of a U-Net has spatial size ``a * n + b`` along each
    axis for an input of n px, so two symbolic passes (no computation) fix
    the formula for every layer; `elements(h, w)` then sums
    ``channels * rows * cols`` over layers, plus the input. This sum bounds
    the peak activation memory of an inference pass from above.
    """

    def __init__(self, model, geo):
        self.channels = geo.channels
        self.terms = None
        if geo.fixed is not None:
            self.fixed_value = self._measure(model, geo, *geo.fixed)
            return
        self.fixed_value = None
        t1 = geo.min_tiling_size
        t2 = t1 + 8 * geo.step
        try:
            a = _layer_elements(model, geo.channels, t1, t2)
            b = _layer_elements(model, geo.channels, t2, t1)
        except Exception:  # noqa: BLE001 - not a plain functional graph
            a = b = None
        if a is None or len(a) != len(b):
            return
        terms = []
        for sa, sb in zip(a, b):
            if len(sa) != 4 or None in sa or None in sb:
                continue
            ah = (sb[1] - sa[1]) / (t2 - t1)
            aw = (sa[2] - sb[2]) / (t2 - t1)
            terms.append((sa[3], ah, sa[1] - ah * t1, aw, sa[2] - aw * t2))
        self.terms = terms

    def _measure(self, model, geo, h, w):
        try:
            shapes = _layer_elements(model, geo.channels, h, w)
            return h * w * geo.channels + sum(
                math.prod(s) for s in shapes if None not in s
            )
        except Exception:  # noqa: BLE001
            return None

    def elements(self, h, w) -> float:
        if self.fixed_value is not None:
            return float(self.fixed_value)
        total = float(h * w * self.channels)
        if self.terms is None:
            # Not a functional graph: assume a paper-like U-Net, whose
            # activations are ~1400 values per input pixel for 64 filters.
            return total + 1400.0 * h * w
        for c, ah, bh, aw, bw in self.terms:
            total += c * max(ah * h + bh, 0.0) * max(aw * w + bw, 0.0)
        return total


_ACTIVATIONS = weakref.WeakKeyDictionary()


def _activation_model(model, geo):
    cached = _ACTIVATIONS.get(model)
    if cached is None:
        cached = _ActivationModel(model, geo)
        _ACTIVATIONS[model] = cached
    return cached


def default_memory_budget() -> int:
    """Bytes of activation memory one batch of tiles may use, by default.

    - JAX on GPU/TPU: half of the memory the device has left
      (``bytes_limit - bytes_in_use`` of ``device.memory_stats()``).
    - PyTorch on CUDA: half of ``torch.cuda.mem_get_info()``'s free memory.
    - TensorFlow on GPU (which does not report free memory): 2 GiB.
    - CPU: `DEFAULT_CPU_MEMORY_BUDGET` (2 GiB), or a quarter of the
      available RAM if that is less.

    Returns:
        The budget in bytes.
    """
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                stats = device.memory_stats() or {}
                if "bytes_limit" in stats:
                    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
                    return int(_GPU_FRACTION * free)
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                free, _ = torch.cuda.mem_get_info()
                return int(_GPU_FRACTION * free)
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("GPU"):
                return _TF_GPU_DEFAULT_BUDGET
    except Exception:  # noqa: BLE001 - fall back to the CPU default
        pass
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = None
    if available:
        return int(min(DEFAULT_CPU_MEMORY_BUDGET, available // 4))
    return DEFAULT_CPU_MEMORY_BUDGET


def estimate_tile_memory(model, tile_size, depth=None, padding=None) -> int:
    """Estimated activation memory (bytes) of one tile through the model.

    The sum of the sizes of all layer outputs (and the input) for one tile,
    times the bytes of the compute dtype: an upper bound of the peak memory
    of an inference pass, which frees intermediate results. For the paper's
    net and a 572 px tile this is about 780 MiB.

    Args:
        model: a U-Net (see `predict_tiled`).
        tile_size: int or ``(rows, cols)``.
        depth: override passed to `keras_unet.inspect_unet`.
        padding: override passed to `keras_unet.inspect_unet`.

    Returns:
        Bytes, as an int.

    Examples:
        >>> from keras_unet import build_unet
        >>> estimate_tile_memory(build_unet(), 572) // 2**20
        781
    """
    flexible, geo = _prepare(model, depth, padding)
    th, tw = _pair(tile_size, "tile_size")
    act = _activation_model(flexible, geo)
    return int(round(act.elements(th, tw) * _itemsize(flexible)))


def _balanced_tile(geo, n, tile_max):
    """The smallest tile needing as few tiles as `tile_max` along n px."""
    if geo.fixed is not None:
        return tile_max
    tile_max = min(tile_max, geo.tile_for_output(n))
    count, _, _ = _axis_plan(n, tile_max, geo.margin, geo.step)
    need = -(-(n + (count - 1) * geo.overlap) // count)
    return min(geo.tile_for_output(need), tile_max)


def _largest_tile(geo, fits, limit):
    """Largest valid tile size t <= limit with fits(t), or None."""
    hi = geo.round_down(limit)
    if hi is None or not fits(geo.n_min):
        return None
    lo_k, hi_k = 0, (hi - geo.n_min) // geo.step
    while lo_k < hi_k:
        mid = (lo_k + hi_k + 1) // 2
        if fits(geo.n_min + mid * geo.step):
            lo_k = mid
        else:
            hi_k = mid - 1
    return geo.n_min + lo_k * geo.step


def _auto_tile(geo, act, itemsize, hw, budget):
    """Largest tile (rows, cols) within the budget, capped at the image."""
    caps = [geo.tile_for_output(n) for n in hw]
    floor = geo.min_tiling_size

    def bytes_(h, w):
        return act.elements(h, w) * itemsize

    side = _largest_tile(geo, lambda t: bytes_(t, t) <= budget, _MAX_TILE)
    side = max(side or floor, floor)
    th, tw = min(side, caps[0]), min(side, caps[1])
    if th < side and tw == side:
        grown = _largest_tile(
            geo, lambda t: bytes_(th, t) <= budget, min(caps[1], _MAX_TILE)
        )
        tw = max(tw, grown or tw)
    elif tw < side and th == side:
        grown = _largest_tile(
            geo, lambda t: bytes_(t, tw) <= budget, min(caps[0], _MAX_TILE)
        )
        th = max(th, grown or th)
    return th, tw


def _check_tile_size(geo, tile_size):
    th, tw = _pair(tile_size, "tile_size")
    if geo.fixed is not None:
        if (th, tw) != geo.fixed:
            raise ValueError(
                f"This model only accepts {geo.fixed[0]}x{geo.fixed[1]} inputs "
                "and could not be rebuilt with free input sizes; pass "
                f"tile_size={geo.fixed} or None, or build the model with "
                "input_shape=(None, None, C). "
                f"Received: tile_size={tile_size!r}"
            )
        return th, tw
    for n in (th, tw):
        if not geo.is_valid(n):
            raise ValueError(
                f"{geo.invalid_message(n)} Received: tile_size={tile_size!r}"
            )
    return th, tw


def _plan_tiles(geo, act, itemsize, hw, tile_size, budget):
    """The tile shape used for an image of shape hw."""
    if geo.fixed is not None:
        return geo.fixed if tile_size is None else tile_size
    if tile_size is None:
        tile_max = _auto_tile(geo, act, itemsize, hw, budget)
    else:
        tile_max = tile_size
    tile = tuple(_balanced_tile(geo, n, t) for n, t in zip(hw, tile_max))
    for n, t in zip(hw, tile):
        # Raises a clear error if the tile is too small to tile the image.
        _axis_plan(n, t, geo.margin, geo.step)
    return tile


def choose_tile_size(
    model, image_shape, memory_budget=None, tile_size=None, depth=None,
    padding=None,
):  # fmt: skip
    """The input tile size `predict_tiled` uses for an image.

    Without `tile_size`, the largest valid tile whose estimated activation
    memory (`estimate_tile_memory`) fits in `memory_budget`. Either way the
    tile is then shrunk to the smallest valid size that needs no more tiles
    (so a small image is one tile just large enough to cover it, and a
    2048 px image with a 1000 px limit is cut into 3 equal tiles of 892 px,
    not 2 large ones and a sliver).

    Args:
        model: a U-Net.
        image_shape: ``(H, W)`` of the image.
        memory_budget: bytes; defaults to `default_memory_budget()`.
        tile_size: optional upper bound, int or ``(rows, cols)``; must be a
            valid input size.
        depth: override passed to `keras_unet.inspect_unet`.
        padding: override passed to `keras_unet.inspect_unet`.

    Returns:
        ``(rows, cols)`` of the input tile.

    Examples:
        >>> from keras_unet import build_unet
        >>> choose_tile_size(build_unet(depth=2, filters=4), (300, 517), 2**30)
        (340, 560)
    """
    flexible, geo = _prepare(model, depth, padding)
    hw = _image_hw(image_shape)
    if tile_size is not None:
        tile_size = _check_tile_size(geo, tile_size)
    budget = _check_budget(memory_budget)
    act = _activation_model(flexible, geo)
    return _plan_tiles(geo, act, _itemsize(flexible), hw, tile_size, budget)


def _image_hw(image_shape):
    try:
        hw = tuple(image_shape)[:2]
    except TypeError:
        hw = ()
    if len(hw) != 2:
        raise ValueError(
            "`image_shape` must be (height, width). "
            f"Received: image_shape={image_shape!r}"
        )
    return tuple(_check_int(n, "image_shape", 1) for n in hw)


def _check_budget(memory_budget):
    if memory_budget is None:
        return default_memory_budget()
    if (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, numbers.Real)
        or not memory_budget > 0
    ):
        raise ValueError(
            "`memory_budget` must be a positive number of bytes, e.g. "
            f"2 * 2**30 for 2 GiB. Received: memory_budget={memory_budget!r}"
        )
    return memory_budget


# ------------------------------------------------------------------ TTA


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
    """
    if tta is None or tta is False:
        return ("identity",)
    if tta is True:
        return TTA_PRESETS["d4"]
    if isinstance(tta, str):
        if tta in TTA_PRESETS:
            return TTA_PRESETS[tta]
        names = (tta,)
    else:
        try:
            names = tuple(tta)
        except TypeError:
            names = None
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


def dihedral_transform(array, name, inverse=False, axes=(0, 1)):
    """Rotate/flip an image (or probability map) by an element of D4.

    Args:
        array: array with (row, column) axes `axes`.
        name: a key of `TTA_TRANSFORMS`.
        inverse: apply the inverse transform (maps predictions made on the
            transformed image back onto the original).
        axes: the (row, column) axes.

    Returns:
        A view or copy of the transformed array (rows and columns swapped
        for the quarter turns and transposes).

    Examples:
        >>> a = np.arange(6).reshape(2, 3)
        >>> np.array_equal(dihedral_transform(a, "rot90"), np.rot90(a))
        True
    """
    if name not in TTA_TRANSFORMS:
        raise ValueError(
            f"Unknown transform: use one of {list(TTA_TRANSFORMS)}. "
            f"Received: name={name!r}"
        )
    array = np.asarray(array)
    if inverse:
        name = _INVERSE[name]
    transpose, flip_rows, flip_cols = TTA_TRANSFORMS[name]
    r, c = axes
    if transpose:
        array = np.swapaxes(array, r, c)
    if flip_rows:
        array = np.flip(array, axis=r)
    if flip_cols:
        array = np.flip(array, axis=c)
    return array


# ------------------------------------------------------------ prediction


def _activate(logits, from_logits):
    logits = logits.astype(np.float32, copy=False)
    if not from_logits:
        return logits
    if logits.shape[-1] == 1:
        return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32)
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class _Progress:
    def __init__(self, total, verbose):
        self.bar = None
        if verbose == "auto":
            verbose = total >= _AUTO_PROGRESS_CALLS
        if verbose:
            import keras

            self.bar = keras.utils.Progbar(total, unit_name="batch")

    def add(self):
        if self.bar is not None:
            self.bar.add(1)


def _auto_batch(budget, tile_bytes, n_tiles):
    fit = int(budget // max(tile_bytes, 1))
    return max(1, min(fit, _MAX_AUTO_BATCH, n_tiles))


def _balanced_batch(batch, n):
    """Same number of calls with the smallest batch (less padding waste)."""
    batch = max(1, min(batch, n))
    calls = -(-n // batch)
    return -(-n // calls)


def _predict_stack(call, geo, stack, layout, batch, mirror, from_logits, bar):
    """Probabilities (N, H, W, K) of a stack of images (N, H, W, C)."""
    n = stack.shape[0]
    padded = mirror_pad(stack, layout.pad, mirror, axes=(1, 2))
    out = np.empty((n, *layout.image_shape, geo.classes), np.float32)
    tiles = list(layout)
    jobs = [(i, t) for i in range(n) for t in tiles]
    x = np.zeros((batch, *layout.tile_shape, geo.channels), np.float32)
    want = layout.output_tile_shape
    c = geo.crop
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        for j, (i, tile) in enumerate(chunk):
            x[j] = padded[(i, *tile.source)]
        x[len(chunk) :] = 0.0
        y = call(x)
        if isinstance(y, list | tuple | dict):
            raise ValueError(
                "predict_tiled needs a model with a single output. "
                f"Received: an output of type {type(y).__name__}"
            )
        y = np.asarray(y)
        if c:
            y = y[:, c:-c, c:-c]
        if y.shape[1:3] != want:
            raise ValueError(
                f"The model maps a {layout.tile_shape} tile to "
                f"{y.shape[1:3]}, but depth={geo.depth}, "
                f"padding={geo.padding!r} predicts {want}. Pass the right "
                "`depth=` and `padding=`."
            )
        for j, (i, tile) in enumerate(chunk):
            out[(i, *tile.destination)] = _activate(
                y[j][tile.crop], from_logits
            )
        bar.add()
    return out


def _run(
    model, stacks, tile_size, batch_size, tta, memory_budget, mirror,
    from_logits, verbose, depth, padding,
):  # fmt: skip
    """Shared engine: a list of (N, H, W, C) float32 stacks -> probabilities."""
    _check_mode(mirror)
    names = resolve_tta(tta)
    flexible, geo = _prepare(model, depth, padding)
    if tile_size is not None:
        tile_size = _check_tile_size(geo, tile_size)
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1)
    if verbose not in ("auto", True, False, 0, 1):
        raise ValueError(
            f"`verbose` must be 'auto', True/1 or False/0. "
            f"Received: verbose={verbose!r}"
        )
    budget = _check_budget(memory_budget)
    act = _activation_model(flexible, geo)
    itemsize = _itemsize(flexible)
    jobs = []
    for stack in stacks:
        if stack.shape[-1] != geo.channels:  # guarded by callers
            raise AssertionError("channel mismatch")
        for name in names:
            swap = TTA_TRANSFORMS[name][0]
            hw = stack.shape[1:3][::-1] if swap else stack.shape[1:3]
            user = tile_size
            if user is not None and swap and geo.fixed is None:
                user = user[::-1]
            tile = _plan_tiles(geo, act, itemsize, hw, user, budget)
            layout = tile_layout(hw, tile, geo.margin, geo.step)
            n_tiles = stack.shape[0] * layout.n_tiles
            tile_bytes = act.elements(*tile) * itemsize
            batch = batch_size or _auto_batch(budget, tile_bytes, n_tiles)
            batch = _balanced_batch(batch, n_tiles)
            jobs.append((name, layout, batch, -(-n_tiles // batch)))
    bar = _Progress(sum(j[-1] for j in jobs), verbose)
    results = []
    per_stack = len(names)
    for k, stack in enumerate(stacks):
        acc = None
        for name, layout, batch, _ in jobs[k * per_stack : (k + 1) * per_stack]:
            image = dihedral_transform(stack, name, axes=(1, 2))
            probs = _predict_stack(
                flexible.predict_on_batch,
                geo,
                np.ascontiguousarray(image),
                layout,
                batch,
                mirror,
                from_logits,
                bar,
            )
            probs = dihedral_transform(probs, name, inverse=True, axes=(1, 2))
            acc = probs.copy() if acc is None else acc + probs
        if per_stack > 1:
            acc /= np.float32(per_stack)
        results.append(np.ascontiguousarray(acc))
    return results


def _channels_error(geo, shape, what):
    hint = (
        "convert it to grey (e.g. image.mean(axis=-1))"
        if geo.channels == 1
        else f"give it {geo.channels} channels in the last axis"
    )
    return ValueError(
        f"The model expects images with {geo.channels} channel(s) "
        f"(shape (H, W, {geo.channels})"
        + (" or (H, W)" if geo.channels == 1 else "")
        + f"), but {what}; {hint}. Received: image.shape={shape}"
    )


def _as_stack(image, geo, batched):
    """A float32 (N, H, W, C) stack from one image or a stack of images."""
    raw = np.asarray(image)
    shape = raw.shape
    if raw.size == 0:
        raise ValueError(
            "The image is empty (it has no pixels). "
            f"Received: image.shape={shape}"
        )
    image = to_float_image(raw)
    if not batched:
        if image.ndim == 2:
            if geo.channels != 1:
                raise _channels_error(
                    geo, shape, "received a 2-D (H, W) image without channels"
                )
            image = image[..., None]
        elif image.ndim == 3:
            if image.shape[-1] != geo.channels:
                raise _channels_error(
                    geo,
                    shape,
                    f"the last axis has {image.shape[-1]} "
                    "(if it is a stack of images, use predict_tiled_batch)",
                )
        else:
            raise ValueError(
                "predict_tiled takes one image of shape (H, W) or (H, W, C)"
                + (
                    "; for a stack (N, H, W, C) use predict_tiled_batch"
                    if image.ndim == 4
                    else ""
                )
                + f". Received: image.shape={shape}"
            )
        return image[None]
    if image.ndim == 3:
        if geo.channels != 1:
            raise _channels_error(
                geo,
                shape,
                "received a 3-D stack, read as (N, H, W) grey images",
            )
        image = image[..., None]
    elif image.ndim == 4:
        if image.shape[-1] != geo.channels:
            raise _channels_error(
                geo, shape, f"the last axis has {image.shape[-1]}"
            )
    else:
        raise ValueError(
            "predict_tiled_batch takes a stack (N, H, W) or (N, H, W, C), or "
            "a list of images (H, W) / (H, W, C)"
            + ("; for one image use predict_tiled" if image.ndim == 2 else "")
            + f". Received: images.shape={shape}"
        )
    return image


def predict_tiled(
    model,
    image,
    tile_size=None,
    batch_size=None,
    tta=None,
    *,
    memory_budget=None,
    mirror="reflect",
    from_logits=True,
    verbose="auto",
    depth=None,
    padding=None,
):
    """Segment one image of any size with the overlap-tile strategy.

    The image is mirror-padded, cut into overlapping tiles at offsets that
    are multiples of ``2**depth``, the tiles go through the model in batches,
    and their outputs are stitched. For a valid-padded U-Net (the paper's)
    the result equals, to float round-off, one pass of the model over the
    whole image padded by the margin at the top/left (and as needed at the
    bottom/right): there are no seams. Depth, margin and valid tile sizes
    are read from the model (`keras_unet.inspect_unet`).

    Args:
        model: a U-Net from `keras_unet.build_unet` (any input size; a model
            built for fixed 572x572 inputs is re-wired to free sizes, sharing
            its weights), or another U-Net with 2x2 pooling (pass `depth`
            and `padding` if they cannot be inferred). It outputs logits
            unless `from_logits=False`. Same-padded models
            (``padding="same"``) are tiled too: a context of ``6 *
            2**depth`` px is kept around every tile and cropped away, which
            makes the result equal to one pass over the image mirror-padded
            by that context.
        image: ``(H, W)`` or ``(H, W, C)`` array, any H and W >= 1, with C
            the model's input channels. uint8 is scaled by 1/255, uint16 by
            1/65535, floats are used as they are
            (`keras_unet.io.to_float_image`).
        tile_size: largest input tile, an int or ``(rows, cols)``, a valid
            input size of the model (``188 + 16k`` for depth 4; the error
            names the nearest ones). Default: the largest tile whose
            activations fit `memory_budget`. Tiles are never larger than the
            image needs, and are shrunk to the smallest size that needs no
            more tiles.
        batch_size: tiles per model call. Default: as many as fit in
            `memory_budget` (at most 64), balanced so that the last batch
            is not mostly padding.
        tta: test-time augmentation: None (off), True or "d4" (the 8
            rotations and flips), "rotations", "flips", or a list of names
            such as ``["identity", "rot90", "flip_lr"]`` (see
            `resolve_tta`). Probabilities of the transformed images are
            mapped back and averaged.
        memory_budget: bytes of activation memory per batch; defaults to
            `default_memory_budget()` (2 GiB on CPU, half the free memory of
            a JAX/PyTorch GPU).
        mirror: "reflect" (default) or "symmetric"; see the module
            docstring.
        from_logits: apply the soft-max (sigmoid for one output channel).
            False if the model already outputs probabilities.
        verbose: "auto" (a progress bar when there are 8 or more model
            calls), True or False.
        depth: override passed to `keras_unet.inspect_unet`.
        padding: override passed to `keras_unet.inspect_unet`.

    Returns:
        float32 probabilities of shape ``(H, W, num_classes)`` (``(H, W,
        1)`` for a one-channel sigmoid model).

    Raises:
        ValueError: empty image, NaN/inf pixels, wrong number of channels,
            wrong number of axes, or an invalid `tile_size` (the message
            names the nearest valid sizes).

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> image = np.random.default_rng(0).random((300, 517), np.float32)
        >>> probs = predict_tiled(model, image)
        >>> probs.shape
        (300, 517, 2)

    Reference:
        Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for
        Biomedical Image Segmentation. MICCAI 2015 (Fig. 2).
    """
    _, geo = _prepare(model, depth, padding)
    stack = _as_stack(image, geo, batched=False)
    return _run(
        model, [stack], tile_size, batch_size, tta, memory_budget, mirror,
        from_logits, verbose, depth, padding,
    )[0][0]  # fmt: skip


def predict_tiled_batch(
    model,
    images,
    tile_size=None,
    batch_size=None,
    tta=None,
    *,
    memory_budget=None,
    mirror="reflect",
    from_logits=True,
    verbose="auto",
    depth=None,
    padding=None,
):
    """`predict_tiled` for a stack of images, or a list of images of any sizes.

    Tiles of all images of the same size share the model calls, so many
    small images are segmented in few large batches.

    Args:
        model: see `predict_tiled`.
        images: a stack ``(N, H, W, C)`` (or ``(N, H, W)`` for a one-channel
            model), or a list of images ``(H, W)`` / ``(H, W, C)`` whose
            sizes may differ.
        tile_size: see `predict_tiled`.
        batch_size: see `predict_tiled`.
        tta: see `predict_tiled`.
        memory_budget: see `predict_tiled`.
        mirror: see `predict_tiled`.
        from_logits: see `predict_tiled`.
        verbose: see `predict_tiled`.
        depth: see `predict_tiled`.
        padding: see `predict_tiled`.

    Returns:
        For a stack, a float32 array ``(N, H, W, num_classes)``; for a list,
        a list of ``(H_i, W_i, num_classes)`` arrays.

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> stack = np.zeros((3, 64, 80), np.uint8)
        >>> predict_tiled_batch(model, stack).shape
        (3, 64, 80, 2)
    """
    _, geo = _prepare(model, depth, padding)
    if isinstance(images, list | tuple):
        if not images:
            raise ValueError("`images` is an empty list. Received: images=[]")
        singles = [_as_stack(im, geo, batched=False) for im in images]
        groups = {}
        for i, single in enumerate(singles):
            groups.setdefault(single.shape, []).append(i)
        stacks = [
            np.concatenate([singles[i] for i in idx]) for idx in groups.values()
        ]
        probs = _run(
            model, stacks, tile_size, batch_size, tta, memory_budget, mirror,
            from_logits, verbose, depth, padding,
        )  # fmt: skip
        out = [None] * len(singles)
        for idx, p in zip(groups.values(), probs):
            for j, i in enumerate(idx):
                out[i] = p[j]
        return out
    stack = _as_stack(images, geo, batched=True)
    return _run(
        model, [stack], tile_size, batch_size, tta, memory_budget, mirror,
        from_logits, verbose, depth, padding,
    )[0]  # fmt: skip
