"""The floating-point operations of a U-Net's forward pass."""

from __future__ import annotations

import keras

from keras_unet.model.spec import iter_layers, spec_of

__all__ = ["unet_flops"]


def unet_flops(model, input_size) -> int:
    """Floating-point operations of one forward pass on one tile.

    Counts 2 x multiply-adds of every convolution and up-convolution (the
    layers that dominate; activations, pooling, batch norm and the crops are
    not counted). A training step costs about 3 forward passes.

    Args:
        model: a U-Net from `build_unet` (square or free input size).
        input_size: the (square) input tile size, a valid size.

    Examples:
        >>> from keras_unet import build_unet
        >>> round(unet_flops(build_unet(), 572) / 1e9)   # the paper's net
        301
    """
    spec = spec_of(model)
    trace = dict(spec.geometry.size_trace(input_size))
    flops = 0
    for layer in iter_layers(model):
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
