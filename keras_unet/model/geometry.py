"""Tile geometry of the U-Net: which input sizes are valid, and what comes out.

With unpadded ("valid") 3x3 convolutions every convolution shrinks the
feature map by 2 pixels, and every 2x2 max-pool must see an even size so that
tiles stitch seamlessly. For a U-Net of depth `d` (number of max-pools) this
gives, on the input scale:

- valid input sizes ``n = n_min + 2**d * k`` (k >= 0); for the paper's depth 4
  that is ``188 + 16k`` (..., 556, 572, 588, ...),
- output size ``n - 2 * margin`` with ``margin = 6 * 2**d - 4`` (92 for
  depth 4: the context each output tile needs on every side),
- the crop applied to the skip connection of level ``l`` (1-based, 1 = top),
  which does not depend on the input size.

With ``padding="same"`` the output has the input size, and inputs must be
multiples of ``2**d`` (so that pooling and up-convolution round-trip).

`UNetGeometry` holds all of this arithmetic, once; the module-level
functions (`output_size`, `margin`, ...) are shortcuts for one depth and
padding. Every size is one spatial axis; height and width are checked
separately, so non-square tiles are fine.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Fig. 1 and Sect. 2).
"""

from __future__ import annotations

import dataclasses
import numbers

from keras_unet.checks import check_choice, check_int

__all__ = [
    "PADDINGS",
    "UNetGeometry",
    "check_input_size",
    "crop_per_side",
    "describe_rule",
    "input_size_for_output",
    "invalid_size_message",
    "is_valid_input_size",
    "margin",
    "min_input_size",
    "nearest_valid_input_size",
    "output_size",
    "size_trace",
    "step",
    "valid_input_sizes",
]

PADDINGS = ("valid", "same")


