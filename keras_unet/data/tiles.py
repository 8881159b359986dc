"""The input and output tile shapes of training: the network's geometry."""

from __future__ import annotations

import numbers

from keras_unet.model.geometry import UNetGeometry

__all__ = ["tile_shapes"]


def tile_shapes(
    input_size=572, depth=4, padding="valid", model=None, spec=None
):
    """Input and output tile shapes ``((in_h, in_w), (out_h, out_w))``.

    Args:
        input_size: int or ``(height, width)`` of the input tile; must be a
            valid size (see `keras_unet.model.geometry`). None takes the model's
            static input size.
        depth: the network's depth (ignored when `model` is given).
        padding: the network's padding (ignored when `model` is given).
        model: optional U-Net; its depth and padding are read from the
            spec it carries (`keras_unet.model.spec.spec_of`).
        spec: optional `keras_unet.model.spec.UNetSpec` (from `inspect_unet`,
            with overrides for a U-Net whose geometry cannot be inferred);
            replaces `depth`, `padding` and `model`.

    Examples:
        >>> tile_shapes(572, depth=4)
        ((572, 572), (388, 388))
    """
    if model is not None and spec is None:
        from keras_unet.model.spec import spec_of

        spec = spec_of(model)
    if spec is not None:
        depth, padding = spec.depth, spec.padding
        fixed = tuple(spec.input_size)
        if input_size is None:
            input_size = fixed
        elif None not in fixed:
            wanted = (
                (int(input_size),) * 2
                if isinstance(input_size, numbers.Integral)
                else tuple(input_size)
            )
            if wanted != fixed:
                raise ValueError(
                    f"The model only takes {fixed[0]}x{fixed[1]} inputs, but "
                    f"input_size={input_size!r}: pass input_size=None (or "
                    f"{fixed[0]}), or build the model with (None, None, C) "
                    "inputs to train on any valid tile size."
                )
    if input_size is None or (
        not isinstance(input_size, numbers.Integral)
        and None in tuple(input_size)
    ):
        raise ValueError(
            "`input_size` is needed: the model accepts any valid size, so say "
            "which tile size to train on, e.g. input_size=572. "
            f"Received: input_size={input_size!r}"
        )
    if isinstance(input_size, numbers.Integral):
        input_size = (int(input_size), int(input_size))
    in_hw = tuple(int(n) for n in input_size)
    if len(in_hw) != 2:
        raise ValueError(
            "`input_size` must be an int or a (height, width) pair. "
            f"Received: input_size={input_size!r}"
        )
    geometry = UNetGeometry(depth, padding)
    for n in in_hw:
        geometry.check(n, received=f"input_size={input_size!r}")
    return in_hw, tuple(geometry.output_size(n) for n in in_hw)
