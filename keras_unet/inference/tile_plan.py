"""The overlap-tile plan: where the tiles of an image go (integer arithmetic).

Four integer functions that both `predict_tiled` (on numpy ints) and the
exported SavedModel graph (on tensors, ``xp=tf``) run: `plan_axis`,
`balanced_tile`, `tile_of_pixel` and `balanced_batch`; with
`keras_unet.data.mirror.mirror_index` they are the whole overlap-tile
strategy of the paper's Fig. 2. `tile_layout` turns them into the `Tile`
slices of an image (source, crop, destination), tested on their own.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from keras_unet.checks import check_int, check_pair

__all__ = [
    "Tile",
    "TileLayout",
    "balanced_batch",
    "balanced_tile",
    "checked_axis",
    "image_hw",
    "plan_axis",
    "tile_iterator",
    "tile_layout",
    "tile_of_pixel",
]


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
    `geometry`: a `keras_unet.model.geometry.UNetGeometry`; `xp` as `plan_axis`.

    Examples:
        >>> from keras_unet.model.geometry import UNetGeometry
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


def checked_axis(n, tile, margin, step):
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
    h, w = image_hw(image_shape)
    th, tw = check_pair(tile_size, "tile_size")
    margin, step = check_int(margin, "margin", 0), check_int(step, "step", 1)
    ch, sh, bottom = checked_axis(h, th, margin, step)
    cw, sw, right = checked_axis(w, tw, margin, step)
    pad = ((margin, bottom), (margin, right))
    return TileLayout((h, w), (th, tw), margin, step, (ch, cw), (sh, sw), pad)


tile_iterator = tile_layout  # iterate it: the tiles (CSBDeep's name)


def image_hw(shape):
    return check_pair(
        tuple(shape)[:2] if np.ndim(shape) else shape, "image_shape"
    )
