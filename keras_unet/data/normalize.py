"""How images become the floats a model sees: the one place.

Every entry point of keras_unet (the training stream, tiled prediction,
the exported SavedModel, the command line) converts images with
`to_float_image`, so a model always sees the value range it was trained
on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_float_image"]


def to_float_image(image) -> np.ndarray:
    """Convert an image to float32, scaling integer types to [0, 1].

    uint8 is divided by 255 and uint16 by 65535; bool becomes 0/1; float
    images are kept as they are (float32). Other integer types (int8,
    int16, int32, int64, uint32, ...) are refused: their range says nothing
    about the data (``np.array([[0, 128, 255]])`` is int64), so dividing by
    the type's maximum would silently give an almost black image.

    Raises:
        ValueError: on an empty image, NaN/inf pixels or an ambiguous
            integer type.
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"The image is empty. Received: shape={image.shape}")
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.integer):
        raise ValueError(
            f"Images of dtype {image.dtype} are ambiguous: keras_unet scales "
            "uint8 by 1/255 and uint16 by 1/65535 and keeps floats as they "
            "are. Convert first, e.g. image.astype(np.uint8) for 0-255 data, "
            "image.astype(np.uint16) for 16-bit data, or to float32 in the "
            f"range you train with. Received: dtype={image.dtype}"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            "Expected an integer, bool or float image. "
            f"Received: dtype={image.dtype}"
        )
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise ValueError(
            f"The image has {bad} NaN or infinite pixel(s); replace them (e.g. "
            "numpy.nan_to_num) before segmenting."
        )
    return image