@dataclasses.dataclass(frozen=True)
class UNetGeometry:
    """The size arithmetic of a U-Net of a given depth and padding.

    Attributes:
        depth: number of 2x2 max-pools (4 in the paper).
        padding: ``"valid"`` (the paper's unpadded convolutions) or
            ``"same"``.

    Tiling (`keras_unet.inference.tiled`) uses two more facts: the ``context``
    kept around every output tile (the margin for valid padding; for same
    padding ``6 * 2**depth``, the valid margin rounded up to a multiple of
    the step, so that the zero padding at tile borders does not reach the
    kept pixels) and ``min_tile``, the smallest tile that leaves output.

    Examples:
        >>> g = UNetGeometry(4)
        >>> g.margin, g.step, g.min_input_size, g.output_size(572)
        (92, 16, 188, 388)
    """

    depth: int = 4
    padding: str = "valid"

    def __post_init__(self):
        hint = "the number of 2x2 max-pools; the paper uses 4"
        object.__setattr__(
            self, "depth", check_int(self.depth, "depth", 1, hint)
        )
        check_choice(
            self.padding,
            "padding",
            PADDINGS,
            "'valid' is the paper's unpadded convolution",
        )

    # ---------------------------------------------------------- the rule

    @property
    def step(self) -> int:
        """Spacing between consecutive valid input sizes: ``2**depth``."""
        return 2**self.depth

    @property
    def margin(self) -> int:
        """Context consumed on each side of the output (0 for same)."""
        return 0 if self.padding == "same" else 6 * self.step - 4

    @property
    def min_input_size(self) -> int:
        """The smallest valid input size (188 for depth 4, valid)."""
        if self.padding == "same":
            return self.step
        # Input n = 2**d * b_in + 4 * (2**d - 1) where b_in is the size
        # entering the bottom block; its two convolutions leave b = b_in - 4.
        # The expansive path maps b -> 2b - 4 once per level, which stays
        # positive for b >= 4 (any depth) and for b = 3 only when depth 1.
        b_min = 3 if self.depth == 1 else 4
        return self.step * (b_min + 4) + 4 * (self.step - 1)

    def is_valid(self, n) -> bool:
        """Whether a tile of `n` pixels passes without rounding."""
        n = _check_size(n)
        return n >= self.min_input_size and (
            (n - self.min_input_size) % self.step == 0
        )

    def round_down(self, n) -> int | None:
        """The largest valid size <= n (None if there is none)."""
        if n < self.min_input_size:
            return None
        return (
            self.min_input_size
            + (n - self.min_input_size) // (self.step) * self.step
        )

    def round_up(self, n) -> int:
        """The smallest valid size >= n."""
        below = self.round_down(n)
        if below is None:
            return self.min_input_size
        return below if below == n else below + self.step

    def nearest(self, n) -> int:
        """The valid size closest to `n` (the larger one on a tie)."""
        n = _check_size(n)
        below, above = self.round_down(n), self.round_up(n)
        if below is None or above - n <= n - below:
            return above
        return below

    def output_size(self, n) -> int:
        """Output size for a valid input size (raises if it is not)."""
        return self.check(n) - 2 * self.margin

    def input_size_for_output(self, n) -> int:
        """The smallest valid input size whose output covers `n` pixels."""
        n = check_int(_check_size(n, "n"), "n", 1)
        return self.round_up(n + 2 * self.margin)

    def valid_sizes(self, min_size, max_size) -> list[int]:
        """All valid sizes in ``[min_size, max_size]``, ascending."""
        lo = _check_size(min_size, "min_size")
        hi = _check_size(max_size, "max_size")
        return list(range(self.round_up(lo), hi + 1, self.step))

    def crop_per_side(self, level) -> int:
        """Pixels cropped on each side of the skip connection of `level`.

        Levels count from 1 (the top) to `depth`. With valid padding the
        crop is twice the shrinkage of the sub-network below the level, and
        does not depend on the input size: 88, 40, 16 and 4 for depth 4.
        """
        if not 1 <= level <= self.depth:
            raise ValueError(
                f"`level` must be in [1, {self.depth}]. Received: level={level}"
            )
        if self.padding == "same":
            return 0
        return 12 * 2 ** (self.depth - level) - 8

    # ------------------------------------------------------- explanations

    def describe_rule(self) -> str:
        """The rule in words, e.g. 'valid sizes are 188 + 16k (k >= 0)'."""
        if self.padding == "same":
            return f"valid sizes are multiples of {self.step}"
        return f"valid sizes are {self.min_input_size} + {self.step}k (k >= 0)"

    def invalid_message(self, n) -> str:
        """Why `n` is not a valid size, naming the rule and nearest sizes."""
        below, above = self.round_down(int(n)), self.round_up(int(n))
        where = (
            f"the smallest valid size is {above}"
            if below is None
            else f"nearest valid sizes are {below} and {above}"
        )
        why = "every 2x2 max-pool must see an even size"
        if self.padding == "valid":
            why += " and every valid 3x3 convolution removes 2 pixels"
        return (
            f"input size {n} is not valid for a U-Net of depth {self.depth} "
            f"with padding='{self.padding}' ({why}): {self.describe_rule()}; "
            f"{where}. See keras_unet.model.geometry.valid_input_sizes()."
        )

    def check(self, n, received=None) -> int:
        """`n` as an int, or a ValueError that teaches the rule.

        Args:
            n: the spatial size to check.
            received: text appended as ``Received: ...`` (defaults to
                ``input_size=n``).
        """
        n = _check_size(n)
        if not self.is_valid(n):
            received = received if received is not None else f"input_size={n}"
            raise ValueError(f"{self.invalid_message(n)} Received: {received}")
        return n

    def size_trace(self, input_size):
        """Spatial size after every stage, as ``[(stage, size), ...]``."""
        n = self.check(input_size)
        shrink = 2 if self.padding == "valid" else 0
        trace = [("input", n)]
        for level in range(1, self.depth + 1):
            for j in (1, 2):
                n -= shrink
                trace.append((f"down{level}_conv{j}", n))
            n //= 2
            trace.append((f"down{level}_pool", n))
        for j in (1, 2):
            n -= shrink
            trace.append((f"bottom_conv{j}", n))
        for level in range(self.depth, 0, -1):
            n *= 2
            trace.append((f"up{level}_upconv", n))
            for j in (1, 2):
                n -= shrink
                trace.append((f"up{level}_conv{j}", n))
        return trace

    # ------------------------------------------------------------- tiling

    @property
    def context(self) -> int:
        """Pixels of context kept around every output tile when tiling."""
        return self.margin if self.padding == "valid" else 6 * self.step

    @property
    def tile_crop(self) -> int:
        """Pixels cut from each side of a model output tile before use."""
        return 0 if self.padding == "valid" else self.context

    @property
    def min_tile(self) -> int:
        """The smallest tile that leaves output after the context."""
        return self.round_up(2 * self.context + 1)

    def is_valid_tile(self, n) -> bool:
        """A valid input size that leaves output after the context."""
        return self.is_valid(n) and n >= self.min_tile

    def round_up_tile(self, n) -> int:
        """The smallest valid tile >= n."""
        return self.round_up(max(int(n), self.min_tile))

    def round_down_tile(self, n) -> int | None:
        """The largest valid tile <= n (None if there is none)."""
        below = self.round_down(int(n))
        return below if below is not None and below >= self.min_tile else None

    def tile_for_output(self, n) -> int:
        """The smallest valid tile whose output covers `n` pixels."""
        return self.round_up_tile(n + 2 * self.context)

    def invalid_tile_message(self, n) -> str:
        """Why `n` cannot be a tile, naming the nearest tile sizes."""
        if self.padding == "valid":
            return self.invalid_message(n)
        below, above = self.round_down_tile(n), self.round_up_tile(n)
        where = (
            f"the smallest valid size is {above}"
            if below is None
            else f"nearest valid sizes are {below} and {above}"
        )
        return (
            f"tile size {n} is not valid for this same-padded U-Net of depth "
            f"{self.depth}: tiles are multiples of {self.step} larger than "
            f"twice the {self.context} px context kept around each tile "
            f"({self.min_tile} + {self.step}k); {where}."
        )


