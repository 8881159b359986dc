"""Overlap-tile prediction of images of any size (the paper's Fig. 2).

The tile plan is four integer functions that the exported graph
(`keras_unet.export`) runs on tensors: `balanced_tile`, `plan_axis`,
`keras_unet.mirror.mirror_index` and `tile_of_pixel`; `tile_layout` turns
them into the `Tile` slices `predict_tiled` runs. Memory:
``ACTIVATIONS_PER_FILTER_PIXEL * filters * pixels * itemsize`` bytes per
tile, against a budget; a model call that runs out of memory anyway is
retried with half the memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import NamedTuple

import keras
import numpy as np

from keras_unet.checks import check_int, check_number, check_pair
from keras_unet.io import to_float_image
from keras_unet.mirror import check_mirror, mirror_pad
from keras_unet.model import UNetSpec, free_size_model, inspect_unet
from keras_unet.tta import TTA_TRANSFORMS, average_over_transforms, resolve_tta

# fmt: off
__all__ = [
    "ACTIVATIONS_PER_FILTER_PIXEL", "DEFAULT_CPU_MEMORY_BUDGET", "Tile",
    "TileLayout", "TilingModel", "balanced_batch", "balanced_tile",
    "choose_tile_size", "default_memory_budget", "estimate_tile_memory",
    "plan_axis", "predict_tiled", "predict_tiled_batch",
    "tile_iterator", "tile_layout", "tile_of_pixel",
]
# fmt: on

# All layer outputs of build_unet per filter and tile pixel: 15.8 for depth 4
# and large tiles (9.8 for 572 px); XLA's peak memory is 2.3-3.9 (measured
# by benchmarks/tiling.py --memory).
ACTIVATIONS_PER_FILTER_PIXEL = 16
DEFAULT_CPU_MEMORY_BUDGET = 2 * 2**30
_MAX_AUTO_BATCH = 64
_MAX_TILE = 2**15
_AUTO_PROGRESS_CALLS = 8


def plan_axis(n, tile, margin, step, xp=np):
    """``(count, stride, pad_after)`` of tiles of `tile` px along `n` px.

    Tile ``k`` reads ``[k * stride, k * stride + tile)`` of the axis padded
    by `margin` before and `pad_after` after it; its output, ``tile - 2 *
    margin`` px rounded down to a multiple of `step`, is the stride. `xp`:
    numpy, or tensorflow for tensors.

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

    With a 716 px limit (depth 4) a 2048 px axis gets 4 tiles of 700 px,
    not 3 large ones and a sliver; a 300 px axis one tile of 492 px.
    `geometry`: a `keras_unet.geometry.UNetGeometry`; `xp` as `plan_axis`.

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
    """``(k, y - k * stride)``: the tile whose output gives output pixel `y`
    (tile ``k`` gives ``[k * stride, (k + 1) * stride)``, the last the rest).

    Examples:
        >>> [[int(v) for v in tile_of_pixel(y, 384, 3)] for y in (383, 999)]
        [[0, 383], [2, 231]]
    """
    k = xp.minimum(y // xp.maximum(stride, 1), count - 1)
    return k, y - k * stride


def balanced_batch(batch, n):
    """``(calls, tiles per call)``: `n` tiles, at most `batch` a call, even.

    Examples:
        >>> balanced_batch(8, 9)
        (2, 5)
    """
    calls = -(-n // batch)
    return calls, -(-n // calls)


class Tile(NamedTuple):
    """Slices of the padded image, the output to keep, and the output image."""

    source: tuple[slice, slice]
    crop: tuple[slice, slice]
    destination: tuple[slice, slice]


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """How an image is padded and cut into tiles; iterate it for the tiles:
    `image_shape` (and output), `tile_shape`, `margin` (context on each
    side), `step` (``2**depth``), tile `counts` and `strides` (multiples of
    `step`) along rows and columns, `pad` ``((margin, bottom), (margin,
    right))``."""

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

    def __len__(self) -> int:
        return self.counts[0] * self.counts[1]

    def __iter__(self):
        axes = zip(self.image_shape, self.tile_shape, self.counts, self.strides)
        rows, cols = [_axis_slices(*axis) for axis in axes]
        for r_src, r_crop, r_dst in rows:
            for c_src, c_crop, c_dst in cols:
                yield Tile((r_src, c_src), (r_crop, c_crop), (r_dst, c_dst))


def _axis_slices(n, tile, count, stride):
    """(source, crop, destination) of each tile; as in `tile_of_pixel`."""
    starts = [k * stride for k in range(count)]
    stops = [*starts[1:], n]
    return [
        (slice(a, a + tile), slice(0, b - a), slice(a, b))
        for a, b in zip(starts, stops)
    ]


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
    """The `TileLayout` of an image ``(H, W, ...)`` for tiles of `tile_size`
    (int or ``(rows, cols)``) px: `plan_axis` along both axes, with the
    model's context `margin` (`UNetGeometry.context`) and `step`
    (``2**depth``). The destinations cover the output exactly once.

    Examples:
        >>> layout = tile_layout((1000, 700), 572, margin=92, step=16)
        >>> layout.counts, layout.strides, layout.pad
        ((3, 2), (384, 384), ((92, 248), (92, 164)))
        >>> for tile in tile_layout((500, 300), 572, margin=92, step=16):
        ...     print(tile.source[0], tile.destination[0])
        slice(0, 572, None) slice(0, 384, None)
        slice(384, 956, None) slice(384, 500, None)
    """
    h, w = _image_hw(image_shape)
    th, tw = check_pair(tile_size, "tile_size")
    margin, step = check_int(margin, "margin", 0), check_int(step, "step", 1)
    ch, sh, bottom = _checked_axis(h, th, margin, step)
    cw, sw, right = _checked_axis(w, tw, margin, step)
    pad = ((margin, bottom), (margin, right))
    return TileLayout((h, w), (th, tw), margin, step, (ch, cw), (sh, sw), pad)


tile_iterator = tile_layout  # iterate it: the tiles (CSBDeep's name)


def _image_hw(shape):
    return check_pair(
        tuple(shape)[:2] if np.ndim(shape) else shape, "image_shape"
    )


@dataclasses.dataclass(frozen=True)
class TilingModel:
    """A U-Net inspected once for tiling: the `model` to call (re-wired to
    free input sizes, weights shared), its `spec` (`UNetSpec`), its `fixed`
    ``(rows, cols)`` if it cannot be re-wired (else None), and the memory
    rule's ``ACTIVATIONS_PER_FILTER_PIXEL * filters * itemsize``."""

    model: keras.Model
    spec: UNetSpec
    fixed: tuple[int, int] | None
    bytes_per_pixel: int

    @classmethod
    def of(cls, model, spec=None) -> TilingModel:
        """Prepare `model`; `spec` as in `predict_tiled`."""
        if spec is None or not isinstance(model, keras.Model):
            spec = inspect_unet(model)  # a TypeError for non-models
        if not isinstance(spec, UNetSpec):
            raise TypeError(
                "`spec` must be a UNetSpec, e.g. keras_unet.inspect_unet("
                f"model, depth=4, padding='valid'). Received: spec={spec!r}"
            )
        runner, fixed, g = free_size_model(model), None, spec.geometry
        if runner is None:  # use it as it is, if its size is a tile size
            runner, fixed = model, tuple(model.input_shape[1:3])
            bad = [n for n in fixed if n is None or not g.is_valid_tile(n)]
            if bad:
                why = g.invalid_tile_message(bad[0]) if bad[0] else "None."
                raise ValueError(
                    "The model could not be rebuilt with free input sizes, "
                    f"and its input size {fixed} is no tile size: {why} "
                    "Build it with input_shape=(None, None, C). Received: "
                    f"model.input_shape={model.input_shape}"
                )
        dtype = str(getattr(runner.dtype_policy, "compute_dtype", "float32"))
        itemsize = 2 if "16" in dtype else 8 if "64" in dtype else 4
        rule = ACTIVATIONS_PER_FILTER_PIXEL * (spec.filters or 64) * itemsize
        return cls(runner, spec, fixed, rule)

    @property
    def min_tiling_tile(self) -> int:
        """The smallest tile whose stride is at least one step."""
        g = self.spec.geometry
        overlap = (g.min_tile - 2 * g.context) % g.step
        return g.round_up_tile(2 * g.context + g.step + overlap)

    def check_tile(self, tile_size, any_image=False):
        """`tile_size` as ``(rows, cols)``, or an error naming the nearest
        valid sizes; with `any_image`, also one that tiles any image."""
        th, tw = check_pair(tile_size, "tile_size")
        if self.fixed is not None and (th, tw) != self.fixed:
            raise ValueError(
                f"This model only accepts {self.fixed[0]}x{self.fixed[1]} "
                "inputs and could not be rebuilt with free input sizes; pass "
                f"tile_size={self.fixed} or None, or build the model with "
                "input_shape=(None, None, C). "
                f"Received: tile_size={tile_size!r}"
            )
        g = self.spec.geometry
        for t in (th, tw) if self.fixed is None else ():
            if not g.is_valid_tile(t):
                raise ValueError(
                    f"{g.invalid_tile_message(t)} Received: "
                    f"tile_size={tile_size!r}"
                )
            if any_image:  # the error for a tile too small to tile
                _checked_axis(_MAX_TILE, t, g.context, g.step)
        return th, tw

    def max_tile(self, memory_budget=None, image_shape=None):
        """The largest valid tile within the budget (default
        `default_memory_budget()`), square unless `image_shape` caps a side
        at what the image needs: then the other side grows."""
        budget = _check_budget(memory_budget)
        if self.fixed is not None:
            return self.fixed
        g, floor = self.spec.geometry, self.min_tiling_tile
        per_pixel = self.bytes_per_pixel

        def fit(pixels):
            t = g.round_down_tile(min(int(pixels), _MAX_TILE))
            return max(t or 0, floor)

        side = fit(math.isqrt(int(budget // per_pixel)))
        if image_shape is None:
            return side, side
        caps = [g.tile_for_output(n) for n in image_shape]
        th, tw = min(side, caps[0]), min(side, caps[1])
        if th < side:
            tw = min(fit(budget // (per_pixel * th)), caps[1])
        elif tw < side:
            th = min(fit(budget // (per_pixel * tw)), caps[0])
        return th, tw

    def layout(self, image_shape, tile_max=None, memory_budget=None):
        """The `TileLayout` of an image: balanced tiles under the cap."""
        g, tile, hw = self.spec.geometry, self.fixed, image_shape
        if tile is None:
            tile_max = tile_max or self.max_tile(memory_budget, hw)
            tile = [int(balanced_tile(n, t, g)) for n, t in zip(hw, tile_max)]
        return tile_layout(hw, tile, g.context, g.step)


def default_memory_budget() -> int:
    """Bytes one batch of tiles may use: half the free memory of a JAX or
    PyTorch GPU; else (CPU; TensorFlow does not report free GPU memory)
    `DEFAULT_CPU_MEMORY_BUDGET` (2 GiB) or a quarter of the free RAM."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}  # None on CPU
            if "bytes_limit" in stats:
                free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
                return free // 2
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.mem_get_info()[0] // 2
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
    """Activation bytes of one tile by the rule ``ACTIVATIONS_PER_FILTER_PIXEL
    * filters * rows * cols * itemsize`` (first-level `filters`; `spec` as
    in `predict_tiled`).

    Examples:
        >>> from keras_unet import build_unet
        >>> estimate_tile_memory(build_unet(), 572) // 2**20
        1278
    """
    th, tw = check_pair(tile_size, "tile_size")
    return TilingModel.of(model, spec).bytes_per_pixel * th * tw


def choose_tile_size(model, image_shape, memory_budget=None, tile_size=None,
                     spec=None):  # fmt: skip
    """The input tile ``(rows, cols)`` `predict_tiled` uses for an image:
    `tile_size` or the largest tile within `memory_budget`, shrunk to the
    smallest valid size that needs no more tiles (`balanced_tile`).

    Examples:
        >>> from keras_unet import build_unet
        >>> choose_tile_size(build_unet(depth=2, filters=4), (300, 517), 2**30)
        (340, 560)
    """
    tm = TilingModel.of(model, spec)
    hw = _image_hw(image_shape)
    cap = None if tile_size is None else tm.check_tile(tile_size)
    return tm.layout(hw, cap, _check_budget(memory_budget)).tile_shape


@dataclasses.dataclass
class _Run:
    """One call's settings; an out-of-memory retry lowers the budget."""

    tm: TilingModel
    tile: tuple[int, int] | None  # the user's caps, dropped after an OOM
    batch: int | None
    budget: float
    mirror: str
    from_logits: bool
    bar: keras.utils.Progbar | None = None
    calls: int = 0  # model calls made

    def plan(self, shape, swap):
        """(layout, tiles per call, calls) for a (N, H, W, C) stack."""
        cap = self.tile  # for the untransformed image:
        cap = cap[::-1] if cap and swap and not self.tm.fixed else cap
        layout = self.tm.layout(shape[1:3], cap, self.budget)
        n, tile_bytes = shape[0] * len(layout), self.tm.bytes_per_pixel
        fit = int(self.budget // (tile_bytes * math.prod(layout.tile_shape)))
        batch = self.batch or max(1, min(fit, _MAX_AUTO_BATCH, n))
        calls, per_call = balanced_batch(batch, n)
        return layout, per_call, calls


def _predict_stack(run, stack, layout, batch):
    """Probabilities (N, H, W, K) of a stack of images (N, H, W, C)."""
    spec, crop = run.tm.spec, run.tm.spec.geometry.tile_crop
    padded = mirror_pad(stack, layout.pad, run.mirror, axes=(1, 2))
    out = np.empty((len(stack), *layout.image_shape, spec.num_classes), "f4")
    jobs = [(i, tile) for i in range(len(stack)) for tile in layout]
    x = np.zeros((batch, *layout.tile_shape, spec.input_channels), "f4")
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        for j, (i, tile) in enumerate(chunk):
            x[j] = padded[(i, *tile.source)]
        x[len(chunk) :] = 0.0
        y = run.tm.model.predict_on_batch(x)
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


def _predict_retrying(run, x, name):
    """One transformed stack. Out of memory: again with half the memory of
    the failed call (the rule then halves the batch, or else the tile)."""
    swap, pending = TTA_TRANSFORMS[name][0], None
    while True:
        layout, batch, calls = run.plan(x.shape, swap)
        if pending is not None and run.bar is not None:
            run.bar.target += calls - pending
        start = run.calls
        try:
            return _predict_stack(run, x, layout, batch)
        except Exception as err:
            # TF ResourceExhaustedError, JAX RESOURCE_EXHAUSTED, torch
            # OutOfMemoryError: known by name, without importing a backend.
            text = f"{type(err).__name__} {err}".lower().replace("_", "")
            keys = ("resourceexhausted", "outofmemory", "out of memory")
            if not isinstance(err, MemoryError):
                if not any(k in text for k in keys):
                    raise
            error = err
        pending = calls - (run.calls - start)
        (th, tw), tm = layout.tile_shape, run.tm
        tried = f"{batch} tile(s) of {th}x{tw} px per model call"
        if batch == 1 and (tm.fixed or max(th, tw) <= tm.min_tiling_tile):
            raise MemoryError(
                f"predict_tiled ran out of memory with {tried}, the least "
                "this model can use. Free memory on the device (other "
                "processes or models) or use a larger one. Received: "
                f"{type(error).__name__}: {error}"
            ) from error
        used = batch * th * tw * tm.bytes_per_pixel
        run.budget, run.batch, run.tile = used / 2, None, None
        warnings.warn(
            f"predict_tiled ran out of memory with {tried}; retrying with "
            f"half of it, memory_budget={used // 2}. Pass a smaller "
            "memory_budget to start there.",
            stacklevel=6,  # the caller of predict_tiled(_batch)
        )


def _as_stack(raw, spec, batched):
    """A float32 (N, H, W, C) stack, or an error naming the accepted shapes."""
    shape, c = np.shape(raw), spec.input_channels
    image = to_float_image(raw)  # refuses empty images and NaN/inf pixels
    rank = image.ndim - batched  # of one image
    if rank == 2 and c == 1:
        return image[..., None] if batched else image[None, ..., None]
    if rank == 3 and image.shape[-1] == c:
        return image if batched else image[None]
    if rank in (2, 3):
        what = {
            (2, False): "received a 2-D (H, W) image without channels",
            (2, True): "received a 3-D stack, read as (N, H, W) grey images",
            (3, False): f"the last axis has {image.shape[-1]} (if it is a "
            "stack of images, use predict_tiled_batch)",
            (3, True): f"the last axis has {image.shape[-1]}",
        }[rank, batched]
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
    stack = "; for a stack (N, H, W, C) use predict_tiled_batch"
    raise ValueError(
        "predict_tiled takes one image of shape (H, W) or (H, W, C)"
        + (stack if rank == 4 else "")
        + f". Received: image.shape={shape}"
    )


def _predict(model, images, listed, tile_size, batch_size, tta, budget,
             mirror, from_logits, verbose, spec):  # fmt: skip
    """predict_tiled(_batch): images of one size share the model calls."""
    tm = TilingModel.of(model, spec)
    if listed and not images:
        raise ValueError("`images` is an empty list. Received: images=[]")
    groups = {}  # index and (1, H, W, C) stack of each image, by shape
    for i, image in enumerate(images if listed else [images]):
        stack = _as_stack(image, tm.spec, batched=not listed)
        groups.setdefault(stack.shape, []).append((i, stack))
    check_mirror(mirror)
    names = resolve_tta(tta)
    tile_size = None if tile_size is None else tm.check_tile(tile_size)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    if verbose not in ("auto", True, False, 0, 1):
        raise ValueError(
            "`verbose` must be 'auto', True/1 or False/0. "
            f"Received: verbose={verbose!r}"
        )
    run = _Run(tm, tile_size, batch_size, _check_budget(budget), mirror,
               from_logits)  # fmt: skip
    stacks = [np.concatenate([s for _, s in g]) for g in groups.values()]
    calls = 0  # for the progress bar
    for stack, name in ((s, n) for s in stacks for n in names):
        n, h, w, _ = stack.shape
        swap = TTA_TRANSFORMS[name][0]
        calls += run.plan((n, w, h) if swap else (n, h, w), swap)[2]
    if verbose == "auto":
        verbose = calls >= _AUTO_PROGRESS_CALLS
    run.bar = keras.utils.Progbar(calls, unit_name="batch") if verbose else None
    results = []
    for stack in stacks:  # a loop, not a comprehension: see the warning
        probs = average_over_transforms(
            lambda x, name: _predict_retrying(run, x, name), stack, names,
            axes=(1, 2),
        )  # fmt: skip
        results.append(np.ascontiguousarray(probs, np.float32))
    if not listed:
        return results[0]
    out = [None] * len(images)
    for group, probs in zip(groups.values(), results):
        for (i, _), p in zip(group, probs):
            out[i] = p
    return out


def predict_tiled(model, image, tile_size=None, batch_size=None, tta=None, *,
                  memory_budget=None, mirror="reflect", from_logits=True,
                  verbose="auto", spec=None):  # fmt: skip
    """Segment one image of any size with the overlap-tile strategy.

    The image is mirror-padded, cut into tiles at offsets that are multiples
    of ``2**depth``, the tiles go through the model in batches and their
    outputs are stitched: the result equals, to float round-off, one pass of
    the model over the whole mirror-padded image. No seams.

    Args:
        model: a U-Net from `keras_unet.build_unet` (a fixed-size model is
            re-wired to free sizes, sharing its weights) or another U-Net
            with 2x2 pooling, outputting logits. Same-padded models keep a
            context of ``6 * 2**depth`` px around every tile.
        image: ``(H, W)`` or ``(H, W, C)``, any H, W >= 1; uint8 and uint16
            are scaled to [0, 1] (`keras_unet.io.to_float_image`).
        tile_size: largest input tile, int or ``(rows, cols)``, a valid
            input size (``188 + 16k`` for depth 4). Default: the largest
            within `memory_budget`. Never larger than the image needs.
        batch_size: tiles per model call; default: as many as fit in
            `memory_budget` (at most 64).
        tta: test-time augmentation, None (off), True or "d4" (8 rotations
            and flips), "rotations", "flips" or a list of names
            (`keras_unet.tta.resolve_tta`): probabilities are averaged.
        memory_budget: bytes per batch (`estimate_tile_memory`); default
            `default_memory_budget()`. Out of memory anyway: a warning, and
            again with half the memory.
        mirror: "reflect" (default) or "symmetric" (`mirror_index`).
        from_logits: apply the soft-max (sigmoid for one output channel).
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
        Ronneberger, Fischer, Brox. U-Net (MICCAI 2015), Fig. 2.
    """
    return _predict(model, [image], True, tile_size, batch_size, tta,
                    memory_budget, mirror, from_logits, verbose,
                    spec)[0]  # fmt: skip


def predict_tiled_batch(model, images, tile_size=None, batch_size=None,
                        tta=None, *, memory_budget=None, mirror="reflect",
                        from_logits=True, verbose="auto",
                        spec=None):  # fmt: skip
    """`predict_tiled` for a stack ``(N, H, W[, C])`` of images (returns
    ``(N, H, W, K)``) or a list of images of any sizes (returns a list).
    Tiles of all images of one size share the model calls; the other
    arguments are those of `predict_tiled`.

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> predict_tiled_batch(model, np.zeros((3, 64, 80), np.uint8)).shape
        (3, 64, 80, 2)
    """
    listed = isinstance(images, list | tuple)
    return _predict(model, images, listed, tile_size, batch_size, tta,
                    memory_budget, mirror, from_logits, verbose,
                    spec)  # fmt: skip
