"""A U-Net prepared for tiling: free input sizes, and how large a tile may be.

`TilingModel.of(model)` reads the model's spec once, re-wires a fixed-size
model to free input sizes (`free_size_model`, sharing its weights), and
holds the memory rule: a tile of ``rows x cols`` px needs about
``ACTIVATIONS_PER_FILTER_PIXEL * filters * rows * cols * itemsize`` bytes,
so the largest tile within a memory budget is known before any call.
"""

from __future__ import annotations

import dataclasses
import math
import os
import weakref

import keras

from keras_unet.checks import check_number, check_pair
from keras_unet.inference.tile_plan import (
    balanced_tile,
    checked_axis,
    image_hw,
    tile_layout,
)
from keras_unet.model.spec import UNetSpec, spec_of

__all__ = [
    "ACTIVATIONS_PER_FILTER_PIXEL",
    "DEFAULT_CPU_MEMORY_BUDGET",
    "TilingModel",
    "check_memory_budget",
    "choose_tile_size",
    "default_memory_budget",
    "estimate_tile_memory",
    "free_size_model",
]

_FREE_SIZE = weakref.WeakKeyDictionary()


def free_size_model(model):
    """The model with free spatial input sizes, sharing the same weights.

    `build_unet()` makes a 572x572 model by default; tiles of other sizes
    need ``(None, None, C)`` inputs. A functional model is re-wired to a
    new input with the same layer objects (no weights are copied). Returns
    the model itself if its sizes are already free, and None if it cannot
    be re-wired.
    """
    shape = tuple(model.input_shape)
    if shape[1] is None and shape[2] is None:
        return model
    cached = _FREE_SIZE.get(model)
    if cached is None:
        try:
            cached = keras.models.clone_model(
                model,
                input_tensors=keras.Input((None, None, shape[-1])),
                clone_function=lambda layer: layer,
            )
        except Exception:  # noqa: BLE001 - any failure: not re-wirable
            return None
        _FREE_SIZE[model] = cached
    return cached


# All layer outputs of build_unet per filter and tile pixel: 15.8 for depth 4
# and large tiles (9.8 for 572 px); XLA's peak memory is 2.3-3.9 (measured
# by benchmarks/tiling.py --memory).
ACTIVATIONS_PER_FILTER_PIXEL = 16
DEFAULT_CPU_MEMORY_BUDGET = 2 * 2**30
_MAX_TILE = 2**15


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
            spec = spec_of(model)  # a TypeError for non-models
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
                checked_axis(_MAX_TILE, t, g.context, g.step)
        return th, tw

    def max_tile(self, memory_budget=None, image_shape=None):
        """The largest valid tile within the budget (default
        `default_memory_budget()`), square unless `image_shape` caps a side
        at what the image needs: then the other side grows."""
        budget = check_memory_budget(memory_budget)
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


def check_memory_budget(memory_budget):
    if memory_budget is None:
        return default_memory_budget()
    hint = "bytes, e.g. 2 * 2**30 for 2 GiB"
    return check_number(
        memory_budget, "memory_budget", 0, strict=True, hint=hint
    )


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


def choose_tile_size(
    model, image_shape, memory_budget=None, tile_size=None, spec=None
):
    """The input tile ``(rows, cols)`` `predict_tiled` uses for an image:
    `tile_size` or the largest tile within `memory_budget`, shrunk to the
    smallest valid size that needs no more tiles (`balanced_tile`).

    Examples:
        >>> from keras_unet import build_unet
        >>> choose_tile_size(build_unet(depth=2, filters=4), (300, 517), 2**30)
        (340, 560)
    """
    tm = TilingModel.of(model, spec)
    hw = image_hw(image_shape)
    cap = None if tile_size is None else tm.check_tile(tile_size)
    return tm.layout(hw, cap, check_memory_budget(memory_budget)).tile_shape