def _check_size(n, name="input_size") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a positive integer number of pixels. "
            f"Received: {name}={n!r}"
        )
    return int(n)


# Shortcuts for one depth and padding (the paper's by default).


def step(depth: int = 4, padding: str = "valid") -> int:
    """Spacing between consecutive valid input sizes: ``2**depth``."""
    return UNetGeometry(depth, padding).step


def margin(depth: int = 4, padding: str = "valid") -> int:
    """Context (pixels) the network consumes on each side of its output.

    ``6 * 2**depth - 4`` for valid padding (92 for the paper's depth 4, so a
    572 px tile gives a 388 px output tile); 0 for same padding.

    Examples:
        >>> margin(4)
        92
    """
    return UNetGeometry(depth, padding).margin


def min_input_size(depth: int = 4, padding: str = "valid") -> int:
    """The smallest valid input size (188 for depth 4, valid padding)."""
    return UNetGeometry(depth, padding).min_input_size


def is_valid_input_size(n: int, depth: int = 4, padding: str = "valid") -> bool:
    """Whether a tile of `n` pixels passes through the net without rounding.

    Examples:
        >>> is_valid_input_size(572), is_valid_input_size(570)
        (True, False)
    """
    return UNetGeometry(depth, padding).is_valid(n)


def valid_input_sizes(
    min_size: int, max_size: int, depth: int = 4, padding: str = "valid"
) -> list[int]:
    """All valid input sizes in ``[min_size, max_size]``, ascending.

    Examples:
        >>> valid_input_sizes(541, 600)
        [556, 572, 588]
    """
    return UNetGeometry(depth, padding).valid_sizes(min_size, max_size)


def nearest_valid_input_size(
    n: int, depth: int = 4, padding: str = "valid"
) -> int:
    """The valid input size closest to `n` (the larger one on a tie).

    Examples:
        >>> nearest_valid_input_size(570), nearest_valid_input_size(256)
        (572, 252)
    """
    return UNetGeometry(depth, padding).nearest(n)


def output_size(input_size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output size of the net for a valid input size.

    Raises:
        ValueError: if `input_size` is not valid; the message names the rule
            and the nearest valid sizes.

    Examples:
        >>> output_size(572)
        388
    """
    return UNetGeometry(depth, padding).output_size(input_size)


def input_size_for_output(
    n: int, depth: int = 4, padding: str = "valid"
) -> int:
    """The smallest valid input size whose output covers at least `n` pixels.

    Examples:
        >>> input_size_for_output(388), input_size_for_output(500)
        (572, 684)
    """
    return UNetGeometry(depth, padding).input_size_for_output(n)


def crop_per_side(level: int, depth: int = 4) -> int:
    """Pixels cropped on each side of the skip connection of `level`.

    For depth 4 the crops are 88, 40, 16 and 4 pixels (568 -> 392,
    280 -> 200, 136 -> 104, 64 -> 56 for the 572 tile).
    """
    return UNetGeometry(depth, "valid").crop_per_side(level)


def describe_rule(depth: int = 4, padding: str = "valid") -> str:
    """The validity rule in words, e.g. 'valid sizes are 188 + 16k (k >= 0)'."""
    return UNetGeometry(depth, padding).describe_rule()


def invalid_size_message(n: int, depth: int = 4, padding: str = "valid") -> str:
    """Why `n` is not a valid size, naming the rule and the nearest sizes."""
    return UNetGeometry(depth, padding).invalid_message(n)


def check_input_size(n, depth: int = 4, padding: str = "valid", received=None):
    """Raise a ValueError that teaches the rule if `n` is not a valid size."""
    return UNetGeometry(depth, padding).check(n, received)


def size_trace(input_size: int, depth: int = 4, padding: str = "valid"):
    """Spatial size after every stage, as ``[(stage, size), ...]``.

    For the paper's 572 tile: 570, 568 | 284, 282, 280 | ... | 392, 390, 388.
    Used by ``keras-unet summary`` to print the geometry.
    """
    return UNetGeometry(depth, padding).size_trace(input_size)
