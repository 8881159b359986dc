"""The U-Net builder (Ronneberger et al. 2015, Fig. 1)."""

from __future__ import annotations

import numbers

import keras

from keras_unet.checks import check_int, check_number
from keras_unet.model import geometry
from keras_unet.model.spec import UNetSpec, attach_spec

__all__ = ["build_unet", "he_normal"]


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
    `keras_unet.model.losses.WeightedCrossentropy` (or any loss with
    ``from_logits=True``) and apply the soft-max at prediction time
    (`keras_unet.predict_tiled` does). The model carries its `UNetSpec`
    (`keras_unet.model.spec.spec_of`).

    Args:
        input_shape: ``(height, width, channels)``. Height and width may be
            None so that one model runs on any valid size. With valid padding
            a size must be ``n_min + 2**depth * k`` (188 + 16k for depth 4);
            see `keras_unet.model.geometry`.
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
    model = keras.Model(inputs, outputs, name=name)
    spec = UNetSpec(geo, input_shape[-1], num_classes, input_shape[:2], filters)
    return attach_spec(model, spec)
