"""The U-Net builder (Ronneberger et al. 2015, Fig. 1) and model inspection."""

from __future__ import annotations

import dataclasses
import numbers
import weakref

import keras

from keras_unet import geometry
from keras_unet.checks import check_int, check_number

__all__ = [
    "UNetSpec",
    "build_unet",
    "free_size_model",
    "he_normal",
    "inspect_unet",
    "load_model",
    "unet_flops",
]


def he_normal(seed=None):
    """The paper's initializer: Gaussian with std sqrt(2 / fan_in).

    Keras' built-in ``"he_normal"`` draws from a *truncated* normal; the paper
    (and the authors' Caffe "msra" filler) uses an untruncated Gaussian, so we
    ask for that explicitly. For a transposed convolution Keras counts
    ``fan_in = kh * kw * output_channels``, which is also Caffe's convention
    for the authors' deconvolution layers.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


def _check_input_shape(input_shape, geo):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels), without the "
            "batch axis; height and width may be None to accept any valid "
            "size, e.g. (572, 572, 1) or (None, None, 3). "
            f"Received: input_shape={input_shape!r}"
        )
    h, w, c = shape
    if c is None or isinstance(c, bool) or not isinstance(c, numbers.Integral):
        raise ValueError(
            "The channel axis of `input_shape` must be a positive integer "
            "(the last entry: 1 for grey images, 3 for RGB). "
            f"Received: input_shape={input_shape!r}"
        )
    if c < 1:
        raise ValueError(
            "The channel axis of `input_shape` must be >= 1. "
            f"Received: input_shape={input_shape!r}"
        )
    for n in (h, w):
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(
                "Height and width in `input_shape` must be positive integers "
                f"or None. Received: input_shape={input_shape!r}"
            )
        geo.check(n, received=f"input_shape={input_shape!r}")
    return (h, w, int(c))


def _conv_block(x, n_filters, prefix, padding, batch_norm, seed):
    """Two 3x3 convolutions, each followed by ReLU (after BN when enabled)."""
    for j in (1, 2):
        x = keras.layers.Conv2D(
            n_filters,
            3,
            padding=padding,
            use_bias=not batch_norm,
            activation=None if batch_norm else "relu",
            kernel_initializer=he_normal(_next_seed(seed)),
            name=f"{prefix}_conv{j}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn{j}")(x)
            x = keras.layers.Activation("relu", name=f"{prefix}_relu{j}")(x)
    return x


def _next_seed(seed):
    """A fresh integer seed per layer (None keeps Keras' global seeding)."""
    if seed is None:
        return None
    seed[0] += 1
    return seed[0]


def build_unet(
    input_shape=(572, 572, 1),
    num_classes=2,
    depth=4,
    filters=64,
    dropout=0.5,
    padding="valid",
    batch_norm=False,
    name="unet",
    seed=None,
):
    """Build the U-Net of Ronneberger et al. (2015) as a functional model.

    The defaults reproduce the paper's network exactly: 23 convolution layers
    (18 3x3 convolutions with ReLU, 4 2x2 up-convolutions, one 1x1
    convolution), 31,030,658 parameters for one input channel and two
    classes, a 572x572 input tile giving a 388x388x2 output, He-normal
    initialization, dropout at the end of the contracting path (after the 512-
    and 1024-channel blocks, as in the authors' released model), 2x2
    up-convolutions with ReLU, and center crop + concatenation of the
    contracting-path features.

    The model outputs **logits** (no soft-max): train it with
    `keras_unet.losses.WeightedCrossentropy` (or any loss with
    ``from_logits=True``) and apply the soft-max at prediction time
    (`keras_unet.tiling.predict_tiled` does).

    Args:
        input_shape: ``(height, width, channels)``. Height and width may be
            None so that one model runs on any valid size. With valid padding
            a size must be ``n_min + 2**depth * k`` (188 + 16k for depth 4);
            see `keras_unet.geometry`.
        num_classes: number of output channels (classes). 2 for the paper's
            cell/membrane task.
        depth: number of 2x2 max-pooling steps (4 in the paper).
        filters: channels of the first level (64 in the paper); level ``l``
            has ``filters * 2**(l-1)``, the bottom ``filters * 2**depth``.
        dropout: dropout rate after the two deepest blocks; 0 or None
            disables it.
        padding: ``"valid"`` (the paper: unpadded convolutions, output
            smaller than input) or ``"same"`` (output size = input size,
            inputs must be multiples of ``2**depth``).
        batch_norm: insert batch normalization between every 3x3
            convolution and its ReLU (not in the paper).
        name: model name, also the prefix of every layer name
            (``f"{name}_down{level}_conv{j}"``, ``f"{name}_bottom_conv1"``,
            ``f"{name}_up{level}_upconv"``, ``f"{name}_logits"``, ...).
        seed: optional integer making the initial weights reproducible.

    Returns:
        A `keras.Model` from ``(batch, H, W, channels)`` images to
        ``(batch, H', W', num_classes)`` logits.

    Examples:
        >>> model = build_unet()
        >>> model.count_params()
        31030658
        >>> model.output_shape
        (None, 388, 388, 2)
        >>> small = build_unet((None, None, 3), num_classes=4, depth=2)

    Reference:
        Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for
        Biomedical Image Segmentation. MICCAI 2015. arXiv:1505.04597.
    """
    geo = geometry.UNetGeometry(depth, padding)
    depth = geo.depth
    filters = check_int(filters, "filters", 1, "channels of the first level")
    num_classes = check_int(
        num_classes, "num_classes", 1, "output channels; 2 for cell/membrane"
    )
    dropout = check_number(
        dropout or 0.0,
        "dropout",
        0.0,
        1.0,
        hint="0 disables it; the paper uses 0.5",
    )
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` must be a non-empty string. Received: {name!r}"
        )
    input_shape = _check_input_shape(input_shape, geo)
    seed = None if seed is None else [int(seed)]

    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = inputs
    skips = []
    for level in range(1, depth + 1):
        prefix = f"{name}_down{level}"
        x = _conv_block(
            x, filters * 2 ** (level - 1), prefix, padding, batch_norm, seed
        )
        if level == depth and dropout:
            x = keras.layers.Dropout(
                dropout, seed=_next_seed(seed), name=f"{prefix}_dropout"
            )(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)

    x = _conv_block(
        x, filters * 2**depth, f"{name}_bottom", padding, batch_norm, seed
    )
    if dropout:
        x = keras.layers.Dropout(
            dropout, seed=_next_seed(seed), name=f"{name}_bottom_dropout"
        )(x)

    for level in range(depth, 0, -1):
        prefix = f"{name}_up{level}"
        n_filters = filters * 2 ** (level - 1)
        x = keras.layers.Conv2DTranspose(
            n_filters,
            2,
            strides=2,
            activation="relu",
            kernel_initializer=he_normal(_next_seed(seed)),
            name=f"{prefix}_upconv",
        )(x)
        skip = skips[level - 1]
        if padding == "valid":
            c = geo.crop_per_side(level)
            skip = keras.layers.Cropping2D(c, name=f"{prefix}_crop")(skip)
        x = keras.layers.Concatenate(name=f"{prefix}_concat")([skip, x])
        x = _conv_block(x, n_filters, prefix, padding, batch_norm, seed)

    # Logits stay float32 under mixed precision (Keras' recommendation for the
    # layer feeding a soft-max).
    outputs = keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=he_normal(_next_seed(seed)),
        dtype="float32",
        name=f"{name}_logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)


@dataclasses.dataclass(frozen=True)
class UNetSpec:
    """What a U-Net model is, as read from it by `inspect_unet`.

    Attributes:
        geometry: the size arithmetic (`keras_unet.geometry.UNetGeometry`).
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


def _iter_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _iter_layers(layer)
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

    This is the one place a model's geometry is inferred: every function
    that takes a model (`keras_unet.predict_tiled`,
    `keras_unet.export_saved_model`, ...) calls it, or takes its result as
    ``spec=``. Works for models made by `build_unet`, also after saving
    and loading, and for other U-Nets whose down-sampling is 2x2 pooling.
    The inferred geometry is verified against the model's own shape
    arithmetic; pass `depth` and `padding` to override the inference.

    Returns:
        A `UNetSpec`.

    Raises:
        ValueError: if the model is not 4-D image-to-image, or its shape
            arithmetic does not match the geometry.
    """
    in_shape, out_shape = _check_model(model)
    layers = list(_iter_layers(model))
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


def load_model(path, compile=True):
    """Load a ``.keras`` U-Net saved by keras_unet (e.g. ``best.keras``).

    Imports `keras_unet.losses` and `keras_unet.metrics` first, so that the
    registered loss and metrics of a compiled model are found (plain
    ``keras.saving.load_model`` works too once they are imported). The
    network itself uses only built-in Keras layers: with ``compile=False``
    any Keras 3 installation loads it, without keras_unet.

    Args:
        path: the ``.keras`` file.
        compile: restore the optimizer, loss and metrics (needed to resume
            training; not for prediction).
    """
    import pathlib

    from keras_unet import losses, metrics  # noqa: F401 - registration

    path = pathlib.Path(path)
    if not path.is_file():
        what = "is a folder, not a .keras file" if path.is_dir() else (
            "does not exist")  # fmt: skip
        raise FileNotFoundError(
            f"No such model file: {path} {what} (best.keras or last.keras "
            "of a run)."
        )
    if path.suffix != ".keras":
        raise ValueError(
            f"{path} is not a .keras file. keras_unet saves models with "
            "model.save('name.keras'); for a SavedModel use "
            "tf.saved_model.load."
        )
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a readable .keras file (a .keras file is a zip "
            "archive; this one is damaged or truncated): save the model "
            "again, or use another checkpoint (best.keras / last.keras)."
        )
    return keras.saving.load_model(path, compile=compile)


def unet_flops(model, input_size) -> int:
    """Floating-point operations of one forward pass on one tile.

    Counts 2 x multiply-adds of every convolution and up-convolution (the
    layers that dominate; activations, pooling, batch norm and the crops are
    not counted). A training step costs about 3 forward passes.

    Args:
        model: a U-Net from `build_unet` (square or free input size).
        input_size: the (square) input tile size, a valid size.

    Examples:
        >>> round(unet_flops(build_unet(), 572) / 1e9)   # the paper's net
        301
    """
    spec = inspect_unet(model)
    trace = dict(spec.geometry.size_trace(input_size))
    flops = 0
    for layer in _iter_layers(model):
        if not isinstance(
            layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose
        ):
            continue
        role = layer.name.split("_", 1)[1] if "_" in layer.name else layer.name
        kh, kw = layer.kernel_size
        transposed = isinstance(layer, keras.layers.Conv2DTranspose)
        cin = layer.kernel.shape[-1 if transposed else -2]
        if role == "logits":
            n = trace["up1_conv2"]
        elif transposed:
            n = trace[role] // 2  # every input pixel paints a 2x2 block
        else:
            n = trace[role]
        flops += 2 * kh * kw * cin * layer.filters * n * n
    return int(flops)
