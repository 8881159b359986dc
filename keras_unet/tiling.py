"""Overlap-tile prediction of images of any size (the paper's Fig. 2).

Each output tile needs `margin` pixels of context on every side (92 for the
paper's net); at the image border the context is extrapolated by mirroring.
With unpadded convolutions the tiled result equals, to float round-off, one
untiled pass over the mirror-padded image, provided every tile starts at a
multiple of ``2**depth`` pixels (so that all 2x2 max-pools see the grid of
the untiled pass).

The tile plan is four integer functions, run on Python integers here and on
tensors in the exported graph (`keras_unet.export`): `balanced_tile` (tile
size along an axis), `plan_axis` (tile count, stride, far-side padding),
`mirror_index` (source of every padded pixel, for any amount of padding)
and `tile_of_pixel` (the tile that gives an output pixel). `tile_layout`
turns them into the `Tile` slices that `predict_tiled` runs through the
model in batches.

Memory: a tile costs ``ACTIVATIONS_PER_FILTER_PIXEL * filters * pixels *
itemsize`` bytes, against a budget (`default_memory_budget`); a model call
that runs out of memory anyway is retried with half the batch, then with
smaller tiles.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Sect. 2, Fig. 2; Sect. 3.1).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import NamedTuple

import keras
import numpy as np

from keras_unet.checks import check_choice, check_int, check_number, check_pair
from keras_unet.io import to_float_image
from keras_unet.model import UNetSpec, free_size_model, inspect_unet
from keras_unet.tta import TTA_TRANSFORMS, average_over_transforms, resolve_tta

__all__ = [
    "ACTIVATIONS_PER_FILTER_PIXEL",
    "DEFAULT_CPU_MEMORY_BUDGET",
    "MIRROR_MODES",
    "Tile",
    "TileLayout",
    "TilingModel",
    "balanced_batch",
    "balanced_tile",
    "check_mirror",
    "check_tile_size",
    "choose_tile_size",
    "default_memory_budget",
    "estimate_tile_memory",
    "max_tile_size",
    "mirror_index",
    "mirror_pad",
    "plan_axis",
    "predict_tiled",
    "predict_tiled_batch",
    "prepare_model",
    "tile_iterator",
    "tile_layout",
    "tile_of_pixel",
]

MIRROR_MODES = ("reflect", "symmetric")
# The sum of all layer outputs of build_unet per first-level filter and tile
# pixel tends to 15.8 for depth 4 (16.5 for any depth) as tiles grow (9.8
# for the paper's 572 px tile); it bounds the peak memory of inference from
# above (XLA needs 2.5-3.8). Measured by benchmarks/tiling.py --memory.
ACTIVATIONS_PER_FILTER_PIXEL = 16
DEFAULT_CPU_MEMORY_BUDGET = 2 * 2**30
_MAX_AUTO_BATCH = 64
_MAX_TILE = 2**15
_AUTO_PROGRESS_CALLS = 8


# ---------------------------------------------------------------- the plan


def check_mirror(mirror):
    """`mirror` if it is one of `MIRROR_MODES`, else a ValueError."""
    hint = "'reflect' mirrors about the edge pixel, 'symmetric' repeats it"
    return check_choice(mirror, "mirror", MIRROR_MODES, hint)


def mirror_index(i, n, mode="reflect", xp=np):
    """Source pixel of position `i` of an `n` px axis extended by mirroring.

    "reflect" mirrors about the edge pixel (``numpy.pad(mode="reflect")``:
    ``[a b c]`` continues as ``c b | a b c | b a``), "symmetric" repeats it
    (``b a | a b c | c b``); positions are mirrored back as often as needed,
    so padding may exceed the image. `xp`: numpy, or tensorflow for tensors.

    Examples:
        >>> mirror_index(np.arange(-4, 5), 3).tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
        >>> mirror_index(np.arange(-4, 5), 3, "symmetric").tolist()
        [2, 2, 1, 0, 0, 1, 2, 2, 1]
    """
    if check_mirror(mode) == "reflect":
        period = xp.maximum(2 * n - 2, 1)  # a 1 px axis is repeated
        j = i % period
        return xp.minimum(j, period - j)
    j = i % (2 * n)
    return xp.minimum(j, 2 * n - 1 - j)


def mirror_pad(image, pad, mode="reflect", axes=(0, 1)) -> np.ndarray:
    """Pad the (row, column) `axes` of an array by mirroring, by any amount.

    `pad` is ``((top, bottom), (left, right))``; `mode` as in
    `mirror_index`.

    Examples:
        >>> mirror_pad(np.arange(3)[None], ((0, 0), (4, 2)))[0].tolist()
        [0, 1, 2, 1, 0, 1, 2, 1, 0]
    """
    image = np.asarray(image)
    for axis, (before, after) in zip(axes, pad):
        n = image.shape[axis]
        check_int(before, "pad", 0), check_int(after, "pad", 0)
        i = np.arange(-before, n + after, dtype=np.int64)
        image = np.take(image, mirror_index(i, n, mode), axis=axis)
    return image


def plan_axis(n, tile, margin, step, xp=np):
    """``(count, stride, pad_after)`` of tiles of `tile` px along `n` px.

    Tile ``k`` reads ``[k * stride, k * stride + tile)`` of the axis padded
    by `margin` before it and `pad_after` after it; its output (``tile - 2
    * margin`` px) lands at ``k * stride``. The stride is that output size
    rounded down to a multiple of `step`; `count` the fewest tiles that
    cover the axis. `xp`: numpy, or tensorflow for tensors.

    Examples:
        >>> [int(v) for v in plan_axis(1000, 572, margin=92, step=16)]
        [3, 384, 248]
    """
    out = tile - 2 * margin
    stride = out - out % step
    count = 1 + xp.maximum(0, -((out - n) // xp.maximum(stride, 1)))
    return count, stride, (count - 1) * stride + tile - n - margin


def balanced_tile(n, tile_max, geometry, xp=np):
    """The smallest valid tile that needs as few tiles for `n` px as `tile_max`.

    Never larger than the image needs, and shrunk so that the tiles share
    the image evenly: with a 716 px limit (depth 4) a 2048 px axis gets 4
    tiles of 700 px, not 3 large ones and a sliver. `geometry`: the model's
    `keras_unet.geometry.UNetGeometry`; `xp` as in `plan_axis`.

    Examples:
        >>> from keras_unet.geometry import UNetGeometry
        >>> [int(balanced_tile(n, 716, UNetGeometry(4))) for n in (2048, 300)]
        [700, 492]
    """
    c, s, t0 = geometry.context, geometry.step, geometry.min_tile
    overlap = (t0 - 2 * c) % s  # output px that neighbouring tiles share

    def for_output(v):  # geometry.tile_for_output(v), branch-free
        return t0 + s * xp.maximum(0, -((t0 - v - 2 * c) // s))

    tile = xp.minimum(tile_max, for_output(n))
    count, _, _ = plan_axis(n, tile, c, s, xp)
    need = -(-(n + (count - 1) * overlap) // count)
    return xp.minimum(for_output(need), tile)


def tile_of_pixel(y, stride, count, xp=np):
    """``(k, y - k * stride)``: the tile whose output gives output pixel `y`.

    The inverse of `TileLayout`'s destinations: tile ``k`` gives ``[k *
    stride, (k + 1) * stride)``, the last tile the rest.

    Examples:
        >>> [[int(v) for v in tile_of_pixel(y, 384, 3)] for y in (383, 999)]
        [[0, 383], [2, 231]]
    """
    k = xp.minimum(y // xp.maximum(stride, 1), count - 1)
    return k, y - k * stride


def balanced_batch(batch, n):
    """``(calls, tiles per call)`` for `n` tiles, at most `batch` per call,
    all calls equally full (the last is not mostly padding).

    Examples:
        >>> balanced_batch(8, 9)
        (2, 5)
    """
    calls = -(-n // batch)
    return calls, -(-n // calls)


class Tile(NamedTuple):
    """One tile: `source` slices of the padded image (the model input),
    `crop` slices of its output to keep, and `destination` slices of the
    output image that receive ``output[crop]``; each ``(rows, cols)``."""

    source: tuple[slice, slice]
    crop: tuple[slice, slice]
    destination: tuple[slice, slice]


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """How an image is padded and cut into tiles; iterate it for the tiles.

    Attributes:
        image_shape: ``(H, W)`` of the image (and of the output).
        tile_shape: ``(th, tw)`` of every input tile.
        margin: context pixels consumed by the model on each side.
        step: tile offsets are multiples of this (``2**depth``).
        counts: tiles along rows and columns.
        strides: offsets between consecutive tiles (multiples of `step`).
        pad: ``((top, bottom), (left, right))``; top = left = margin.
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
        return tuple(n + a + b for n, (a, b) in zip(self.image_shape, self.pad))

    @property
    def output_tile_shape(self) -> tuple[int, int]:
        return tuple(t - 2 * self.margin for t in self.tile_shape)

    @property
    def n_tiles(self) -> int:
        return self.counts[0] * self.counts[1]

    def __len__(self) -> int:
        return self.n_tiles

    def __iter__(self):
        rows, cols = (
            list(_axis_slices(*axis))
            for axis in zip(
                self.image_shape, self.tile_shape, self.counts, self.strides
            )
        )
        for r_src, r_crop, r_dst in rows:
            for c_src, c_crop, c_dst in cols:
                yield Tile((r_src, c_src), (r_crop, c_crop), (r_dst, c_dst))


