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

Every function takes one spatial size; height and width are checked
separately, so non-square tiles are fine.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Fig. 1 and Sect. 2).
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "PADDINGS",
    "check_input_size",
    "crop_per_side",
    "input_size_for_output",
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


def _check_depth_padding(depth, padding) -> None:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise TypeError(
            f"`depth` must be an integer >= 1 (the number of 2x2 max-pools; "
            f"the paper uses 4). Received: depth={depth!r}"
        )
    if depth < 1:
        raise ValueError(
            f"`depth` must be >= 1 (the number of 2x2 max-pools; the paper "
            f"uses 4). Received: depth={depth}"
        )
    if padding not in PADDINGS:
        raise ValueError(
            f"`padding` must be one of {PADDINGS} ('valid' is the paper's "
            f"unpadded convolution). Received: padding={padding!r}"
        )


def _check_size(n, name="input_size") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a positive integer number of pixels. "
            f"Received: {name}={n!r}"
        )
    return int(n)


def step(depth: int = 4, padding: str = "valid") -> int:
    """Spacing between consecutive valid input sizes: ``2**depth``."""
    _check_depth_padding(depth, padding)
    return 2**depth


def margin(depth: int = 4, padding: str = "valid") -> int:
    """Context (pixels) the network consumes on each side of its output.

    For valid padding this is ``6 * 2**depth - 4``: 92 for the paper's depth
    4, so a 572 px input tile gives a 388 px output tile. For same padding it
    is 0.

    Examples:
        >>> margin(4)
        92
    """
    _check_depth_padding(depth, padding)
    if padding == "same":
        return 0
    return 6 * 2**depth - 4


def min_input_size(depth: int = 4, padding: str = "valid") -> int:
    """The smallest valid input size (188 for depth 4, valid padding)."""
    _check_depth_padding(depth, padding)
    if padding == "same":
        return 2**depth
    # Input n = 2**d * b_in + 4 * (2**d - 1) where b_in is the size entering
    # the bottom block; its two convolutions leave b = b_in - 4. The
    # expansive path maps b -> 2b - 4 once per level, which stays positive
    # for b >= 4 (any depth) and for b = 3 only when depth == 1.
    b_min = 3 if depth == 1 else 4
    return 2**depth * (b_min + 4) + 4 * (2**depth - 1)


def is_valid_input_size(n: int, depth: int = 4, padding: str = "valid") -> bool:
    """Whether a tile of `n` pixels passes through the net without rounding.

    Examples:
        >>> is_valid_input_size(572), is_valid_input_size(570)
        (True, False)
    """
    _check_depth_padding(depth, padding)
    n = _check_size(n)
    n0 = min_input_size(depth, padding)
    return n >= n0 and (n - n0) % 2**depth == 0


def valid_input_sizes(
    min_size: int, max_size: int, depth: int = 4, padding: str = "valid"
) -> list[int]:
    """All valid input sizes in ``[min_size, max_size]``, ascending.

    Examples:
        >>> valid_input_sizes(541, 600)
        [556, 572, 588]
    """
    _check_depth_padding(depth, padding)
    lo, hi = (
        _check_size(min_size, "min_size"),
        _check_size(max_size, "max_size"),
    )
    n0, s = min_input_size(depth, padding), 2**depth
    first = n0 if lo <= n0 else n0 + math.ceil((lo - n0) / s) * s
    return list(range(first, hi + 1, s))


def _neighbours(n: int, depth: int, padding: str) -> tuple[int | None, int]:
    """The valid sizes just below (None if there is none) and above n."""
    n0, s = min_input_size(depth, padding), 2**depth
    if n <= n0:
        return None, n0
    below = n0 + (n - n0) // s * s
    above = below if below == n else below + s
    return below, above


def nearest_valid_input_size(
    n: int, depth: int = 4, padding: str = "valid"
) -> int:
    """The valid input size closest to `n` (the larger one on a tie).

    Examples:
        >>> nearest_valid_input_size(570), nearest_valid_input_size(256)
        (572, 252)
    """
    _check_depth_padding(depth, padding)
    n = _check_size(n)
    below, above = _neighbours(n, depth, padding)
    if below is None or above - n <= n - below:
        return above
    return below


