"""Overlap-tile prediction of images of any size (the paper's Fig. 2).

`predict_tiled` mirror-pads the image, cuts it into tiles by the plan of
`keras_unet.inference.tile_plan`, runs the tiles through the model in
batches as large as the memory rule of
`keras_unet.inference.tiling_model` allows, and stitches their outputs:
the result equals one pass of the model over the whole mirror-padded
image. A model call that runs out of memory anyway is retried with half
the memory.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_unet.checks import check_int
from keras_unet.data.mirror import check_mirror, mirror_pad
from keras_unet.data.normalize import to_float_image
from keras_unet.inference.tile_plan import balanced_batch
from keras_unet.inference.tiling_model import TilingModel, check_memory_budget
from keras_unet.inference.tta import (
    TTA_TRANSFORMS,
    average_over_transforms,
    resolve_tta,
)

__all__ = ["predict_tiled", "predict_tiled_batch"]


_MAX_AUTO_BATCH = 64
_AUTO_PROGRESS_CALLS = 8


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


def _predict(
    model,
    images,
    listed,
    tile_size,
    batch_size,
    tta,
    budget,
    mirror,
    from_logits,
    verbose,
    spec,
):
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
    run = _Run(
        tm,
        tile_size,
        batch_size,
        check_memory_budget(budget),
        mirror,
        from_logits,
    )
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
            lambda x, name: _predict_retrying(run, x, name),
            stack,
            names,
            axes=(1, 2),
        )
        results.append(np.ascontiguousarray(probs, np.float32))
    if not listed:
        return results[0]
    out = [None] * len(images)
    for group, probs in zip(groups.values(), results):
        for (i, _), p in zip(group, probs):
            out[i] = p
    return out


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
    outputs are stitched: the result equals, to float round-off, one pass of
    the model over the whole mirror-padded image. No seams.

    Args:
        model: a U-Net from `keras_unet.build_unet` (a fixed-size model is
            re-wired to free sizes, sharing its weights) or another U-Net
            with 2x2 pooling, outputting logits. Same-padded models keep a
            context of ``6 * 2**depth`` px around every tile.
        image: ``(H, W)`` or ``(H, W, C)``, any H, W >= 1; uint8 and uint16
            are scaled to [0, 1] (`keras_unet.data.normalize.to_float_image`).
        tile_size: largest input tile, int or ``(rows, cols)``, a valid
            input size (``188 + 16k`` for depth 4). Default: the largest
            within `memory_budget`. Never larger than the image needs.
        batch_size: tiles per model call; default: as many as fit in
            `memory_budget` (at most 64).
        tta: test-time augmentation, None (off), True or "d4" (8 rotations
            and flips), "rotations", "flips" or a list of names
            (`keras_unet.inference.tta.resolve_tta`): probabilities are
            averaged.
        memory_budget: bytes per batch (`estimate_tile_memory`); default
            `default_memory_budget()`. Out of memory anyway: a warning, and
            again with half the memory.
        mirror: "reflect" (default) or "symmetric" (`mirror_index`).
        from_logits: apply the soft-max (sigmoid for one output channel).
        verbose: "auto" (a progress bar for 8 or more model calls), True or
            False.
        spec: a `keras_unet.model.spec.UNetSpec` for a model whose geometry
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
    return _predict(
        model,
        [image],
        True,
        tile_size,
        batch_size,
        tta,
        memory_budget,
        mirror,
        from_logits,
        verbose,
        spec,
    )[0]


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
    return _predict(
        model,
        images,
        listed,
        tile_size,
        batch_size,
        tta,
        memory_budget,
        mirror,
        from_logits,
        verbose,
        spec,
    )