def _axis_slices(n, tile, count, stride):
    for k in range(count):
        start = k * stride
        stop = n if k == count - 1 else start + stride  # as tile_of_pixel
        yield (
            slice(start, start + tile),
            slice(0, stop - start),
            slice(start, stop),
        )


def _checked_axis(n, tile, margin, step):
    """`plan_axis` as ints, or an error naming a tile that works."""
    out = tile - 2 * margin
    if out < 1:
        raise ValueError(
            f"A tile of {tile} px leaves no output after removing the "
            f"{margin} px context margin on each side; use tiles larger than "
            f"{2 * margin}. Received: tile_size={tile}"
        )
    if n > out and out < step:
        raise ValueError(
            f"A tile of {tile} px gives {out} output px, fewer than the "
            f"{step} px offset step, so it cannot tile a {n} px image "
            f"seamlessly; use tiles of at least "
            f"{2 * margin + step + out % step} px. Received: tile_size={tile}"
        )
    return tuple(int(v) for v in plan_axis(n, tile, margin, step))


def tile_layout(image_shape, tile_size, margin, step) -> TileLayout:
    """Plan the prediction of an image with tiles of `tile_size` px.

    Args:
        image_shape: ``(H, W)`` (extra trailing axes are ignored).
        tile_size: input tile size, an int or ``(rows, cols)``.
        margin: context consumed by the model on each side
            (`keras_unet.geometry.UNetGeometry.context`; 92 for the paper).
        step: offset granularity, ``2**depth``.

    Returns:
        A `TileLayout` (`plan_axis` along both axes); its tiles'
        destinations cover the output exactly once.

    Examples:
        >>> layout = tile_layout((1000, 700), 572, margin=92, step=16)
        >>> layout.counts, layout.strides, layout.pad
        ((3, 2), (384, 384), ((92, 248), (92, 164)))
    """
    h, w = _image_hw(image_shape)
    th, tw = check_pair(tile_size, "tile_size")
    margin, step = check_int(margin, "margin", 0), check_int(step, "step", 1)
    ch, sh, bottom = _checked_axis(h, th, margin, step)
    cw, sw, right = _checked_axis(w, tw, margin, step)
    pad = ((margin, bottom), (margin, right))
    return TileLayout((h, w), (th, tw), margin, step, (ch, cw), (sh, sw), pad)


