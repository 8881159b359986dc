"""Lazy overlap-tile prediction of arrays larger than memory, on Dask.

The paper's overlap-tile strategy is a halo exchange: every output chunk
needs its input chunk plus the network's context on every side, mirrored
only at the array's border. `predict_chunked` builds that as a Dask graph:
one task per output chunk reads its window of the input (the chunk, a halo
of ``halo`` px before and at least as much after it, indexed through the
one mirroring rule of `keras_unet.data.mirror`), runs `predict_tiled` on it and
keeps the chunk. The graph runs on Dask's threads, a `dask.distributed`
cluster or anything else Dask schedules.

Exactness: chunks start at multiples of ``2**depth`` and every window has
the length of the whole axis modulo ``2**depth``, so the tiles inside each
window sit on the same grid as `predict_tiled`'s tiles of the whole image
(also after the flips and rotations of test-time augmentation), and the
halo covers the receptive field of every kept pixel: the result equals
`predict_tiled` on the array in memory, to float round-off (valid padding).
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading

import numpy as np

from keras_unet.checks import check_int, check_pair
from keras_unet.optional import import_extra

__all__ = ["ChunkPlan", "predict_chunked"]

DEFAULT_CHUNK = 2048  # output px per chunk side, rounded up to 2**depth
DEFAULT_CHUNK_MEMORY = 512 * 2**20  # memory_budget of one chunk's tiles
_MODEL_CALLS = threading.Lock()  # one model call at a time per process
_LOADED = {}  # (path, mtime) -> (model, spec): a model loaded once a process


class _ModelSource:
    """A model for Dask tasks: pickled as its ``.keras`` path (each worker
    process loads it once), or as the model itself when given in memory."""

    def __init__(self, model, spec=None):
        self.path = None
        if isinstance(model, str | pathlib.Path):
            self.path, model = str(pathlib.Path(model).resolve()), None
        self.model, self.spec = model, spec

    def __getstate__(self):
        if self.path is None:
            return {"path": None, "model": self.model, "spec": self.spec}
        return {"path": self.path, "model": None, "spec": None}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __dask_tokenize__(self):
        return ("keras_unet-model", self.path or id(self.model))

    def get(self):
        """``(model, spec)``, loading and inspecting once per process."""
        from keras_unet.model.saving import load_model
        from keras_unet.model.spec import spec_of

        if self.model is None:
            key = (self.path, pathlib.Path(self.path).stat().st_mtime_ns)
            if key not in _LOADED:
                loaded = load_model(self.path, compile=False)
                _LOADED[key] = (loaded, spec_of(loaded))
            self.model, self.spec = _LOADED[key]
        if self.spec is None:
            self.spec = spec_of(self.model)
        return self.model, self.spec


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How `predict_chunked` cuts one image axis of `size` px: output
    chunks of `chunk` px (a multiple of `step`, ``2**depth``; the last
    holds the rest) and windows reaching `halo` px (a multiple of `step`,
    at least the context plus one step) before every chunk and as far after
    it as keeps the window's length equal to `size` modulo `step`."""

    size: int
    chunk: int
    halo: int
    step: int

    @property
    def chunks(self) -> tuple[int, ...]:
        """The output chunk sizes, as Dask writes them."""
        full, rest = divmod(self.size, self.chunk)
        return (self.chunk,) * full + ((rest,) if rest else ())

    def windows(self, mirror="reflect"):
        """``(read, index)`` per chunk: the input slice to read, and the
        window's positions in it (mirrored at the array's border)."""
        from keras_unet.data.mirror import mirror_index

        start = 0
        for n in self.chunks:
            after = self.halo + (self.size - 2 * self.halo - n) % self.step
            pos = np.arange(start - self.halo, start + n + after)
            pos = mirror_index(pos, self.size, mirror)
            low, high = int(pos.min()), int(pos.max()) + 1
            yield slice(low, high), pos - low
            start += n


