"""What a U-Net is: its `UNetSpec`, carried with the model.

A model made by `keras_unet.build_unet` or loaded by
`keras_unet.load_model` carries its spec (`spec_of` returns it); it is
stored inside the ``.keras`` files keras_unet writes. A model built
elsewhere is inspected once, the first time `spec_of` sees it
(`inspect_unet`: depth and padding from its layers, verified against its
own shape arithmetic). Tiling, the Dask path, the exports, the training
tiles and the FLOP count all read the spec this way.
"""

from __future__ import annotations

import dataclasses
import weakref

import keras

from keras_unet.model import geometry

__all__ = ["UNetSpec", "attach_spec", "inspect_unet", "iter_layers", "spec_of"]


@dataclasses.dataclass(frozen=True)
class UNetSpec:
    """What a U-Net model is, as read from it by `inspect_unet`.

    Attributes:
        geometry: the size arithmetic
            (`keras_unet.model.geometry.UNetGeometry`).
        input_channels: channels the model expects.
        num_classes: channels of its output.
        input_size: the model's static ``(height, width)`` input size;
            ``(None, None)`` when it takes any valid size.
        filters: channels of its first convolution (None if unknown).
    """

    geometry: geometry.UNetGeometry
    input_channels: int
    num_classes: int
    input_size: tuple = (None, None)
    filters: int | None = None

    @property
    def depth(self) -> int:
        return self.geometry.depth

    @property
    def padding(self) -> str:
        return self.geometry.padding

    @property
    def margin(self) -> int:
        """Context consumed on each side (92 for the paper's net)."""
        return self.geometry.margin

    @property
    def step(self) -> int:
        """Tile offsets must be multiples of this (2**depth)."""
        return self.geometry.step

    @property
    def fixed_size(self) -> tuple | None:
        """``(height, width)`` if the model takes only that size, else None."""
        return None if None in self.input_size else tuple(self.input_size)

    def to_config(self) -> dict:
        """The spec as JSON-ready values (`from_config` reads them back).

        Examples:
            >>> spec = UNetSpec(geometry.UNetGeometry(2), 1, 2)
            >>> UNetSpec.from_config(spec.to_config()) == spec
            True
        """
        return {
            "depth": self.depth,
            "padding": self.padding,
            "input_channels": self.input_channels,
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "filters": self.filters,
        }

    @classmethod
    def from_config(cls, config) -> UNetSpec:
        """The spec of `to_config`'s values."""
        return cls(
            geometry=geometry.UNetGeometry(config["depth"], config["padding"]),
            input_channels=int(config["input_channels"]),
            num_classes=int(config["num_classes"]),
            input_size=tuple(config.get("input_size", (None, None))),
            filters=config.get("filters"),
        )


def iter_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)
        else:
            yield layer


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model, e.g. from keras_unet.build_unet(). "
            f"Received: {type(model).__name__}"
        )
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 4 or len(out_shape) != 4:
        raise ValueError(
            "Expected an image-to-image model with inputs and outputs of shape "
            "(batch, height, width, channels). Received: "
            f"input_shape={in_shape}, output_shape={out_shape}"
        )
    return in_shape, out_shape


def _infer_depth(layers):
    pools = keras.layers.MaxPooling2D | keras.layers.AveragePooling2D
    depth = sum(isinstance(layer, pools) for layer in layers)
    if depth < 1:
        raise ValueError(
            "Could not infer the depth of the U-Net: the model has no 2x2 "
            "pooling layer. Pass `depth=` (and `padding=`) explicitly."
        )
    return depth


def _spatial_convs(layers):
    return [
        layer
        for layer in layers
        if isinstance(layer, keras.layers.Conv2D)
        and tuple(layer.kernel_size) != (1, 1)
        and not isinstance(layer, keras.layers.Conv2DTranspose)
    ]


def _infer_padding(convs):
    paddings = {conv.padding for conv in convs}
    if len(paddings) != 1:
        raise ValueError(
            "Could not infer the padding of the U-Net (its convolutions "
            f"mix {sorted(paddings)} or there are none). Pass `padding=`."
        )
    return paddings.pop()


def _verify_shapes(model, spec):
    """Check the inferred geometry against the model's own arithmetic."""
    g = spec.geometry
    h, w = spec.input_size
    n = h if h is not None else g.min_input_size
    m = w if w is not None else n
    try:
        got = model.compute_output_shape((1, n, m, spec.input_channels))
    except Exception as err:  # noqa: BLE001 - any failure means a mismatch
        raise ValueError(
            f"The model does not accept a {n}x{m} input, which is valid for "
            f"depth={g.depth}, padding={g.padding!r}. Pass the right `depth=` "
            f"and `padding=`. ({err})"
        ) from None
    want = (g.output_size(n), g.output_size(m))
    if tuple(got[1:3]) != want:
        raise ValueError(
            f"The model maps a {n}x{m} input to {got[1]}x{got[2]}, but a U-Net "
            f"of depth={g.depth}, padding={g.padding!r} gives "
            f"{want[0]}x{want[1]}. Pass the right `depth=` and `padding=`."
        )


def inspect_unet(model, depth=None, padding=None) -> UNetSpec:
    """Read the geometry and channel counts of a U-Net model.

    This is the one place a model's geometry is inferred, for models that
    do not carry their spec (`spec_of` calls it once per model); pass its
    result as ``spec=`` to override what is carried. Works for models made
    by `build_unet`, also after saving and loading, and for other U-Nets
    whose down-sampling is 2x2 pooling.
    The inferred geometry is verified against the model's own shape
    arithmetic; pass `depth` and `padding` to override the inference.

    Returns:
        A `UNetSpec`.

    Raises:
        ValueError: if the model is not 4-D image-to-image, or its shape
            arithmetic does not match the geometry.
    """
    in_shape, out_shape = _check_model(model)
    layers = list(iter_layers(model))
    convs = _spatial_convs(layers)
    spec = UNetSpec(
        geometry=geometry.UNetGeometry(
            _infer_depth(layers) if depth is None else depth,
            _infer_padding(convs) if padding is None else padding,
        ),
        input_channels=int(in_shape[-1]),
        num_classes=int(out_shape[-1]),
        input_size=(in_shape[1], in_shape[2]),
        filters=int(convs[0].filters) if convs else None,
    )
    _verify_shapes(model, spec)
    return spec


_SPECS = weakref.WeakKeyDictionary()  # model -> its UNetSpec


def attach_spec(model, spec):
    """Let `model` carry `spec` (`build_unet` and `load_model` do this)."""
    if not isinstance(spec, UNetSpec):
        raise TypeError(
            f"`spec` must be a UNetSpec. Received: {type(spec).__name__}"
        )
    _SPECS[model] = spec
    return model


def spec_of(model) -> UNetSpec:
    """The spec `model` carries, or `inspect_unet`'s, found once.

    Examples:
        >>> from keras_unet import build_unet
        >>> spec_of(build_unet(depth=2, filters=4)).geometry.margin
        20
    """
    try:
        spec = _SPECS.get(model)
    except TypeError:  # not weak-referable: not a model
        spec = None
    if spec is None:
        spec = inspect_unet(model)  # a TypeError for non-models
        _SPECS[model] = spec
    return spec