def tile_iterator(image_shape, tile_size, margin, step):
    """Yield the `Tile` objects of `tile_layout` (same arguments).

    Examples:
        >>> for tile in tile_iterator((500, 300), 572, margin=92, step=16):
        ...     print(tile.source[0], tile.destination[0])
        slice(0, 572, None) slice(0, 384, None)
        slice(384, 956, None) slice(384, 500, None)
    """
    yield from tile_layout(image_shape, tile_size, margin, step)


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
    return tuple(check_int(n, "image_shape", 1) for n in hw)


# ------------------------------------------------------ model and memory


class TilingModel(NamedTuple):
    """A U-Net prepared for tiling by `prepare_model`: the `model` to call
    (re-wired to free input sizes, sharing the weights, if possible), its
    `spec`, its `fixed` ``(rows, cols)`` if it could not be re-wired, and
    the memory rule's ``ACTIVATIONS_PER_FILTER_PIXEL * filters * itemsize``
    `bytes_per_pixel`."""

    model: keras.Model
    spec: UNetSpec
    fixed: tuple[int, int] | None
    bytes_per_pixel: int


def prepare_model(model, spec=None) -> TilingModel:
    """Inspect a U-Net once and make it callable on tiles of any valid size.

    `spec`: a `keras_unet.model.UNetSpec` for a model whose geometry cannot
    be inferred (``inspect_unet(model, depth=.., padding=..)``).
    """
    if spec is None or not isinstance(model, keras.Model):
        spec = inspect_unet(model)  # raises a TypeError for non-models
    if not isinstance(spec, UNetSpec):
        raise TypeError(
            "`spec` must be a UNetSpec, e.g. keras_unet.inspect_unet(model, "
            f"depth=4, padding='valid'). Received: spec={spec!r}"
        )
    g, fixed, runner = spec.geometry, None, free_size_model(model)
    if runner is None:
        runner, fixed = model, tuple(model.input_shape[1:3])
        if None in fixed:
            raise ValueError(
                "The model fixes one spatial input size but not the other, "
                "and could not be rebuilt with free input sizes. Build it with "
                "input_shape=(None, None, C). Received: model.input_shape="
                f"{model.input_shape}"
            )
        for n in fixed:
            if not g.is_valid_tile(n):
                raise ValueError(
                    f"The model's fixed input size {fixed} cannot be used as a "
                    f"tile: {g.invalid_tile_message(n)} Build the model with "
                    "input_shape=(None, None, C). Received: "
                    f"model.input_shape={model.input_shape}"
                )
    dtype = str(getattr(runner.dtype_policy, "compute_dtype", "float32"))
    itemsize = 2 if "16" in dtype else 8 if "64" in dtype else 4
    per_pixel = ACTIVATIONS_PER_FILTER_PIXEL * (spec.filters or 64) * itemsize
    return TilingModel(runner, spec, fixed, per_pixel)