def _plan_axes(spec, shape, chunk_size):
    """One `ChunkPlan` per image axis; `chunk_size` checked against 2**d."""
    g = spec.geometry
    halo = -(-(g.context + g.step) // g.step) * g.step
    if chunk_size is None:
        chunk_size = -(-DEFAULT_CHUNK // g.step) * g.step
    pair = check_pair(chunk_size, "chunk_size")
    for n in pair:
        if n % g.step:
            low, high = n - n % g.step, n - n % g.step + g.step
            raise ValueError(
                f"chunk_size {n} is not a multiple of {g.step} (2**depth for "
                f"depth {g.depth}), so chunks would not sit on the tile grid "
                f"of predict_tiled; use {low or high} or {high}. "
                f"Received: chunk_size={chunk_size!r}"
            )
    return [ChunkPlan(n, c, halo, g.step) for n, c in zip(shape, pair)]


def _layout(shape, channels, stack):
    """Whether an array is a Z stack: (H, W), (H, W, C), (Z, H, W) or
    (Z, H, W, C); a 3-D array is a stack unless its last axis is C."""
    ndim = len(shape)
    if stack is None:
        stack = ndim == 4 or (ndim == 3 and shape[-1] != channels)
    has_c = ndim - 2 - bool(stack)
    if has_c not in (0, 1) or (shape[-1] if has_c else 1) != channels:
        raise ValueError(
            f"predict_chunked takes (H, W), (H, W, C), (Z, H, W) or "
            f"(Z, H, W, C) arrays with the model's {channels} channel(s) "
            f"last; pass stack=True/False if a 3-D array is read wrongly. "
            f"Received: shape={tuple(shape)}, stack={stack!r}"
        )
    return bool(stack)


def _predict_window(region, source, rows, cols, keep, stacked, options):
    """One output chunk: the window of `region` at positions `rows` x
    `cols`, predicted with `predict_tiled(_batch)`, cropped to `keep`."""
    from keras_unet.inference.tiled import predict_tiled, predict_tiled_batch

    axis = 1 if stacked else 0
    window = np.take(np.take(region, rows, axis), cols, axis + 1)
    model, spec = source.get()
    predict = predict_tiled_batch if stacked else predict_tiled
    with _MODEL_CALLS:
        probs = predict(model, window, spec=spec, verbose=0, **options)
    return probs[(Ellipsis, *keep, slice(None))]


def predict_chunked(
    model,
    image,
    chunk_size=None,
    *,
    z_chunk=1,
    stack=None,
    tile_size=None,
    batch_size=None,
    tta=None,
    memory_budget=DEFAULT_CHUNK_MEMORY,
    mirror="reflect",
    from_logits=True,
    spec=None,
):
    """Lazy overlap-tile prediction of an array of any size, chunk by chunk.

    Nothing is computed until the result is: ``.compute()`` a small one, or
    write it chunk by chunk (`keras_unet.io.volumes.write_ome_zarr`,
    ``dask.array.to_zarr``) on Dask's threads or a `dask.distributed`
    cluster. Each output chunk reads its input chunk plus a halo (the
    model's context and one ``2**depth`` step, mirrored at the array's
    border only) and goes through `keras_unet.predict_tiled`. A 3-D stack
    is predicted slice by slice with the 2-D net, `z_chunk` slices a task.

    Args:
        model: a U-Net (`keras_unet.build_unet`), or the path of a
            ``.keras`` file: then each Dask worker process loads it once
            (use a path with a distributed cluster).
        image: a Dask, Zarr or NumPy array ``(H, W)``, ``(H, W, C)``,
            ``(Z, H, W)`` or ``(Z, H, W, C)``; uint8/uint16 are scaled by
            their type (`keras_unet.data.normalize.to_float_image`), never per
            chunk.
        chunk_size: output chunk ``(rows, cols)`` or int, multiples of
            ``2**depth``; default: 2048 (`DEFAULT_CHUNK`).
        z_chunk: slices per task of a 3-D stack (any size >= 1).
        stack: read a 3-D array as ``(Z, H, W)`` (True) or ``(H, W, C)``
            (False); default: a stack unless its last axis has the model's
            channels (C > 1).
        tile_size: as in `predict_tiled`.
        batch_size: as in `predict_tiled`.
        tta: as in `predict_tiled` (still exact).
        memory_budget: bytes of one chunk's tiles (default 512 MiB); one
            chunk is predicted at a time per process.
        mirror: as in `predict_tiled`, at the array's border.
        from_logits: as in `predict_tiled`.
        spec: as in `predict_tiled`.

    Returns:
        A lazy float32 Dask array of probabilities ``(..., H, W, K)``,
        chunked like the output chunks; equal to `predict_tiled` on the
        image in memory (valid padding).

    Raises:
        ImportError: Dask is not installed (the ``[dask]`` extra).
        ValueError: a chunk size that is no multiple of ``2**depth``, an
            array of another shape (before anything is computed).

    Examples:
        >>> from keras_unet import build_unet
        >>> model = build_unet((None, None, 1), depth=2, filters=4)
        >>> image = np.random.default_rng(0).random((300, 517), np.float32)
        >>> predict_chunked(model, image, chunk_size=128).chunks
        ((128, 128, 44), (128, 128, 128, 128, 5), (2,))

    Reference:
        Ronneberger, Fischer, Brox. U-Net (MICCAI 2015), Fig. 2.
    """
    da, dask = import_extra("dask.array", "dask"), import_extra("dask", "dask")
    source = _ModelSource(model, spec)
    spec = source.get()[1]
    image = image if isinstance(image, da.Array) else da.from_array(image)
    stacked = _layout(image.shape, spec.input_channels, stack)
    z_chunk = check_int(z_chunk, "z_chunk", 1)
    hw = image.shape[int(stacked) : int(stacked) + 2]
    rows, cols = _plan_axes(spec, hw, chunk_size)
    options = dict(
        tile_size=tile_size,
        batch_size=batch_size,
        tta=tta,
        memory_budget=memory_budget,
        mirror=mirror,
        from_logits=from_logits,
    )
    model_key = dask.delayed(source, pure=True)
    grid = _task_grid(
        image,
        stacked,
        z_chunk,
        rows,
        cols,
        mirror,
        (model_key, options, spec.num_classes),
    )
    return da.block(grid if stacked else grid[0])


def _task_grid(image, stacked, z_chunk, rows, cols, mirror, job):
    """Nested lists (z, rows, cols, classes) of one lazy array per chunk."""
    da, dask = import_extra("dask.array", "dask"), import_extra("dask", "dask")
    model_key, options, classes = job
    depth = image.shape[0]
    zs = [slice(z, min(z + z_chunk, depth)) for z in range(0, depth, z_chunk)]
    grid = []
    for z in zs if stacked else [None]:
        plane = []
        for (r_read, r_pos), n in zip(rows.windows(mirror), rows.chunks):
            row = []
            for (c_read, c_pos), m in zip(cols.windows(mirror), cols.chunks):
                keep = (
                    slice(rows.halo, rows.halo + n),
                    slice(cols.halo, cols.halo + m),
                )
                index = (z, r_read, c_read) if stacked else (r_read, c_read)
                task = dask.delayed(_predict_window, pure=True)(
                    image[index],
                    model_key,
                    r_pos,
                    c_pos,
                    keep,
                    stacked,
                    options,
                )
                zn = (z.stop - z.start,) if stacked else ()
                shape = (*zn, n, m, classes)
                row.append([da.from_delayed(task, shape, np.float32)])
            plane.append(row)
        grid.append(plane)
    return grid