def output_size(input_size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output size of the net for a valid input size.

    Raises:
        ValueError: if `input_size` is not valid; the message names the rule
            and the nearest valid sizes.

    Examples:
        >>> output_size(572)
        388
    """
    check_input_size(input_size, depth, padding)
    return int(input_size) - 2 * margin(depth, padding)


def input_size_for_output(
    n: int, depth: int = 4, padding: str = "valid"
) -> int:
    """The smallest valid input size whose output covers at least `n` pixels.

    Examples:
        >>> input_size_for_output(388), input_size_for_output(500)
        (572, 684)
    """
    _check_depth_padding(depth, padding)
    n = _check_size(n, "n")
    if n < 1:
        raise ValueError(f"`n` must be >= 1. Received: n={n}")
    want = n + 2 * margin(depth, padding)
    _, above = _neighbours(want, depth, padding)
    return above


def crop_per_side(level: int, depth: int = 4) -> int:
    """Pixels cropped on each side of the skip connection of `level`.

    Levels count from 1 (the top, full resolution) to `depth`. With valid
    padding the difference between the contracting-path feature map and the
    up-sampled map of the same level is independent of the input size: it is
    twice the shrinkage of the sub-network below the level. For depth 4 the
    crops are 88, 40, 16 and 4 pixels (568 -> 392, 280 -> 200, 136 -> 104,
    64 -> 56 for the 572 tile).
    """
    _check_depth_padding(depth, "valid")
    if not 1 <= level <= depth:
        raise ValueError(
            f"`level` must be in [1, {depth}]. Received: level={level}"
        )
    sub_depth = depth - level  # pooling steps below this level
    return 12 * 2**sub_depth - 8


def describe_rule(depth: int = 4, padding: str = "valid") -> str:
    """The validity rule in words, e.g. 'valid sizes are 188 + 16k (k >= 0)'."""
    n0, s = min_input_size(depth, padding), 2**depth
    if padding == "same":
        return f"valid sizes are multiples of {s}"
    return f"valid sizes are {n0} + {s}k (k >= 0)"


def invalid_size_message(n: int, depth: int = 4, padding: str = "valid") -> str:
    """Why `n` is not a valid size, naming the rule and the nearest sizes."""
    below, above = _neighbours(int(n), depth, padding)
    where = (
        f"the smallest valid size is {above}"
        if below is None
        else f"nearest valid sizes are {below} and {above}"
    )
    why = (
        "every 2x2 max-pool must see an even size and every valid 3x3 "
        "convolution removes 2 pixels"
        if padding == "valid"
        else "every 2x2 max-pool must see an even size"
    )
    return (
        f"input size {n} is not valid for a U-Net of depth {depth} with "
        f"padding='{padding}' ({why}): {describe_rule(depth, padding)}; "
        f"{where}. See keras_unet.geometry.valid_input_sizes()."
    )


def check_input_size(n, depth: int = 4, padding: str = "valid", received=None):
    """Raise a ValueError that teaches the rule if `n` is not a valid size.

    Args:
        n: the spatial size to check.
        depth: the network's depth.
        padding: the network's padding.
        received: text appended as ``Received: ...`` (defaults to
            ``input_size=n``).
    """
    _check_depth_padding(depth, padding)
    n = _check_size(n)
    if not is_valid_input_size(n, depth, padding):
        received = received if received is not None else f"input_size={n}"
        raise ValueError(
            f"{invalid_size_message(n, depth, padding)} Received: {received}"
        )
    return n


def size_trace(input_size: int, depth: int = 4, padding: str = "valid"):
    """Spatial size after every stage, as ``[(stage, size), ...]``.

    For the paper's 572 tile: 570, 568 | 284, 282, 280 | ... | 392, 390, 388.
    Used by ``keras-unet summary`` to print the geometry.
    """
    check_input_size(input_size, depth, padding)
    shrink = 2 if padding == "valid" else 0
    n = int(input_size)
    trace = [("input", n)]
    for level in range(1, depth + 1):
        for j in (1, 2):
            n -= shrink
            trace.append((f"down{level}_conv{j}", n))
        n //= 2
        trace.append((f"down{level}_pool", n))
    for j in (1, 2):
        n -= shrink
        trace.append((f"bottom_conv{j}", n))
    for level in range(depth, 0, -1):
        n *= 2
        trace.append((f"up{level}_upconv", n))
        for j in (1, 2):
            n -= shrink
            trace.append((f"up{level}_conv{j}", n))
    return trace