def check_tile_size(tm: TilingModel, tile_size, any_image=False):
    """`tile_size` as ``(rows, cols)``, or an error naming the nearest sizes.

    With `any_image`, the tiles must also tile images of any size (an
    output of at least the offset step), as the export needs.
    """
    th, tw = check_pair(tile_size, "tile_size")
    if tm.fixed is not None and (th, tw) != tm.fixed:
        raise ValueError(
            f"This model only accepts {tm.fixed[0]}x{tm.fixed[1]} inputs "
            "and could not be rebuilt with free input sizes; pass "
            f"tile_size={tm.fixed} or None, or build the model with "
            f"input_shape=(None, None, C). Received: tile_size={tile_size!r}"
        )
    g = tm.spec.geometry
    for t in (th, tw) if tm.fixed is None else ():
        if not g.is_valid_tile(t):
            raise ValueError(
                f"{g.invalid_tile_message(t)} Received: tile_size={tile_size!r}"
            )
        if any_image:  # the error of a tile too small for a large image
            _checked_axis(_MAX_TILE, t, g.context, g.step)
    return th, tw


def _min_tiling_tile(g):
    """The smallest tile whose stride is at least one step."""
    overlap = (g.min_tile - 2 * g.context) % g.step
    return g.round_up_tile(2 * g.context + g.step + overlap)


def default_memory_budget() -> int:
    """Bytes of activation memory one batch of tiles may use, by default.

    Half the free memory of a GPU under JAX (``device.memory_stats()``) or
    PyTorch (``torch.cuda.mem_get_info()``); else (the CPU, and TensorFlow,
    which does not report free GPU memory) `DEFAULT_CPU_MEMORY_BUDGET`
    (2 GiB), or a quarter of the available RAM if that is less.
    """
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                stats = device.memory_stats() or {}
                if "bytes_limit" in stats:
                    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
                    return int(free // 2)
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.mem_get_info()[0] // 2)
    except Exception:  # noqa: BLE001 - fall back to the CPU default
        pass
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_CPU_MEMORY_BUDGET
    return int(min(DEFAULT_CPU_MEMORY_BUDGET, available // 4))


def _check_budget(memory_budget):
    if memory_budget is None:
        return default_memory_budget()
    hint = "bytes, e.g. 2 * 2**30 for 2 GiB"
    return check_number(memory_budget, "memory_budget", 0, strict=True,
                        hint=hint)  # fmt: skip


def estimate_tile_memory(model, tile_size, spec=None) -> int:
    """Activation bytes of one tile by the rule: ``ACTIVATIONS_PER_FILTER_PIXEL
    * filters * rows * cols * itemsize`` (first-level `filters`, bytes of the
    compute dtype). `spec` as in `prepare_model`.

    Examples:
        >>> from keras_unet import build_unet
        >>> estimate_tile_memory(build_unet(), 572) // 2**20
        1278
    """
    th, tw = check_pair(tile_size, "tile_size")
    return prepare_model(model, spec).bytes_per_pixel * th * tw


def max_tile_size(tm: TilingModel, memory_budget=None, image_shape=None):
    """The largest valid tile ``(rows, cols)`` whose memory fits the budget.

    Square (at least the smallest tile that tiles any image), unless
    `image_shape` caps one side at what the image needs: then the other
    grows within the budget. Default budget: `default_memory_budget()`.
    """
    budget = _check_budget(memory_budget)
    if tm.fixed is not None:
        return tm.fixed
    g = tm.spec.geometry

    def fit(pixels):
        t = g.round_down_tile(min(int(pixels), _MAX_TILE))
        return max(t or 0, _min_tiling_tile(g))

    side = fit(math.isqrt(int(budget // tm.bytes_per_pixel)))
    if image_shape is None:
        return side, side
    caps = [g.tile_for_output(n) for n in image_shape]
    th, tw = min(side, caps[0]), min(side, caps[1])
    if th < side:
        tw = min(fit(budget // (tm.bytes_per_pixel * th)), caps[1])
    elif tw < side:
        th = min(fit(budget // (tm.bytes_per_pixel * tw)), caps[0])
    return th, tw


def _layout(tm, hw, tile_max, budget) -> TileLayout:
    g, tile = tm.spec.geometry, tm.fixed
    if tile is None:
        tile_max = tile_max or max_tile_size(tm, budget, hw)
        tile = [int(balanced_tile(n, t, g)) for n, t in zip(hw, tile_max)]
    return tile_layout(hw, tile, g.context, g.step)


def choose_tile_size(
    model, image_shape, memory_budget=None, tile_size=None, spec=None
):
    """The input tile ``(rows, cols)`` `predict_tiled` uses for an image.

    `tile_size` (a valid size) or the largest tile within `memory_budget`
    (`max_tile_size`), shrunk to the smallest valid size that needs no more
    tiles (`balanced_tile`).

    Examples:
        >>> from keras_unet import build_unet
        >>> choose_tile_size(build_unet(depth=2, filters=4), (300, 517), 2**30)
        (340, 560)
    """
    tm = prepare_model(model, spec)
    hw = _image_hw(image_shape)
    if tile_size is not None:
        tile_size = check_tile_size(tm, tile_size)
    return _layout(tm, hw, tile_size, _check_budget(memory_budget)).tile_shape


# ------------------------------------------------------------ prediction


@dataclasses.dataclass
class _Run:
    """One call's settings; an out-of-memory retry lowers tile and batch."""

    tile: tuple[int, int] | None
    batch: int | None
    budget: float
    tta: tuple[str, ...]
    mirror: str
    from_logits: bool
    bar: keras.utils.Progbar | None = None
    calls: int = 0  # model calls made


def _settings(tm, tile_size, batch_size, tta, budget, mirror, from_logits):
    check_mirror(mirror)
    names = resolve_tta(tta)
    if tile_size is not None:
        tile_size = check_tile_size(tm, tile_size)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    budget = _check_budget(budget)
    return _Run(tile_size, batch_size, budget, names, mirror, from_logits)


def _plan_job(tm, run, shape, swap):
    """(layout, tiles per call, calls) for a (N, H, W, C) stack."""
    cap = run.tile
    if cap is not None and swap and tm.fixed is None:
        cap = cap[::-1]  # the cap is given for the untransformed image
    layout = _layout(tm, shape[1:3], cap, run.budget)
    n, batch = shape[0] * len(layout), run.batch
    if batch is None:
        fit = run.budget // (tm.bytes_per_pixel * math.prod(layout.tile_shape))
        batch = max(1, min(int(fit), _MAX_AUTO_BATCH, n))
    calls, per_call = balanced_batch(batch, n)
    return layout, per_call, calls


def _predict_stack(tm, run, stack, layout, batch):
    """Probabilities (N, H, W, K) of a stack of images (N, H, W, C)."""
    spec, crop = tm.spec, tm.spec.geometry.tile_crop
    padded = mirror_pad(stack, layout.pad, run.mirror, axes=(1, 2))
    out = np.empty((len(stack), *layout.image_shape, spec.num_classes), "f4")
    jobs = [(i, tile) for i in range(len(stack)) for tile in layout]
    x = np.zeros((batch, *layout.tile_shape, spec.input_channels), np.float32)
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        for j, (i, tile) in enumerate(chunk):
            x[j] = padded[(i, *tile.source)]
        x[len(chunk) :] = 0.0
        y = tm.model.predict_on_batch(x)
        if isinstance(y, list | tuple | dict):
            raise ValueError(
                "predict_tiled needs a model with a single output. "
                f"Received: an output of type {type(y).__name__}"
            )
        y = np.asarray(y, np.float32)
        if crop:
            y = y[:, crop:-crop, crop:-crop]
        if y.shape[1:3] != layout.output_tile_shape:
            raise ValueError(
                f"The model maps a {layout.tile_shape} tile to {y.shape[1:3]}, "
                f"but depth={spec.depth}, padding={spec.padding!r} predicts "
                f"{layout.output_tile_shape}. Pass the right spec=keras_unet."
                "inspect_unet(model, depth=.., padding=..)."
            )
        if run.from_logits and spec.num_classes == 1:
            y = np.exp(-np.logaddexp(0.0, -y))  # sigmoid
        elif run.from_logits:
            y = np.exp(y - y.max(axis=-1, keepdims=True))
            y /= y.sum(axis=-1, keepdims=True)  # soft-max
        for j, (i, tile) in enumerate(chunk):
            out[(i, *tile.destination)] = y[j][tile.crop]
        run.calls += 1
        if run.bar is not None:
            run.bar.update(run.calls)
    return out


def _shrink(tm, run, layout, batch, swap, err):
    """After an out-of-memory error: half the batch, else half the pixels."""
    th, tw = layout.tile_shape
    tried = f"{batch} tile(s) of {th}x{tw} px per model call"
    g = tm.spec.geometry
    floor = _min_tiling_tile(g)
    half = [
        max(g.round_down_tile(int(t / 2**0.5)) or 0, floor) for t in (th, tw)
    ]
    smaller = (min(th, half[0]), min(tw, half[1]))
    if batch > 1:
        run.batch = -(-batch // 2)
        now = f"{run.batch} tile(s) per call"
    elif tm.fixed is None and smaller != (th, tw):
        run.tile, run.batch = smaller[::-1] if swap else smaller, 1
        now = f"tiles of {smaller[0]}x{smaller[1]} px"
    else:
        raise MemoryError(
            f"predict_tiled ran out of memory with {tried}, the least this "
            "model can use. Free memory on the device (other processes or "
            f"models) or use a larger one. Received: {type(err).__name__}: "
            f"{err}"
        ) from err
    warnings.warn(
        f"predict_tiled ran out of memory with {tried}; retrying with {now}. "
        "Pass a smaller memory_budget (or batch_size, tile_size) to start "
        "there.",
        stacklevel=7,  # the caller of predict_tiled(_batch)
    )


def _predict_retrying(tm, run, x, name):
    """One transformed stack; on out-of-memory, smaller batches or tiles."""
    swap, pending = TTA_TRANSFORMS[name][0], None
    while True:
        layout, batch, calls = _plan_job(tm, run, x.shape, swap)
        if pending is not None and run.bar is not None:
            run.bar.target += calls - pending
        start = run.calls
        try:
            return _predict_stack(tm, run, x, layout, batch)
        except Exception as err:
            # TF ResourceExhaustedError, JAX RESOURCE_EXHAUSTED, torch
            # OutOfMemoryError: recognized by name, no backend import.
            text = f"{type(err).__name__} {err}".lower().replace("_", "")
            if not isinstance(err, MemoryError) and not any(
                key in text
                for key in ("resourceexhausted", "outofmemory", "out of memory")
            ):
                raise
            _shrink(tm, run, layout, batch, swap, err)
            pending = calls - (run.calls - start)


def _predict_all(tm, run, stacks, verbose):
    """Probabilities of a list of (N, H, W, C) float32 stacks."""
    if verbose not in ("auto", True, False, 0, 1):
        raise ValueError(
            "`verbose` must be 'auto', True/1 or False/0. "
            f"Received: verbose={verbose!r}"
        )
    calls = 0
    for stack in stacks:
        for name in run.tta:
            swap = TTA_TRANSFORMS[name][0]
            shape = (len(stack), *stack.shape[1:3][:: -1 if swap else 1])
            calls += _plan_job(tm, run, shape, swap)[2]
    if verbose == "auto":
        verbose = calls >= _AUTO_PROGRESS_CALLS
    if verbose:
        run.bar = keras.utils.Progbar(calls, unit_name="batch")
    results = []
    for stack in stacks:  # a loop, not a comprehension: see _shrink
        probs = average_over_transforms(
            lambda x, name: _predict_retrying(tm, run, x, name),
            stack,
            run.tta,
            axes=(1, 2),
        )
        results.append(np.ascontiguousarray(probs, np.float32))
    return results


def _as_stack(raw, spec, batched):
    """A float32 (N, H, W, C) stack, or an error naming the accepted shapes."""
    shape, c = np.shape(raw), spec.input_channels
    if np.size(raw) == 0:
        raise ValueError(
            f"The image is empty (it has no pixels). Received: image.shape="
            f"{shape}"
        )
    image = to_float_image(raw)
    rank = image.ndim - batched  # of one image
    if rank == 2 and c == 1:
        return image[..., None] if batched else image[None, ..., None]
    if rank == 3 and image.shape[-1] == c:
        return image if batched else image[None]
    if rank == 3:
        what = f"the last axis has {image.shape[-1]}" + (
            "" if batched else " (if it is a stack of images, use "
            "predict_tiled_batch)"
        )  # fmt: skip
    elif rank == 2:
        what = (
            "received a 3-D stack, read as (N, H, W) grey images"
            if batched
            else "received a 2-D (H, W) image without channels"
        )
    if rank in (2, 3):
        hint = "convert it to grey (e.g. image.mean(axis=-1))"
        if c > 1:
            hint = f"give it {c} channels in the last axis"
        raise ValueError(
            f"The model expects images with {c} channel(s) (shape (H, W, {c})"
            + (" or (H, W)" if c == 1 else "")
            + f"), but {what}; {hint}. Received: image.shape={shape}"
        )
    if batched:
        raise ValueError(
            "predict_tiled_batch takes a stack (N, H, W) or (N, H, W, C), or "
            "a list of images (H, W) / (H, W, C)"
            + ("; for one image use predict_tiled" if rank == 1 else "")
            + f". Received: images.shape={shape}"
        )
    raise ValueError(
        "predict_tiled takes one image of shape (H, W) or (H, W, C)"
        + (
            "; for a stack (N, H, W, C) use predict_tiled_batch"
            if rank == 4
            else ""
        )  # fmt: skip
        + f". Received: image.shape={shape}"
    )


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
    spec=None,
):
    """Segment one image of any size with the overlap-tile strategy.

    The image is mirror-padded, cut into tiles at offsets that are multiples
    of ``2**depth``, the tiles go through the model in batches and their
    outputs are stitched. For a valid-padded U-Net (the paper's) the result
    equals, to float round-off, one pass of the model over the whole image
    padded by the margin at the top/left (and as needed at the
    bottom/right): there are no seams.

    Args:
        model: a U-Net from `keras_unet.build_unet` (a fixed-size model is
            re-wired to free sizes, sharing its weights), or another U-Net
            with 2x2 pooling. It outputs logits unless `from_logits=False`.
            Same-padded models keep a context of ``6 * 2**depth`` px around
            every tile (the result equals one pass over the image mirror-
            padded by that context).
        image: ``(H, W)`` or ``(H, W, C)`` array, any H, W >= 1, with C the
            model's input channels. uint8 is scaled by 1/255, uint16 by
            1/65535, floats are used as they are
            (`keras_unet.io.to_float_image`).
        tile_size: largest input tile, an int or ``(rows, cols)``, a valid
            input size of the model (``188 + 16k`` for depth 4; the error
            names the nearest ones). Default: the largest tile within
            `memory_budget` (`estimate_tile_memory`). Tiles are never larger
            than the image needs (`balanced_tile`).
        batch_size: tiles per model call. Default: as many as fit in
            `memory_budget` (at most 64), the calls equally full.
        tta: test-time augmentation: None (off), True or "d4" (the 8
            rotations and flips), "rotations", "flips", or a list of names
            such as ``["identity", "rot90", "flip_lr"]``
            (`keras_unet.tta.resolve_tta`); the probabilities of the
            transformed images are mapped back and averaged.
        memory_budget: bytes of activation memory per batch; default
            `default_memory_budget()`. If a model call runs out of memory
            anyway, the batch is halved, then the tile, with a warning.
        mirror: "reflect" (default) or "symmetric" (see `mirror_index`).
        from_logits: apply the soft-max (sigmoid for one output channel);
            False if the model already outputs probabilities.
        verbose: "auto" (a progress bar for 8 or more model calls), True or
            False.
        spec: a `keras_unet.model.UNetSpec` for a model whose geometry
            cannot be inferred: ``inspect_unet(model, depth=.., padding=..)``.

    Returns:
        float32 probabilities ``(H, W, num_classes)``.

    Raises:
        ValueError: empty image, NaN/inf pixels, wrong channels or axes, an
            invalid `tile_size` (naming the nearest valid sizes).
        MemoryError: out of memory even with one tile of the smallest size.

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> image = np.random.default_rng(0).random((300, 517), np.float32)
        >>> predict_tiled(model, image).shape
        (300, 517, 2)

    Reference:
        Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for
        Biomedical Image Segmentation. MICCAI 2015 (Fig. 2).
    """
    tm = prepare_model(model, spec)
    stack = _as_stack(image, tm.spec, batched=False)
    run = _settings(tm, tile_size, batch_size, tta, memory_budget, mirror,
                    from_logits)  # fmt: skip
    return _predict_all(tm, run, [stack], verbose)[0][0]


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
    spec=None,
):
    """`predict_tiled` for a stack of images, or a list of images of any sizes.

    Tiles of all images of one size share the model calls.

    Args:
        model: see `predict_tiled`.
        images: a stack ``(N, H, W, C)`` (or ``(N, H, W)`` for a one-channel
            model), or a list of images ``(H, W)`` / ``(H, W, C)``.
        tile_size, batch_size, tta, memory_budget, mirror, from_logits,
            verbose, spec: see `predict_tiled`.

    Returns:
        For a stack, float32 ``(N, H, W, num_classes)``; for a list, a list
        of ``(H_i, W_i, num_classes)`` arrays.

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> predict_tiled_batch(model, np.zeros((3, 64, 80), np.uint8)).shape
        (3, 64, 80, 2)
    """
    tm = prepare_model(model, spec)
    listed = isinstance(images, list | tuple)
    if listed and not images:
        raise ValueError("`images` is an empty list. Received: images=[]")
    groups = {}  # images of one size, by shape
    for i, image in enumerate(images if listed else [images]):
        stack = _as_stack(image, tm.spec, batched=not listed)
        groups.setdefault(stack.shape, []).append((i, stack))
    stacks = [np.concatenate([s for _, s in g]) for g in groups.values()]
    run = _settings(tm, tile_size, batch_size, tta, memory_budget, mirror,
                    from_logits)  # fmt: skip
    probs = _predict_all(tm, run, stacks, verbose)
    if not listed:
        return probs[0]
    out = [None] * len(images)
    for group, p in zip(groups.values(), probs):
        for j, (i, _) in enumerate(group):
            out[i] = p[j]
    return out
